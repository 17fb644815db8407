/**
 * `npm run bench`: every figure of SPEC §9 from one run, each beside its same-run
 * baseline as a ratio (these machines are noisy; absolute numbers are not compared
 * across runs). Prints a Markdown table — the README's table is this output.
 *
 * Usage: npm run bench [-- --only holder,memory,chain,spool,http] [--json]
 */
import { parseArgs } from 'node:util';
import type { BenchRow } from './bench/types.js';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const only = values.only ? new Set(values.only.split(',')) : undefined;
const want = (group: string) => !only || only.has(group);

type Suite = { group: string; run: () => Promise<BenchRow[]> };
const suites: Suite[] = [
  { group: 'holder', run: async () => (await import('./bench/holder.js')).benchHolder() },
  { group: 'memory', run: async () => (await import('./bench/holder.js')).benchHolderMemory() },
  { group: 'chain', run: async () => (await import('./bench/chain.js')).benchChain() },
  { group: 'spool', run: async () => (await import('./bench/spool.js')).benchSpool() },
  { group: 'http', run: async () => (await import('./bench/http.js')).benchHttp() },
];

const fmt = (n: number) =>
  n >= 100
    ? Math.round(n).toLocaleString('en-US')
    : n.toLocaleString('en-US', { maximumFractionDigits: 2 });

const rows: BenchRow[] = [];
let failed = false;
for (const suite of suites) {
  if (!want(suite.group)) continue;
  process.stderr.write(`bench: ${suite.group}…\n`);
  try {
    rows.push(...(await suite.run()));
  } catch (err) {
    failed = true;
    process.stderr.write(`bench: ${suite.group} failed: ${(err as Error).stack ?? err}\n`);
  }
}

if (values.json) {
  console.log(JSON.stringify(rows, null, 2));
} else {
  console.log(`node ${process.version}, ${new Date().toISOString().slice(0, 10)}\n`);
  console.log('| group | figure | value | baseline (same run) | baseline value | ratio | target |');
  console.log('|---|---|---:|---|---:|---:|---|');
  for (const r of rows) {
    const target = r.target ? `${r.target} ${r.met ? '✓' : '✗'}` : '';
    console.log(
      `| ${r.group} | ${r.name} | ${fmt(r.value)} ${r.unit} | ${r.baseline} | ${fmt(r.baselineValue)} ${r.unit} | ${r.ratio.toFixed(2)}× | ${target} |`,
    );
  }
}
process.exitCode = failed ? 1 : 0;
