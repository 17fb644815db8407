/** min / median / max of one figure over the rounds of a run (`n` samples). */
export interface Spread {
  min: number;
  median: number;
  max: number;
  n: number;
}

/**
 * One line of `npm run bench`: a figure beside its same-run baseline. Both sides were
 * measured in interleaved rounds (the measured thing, its baseline, the measured thing,
 * ...), so drift on a noisy machine hits both alike; `ratio` is taken per round and its
 * spread reported — the median of the per-round ratios, not a ratio of medians.
 */
export interface BenchRow {
  /** Section, e.g. 'holder', 'chain', 'http', 'sse', 'start', 'memory'. */
  group: string;
  /** What was measured, e.g. 'holder.transitionTo, 1 no-op listener'. */
  name: string;
  /** The measured figure over the rounds. */
  value: Spread;
  /** Its unit (ops/s, req/s, ms, MiB, ...). */
  unit: string;
  /** The baseline's name and figure, measured in the same rounds. */
  baseline: string;
  baselineValue: Spread;
  /** The baseline's unit when it differs from `unit`. */
  baselineUnit?: string;
  /** value / baseline per round (for throughputs: > 1 is faster than the baseline). */
  ratio: Spread;
  /** The target, e.g. '≥ 0.67×' or '≤ 3×', and whether the median ratio meets it. */
  target?: string;
  met?: boolean;
  /** How it was measured, by how much it misses, what the rounds were. */
  note?: string;
}
