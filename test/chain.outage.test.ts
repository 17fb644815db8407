/**
 * No event is lost to a database outage: a throwaway PostgreSQL cluster is stopped in the
 * middle of 1,000 transitions and started again; every event lands exactly once, in
 * commit order, and the chain verifies.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENERIC_TRANSITION_EVENT, makeEmitListener } from '../src/emit.js';
import { createOperationalStateHolder } from '../src/holder.js';
import { createPostgresSink } from '../src/sinks/postgres.js';
import { chainOk } from './support/chainResult.js';
import { recordingLogger } from './support/logger.js';
import { createThrowawayCluster, type ThrowawayCluster } from './support/throwawayCluster.js';

let cluster: ThrowawayCluster | undefined;

beforeAll(async () => {
  cluster = await createThrowawayCluster();
});

afterAll(async () => {
  await cluster?.destroy();
});

describe('outage', () => {
  it('stop the server mid-stream, start it again: every event once, in commit order, chain ok', async () => {
    const c = cluster!;
    const sinkLogger = recordingLogger();
    const emitLogger = recordingLogger();
    const sink = createPostgresSink({
      workspaceId: 'ws-outage',
      connectionString: c.url,
      retry: { initialMs: 20, maxMs: 200 },
      connectTimeoutMs: 2000,
      logger: sinkLogger,
    });
    await sink.start();
    const holder = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const emit = makeEmitListener(sink, { instanceId: 'outage-1', logger: emitLogger });
    holder.addListener(emit);

    const N = 1000;
    let stopping: Promise<void> | undefined;
    let starting: Promise<void> | undefined;
    let depthWhileDown = 0;
    try {
      for (let i = 1; i <= N; i++) {
        // The stop races the transitions (open sessions are terminated mid-append)...
        if (i === 300) stopping = c.stop();
        // ...and by 500 the server is certainly down for a while.
        if (i === 500) await stopping;
        if (i === 700) {
          depthWhileDown = sink.stats.outboxDepth;
          starting = c.start();
        }
        await holder.send(
          holder.current.primaryState === 'ready'
            ? { type: 'claim.acquired' }
            : { type: 'claim.released' },
        );
      }
      await starting;
      expect(await sink.flush(60_000)).toBe(true);
    } finally {
      await sink.close();
    }

    // The machine kept moving; the outage was felt and reported, never silently.
    expect(holder.stats.commits).toBe(N);
    expect(depthWhileDown).toBeGreaterThanOrEqual(200);
    expect(emit.stats.failures).toBeGreaterThanOrEqual(200);
    expect(emit.stats.lastError).toBeDefined();
    expect(emitLogger.find('error', '[kora.operational_state.emit]').length).toBe(
      emit.stats.failures,
    );
    expect(sinkLogger.find('error', 'kept in the outbox').length).toBeGreaterThanOrEqual(1);
    expect(sink.stats).toMatchObject({ outboxDepth: 0, dropped: 0, refused: 0 });
    expect(sink.stats.failures).toBeGreaterThan(0);

    const check = new pg.Client({ connectionString: c.url });
    await check.connect();
    try {
      const { rows } = await check.query<{ seq: string; chain_seq: string; event_type: string }>(
        `SELECT seq, chain_seq, event_type FROM event_log WHERE workspace_id = 'ws-outage' ORDER BY chain_seq`,
      );
      expect(rows).toHaveLength(N);
      // Exactly once each, and the chain's order is the commit order.
      expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: N }, (_, i) => i + 1));
      expect(rows.map((r) => Number(r.chain_seq))).toEqual(
        Array.from({ length: N }, (_, i) => i + 1),
      );
      expect(rows.every((r) => r.event_type === GENERIC_TRANSITION_EVENT)).toBe(true);
    } finally {
      await check.end();
    }
    const verifier = createPostgresSink({ workspaceId: 'ws-outage', connectionString: c.url });
    await verifier.start();
    try {
      expect(await verifier.verifyChain()).toEqual(chainOk(N));
    } finally {
      await verifier.close();
    }
  }, 90_000);
});
