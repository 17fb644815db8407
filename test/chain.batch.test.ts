/**
 * Group commit of the chain (issue 12) on the machine's real PostgreSQL: concurrent
 * transitions through one holder reach the store in a few round trips (a behaviour users
 * rely on for throughput), in commit order with a gapless seq; a store failure in the
 * middle of a batch (before the commit, or after it with the answer lost) loses nothing
 * and stores nothing twice; writers appending at once keep one verifiable chain.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeEmitListener } from '../src/emit.js';
import { createOperationalStateHolder } from '../src/holder.js';
import { createPostgresSink } from '../src/sinks/postgres.js';
import { chainOk } from './support/chainResult.js';
import { recordingLogger } from './support/logger.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

let db: TestSchema;

beforeAll(async () => {
  db = await createTestSchema('chainbatch');
});

afterAll(async () => {
  await db?.drop();
});

/** A pool that counts the sink's appends and WAL barriers, and can fail the next one once. */
function countingPool() {
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  const counts = { appends: 0, barriers: 0 };
  let failing: 'append' | 'barrier' | undefined;
  const lost = () =>
    Object.assign(new Error('connection terminated (injected)'), { code: '08006' });
  const query = pool.query.bind(pool) as (text: string, params?: unknown[]) => Promise<unknown>;
  (pool as unknown as { query: typeof query }).query = async (text, params) => {
    const isAppend = typeof text === 'string' && text.includes('kora_opstate_append');
    const isBarrier = typeof text === 'string' && text.includes('pg_logical_emit_message');
    if (isAppend) counts.appends++;
    if (isBarrier) counts.barriers++;
    if (isAppend && failing === 'append') {
      failing = undefined;
      throw lost(); // before the commit: nothing stored
    }
    const result = await query(text, params);
    if (isBarrier && failing === 'barrier') {
      failing = undefined;
      throw lost(); // after the append committed: stored, the answer lost
    }
    return result;
  };
  return {
    pool,
    counts,
    failNext(at: 'append' | 'barrier') {
      failing = at;
    },
  };
}

/** `n` claim transitions (ready ⇄ active) sent at once; resolves when all are handled. */
function concurrentTransitions(holder: ReturnType<typeof createOperationalStateHolder>, n: number) {
  const sent: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    // Each send commits synchronously: the next one starts from the state it left.
    const ready = holder.current.primaryState === 'ready';
    sent.push(holder.send({ type: ready ? 'claim.acquired' : 'claim.released' }));
  }
  return Promise.all(sent);
}

async function stored(workspace: string) {
  const { rows } = await db.pool.query(
    'SELECT instance_id, seq::int AS seq, chain_seq::int AS chain_seq, payload FROM event_log WHERE workspace_id = $1 ORDER BY chain_seq',
    [workspace],
  );
  return rows as {
    instance_id: string;
    seq: number;
    chain_seq: number;
    payload: { to_primary_state: string };
  }[];
}

describe('chain appends batch (group commit)', () => {
  it('300 concurrent transitions through one holder → at most 3 store round trips, in commit order, seq gapless', async () => {
    const { pool, counts } = countingPool();
    const sink = createPostgresSink({ workspaceId: 'batch-1', pool, retry: { initialMs: 10 } });
    try {
      await sink.start();
      const startAppends = counts.appends;
      const holder = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
      const emit = makeEmitListener(sink, { instanceId: 'batch-1:a' });
      holder.addListener(emit);
      await concurrentTransitions(holder, 300);
      expect(emit.stats).toEqual({ emitted: 300, failures: 0 });
      // Every transition's promise resolved only once its event was stored.
      expect(sink.stats.appended).toBe(300);
      expect(counts.appends - startAppends).toBeLessThanOrEqual(3);
      expect(emit.batches.batches).toBeLessThanOrEqual(3);
      const rows = await stored('batch-1');
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
      expect(rows.map((r) => r.chain_seq)).toEqual(rows.map((r) => r.seq));
      // Commit order: ready → active first, then alternating.
      expect(rows.map((r) => r.payload.to_primary_state)).toEqual(
        rows.map((_, i) => (i % 2 === 0 ? 'active' : 'ready')),
      );
      expect(await sink.verifyChain()).toEqual(chainOk(300));
    } finally {
      await sink.close();
      await pool.end();
    }
  });

  for (const where of ['append', 'barrier'] as const) {
    it(`a store failure in the middle of a batch (${where === 'append' ? 'before the commit' : 'after the commit, the answer lost'}) loses nothing and stores nothing twice`, async () => {
      const ws = `batch-fail-${where}`;
      const { pool, failNext } = countingPool();
      const sink = createPostgresSink({
        workspaceId: ws,
        pool,
        retry: { initialMs: 10, maxMs: 20 },
        logger: recordingLogger(),
      });
      try {
        await sink.start();
        const holder = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
        const logger = recordingLogger();
        const emit = makeEmitListener(sink, { instanceId: `${ws}:a`, logger });
        holder.addListener(emit);
        await concurrentTransitions(holder, 100);
        // The next batch's store call fails once.
        failNext(where);
        await concurrentTransitions(holder, 200);
        const stats = emit.stats;
        // Each failed transition is reported once, as an OperationalStateEmitError.
        expect(stats.emitted + stats.failures).toBe(300);
        expect(logger.find('error', '[kora.operational_state.emit]')).toHaveLength(stats.failures);
        expect(stats.failures).toBeGreaterThan(0);
        expect(await sink.flush(10_000)).toBe(true);
        const rows = await stored(ws);
        expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
        expect(await sink.verifyChain()).toEqual(chainOk(300));
      } finally {
        await sink.close();
        await pool.end();
      }
    });
  }

  it('8 writers appending at once to one workspace keep one verifiable chain', async () => {
    const ws = 'batch-writers';
    const sinks = Array.from({ length: 8 }, () =>
      createPostgresSink({ workspaceId: ws, connectionString: db.url }),
    );
    try {
      await Promise.all(sinks.map((s) => s.start()));
      await Promise.all(
        sinks.map(async (sink, w) => {
          const holder = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
          const emit = makeEmitListener(sink, { instanceId: `${ws}:${w}` });
          holder.addListener(emit);
          // Bursts and single transitions mixed: batches and lone appends interleave.
          for (let round = 0; round < 5; round++) {
            await concurrentTransitions(holder, 10);
            await concurrentTransitions(holder, 1);
          }
          expect(emit.stats).toEqual({ emitted: 55, failures: 0 });
        }),
      );
      const rows = await stored(ws);
      expect(rows).toHaveLength(8 * 55);
      for (let w = 0; w < 8; w++) {
        const mine = rows.filter((r) => r.instance_id === `${ws}:${w}`).map((r) => r.seq);
        expect(mine).toEqual(Array.from({ length: 55 }, (_, i) => i + 1));
      }
      expect(await sinks[0]!.verifyChain()).toEqual(chainOk(8 * 55));
    } finally {
      await Promise.all(sinks.map((s) => s.close()));
    }
  });
});
