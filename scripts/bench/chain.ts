/**
 * Chain figures: hash-chained appends into the real PostgreSQL (one event per append,
 * like one transition) vs. plain single-row INSERTs of the same rows into a plain table,
 * in the same run and schema; and the outbox's heap at its bound vs. an empty outbox.
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
}

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
  const rows: BenchRow[] = [];
  try {
    await sink.start();
    await pool.query(`CREATE TABLE plain_events (
      event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      workspace_id text NOT NULL, instance_id text NOT NULL, seq bigint NOT NULL,
      event_type text NOT NULL, payload jsonb NOT NULL, occurred_at timestamptz NOT NULL)`);
    const insert = `INSERT INTO plain_events (workspace_id, instance_id, seq, event_type, payload, occurred_at)
      VALUES ($1, $2, $3, $4, $5, $6)`;
    let chainSeq = 0;
    let plainSeq = 0;
    const chain = async (n: number) => {
      for (let i = 0; i < n; i++) await sink.append([transitionEvent('chain', ++chainSeq)]);
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
    await plain(50);
    let chainMs = 0;
    let plainMs = 0;
    for (let r = 0; r < rounds; r++) {
      let t = performance.now();
      await chain(perRound);
      chainMs += performance.now() - t;
      t = performance.now();
      await plain(perRound);
      plainMs += performance.now() - t;
    }
    const verified = await sink.verifyChain();
    if (!verified.ok || verified.events !== chainSeq) {
      throw new Error(`bench chain did not verify: ${JSON.stringify(verified)}`);
    }
    const chainOps = (perRound * rounds) / (chainMs / 1000);
    const plainOps = (perRound * rounds) / (plainMs / 1000);
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
  } finally {
    await sink.close();
    await pool.end();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }
  rows.push(await outboxMemory(options.outboxEvents ?? 10_000));
  return rows;
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
