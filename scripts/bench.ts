/**
 * `npm run bench`: issue 12's figures (and SPEC §9's) from one run, each beside a
 * baseline measured in the same, interleaved rounds — these machines are shared and
 * noisy, so only same-run ratios are compared, never absolute numbers across runs. Every
 * figure is min / median / max over the rounds; every ratio the median of the per-round
 * ratios. Prints a Markdown table; `--json` also writes the rows to a file (the README's
 * table is rendered from it by `scripts/bench-table.ts`).
 *
 * HTTP and SSE servers run in processes of their own, the load in another (autocannon,
 * or the SSE client process); the holder figures are in-process (CPU-bound).
 *
 * Usage: npm run bench [-- --only holder,memory,chain,writers,spool,http,sse,start]
 *        [--rounds N] [--quick] [--json] [--out bench-results.json]
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { SuiteOptions } from './bench/stats.js';
import { type BenchResults, renderTable } from './bench/table.js';
import type { BenchRow } from './bench/types.js';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    rounds: { type: 'string' },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench-results.json' },
  },
});

type Suite = { group: string; run: (o: SuiteOptions) => Promise<BenchRow[]> };
const suites: Suite[] = [
  { group: 'holder', run: async (o) => (await import('./bench/holder.js')).benchHolder(o) },
  { group: 'memory', run: async (o) => (await import('./bench/holder.js')).benchHolderMemory(o) },
  { group: 'chain', run: async (o) => (await import('./bench/chain.js')).benchChain(o) },
  { group: 'writers', run: async (o) => (await import('./bench/writers.js')).benchWriters(o) },
  { group: 'spool', run: async (o) => (await import('./bench/spool.js')).benchSpool(o) },
  { group: 'http', run: async (o) => (await import('./bench/http.js')).benchHttp(o) },
  { group: 'sse', run: async (o) => (await import('./bench/sse.js')).benchSse(o) },
  { group: 'start', run: async (o) => (await import('./bench/start.js')).benchStart(o) },
];

const only = values.only ? new Set(values.only.split(',').map((s) => s.trim())) : undefined;
for (const g of only ?? []) {
  if (!suites.some((s) => s.group === g)) {
    throw new Error(`--only: unknown group "${g}" (${suites.map((s) => s.group).join(', ')})`);
  }
}
const rounds = values.rounds === undefined ? undefined : Number(values.rounds);
if (rounds !== undefined && (!Number.isInteger(rounds) || rounds < 1)) {
  throw new Error(`--rounds must be a positive integer, got "${values.rounds}"`);
}
const options: SuiteOptions = { ...(rounds ? { rounds } : {}), quick: values.quick };

const started = performance.now();
const rows: BenchRow[] = [];
const failed: BenchResults['failed'] = [];
for (const suite of suites) {
  if (only && !only.has(suite.group)) continue;
  const t = performance.now();
  process.stderr.write(`bench: ${suite.group}…\n`);
  try {
    rows.push(...(await suite.run(options)));
    process.stderr.write(
      `bench: ${suite.group} done in ${((performance.now() - t) / 1000).toFixed(0)} s\n`,
    );
  } catch (err) {
    failed.push({ group: suite.group, error: String((err as Error).stack ?? err) });
    process.stderr.write(`bench: ${suite.group} failed: ${(err as Error).stack ?? err}\n`);
  }
}

const results: BenchResults = {
  node: process.version,
  date: new Date().toISOString().slice(0, 16).replace('T', ' '),
  cpus: cpus().length,
  ...(rounds ? { rounds } : {}),
  seconds: (performance.now() - started) / 1000,
  rows,
  failed,
};
console.log(renderTable(results));
if (values.json) {
  const file = resolve(values.out);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(
    `\nbench: rows written to ${file} (render: node --import tsx scripts/bench-table.ts ${values.out})`,
  );
}
process.exitCode = failed.length ? 1 : 0;
