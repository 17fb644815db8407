/**
 * Concurrent writers (issue 12): 1, 2, 4 and 8 writers — each its own keyed Postgres
 * sink (own pool, own instance), appending one event at a time, like one transition each
 * — on ONE workspace (one chain: they share its lock) and on SEVERAL (one each), vs. the
 * same number of plain INSERT writers (a connection each, autocommit). Total appends/s;
 * rounds rotate the three sides. A throwaway schema, dropped afterwards.
 */
import pg from 'pg';
import { createPostgresSink } from '../../src/index.js';
import {
  BENCH_KEY,
  PLAIN_INSERT,
  PLAIN_TABLE,
  plainParams,
  throwawaySchema,
  transitionEvent,
} from './chain.js';
import { databaseUrl, interleave, quiet, row, type SuiteOptions } from './stats.js';
import type { BenchRow } from './types.js';

export async function benchWriters(options: SuiteOptions = {}): Promise<BenchRow[]> {
  const rounds = options.rounds ?? 5;
  const perWriter = options.quick ? 5 : 40;
  const counts = options.quick ? [1, 2] : [1, 2, 4, 8];
  const max = Math.max(...counts);
  const db = await throwawaySchema(databaseUrl(options), 'bench_writers');
  const sink = (ws: string) =>
    createPostgresSink({
      workspaceId: ws,
      connectionString: db.url,
      chainKey: BENCH_KEY,
      logger: quiet,
      maxConnections: 1,
    });
  const one = Array.from({ length: max }, () => sink('bench-one'));
  const several = Array.from({ length: max }, (_, i) => sink(`bench-several-${i}`));
  const clients = Array.from({ length: max }, () => new pg.Client({ connectionString: db.url }));
  const rows: BenchRow[] = [];
  try {
    for (const s of [...one, ...several]) await s.start();
    for (const c of clients) await c.connect();
    await clients[0]!.query(PLAIN_TABLE);
    const seqs = new Map<string, number>();
    const next = (key: string) => {
      const n = (seqs.get(key) ?? 0) + 1;
      seqs.set(key, n);
      return n;
    };
    /** `n` writers, each `perWriter` sequential appends; total appends/s. */
    const run = async (n: number, write: (i: number) => Promise<unknown>) => {
      const t = performance.now();
      await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          for (let k = 0; k < perWriter; k++) await write(i);
        }),
      );
      return (n * perWriter) / ((performance.now() - t) / 1000);
    };
    for (const n of counts) {
      const r = await interleave(rounds, {
        one: () =>
          run(n, (i) =>
            one[i]!.append([transitionEvent('bench-one', `one-w${i}`, next(`one${i}`))]),
          ),
        several: () =>
          run(n, (i) =>
            several[i]!.append([
              transitionEvent(`bench-several-${i}`, `sev-w${i}`, next(`sev${i}`)),
            ]),
          ),
        plain: () =>
          run(n, (i) =>
            clients[i]!.query(
              PLAIN_INSERT,
              plainParams(transitionEvent('bench-plain', `w${i}`, next(`plain${i}`))),
            ),
          ),
      });
      const base = {
        group: 'writers',
        unit: 'appends/s',
        baseline: `${n} plain INSERT writer${n > 1 ? 's' : ''} (a connection each, autocommit)`,
        baselineUnit: 'inserts/s',
        note: `${rounds} rounds × ${perWriter} sequential appends per writer, keyed sinks`,
      };
      rows.push(
        row(
          {
            ...base,
            name: `${n} writer${n > 1 ? 's' : ''} on one workspace (one chain)`,
            ...(n === 8 ? { target: '≥ 0.6×', check: (x: number) => x >= 0.6 } : {}),
          },
          r.one,
          r.plain,
        ),
        row(
          {
            ...base,
            name:
              n > 1
                ? `${n} writers on ${n} workspaces (one each)`
                : '1 writer on a workspace of its own',
          },
          r.several,
          r.plain,
        ),
      );
      if (n > 1 && n === max) {
        // What sharing one chain costs, against the same writers with no lock in common.
        rows.push(
          row(
            {
              ...base,
              name: `${n} writers on one workspace, vs the same on ${n} workspaces`,
              baseline: `${n} writers on ${n} workspaces (one each), same rounds`,
              baselineUnit: 'appends/s',
            },
            r.one,
            r.several,
          ),
        );
      }
    }
    const v = await one[0]!.verifyChain();
    const expected = [...seqs].filter(([k]) => k.startsWith('one')).reduce((a, [, n]) => a + n, 0);
    if (!v.ok || v.events !== expected) {
      throw new Error(`one-workspace chain: ${JSON.stringify(v)}, expected ${expected} events`);
    }
    return rows;
  } finally {
    for (const s of [...one, ...several]) await s.close();
    for (const c of clients) await c.end().catch(() => {});
    await db.drop();
  }
}
