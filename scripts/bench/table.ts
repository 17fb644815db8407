/** The Markdown table of `npm run bench` (and of `scripts/bench-table.ts`, from its JSON). */
import type { BenchRow, Spread } from './types.js';

/** The JSON `npm run bench -- --json` writes. */
export interface BenchResults {
  node: string;
  date: string;
  cpus: number;
  /** Rounds asked for on the command line, if any (else each suite's default). */
  rounds?: number;
  seconds: number;
  rows: BenchRow[];
  /** Suites that failed, with their error. */
  failed: { group: string; error: string }[];
}

/** Three significant figures, thousands separated. */
export function num(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 100) return Math.round(n).toLocaleString('en-US');
  if (a >= 10) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  if (a === 0) return '0';
  return n.toPrecision(2);
}

function spreadText(s: Spread, unit = ''): string {
  const u = unit ? ` ${unit}` : '';
  if (s.n === 1) return `${num(s.median)}${u} (1 sample)`;
  return `${num(s.min)} / **${num(s.median)}** / ${num(s.max)}${u}`;
}

function ratioText(s: Spread): string {
  if (s.n === 1) return `${num(s.median)}×`;
  return `**${num(s.median)}×** (${num(s.min)}–${num(s.max)})`;
}

const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

/** The table: one line per row, min / **median** / max of each side and of the ratio. */
export function renderTable(results: BenchResults): string {
  const lines = [
    `node ${results.node}, ${results.cpus} CPUs, ${results.date}; ${Math.round(results.seconds)} s in all. ` +
      'Each figure: min / **median** / max over interleaved rounds (the figure and its baseline ' +
      'alternate); ratio: the median of the per-round ratios (min–max).',
    '',
    '| group | figure | value (min / median / max) | baseline, same rounds | baseline value | ratio | target |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results.rows) {
    const target = r.target ? `${r.target} ${r.met ? '✓' : '✗'}` : '';
    const name = r.note ? `${r.name} — ${r.note}` : r.name;
    lines.push(
      `| ${cell(r.group)} | ${cell(name)} | ${spreadText(r.value, r.unit)} | ${cell(r.baseline)} | ${spreadText(r.baselineValue, r.baselineUnit ?? r.unit)} | ${ratioText(r.ratio)} | ${cell(target)} |`,
    );
  }
  for (const f of results.failed) {
    lines.push(
      `| ${f.group} | **suite failed**: ${cell(f.error.split('\n')[0] ?? '')} | | | | | ✗ |`,
    );
  }
  return lines.join('\n');
}
