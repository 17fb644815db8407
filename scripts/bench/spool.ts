/**
 * The spool's cost (SPEC §10): transitions through a holder whose chain emit goes to a
 * Postgres sink WITH the crash-durable spool (each transition resolves once its events
 * are fsynced; the spool drains to Postgres behind it) vs. the same sink WITHOUT one (each
 * transition resolves once Postgres has its events). Bursts of 300 concurrent transitions,
 * rounds interleaved (on, off, on, off, ...) on the real code path; the ratio's min,
 * median and max over the rounds. Also: how many transitions shared one fsync.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { makeEmitListener } from '../../src/emit.js';
import { createOperationalStateHolder } from '../../src/holder.js';
import { createPostgresSink } from '../../src/sinks/postgres.js';
import type { BenchRow } from './types.js';

const quiet = { error() {}, warn() {}, info() {}, debug() {} };

export interface BenchSpoolOptions {
  databaseUrl?: string;
  /** Concurrent transitions per burst (default 300). */
  burst?: number;
  /** Bursts per round (default 5) and rounds per side (default 6). */
  bursts?: number;
  rounds?: number;
}

function withSchema(base: string, schema: string): string {
  const u = new URL(base);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function benchSpool(options: BenchSpoolOptions = {}): Promise<BenchRow[]> {
  const base =
    options.databaseUrl ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const burst = options.burst ?? 300;
  const bursts = options.bursts ?? 5;
  const rounds = options.rounds ?? 6;
  const schema = `bench_spool_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const url = withSchema(base, schema);
  const dir = await mkdtemp(join(tmpdir(), 'kora-bench-spool-'));
  const make = (spool: boolean) => {
    const sink = createPostgresSink({
      workspaceId: spool ? 'bench-spool' : 'bench-direct',
      connectionString: url,
      logger: quiet,
      ...(spool ? { spoolDir: join(dir, 'spool') } : {}),
    });
    const holder = createOperationalStateHolder({
      logger: quiet,
      initial: { primaryState: 'ready' },
    });
    holder.addListener(makeEmitListener(sink, { logger: quiet }));
    return { sink, holder };
  };
  const on = make(true);
  const off = make(false);
  try {
    await on.sink.start();
    await off.sink.start();
    let n = 0;
    const run = async (side: typeof on) => {
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
    await run(on);
    await run(off);
    const fsyncsBefore = on.sink.stats.spool!.fsyncs;
    const recordsBefore = on.sink.stats.spool!.records;
    const onOps: number[] = [];
    const offOps: number[] = [];
    for (let r = 0; r < rounds; r++) {
      onOps.push(await run(on));
      offOps.push(await run(off));
    }
    const stats = on.sink.stats.spool!;
    const perFsync = (stats.records - recordsBefore) / (stats.fsyncs - fsyncsBefore);
    const ratios = onOps.map((v, i) => v / offOps[i]!);
    const ratio = median(ratios);
    const lo = Math.min(...ratios);
    const hi = Math.max(...ratios);
    return [
      {
        group: 'spool',
        name:
          `holder transitions, chain emit with the fsynced spool (${burst} concurrent × ${bursts}; ` +
          `${perFsync.toFixed(1)} transitions per fsync; ratio min ${lo.toFixed(2)} / median ${ratio.toFixed(2)} / max ${hi.toFixed(2)} over ${rounds} rounds)`,
        value: median(onOps),
        unit: 'transitions/s',
        baseline: 'the same, no spool (each transition waits for Postgres)',
        baselineValue: median(offOps),
        ratio,
        target: '≥ 0.5×',
        met: ratio >= 0.5,
      },
    ];
  } finally {
    await on.sink.close();
    await off.sink.close();
    await rm(dir, { recursive: true, force: true });
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }
}
