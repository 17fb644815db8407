/**
 * The benchmark harness runs (not how fast anything is): a smoke run of one suite with
 * two short rounds must exit 0, write valid JSON with min ≤ median ≤ max for every
 * figure, baseline and ratio, and `scripts/bench-table.ts` must render that JSON.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { BenchResults } from '../scripts/bench/table.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kora-bench-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm run bench (smoke)', () => {
  it('runs the holder suite in 2 quick rounds and writes rows the table renders', async () => {
    const out = join(dir, 'results.json');
    const { stdout } = await run(
      process.execPath,
      [
        '--expose-gc',
        '--import',
        'tsx',
        'scripts/bench.ts',
        '--only',
        'holder',
        '--rounds',
        '2',
        '--quick',
        '--json',
        '--out',
        out,
      ],
      { cwd: root, timeout: 60_000 },
    );
    expect(stdout).toContain(`rows written to ${out}`);
    const results = JSON.parse(readFileSync(out, 'utf8')) as BenchResults;
    expect(results.failed).toEqual([]);
    expect(results.rows.map((r) => r.name)).toEqual([
      'holder.transitionTo, 0 listeners',
      'holder.transitionTo, 1 no-op listener',
      'holder.transitionTo, 10 no-op listeners',
      'holder.transitionTo, 1 async no-op listener',
      'holder.transitionTo, 10 async no-op listeners',
      'holder.transitionTo, 1 async no-op listener declared requestsTransitions: false',
      'holder.send, 1 no-op listener',
    ]);
    for (const r of results.rows) {
      for (const s of [r.value, r.baselineValue, r.ratio]) {
        expect(s.n).toBe(2);
        expect(s.min).toBeGreaterThan(0);
        expect(s.min).toBeLessThanOrEqual(s.median);
        expect(s.median).toBeLessThanOrEqual(s.max);
      }
      if (r.target !== undefined) expect(typeof r.met).toBe('boolean');
    }
    const table = await run(process.execPath, ['--import', 'tsx', 'scripts/bench-table.ts', out], {
      cwd: root,
    });
    const lines = table.stdout.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('| holder |'))).toHaveLength(7);
    expect(lines).toContain(
      '| group | figure | value (min / median / max) | baseline, same rounds | baseline value | ratio | target |',
    );
  });
});
