/**
 * Chain figures, on the real PostgreSQL (127.0.0.1:5432, db `test` unless
 * `DATABASE_URL`), in a throwaway schema dropped afterwards:
 * - appends through a holder (`createOpstate({ sink })`: bursts of 300 concurrent
 *   transitions, the emit path's batching) vs. single raw `append`s one after another;
 * - sequential single-event appends, keyed (HMAC, the CLI's default) and unkeyed, vs.
 *   plain single-row INSERTs of the same rows;
 * - `verifyChain` incremental after 1,000 new events on a 100,000-event keyed chain vs.
 *   a full verification;
 * - the outbox's heap at its bound vs. an empty outbox.
 * Each round pairs a figure with its baseline back to back, the order flipping.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import {
  type ChainEvent,
  createOpstate,
  createPostgresSink,
  EVENT_VOCABULARY,
} from '../../src/index.js';
import {
  databaseUrl,
  heapMiB,
  paired,
  quiet,
  row,
  type SuiteOptions,
  withSchema,
} from './stats.js';
import type { BenchRow } from './types.js';

export const BENCH_KEY = 'bench-chain-key-0123456789abcdef0123456789';

/** A transition event as the emit listener would build it. */
export function transitionEvent(workspace: string, instance: string, seq: number): ChainEvent {
  const active = seq % 2 === 1;
  return {
    event_type: EVENT_VOCABULARY[0]!,
    payload: {
      from_primary_state: active ? 'ready' : 'active',
      to_primary_state: active ? 'active' : 'ready',
      claim_permission: 'normal',
      degradation_reasons: [],
      trigger: active ? 'claim acquired' : 'claim released',
    },
    workspace_id: workspace,
    instance_id: instance,
    seq,
    occurred_at: new Date().toISOString(),
  };
}

/** A throwaway schema: `url` points into it; `drop()` removes it and everything in it. */
export async function throwawaySchema(base: string, prefix: string) {
  const schema = `${prefix}_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  return {
    schema,
    url: withSchema(base, schema),
    async drop() {
      try {
        await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await admin.end();
      }
    },
  };
}

export const PLAIN_TABLE = `CREATE TABLE IF NOT EXISTS plain_events (
  event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id text NOT NULL, instance_id text NOT NULL, seq bigint NOT NULL,
  event_type text NOT NULL, payload jsonb NOT NULL, occurred_at timestamptz NOT NULL)`;
export const PLAIN_INSERT = `INSERT INTO plain_events (workspace_id, instance_id, seq, event_type, payload, occurred_at)
  VALUES ($1, $2, $3, $4, $5, $6)`;
export const plainParams = (e: ChainEvent) => [
  e.workspace_id,
  e.instance_id,
  e.seq,
  e.event_type,
  JSON.stringify(e.payload),
  e.occurred_at,
];

export async function benchChain(options: SuiteOptions = {}): Promise<BenchRow[]> {
  const rounds = options.rounds ?? 7;
  const quick = options.quick ?? false;
  const db = await throwawaySchema(databaseUrl(options), 'bench_chain');
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  const rows: BenchRow[] = [];
  try {
    await pool.query(PLAIN_TABLE);
    rows.push(await batchFigure(db.url, rounds, quick ? 30 : 300, quick ? 10 : 100));
    rows.push(...(await sequentialFigures(db.url, pool, rounds, quick ? 20 : 100)));
    // A full verification of 100,000 events takes seconds: 3 rounds (said in the row).
    rows.push(
      await verifyFigure(db.url, {
        events: quick ? 2000 : 100_000,
        fresh: quick ? 100 : 1000,
        rounds: Math.min(rounds, 3),
      }),
    );
  } finally {
    await pool.end();
    await db.drop();
  }
  rows.push(await outboxMemory(quick ? 1000 : 10_000));
  return rows;
}

/** Transitions through a holder with a keyed Postgres sink vs. raw sequential appends. */
async function batchFigure(
  url: string,
  rounds: number,
  burst: number,
  rawCount: number,
): Promise<BenchRow> {
  const holderSink = createPostgresSink({
    workspaceId: 'bench-holder',
    connectionString: url,
    chainKey: BENCH_KEY,
    logger: quiet,
  });
  const rawSink = createPostgresSink({
    workspaceId: 'bench-raw',
    connectionString: url,
    chainKey: BENCH_KEY,
    logger: quiet,
  });
  const holder = createOpstate({
    initial: { primaryState: 'ready' },
    logger: quiet,
    sink: holderSink,
  });
  try {
    await holderSink.start();
    await rawSink.start();
    let n = 0;
    let rawSeq = 0;
    const through = async () => {
      const t = performance.now();
      await Promise.all(
        Array.from({ length: burst }, () => holder.send({ type: 'update', trigger: `b${++n}` })),
      );
      // Whatever a transition did not wait for is stored before the clock stops.
      if (!(await holderSink.flush(60_000))) throw new Error('the holder sink did not drain');
      return burst / ((performance.now() - t) / 1000);
    };
    const raw = async () => {
      const t = performance.now();
      for (let i = 0; i < rawCount; i++) {
        await rawSink.append([transitionEvent('bench-raw', 'raw', ++rawSeq)]);
      }
      return rawCount / ((performance.now() - t) / 1000);
    };
    const r = await paired(rounds, raw, { through });
    const stored = holderSink.stats.appended;
    const verified = await holderSink.verifyChain();
    if (!verified.ok) throw new Error(`holder chain did not verify: ${JSON.stringify(verified)}`);
    return row(
      {
        group: 'chain',
        name: `chain appends through a holder (${burst} concurrent transitions, keyed Postgres sink)`,
        unit: 'transitions/s',
        baseline: 'single raw `append([event])`s, one after another, same kind of sink',
        baselineUnit: 'appends/s',
        note: `${rounds} rounds, each a burst beside ${rawCount} raw appends; ${stored.toLocaleString('en-US')} events stored and verified`,
        target: '≥ 3×',
        check: (x) => x >= 3,
      },
      r.through.value,
      r.through.baseline,
    );
  } finally {
    holder.stop();
    await holderSink.close();
    await rawSink.close();
  }
}

/** Sequential single-event appends, keyed and unkeyed, vs. plain INSERTs. */
async function sequentialFigures(
  url: string,
  pool: pg.Pool,
  rounds: number,
  perRound: number,
): Promise<BenchRow[]> {
  const sink = createPostgresSink({ workspaceId: 'bench', connectionString: url, logger: quiet });
  const keyed = createPostgresSink({
    workspaceId: 'bench-keyed',
    connectionString: url,
    logger: quiet,
    chainKey: BENCH_KEY,
  });
  try {
    await sink.start();
    await keyed.start();
    let chainSeq = 0;
    let keyedSeq = 0;
    let plainSeq = 0;
    const rate = (fn: () => Promise<void>) => async () => {
      const t = performance.now();
      for (let i = 0; i < perRound; i++) await fn();
      return perRound / ((performance.now() - t) / 1000);
    };
    const r = await paired(
      rounds,
      rate(async () => {
        await pool.query(PLAIN_INSERT, plainParams(transitionEvent('bench', 'plain', ++plainSeq)));
      }),
      {
        keyed: rate(() => keyed.append([transitionEvent('bench-keyed', 'keyed', ++keyedSeq)])),
        unkeyed: rate(() => sink.append([transitionEvent('bench', 'chain', ++chainSeq)])),
      },
    );
    for (const [s, n] of [
      [sink, chainSeq],
      [keyed, keyedSeq],
    ] as const) {
      const v = await s.verifyChain();
      if (!v.ok || v.events !== n)
        throw new Error(`bench chain did not verify: ${JSON.stringify(v)}`);
    }
    const base = {
      group: 'chain',
      unit: 'appends/s',
      baseline: 'plain single-row INSERT of the same rows (autocommit)',
      baselineUnit: 'inserts/s',
      note: `${rounds} rounds × ${perRound} appends per side`,
      target: '≥ 0.5×',
      check: (x: number) => x >= 0.5,
    };
    return [
      row(
        { ...base, name: 'keyed (HMAC-SHA256) chained append, 1 event per append, sequential' },
        r.keyed.value,
        r.keyed.baseline,
      ),
      row(
        { ...base, name: 'unkeyed (sha256) chained append, 1 event per append, sequential' },
        r.unkeyed.value,
        r.unkeyed.baseline,
      ),
    ];
  } finally {
    await sink.close();
    await keyed.close();
  }
}

/**
 * `verifyChain` from a verified head after `fresh` new events vs. a full verification, on
 * a keyed chain of `events` (a verifier of its own: no head of its own to check); each
 * round appends `fresh` events first, then runs both (the order flipping).
 */
async function verifyFigure(
  url: string,
  o: { events: number; fresh: number; rounds: number },
): Promise<BenchRow> {
  const ws = 'bench-verify';
  const writer = createPostgresSink({
    workspaceId: ws,
    connectionString: url,
    logger: quiet,
    chainKey: BENCH_KEY,
  });
  const verifier = createPostgresSink({
    workspaceId: ws,
    connectionString: url,
    logger: quiet,
    chainKey: BENCH_KEY,
  });
  await writer.start();
  await verifier.start();
  try {
    let seq = 0;
    const grow = async (n: number) => {
      for (let done = 0; done < n; ) {
        const size = Math.min(1000, n - done);
        await writer.append(
          Array.from({ length: size }, () => transitionEvent(ws, 'verify', ++seq)),
        );
        done += size;
      }
    };
    await grow(o.events);
    let head = (await verifier.verifyChain()).head!; // warm: caches, plans
    const incremental: number[] = [];
    const full: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      await grow(o.fresh);
      const inc = async () => {
        const t = performance.now();
        const v = await verifier.verifyChain(undefined, { from: head });
        incremental.push(performance.now() - t);
        if (!v.ok || v.checked !== o.fresh) throw new Error(`incremental: ${JSON.stringify(v)}`);
        head = v.head!;
      };
      const all = async () => {
        const t = performance.now();
        const v = await verifier.verifyChain();
        full.push(performance.now() - t);
        if (!v.ok || v.events !== seq) throw new Error(`full verify: ${JSON.stringify(v)}`);
      };
      if (r % 2) {
        await all();
        await inc();
      } else {
        await inc();
        await all();
      }
    }
    const n = o.events.toLocaleString('en-US');
    return row(
      {
        group: 'chain',
        name: `verifyChain incremental after ${o.fresh.toLocaleString('en-US')} new events, ${n}-event keyed chain`,
        unit: 'ms',
        baseline: 'full verification of the same chain',
        note: `${o.rounds} rounds`,
        target: '≤ 0.05×',
        check: (x) => x <= 0.05,
      },
      incremental,
      full,
    );
  } finally {
    await writer.close();
    await verifier.close();
  }
}

/** Heap with the outbox full (a sink never started keeps every append) vs. empty. */
async function outboxMemory(events: number): Promise<BenchRow> {
  const sink = createPostgresSink({
    workspaceId: 'bench',
    connectionString: 'postgres://127.0.0.1:1/unused',
    outboxLimit: events,
    logger: quiet,
  });
  const empty = heapMiB();
  for (let seq = 1; seq <= events; seq++) {
    await sink.append([transitionEvent('bench', 'memory', seq)]).catch(() => {});
  }
  const full = heapMiB();
  const depth = sink.stats.outboxDepth;
  // One more does not fit: dropped, counted.
  await sink.append([transitionEvent('bench', 'memory', events + 1)]).catch(() => {});
  if (depth !== events || sink.stats.dropped !== 1) {
    throw new Error(`outbox held ${depth} of ${events}, dropped ${sink.stats.dropped}`);
  }
  await sink.close();
  const perEvent = ((full - empty) * 2 ** 20) / events;
  const limit = (events * 1024) / 2 ** 20;
  const r = row(
    {
      group: 'memory',
      name: `heap with the outbox at its bound (${events.toLocaleString('en-US')} events queued)`,
      unit: 'MiB',
      baseline: 'heap with an empty outbox',
      note: `≈ ${Math.round(perEvent)} B/event; one reading each (not a timing)`,
      target: `≤ +${Math.round(limit)} MiB (≤ 1 KiB/event)`,
    },
    [full],
    [empty],
  );
  return { ...r, met: perEvent <= 1024 };
}
