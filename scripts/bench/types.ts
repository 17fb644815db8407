/** One line of `npm run bench`: a figure beside its same-run baseline. */
export interface BenchRow {
  /** Section, e.g. 'holder', 'chain', 'http', 'memory'. */
  group: string;
  /** What was measured, e.g. 'holder.transitionTo, 0 listeners'. */
  name: string;
  /** The measured figure (ops/s, req/s, MiB, ...). */
  value: number;
  unit: string;
  /** The baseline's name and figure, measured in the same run. */
  baseline: string;
  baselineValue: number;
  /** value / baselineValue for throughputs; for memory, as documented by the row. */
  ratio: number;
  /** The target, e.g. '≥ 0.5×' or '≤ 3× slower', and whether it was met. */
  target?: string;
  met?: boolean;
}
