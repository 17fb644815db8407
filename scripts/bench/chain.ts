/**
 * Chain figures: hash-chained appends into the real PostgreSQL (one event per append,
 * like one transition) — unkeyed and keyed (HMAC, the CLI's default) — vs. plain
 * single-row INSERTs of the same rows into a plain table, in the same run and schema;
 * `verifyChain` incremental after 1,000 new events on a 100,000-event keyed chain vs. a
 * full verification of it; and the outbox's heap at its bound vs. an empty outbox.
 * Runs in a schema of its own, dropped afterwards. Run with `--expose-gc`.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { GENERIC_TRANSITION_EVENT } from '../../src/emit.js';
import { createPostgresSink } from '../../src/sinks/postgres.js';
import type { ChainEvent } from '../../src/sinks/types.js';
import type { BenchRow } from './types.js';

const quiet = { error() {}, warn() {}, info() {}, debug() {} };

function withSchema(base: string, schema: string): string {
  const u = new URL(base);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

function transitionEvent(instance: string, seq: number): ChainEvent {
  const active = seq % 2 === 1;
  return {
    event_type: GENERIC_TRANSITION_EVENT,
    payload: {
      from_primary_state: active ? 'ready' : 'active',
      to_primary_state: active ? 'active' : 'ready',
      claim_permission: 'normal',
      degradation_reasons: [],
      trigger: active ? 'claim acquired' : 'claim released',
    },
    workspace_id: 'bench',
    instance_id: instance,
    seq,
    occurred_at: new Date().toISOString(),
  };
}

function heapMiB(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  return process.memoryUsage().heapUsed / 2 ** 20;
}

export interface BenchChainOptions {
  /** Default `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/test`. */
  databaseUrl?: string;
  /** Appends per kind per round (default 400; 4 rounds). */
  perRound?: number;
  rounds?: number;
  /** Events queued for the memory figure (default 10,000, the default bound). */
  outboxEvents?: number;
  /** The keyed chain verified (default 100,000 events), new events per round (1,000), rounds (5). */
  verifyEvents?: number;
  verifyNew?: number;
  verifyRounds?: number;
}

const BENCH_KEY = 'bench-chain-key-0123456789abcdef0123456789';

export async function benchChain(options: BenchChainOptions = {}): Promise<BenchRow[]> {
  const base =
    options.databaseUrl ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const perRound = options.perRound ?? 400;
  const rounds = options.rounds ?? 4;
  const schema = `bench_chain_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const url = withSchema(base, schema);
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const sink = createPostgresSink({ workspaceId: 'bench', pool, logger: quiet });
  const keyed = createPostgresSink({
    workspaceId: 'bench-keyed',
    pool,
    logger: quiet,
    chainKey: BENCH_KEY,
  });
  const rows: BenchRow[] = [];
  try {
    await sink.start();
    await keyed.start();
    await pool.query(`CREATE TABLE plain_events (
      event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      workspace_id text NOT NULL, instance_id text NOT NULL, seq bigint NOT NULL,
      event_type text NOT NULL, payload jsonb NOT NULL, occurred_at timestamptz NOT NULL)`);
    const insert = `INSERT INTO plain_events (workspace_id, instance_id, seq, event_type, payload, occurred_at)
      VALUES ($1, $2, $3, $4, $5, $6)`;
    let chainSeq = 0;
    let keyedSeq = 0;
    let plainSeq = 0;
    const chain = async (n: number) => {
      for (let i = 0; i < n; i++) await sink.append([transitionEvent('chain', ++chainSeq)]);
    };
    const keyedChain = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await keyed.append([
          { ...transitionEvent('keyed', ++keyedSeq), workspace_id: 'bench-keyed' },
        ]);
      }
    };
    const plain = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const e = transitionEvent('plain', ++plainSeq);
        await pool.query(insert, [
          e.workspace_id,
          e.instance_id,
          e.seq,
          e.event_type,
          JSON.stringify(e.payload),
          e.occurred_at,
        ]);
      }
    };
    // Warm both paths, then alternate rounds so drift on a noisy machine hits both alike.
    await chain(50);
    await keyedChain(50);
    await plain(50);
    let chainMs = 0;
    let keyedMs = 0;
    let plainMs = 0;
    for (let r = 0; r < rounds; r++) {
      let t = performance.now();
      await chain(perRound);
      chainMs += performance.now() - t;
      t = performance.now();
      await keyedChain(perRound);
      keyedMs += performance.now() - t;
      t = performance.now();
      await plain(perRound);
      plainMs += performance.now() - t;
    }
    const verified = await sink.verifyChain();
    if (!verified.ok || verified.events !== chainSeq) {
      throw new Error(`bench chain did not verify: ${JSON.stringify(verified)}`);
    }
    const keyedVerified = await keyed.verifyChain();
    if (!keyedVerified.ok || keyedVerified.events !== keyedSeq) {
      throw new Error(`bench keyed chain did not verify: ${JSON.stringify(keyedVerified)}`);
    }
    const chainOps = (perRound * rounds) / (chainMs / 1000);
    const keyedOps = (perRound * rounds) / (keyedMs / 1000);
    const plainOps = (perRound * rounds) / (plainMs / 1000);
    rows.push({
      group: 'chain',
      name: 'keyed (HMAC-SHA256) chained append into Postgres (1 event per append, sequential)',
      value: keyedOps,
      unit: 'appends/s',
      baseline: 'plain single-row INSERT of the same rows',
      baselineValue: plainOps,
      ratio: keyedOps / plainOps,
      target: '≥ 0.5×',
      met: keyedOps / plainOps >= 0.5,
    });
    rows.push({
      group: 'chain',
      name: 'hash-chained append into Postgres (1 event per append, sequential)',
      value: chainOps,
      unit: 'appends/s',
      baseline: 'plain single-row INSERT of the same rows',
      baselineValue: plainOps,
      ratio: chainOps / plainOps,
      target: '≥ 0.5×',
      met: chainOps / plainOps >= 0.5,
    });
    rows.push(
      await verifyFigure(pool, {
        events: options.verifyEvents ?? 100_000,
        fresh: options.verifyNew ?? 1000,
        rounds: options.verifyRounds ?? 5,
      }),
    );
  } finally {
    await sink.close();
    await keyed.close();
    await pool.end();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }
  rows.push(await outboxMemory(options.outboxEvents ?? 10_000));
  return rows;
}

const stats = (ms: number[]) => {
  const s = [...ms].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor(s.length / 2)]!, max: s.at(-1)! };
};
const msText = (s: { min: number; median: number; max: number }) =>
  `${s.min.toFixed(0)}/${s.median.toFixed(0)}/${s.max.toFixed(0)} ms`;

/**
 * `verifyChain` from a verified head after `fresh` new events vs. a full verification, on
 * a keyed chain of `events` (a verifier of its own: no head of its own to check), in
 * interleaved rounds (each round appends `fresh` events first).
 */
async function verifyFigure(
  pool: pg.Pool,
  o: { events: number; fresh: number; rounds: number },
): Promise<BenchRow> {
  const ws = 'bench-verify';
  const writer = createPostgresSink({ workspaceId: ws, pool, logger: quiet, chainKey: BENCH_KEY });
  const verifier = createPostgresSink({
    workspaceId: ws,
    pool,
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
          Array.from({ length: size }, () => ({
            ...transitionEvent('verify', ++seq),
            workspace_id: ws,
          })),
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
      let t = performance.now();
      const inc = await verifier.verifyChain(undefined, { from: head });
      incremental.push(performance.now() - t);
      if (!inc.ok || inc.checked !== o.fresh) {
        throw new Error(`incremental verify: ${JSON.stringify(inc)}`);
      }
      head = inc.head!;
      t = performance.now();
      const all = await verifier.verifyChain();
      full.push(performance.now() - t);
      if (!all.ok || all.events !== seq) throw new Error(`full verify: ${JSON.stringify(all)}`);
    }
    const i = stats(incremental);
    const f = stats(full);
    const n = o.events.toLocaleString('en-US');
    return {
      group: 'chain',
      name: `verifyChain incremental after ${o.fresh.toLocaleString('en-US')} new events, ${n}-event keyed chain (min/median/max ${msText(i)}, ${o.rounds} rounds)`,
      value: i.median,
      unit: 'ms',
      baseline: `full verification of the same chain (min/median/max ${msText(f)})`,
      baselineValue: f.median,
      ratio: i.median / f.median,
      target: '≤ 0.05×',
      met: i.median / f.median <= 0.05,
    };
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
    await sink.append([transitionEvent('memory', seq)]).catch(() => {});
  }
  const full = heapMiB();
  const depth = sink.stats.outboxDepth;
  // One more does not fit: dropped, counted.
  await sink.append([transitionEvent('memory', events + 1)]).catch(() => {});
  if (depth !== events || sink.stats.dropped !== 1) {
    throw new Error(`outbox held ${depth} of ${events}, dropped ${sink.stats.dropped}`);
  }
  await sink.close();
  const perEvent = ((full - empty) * 2 ** 20) / events;
  return {
    group: 'memory',
    name: `heap with the outbox at its bound (${events.toLocaleString('en-US')} events queued; ≈ ${Math.round(perEvent)} B/event)`,
    value: full,
    unit: 'MiB',
    baseline: 'heap with an empty outbox',
    baselineValue: empty,
    ratio: full / empty,
    target: `≤ +${Math.round((events * 1024) / 2 ** 20)} MiB (≤ 1 KiB/event)`,
    met: perEvent <= 1024,
  };
}
