/** Small helpers the bench suites share: spreads, interleaved rounds, timing. */
import type { BenchRow, Spread } from './types.js';

/** A logger that says nothing: the bench measures the code, not its log lines. */
export const quiet = { error() {}, warn() {}, info() {}, debug() {} };

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no samples');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** min / median / max of `xs`. */
export function spread(xs: readonly number[]): Spread {
  if (xs.length === 0) throw new Error('spread of no samples');
  return { min: Math.min(...xs), median: median(xs), max: Math.max(...xs), n: xs.length };
}

/** Quantile `q` (0–1) of `xs`, nearest rank. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/** A row from per-round samples of a figure and of its baseline (same length, same rounds). */
export function row(
  base: Omit<BenchRow, 'value' | 'baselineValue' | 'ratio' | 'met'> & {
    /** How the target is checked against the median ratio. */
    check?: (ratio: number) => boolean;
  },
  values: readonly number[],
  baselines: readonly number[],
  ratios: readonly number[] = values.map((v, i) => v / baselines[i]!),
): BenchRow {
  const { check, ...rest } = base;
  const r = spread(ratios);
  return {
    ...rest,
    value: spread(values),
    baselineValue: spread(baselines),
    ratio: r,
    ...(check ? { met: check(r.median) } : {}),
  };
}

/**
 * Runs `rounds` rounds of the named `sides`, each round in a rotated order (a, b, c;
 * b, c, a; ...) so neither side always runs first or right after the other, after one
 * warm-up round that is not kept. Returns each side's samples, by round.
 */
export async function interleave<K extends string>(
  rounds: number,
  sides: Record<K, (round: number) => Promise<number>>,
  options: { warmup?: boolean; gc?: boolean } = {},
): Promise<Record<K, number[]>> {
  const names = Object.keys(sides) as K[];
  const out = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let r = options.warmup === false ? 0 : -1; r < rounds; r++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + Math.max(r, 0)) % names.length]!;
      if (options.gc !== false) gc?.();
      const v = await sides[name](r);
      if (r >= 0) out[name].push(v);
    }
  }
  return out;
}

/**
 * For each of `variants`, `rounds` pairs of (variant, baseline) run back to back — the
 * order flipping every round, the variants taking turns — so each ratio compares two
 * runs that sat next to each other in time. Returns per variant its samples and the
 * baseline samples paired with them. One warm-up pair per variant is not kept.
 */
export async function paired<K extends string>(
  rounds: number,
  baseline: () => Promise<number>,
  variants: Record<K, () => Promise<number>>,
): Promise<Record<K, { value: number[]; baseline: number[] }>> {
  const names = Object.keys(variants) as K[];
  const out = Object.fromEntries(
    names.map((n) => [n, { value: [] as number[], baseline: [] as number[] }]),
  ) as Record<K, { value: number[]; baseline: number[] }>;
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let r = -1; r < rounds; r++) {
    for (const name of names) {
      const pair = [variants[name], baseline];
      if (r % 2 === 1) pair.reverse();
      const [a, b] = [pair[0]!, pair[1]!];
      // Each side starts from an idle turn, so it inherits no state of the one before
      // (e.g. the holder's async context, switched off only once the process is idle).
      await idleTurn();
      gc?.();
      const first = await a();
      await idleTurn();
      gc?.();
      const second = await b();
      if (r < 0) continue;
      const v = r % 2 === 1 ? second : first;
      const base = r % 2 === 1 ? first : second;
      out[name].value.push(v);
      out[name].baseline.push(base);
    }
  }
  return out;
}

const idleTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Milliseconds since the epoch, sub-millisecond, comparable across processes on one host. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Heap used after two full collections (MiB); run with `--expose-gc` for a stable reading. */
export function heapMiB(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/** Resident set size of process `pid` in MiB, from /proc/<pid>/status (Linux). */
export async function rssMiB(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

/** Same-run options every suite takes. */
export interface SuiteOptions {
  /** Measured rounds (each suite has its default, ≥ 5). */
  rounds?: number;
  /** Smaller batches per round: a smoke run of the harness, figures not meant to be read. */
  quick?: boolean;
  /** Default `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/test`. */
  databaseUrl?: string;
}

export function databaseUrl(options: SuiteOptions): string {
  return (
    options.databaseUrl ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  );
}

/** `base` with `search_path` set to `schema` (a throwaway schema of the bench). */
export function withSchema(base: string, schema: string): string {
  const u = new URL(base);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}
