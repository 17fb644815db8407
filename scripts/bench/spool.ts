/**
 * The spool's cost (SPEC §10): transitions through a holder whose chain goes to a
 * Postgres sink WITH the crash-durable spool (each transition resolves once its events
 * are fsynced; the spool drains to Postgres behind it) vs. the same sink WITHOUT one
 * (each transition resolves once Postgres has its events). Bursts of 300 concurrent
 * transitions through `createOpstate({ sink })`, rounds paired back to back (the order
 * flipping). Also: how many transitions shared one fsync.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createOpstate, createPostgresSink } from '../../src/index.js';
import { throwawaySchema } from './chain.js';
import { databaseUrl, paired, quiet, row, type SuiteOptions } from './stats.js';
import type { BenchRow } from './types.js';

export async function benchSpool(options: SuiteOptions = {}): Promise<BenchRow[]> {
  const burst = options.quick ? 30 : 300;
  const bursts = options.quick ? 1 : 3;
  const rounds = options.rounds ?? 6;
  const db = await throwawaySchema(databaseUrl(options), 'bench_spool');
  const dir = await mkdtemp(join(tmpdir(), 'kora-bench-spool-'));
  const make = (spool: boolean) => {
    const sink = createPostgresSink({
      workspaceId: spool ? 'bench-spool' : 'bench-direct',
      connectionString: db.url,
      logger: quiet,
      ...(spool ? { spoolDir: join(dir, 'spool') } : {}),
    });
    const holder = createOpstate({ logger: quiet, initial: { primaryState: 'ready' }, sink });
    return { sink, holder };
  };
  const on = make(true);
  const off = make(false);
  try {
    await on.sink.start();
    await off.sink.start();
    let n = 0;
    const run = (side: typeof on) => async () => {
      const t = performance.now();
      for (let b = 0; b < bursts; b++) {
        await Promise.all(
          Array.from({ length: burst }, () =>
            side.holder.send({ type: 'update', trigger: `b${++n}` }),
          ),
        );
      }
      const ms = performance.now() - t;
      // Not timed: the spool's drain catches up before the next round, so rounds stay alike.
      if (!(await side.sink.flush(60_000))) throw new Error('bench spool: the sink did not drain');
      return (burst * bursts) / (ms / 1000);
    };
    const fsyncsBefore = on.sink.stats.spool?.fsyncs ?? 0;
    const recordsBefore = on.sink.stats.spool?.records ?? 0;
    const r = await paired(rounds, run(off), { on: run(on) });
    const stats = on.sink.stats.spool;
    const perFsync = stats
      ? (stats.records - recordsBefore) / Math.max(1, stats.fsyncs - fsyncsBefore)
      : Number.NaN;
    return [
      row(
        {
          group: 'spool',
          name: `holder transitions, chain with the fsynced spool (${burst} concurrent × ${bursts} bursts)`,
          unit: 'transitions/s',
          baseline: 'the same, no spool (each transition waits for Postgres)',
          note: `${rounds} rounds; ${perFsync.toFixed(1)} transitions per fsync`,
          target: '≥ 0.5×',
          check: (x) => x >= 0.5,
        },
        r.on.value,
        r.on.baseline,
      ),
    ];
  } finally {
    on.holder.stop();
    off.holder.stop();
    await on.sink.close();
    await off.sink.close();
    await rm(dir, { recursive: true, force: true });
    await db.drop();
  }
}
