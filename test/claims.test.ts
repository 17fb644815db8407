/**
 * Claims (SPEC §6): the coordinator's refusals and releases on a real holder with the real
 * emitter into an in-memory sink; the in-memory ticket source's lease rules; the poller
 * loop; the cost hard stop; and the SQL ticket source on PGlite (the embedded store).
 */
import { PGlite } from '@electric-sql/pglite';
import { describe, expect, it } from 'vitest';
import { createClaimCoordinator } from '../src/claims/coordinator.js';
import { costHardStop, creditRefresh } from '../src/claims/cost.js';
import { createTicketPoller, LeaseLostError } from '../src/claims/poller.js';
import { createMemoryTicketSource } from '../src/claims/sources/memory.js';
import { createPostgresTicketSource } from '../src/claims/sources/postgres.js';
import type { Ticket } from '../src/claims/types.js';
import {
  GENERIC_TRANSITION_EVENT,
  makeEmitListener,
  PAUSED_COST_LIMIT_EVENT,
} from '../src/emit.js';
import {
  createOperationalStateHolder,
  InvalidStateTransitionError,
  type OperationalStateHolder,
} from '../src/holder.js';
import { createMemorySink } from '../src/sinks/memory.js';
import type { PrimaryState } from '../src/vocabulary.js';
import { fakeClock } from './support/fakeClock.js';
import { recordingLogger } from './support/logger.js';

function setup(primaryState: PrimaryState = 'ready') {
  const logger = recordingLogger();
  const holder = createOperationalStateHolder({ initial: { primaryState }, logger });
  const sink = createMemorySink({ workspaceId: 'ws-claims' });
  holder.addListener(makeEmitListener(sink, { logger, instanceId: 'claims-test' }));
  const coordinator = createClaimCoordinator({ holder });
  const arrows = () => holder.history().map((r) => `${r.from_state}→${r.to_state} ${r.event}`);
  const chain = () =>
    sink.events
      .filter((e) => e.event_type === GENERIC_TRANSITION_EVENT)
      .map((e) => `${e.payload.from_primary_state}→${e.payload.to_primary_state}`);
  return { logger, holder, sink, coordinator, arrows, chain };
}

/** A promise with its resolve exposed. */
function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Waits for `predicate`, polling on the event loop (bounded by the test timeout). */
async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((r) => setTimeout(r, 2));
}

const claimHeld = (h: OperationalStateHolder) => h.snapshot.context.claimHeld;

describe('claim coordinator', () => {
  it('claims in ready: claim.acquired before the work, claim.released after — READY ⇄ ACTIVE in history and chain', async () => {
    const { holder, coordinator, arrows, chain, sink } = setup();
    const during: PrimaryState[] = [];
    for (const id of ['t-1', 't-2']) {
      const outcome = await coordinator.withClaim({ id }, async ({ ticket, signal }) => {
        during.push(holder.current.primaryState);
        expect(coordinator.held).toEqual({ id });
        expect(signal.aborted).toBe(false);
        return `${ticket.id} done`;
      });
      expect(outcome).toEqual({ status: 'completed', value: `${id} done`, released: true });
    }
    expect(during).toEqual(['active', 'active']);
    expect(holder.current.primaryState).toBe('ready');
    expect(coordinator.held).toBeUndefined();
    expect(arrows()).toEqual([
      'ready→active claim.acquired',
      'active→ready claim.released',
      'ready→active claim.acquired',
      'active→ready claim.released',
    ]);
    expect(chain()).toEqual(['ready→active', 'active→ready', 'ready→active', 'active→ready']);
    expect(sink.events[0]!.payload.trigger).toBe('claim acquired: ticket "t-1"');
    expect(holder.history()[1]!.details).toEqual({ ticket_id: 't-1', result: 'done' });
    expect(coordinator.stats).toMatchObject({ acquired: 2, completed: 2, refused: 0 });
  });

  it('refuses with the reason and does not run the work: not ready, paused, stopped, permission none, critical only, claim held', async () => {
    const reasons: string[] = [];
    let ran = 0;
    const work = async () => {
      ran++;
    };
    const attempt = async (holder: OperationalStateHolder, critical = false) => {
      const coordinator = createClaimCoordinator({ holder });
      const outcome = await coordinator.withClaim({ id: 'x', critical }, work);
      if (outcome.status === 'refused') {
        reasons.push(outcome.reason);
        expect(outcome.state).toBe(holder.current);
      }
      return outcome;
    };
    await attempt(setup('booting').holder);
    await attempt(setup('paused').holder);
    await attempt(setup('stopped').holder);
    const none = setup('ready').holder;
    await none.send({ type: 'update', claimPermission: 'none', trigger: 'auth degraded' });
    await attempt(none);
    const critical = setup('ready').holder;
    await critical.send({ type: 'update', claimPermission: 'critical_only', trigger: 'cost 80%' });
    await attempt(critical);
    // An active holder: someone else's claim.
    await attempt(setup('active').holder);
    expect(reasons).toEqual([
      'not ready',
      'paused',
      'stopped',
      'permission none',
      'critical only',
      'claim held',
    ]);
    expect(ran).toBe(0);
    // critical_only lets a critical ticket through.
    expect((await attempt(critical, true)).status).toBe('completed');
    expect(ran).toBe(1);
  });

  it('a second claim while one is held is refused with "claim held"', async () => {
    const { coordinator } = setup();
    const gate = deferred();
    const first = coordinator.withClaim({ id: 'a' }, () => gate.promise);
    const second = await coordinator.withClaim({ id: 'b' }, async () => 'never');
    expect(second).toMatchObject({ status: 'refused', reason: 'claim held' });
    gate.resolve();
    expect((await first).status).toBe('completed');
  });

  it('releases after a throwing work: outcome failed, state ready, released in history', async () => {
    const { holder, coordinator, arrows } = setup();
    const boom = new Error('tool crashed');
    const outcome = await coordinator.withClaim({ id: 't-9' }, async () => {
      throw boom;
    });
    expect(outcome).toEqual({ status: 'failed', error: boom, released: true });
    expect(holder.current.primaryState).toBe('ready');
    expect(claimHeld(holder)).toBe(false);
    expect(arrows()).toEqual(['ready→active claim.acquired', 'active→ready claim.released']);
    expect(holder.history()[1]!.details).toEqual({ ticket_id: 't-9', result: 'failed' });
  });

  it('pause during the work: the release keeps the state paused and clears the held flag only', async () => {
    const { holder, coordinator, arrows, chain } = setup();
    const outcome = await coordinator.withClaim({ id: 't-3' }, async () => {
      await costHardStop(holder);
      expect(holder.current.primaryState).toBe('paused');
      expect(claimHeld(holder)).toBe(true);
      // §9.6: no credit refresh while the claim is still held.
      await expect(
        creditRefresh(holder, { reconciledSpendUsd: 0, thresholdUsd: 100 }),
      ).rejects.toBeInstanceOf(InvalidStateTransitionError);
      return 42;
    });
    expect(outcome).toEqual({ status: 'completed', value: 42, released: true });
    expect(holder.current).toEqual({
      primaryState: 'paused',
      claimPermission: 'none',
      degradationReasons: ['cost'],
    });
    expect(claimHeld(holder)).toBe(false);
    expect(arrows()).toEqual([
      'ready→active claim.acquired',
      'active→paused pause',
      'paused→paused claim.released',
    ]);
    expect(chain()).toEqual(['ready→active', 'active→paused', 'paused→paused']);
    // Safe-released now: the credit refresh resumes and clears cost.
    await creditRefresh(holder, { reconciledSpendUsd: 10, thresholdUsd: 100 });
    expect(holder.current).toEqual({
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: [],
    });
  });

  it('stopped during the work: the release is logged, the state stays stopped', async () => {
    const { holder, coordinator, logger } = setup();
    const outcome = await coordinator.withClaim({ id: 't-4' }, async () => {
      await holder.send({ type: 'stop', trigger: 'STOP-KORA L5: operator' });
      return 'late';
    });
    expect(outcome).toEqual({ status: 'completed', value: 'late', released: false });
    expect(holder.current.primaryState).toBe('stopped');
    expect(coordinator.held).toBeUndefined();
    expect(logger.find('warn', 'after the process stopped')).toHaveLength(1);
    expect(coordinator.stats.releaseSkipped).toBe(1);
  });

  it('waitForIdle resolves true at once when idle, true when the claim ends, false on timeout', async () => {
    const { coordinator } = setup();
    expect(await coordinator.waitForIdle(0)).toBe(true);
    const gate = deferred();
    const claim = coordinator.withClaim({ id: 'w' }, () => gate.promise);
    expect(await coordinator.waitForIdle(5)).toBe(false);
    const idle = coordinator.waitForIdle(60_000);
    gate.resolve();
    expect(await idle).toBe(true);
    await claim;
  });

  it("an external abort reaches the work's signal; the result is recorded as aborted", async () => {
    const { holder, coordinator } = setup();
    const controller = new AbortController();
    const outcome = await coordinator.withClaim(
      { id: 'l' },
      async ({ signal }) => {
        controller.abort(new Error('lease lost'));
        expect(signal.aborted).toBe(true);
        throw signal.reason;
      },
      { signal: controller.signal },
    );
    expect(outcome.status).toBe('failed');
    expect(holder.history().at(-1)!.details).toEqual({ ticket_id: 'l', result: 'aborted' });
  });

  it('rejects bad input naming the value', async () => {
    expect(() => createClaimCoordinator({ holder: {} as never })).toThrow(/holder must be/);
    const { coordinator } = setup();
    await expect(coordinator.withClaim({ id: 7 } as never, async () => 1)).rejects.toThrow(
      /ticket must be an object with a string id, got \{"id":7\}/,
    );
  });
});

describe('cost hard stop', () => {
  it('pauses with cause cost_limit (kora.paused.cost_limit); the credit refresh clears it', async () => {
    const { holder, sink } = setup();
    await costHardStop(holder, { details: { spend_usd: 500 } });
    expect(holder.current).toEqual({
      primaryState: 'paused',
      claimPermission: 'none',
      degradationReasons: ['cost'],
    });
    expect(holder.history().at(-1)).toMatchObject({ event: 'pause', cause: 'cost_limit' });
    expect(sink.events.map((e) => e.event_type)).toEqual([
      GENERIC_TRANSITION_EVENT,
      PAUSED_COST_LIMIT_EVENT,
    ]);
    // Idempotent while paused for cost.
    await costHardStop(holder);
    expect(holder.history()).toHaveLength(1);
    await expect(
      creditRefresh(holder, { reconciledSpendUsd: 120, thresholdUsd: 100 }),
    ).rejects.toThrow(/reconciled spend < threshold/);
    await creditRefresh(holder, { reconciledSpendUsd: 0, thresholdUsd: 100 });
    expect(holder.current.primaryState).toBe('ready');
    expect(holder.current.degradationReasons).toEqual([]);
  });

  it('already paused by an operator: cost is added; stopped: nothing changes', async () => {
    const { holder } = setup();
    await holder.send({ type: 'pause', cause: 'operator', trigger: 'operator hold' });
    await costHardStop(holder);
    expect(holder.current.degradationReasons).toEqual(['cost', 'operator']);
    const stopped = setup('stopped').holder;
    expect(await costHardStop(stopped)).toBe(stopped.current);
    expect(stopped.history()).toHaveLength(0);
  });
});

describe('in-memory ticket source', () => {
  it('critical first, then queue order; leases expire and are reclaimed; a lost lease cannot heartbeat or release', async () => {
    const clock = fakeClock();
    const source = createMemoryTicketSource({ now: clock.now });
    expect(
      source.enqueue([{ id: 'a' }, { id: 'b', critical: true }, { id: 'c' }, { id: 'a' }]),
    ).toEqual(['a', 'b', 'c', 'a']);
    expect(source.rows).toHaveLength(3);
    const b = (await source.claimNext({ workerId: 'w1', leaseMs: 1000 }))!;
    expect(b).toMatchObject({
      id: 'b',
      critical: true,
      attempts: 1,
      lease: { owner: 'w1', ms: 1000 },
    });
    expect(
      await source.claimNext({ workerId: 'w2', leaseMs: 1000, critical: true }),
    ).toBeUndefined();
    const a = (await source.claimNext({ workerId: 'w2', leaseMs: 1000 }))!;
    expect(a.id).toBe('a');
    clock.advance(600);
    expect(await source.heartbeat(a)).toBe(true);
    clock.advance(600);
    // b's lease ran out (1,200 ms > 1,000): w3 takes it over; a's was extended.
    const again = (await source.claimNext({ workerId: 'w3', leaseMs: 1000 }))!;
    expect(again).toMatchObject({ id: 'b', attempts: 2, lease: { owner: 'w3' } });
    expect(await source.heartbeat(b)).toBe(false);
    expect(await source.release(b, 'done')).toBe(false);
    expect(await source.release(again, 'done', 'ok')).toBe(true);
    expect(source.rows.find((r) => r.id === 'b')).toMatchObject({
      status: 'done',
      resolution: 'done',
      resolvedBy: 'w3',
      detail: 'ok',
    });
    // Abandoned: back in the queue, claimable again.
    expect(await source.release(a, 'abandoned', 'paused')).toBe(true);
    expect(source.rows.find((r) => r.id === 'a')).toMatchObject({ status: 'queued' });
    expect((await source.claimNext({ workerId: 'w1', leaseMs: 10 }))!).toMatchObject({
      id: 'a',
      attempts: 2,
    });
    await expect(source.release(a, 'maybe' as never)).rejects.toThrow(/resolution must be one of/);
    await expect(source.claimNext({ workerId: '', leaseMs: 10 })).rejects.toThrow(/workerId/);
  });
});

describe('ticket poller (in-memory source)', () => {
  const fast = { idleDelayMs: 2, leaseMs: 1000, heartbeatMs: 5 };

  it('works every ticket once through the coordinator; READY ⇄ ACTIVE per ticket; a throwing handle fails its ticket', async () => {
    const { holder, coordinator, arrows, chain } = setup();
    const source = createMemoryTicketSource();
    source.enqueue(['t1', 't2', 't3', 't4'].map((id) => ({ id, payload: { n: id } })));
    const worked: string[] = [];
    const poller = createTicketPoller({
      source,
      coordinator,
      holder,
      workerId: 'w-test',
      ...fast,
      handle: async (ticket) => {
        expect(holder.current.primaryState).toBe('active');
        worked.push(ticket.id);
        if (ticket.id === 't3') throw new Error('bad ticket');
      },
    });
    expect(poller.running).toBe(false);
    poller.start();
    poller.start();
    await until(() => source.rows.every((r) => r.status === 'done' || r.status === 'failed'));
    await poller.stop();
    expect(poller.running).toBe(false);
    expect(worked).toEqual(['t1', 't2', 't3', 't4']);
    expect(source.rows.map((r) => [r.id, r.status, r.resolvedBy])).toEqual([
      ['t1', 'done', 'w-test'],
      ['t2', 'done', 'w-test'],
      ['t3', 'failed', 'w-test'],
      ['t4', 'done', 'w-test'],
    ]);
    expect(source.rows[2]!.detail).toBe('bad ticket');
    expect(poller.stats).toMatchObject({ claimed: 4, completed: 3, failed: 1, leaseLost: 0 });
    expect(chain()).toEqual(Array(4).fill(['ready→active', 'active→ready']).flat());
    expect(arrows().slice(-2)).toEqual([
      'ready→active claim.acquired',
      'active→ready claim.released',
    ]);
  });

  it('claims nothing while paused (cost hard stop); resumes after the credit refresh', async () => {
    const { holder, coordinator } = setup();
    await costHardStop(holder);
    const source = createMemoryTicketSource();
    source.enqueue([{ id: 'p1' }]);
    const idles = deferred();
    let sleeps = 0;
    const poller = createTicketPoller({
      source,
      coordinator,
      holder,
      ...fast,
      sleep: async () => {
        if (++sleeps === 3) idles.resolve();
        await new Promise((r) => setTimeout(r, 2));
      },
      handle: async () => {},
    });
    poller.start();
    await idles.promise;
    expect(source.rows[0]!.status).toBe('queued');
    await creditRefresh(holder, { reconciledSpendUsd: 0, thresholdUsd: 1 });
    await until(() => source.rows[0]!.status === 'done');
    await poller.stop();
  });

  it('critical_only: only critical tickets are taken', async () => {
    const { holder, coordinator } = setup();
    await holder.send({ type: 'update', claimPermission: 'critical_only', trigger: 'cost 90%' });
    const source = createMemoryTicketSource();
    source.enqueue([
      { id: 'n1' },
      { id: 'c1', critical: true },
      { id: 'n2' },
      { id: 'c2', critical: true },
    ]);
    const worked: string[] = [];
    const poller = createTicketPoller({
      source,
      coordinator,
      holder,
      ...fast,
      handle: async (t) => {
        worked.push(t.id);
      },
    });
    poller.start();
    await until(() => worked.length === 2);
    await poller.stop();
    expect(worked).toEqual(['c1', 'c2']);
    expect(source.rows.filter((r) => r.status === 'queued').map((r) => r.id)).toEqual(['n1', 'n2']);
  });

  it('a lost lease aborts the work (signal), the claim is released, the ticket is left to its new owner', async () => {
    const { holder, coordinator, arrows } = setup();
    const source = createMemoryTicketSource();
    source.enqueue([{ id: 'slow' }]);
    let reason: unknown;
    const poller = createTicketPoller({
      source,
      coordinator,
      holder,
      ...fast,
      workerId: 'w-old',
      handle: async (ticket, { signal }) => {
        // Another worker takes the ticket over.
        source.expireLease(ticket.id);
        const thief = await source.claimNext({ workerId: 'w-new', leaseMs: 60_000 });
        expect(thief?.id).toBe('slow');
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
        reason = signal.reason;
        throw signal.reason;
      },
    });
    poller.start();
    await until(() => poller.stats.leaseLost === 1);
    await poller.stop();
    expect(reason).toBeInstanceOf(LeaseLostError);
    expect((reason as Error).message).toContain('lease on ticket "slow" lost');
    expect(source.rows[0]).toMatchObject({ status: 'claimed', leaseOwner: 'w-new' });
    expect(holder.current.primaryState).toBe('ready');
    expect(arrows()).toEqual(['ready→active claim.acquired', 'active→ready claim.released']);
    expect(holder.history()[1]!.details).toMatchObject({ result: 'aborted' });
  });

  it('a ticket taken just before a pause is abandoned back to the queue', async () => {
    const { holder, coordinator } = setup();
    const inner = createMemoryTicketSource();
    inner.enqueue([{ id: 'q1' }]);
    let paused = false;
    const source = {
      ...inner,
      claimNext: async (o: Parameters<typeof inner.claimNext>[0]) => {
        const t = await inner.claimNext(o);
        if (t && !paused) {
          paused = true;
          await holder.send({ type: 'pause', cause: 'operator', trigger: 'operator hold' });
        }
        return t;
      },
    };
    const poller = createTicketPoller({
      source,
      coordinator,
      holder,
      ...fast,
      handle: async () => {},
    });
    poller.start();
    await until(() => poller.stats.abandoned === 1);
    await poller.stop();
    expect(inner.rows[0]).toMatchObject({
      status: 'queued',
      resolution: 'abandoned',
      detail: 'claim refused: paused',
    });
    expect(holder.history().map((r) => r.event)).toEqual(['pause']);
  });

  it('source errors are logged and retried; the loop ends when the holder stops', async () => {
    const { holder, coordinator, logger } = setup();
    const inner = createMemoryTicketSource();
    inner.enqueue([{ id: 'e1' }]);
    let failures = 0;
    const source = {
      ...inner,
      claimNext: async (o: Parameters<typeof inner.claimNext>[0]) => {
        if (failures++ < 2) throw new Error('connection reset');
        return inner.claimNext(o);
      },
    };
    const poller = createTicketPoller({
      source,
      coordinator,
      holder,
      ...fast,
      handle: async () => {},
    });
    poller.start();
    await until(() => inner.rows[0]!.status === 'done');
    expect(poller.stats.errors).toBe(2);
    expect(
      logger.find('error', '[kora.operational_state.poller] poll failed: connection reset'),
    ).toHaveLength(2);
    await holder.send({ type: 'stop', trigger: 'STOP-KORA L4: operator' });
    await until(() => !poller.running);
    expect(logger.find('info', 'the holder is stopped')).toHaveLength(1);
  });

  it('validates its options, naming the value', () => {
    const { holder, coordinator } = setup();
    const source = createMemoryTicketSource();
    const base = { source, coordinator, holder, handle: async () => {} };
    expect(() => createTicketPoller({ ...base, leaseMs: 0 })).toThrow(
      'leaseMs must be a positive integer, got 0',
    );
    expect(() => createTicketPoller({ ...base, leaseMs: 100, heartbeatMs: 100 })).toThrow(
      'heartbeatMs must be shorter than leaseMs (100), got 100',
    );
    expect(() => createTicketPoller({ ...base, source: {} as never })).toThrow(
      'source is required',
    );
  });
});

describe('SQL ticket source on PGlite (the embedded store)', () => {
  it('migrates, claims critical first, leases on the database clock, reclaims expired leases, records resolutions', async () => {
    const db = await PGlite.create();
    try {
      const source = createPostgresTicketSource({ db, queue: 'q-lite' });
      await source.start();
      await source.start();
      expect(
        await source.enqueue([
          { id: 'a', payload: { n: 1 } },
          { id: 'b', critical: true },
          { id: 'c' },
        ]),
      ).toEqual(['a', 'b', 'c']);
      await source.enqueue([{ id: 'a', payload: { n: 'dup' } }]);
      const b = (await source.claimNext({ workerId: 'w1', leaseMs: 60_000 }))!;
      expect(b).toMatchObject({ id: 'b', critical: true, attempts: 1, lease: { owner: 'w1' } });
      expect(b.lease.token).toMatch(/^[0-9a-f-]{36}$/);
      const a = (await source.claimNext({ workerId: 'w1', leaseMs: 1 }))!;
      expect(a).toMatchObject({ id: 'a', payload: { n: 1 } });
      expect(await source.heartbeat(b)).toBe(true);
      // a's 1 ms lease runs out: w2 takes a over (before c, in queue order).
      let taken: Ticket | undefined;
      while (taken?.id !== 'a') {
        taken = await source.claimNext({ workerId: 'w2', leaseMs: 60_000 });
        if (taken && taken.id !== 'a') throw new Error(`expected a, got ${taken.id}`);
      }
      expect(taken.attempts).toBe(2);
      expect(await source.heartbeat(a)).toBe(false);
      expect(await source.release(a, 'done')).toBe(false);
      expect(await source.release(taken, 'done', 'ok')).toBe(true);
      expect(await source.release(b, 'failed', 'boom')).toBe(true);
      expect(await source.counts()).toEqual({ queued: 1, claimed: 0, done: 1, failed: 1 });
      const { rows } = await db.query<Record<string, unknown>>(
        'SELECT id, status, resolution, resolved_by, detail, attempts FROM tickets ORDER BY id',
      );
      expect(rows).toEqual([
        {
          id: 'a',
          status: 'done',
          resolution: 'done',
          resolved_by: 'w2',
          detail: 'ok',
          attempts: 2,
        },
        {
          id: 'b',
          status: 'failed',
          resolution: 'failed',
          resolved_by: 'w1',
          detail: 'boom',
          attempts: 1,
        },
        {
          id: 'c',
          status: 'queued',
          resolution: null,
          resolved_by: null,
          detail: null,
          attempts: 0,
        },
      ]);
      // Another queue in the same table sees none of these.
      const other = createPostgresTicketSource({ db, queue: 'q-other' });
      await other.start();
      expect(await other.claimNext({ workerId: 'w3', leaseMs: 1000 })).toBeUndefined();
      await source.close();
    } finally {
      await db.close();
    }
  });

  it('refuses bad options naming the value', () => {
    expect(() =>
      createPostgresTicketSource({ queue: '', db: { query: async () => ({ rows: [] }) } }),
    ).toThrow('queue must be a non-empty string, got ""');
    expect(() => createPostgresTicketSource({ db: 5 as never })).toThrow(
      'db must be a SQL session',
    );
  });
});
