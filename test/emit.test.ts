/**
 * Unit tests of the emitter (payloads, extra-literal selection, fail-loud preflight and
 * sink failures, listener isolation on a real holder) and of the outbox (order, retry,
 * bound, refusal) with fake timers and writers.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { OperationalFact } from '../machines/operationalState.machine.js';
import { wireOperationalState } from '../src/boot.js';
import {
  BOOT_FAILED_EVENT,
  BOOT_READY_EVENT,
  buildTransitionPayload,
  createEmitSequence,
  EVENT_TYPE_PATTERN,
  EVENT_VOCABULARY,
  emitStateTransition,
  extraEventOf,
  factsOfRecord,
  GENERIC_TRANSITION_EVENT,
  makeEmitListener,
  OperationalStateEmitError,
  PAUSED_COST_LIMIT_EVENT,
} from '../src/emit.js';
import {
  createOperationalStateHolder,
  getHolder,
  type OperationalStateHolder,
  resetHolderForTests,
  type TransitionRecord,
} from '../src/holder.js';
import { createMemorySink } from '../src/sinks/memory.js';
import { Outbox, OutboxOverflowError, OutboxPendingError } from '../src/sinks/outbox.js';
import type { ChainEvent, EventSink } from '../src/sinks/types.js';
import {
  makeOperationalState,
  type OperationalState,
  OperationalStateInputError,
  type PrimaryState,
} from '../src/vocabulary.js';
import { recordingLogger } from './support/logger.js';

/** Records every change a holder commits, for the pure functions under test. */
function recorded(initial: PrimaryState = 'booting') {
  const holder = createOperationalStateHolder({
    initial: { primaryState: initial },
    logger: recordingLogger(),
  });
  const changes: Change[] = [];
  holder.addListener((old, next, record, facts) => {
    changes.push({ old, next, record, facts });
  });
  const last = () => changes[changes.length - 1]!;
  return { holder, changes, last };
}

interface Change {
  old: OperationalState;
  next: OperationalState;
  record: TransitionRecord;
  facts: readonly OperationalFact[];
}

/** The extra event of a change, from the facts the machine emitted for it. */
const extraOf = (c: Change) => {
  const extra = extraEventOf(c.facts);
  // The record alone says the same (for callers that emit a record from history()).
  expect(extraEventOf(factsOfRecord(c.record))).toBe(extra);
  return extra;
};

/** A hand-made change, for rules the holder's routes cannot reach on their own. */
function change(
  from: PrimaryState,
  to: PrimaryState,
  record: Partial<TransitionRecord>,
): [OperationalState, OperationalState, TransitionRecord] {
  const old = makeOperationalState({ primaryState: from });
  const next = makeOperationalState({ primaryState: to });
  return [
    old,
    next,
    {
      seq: 1,
      timestamp: '2026-01-01T00:00:00Z',
      from_state: from,
      to_state: to,
      trigger: '',
      event: 'update',
      claim_permission: next.claimPermission,
      degradation_reasons: next.degradationReasons,
      ...record,
    } as TransitionRecord,
  ];
}

const fixedNow = () => Date.parse('2026-05-21T20:55:00.123Z');

describe('vocabulary', () => {
  it('holds the four event types, each matching the SPEC pattern', () => {
    expect(EVENT_VOCABULARY).toEqual([
      'kora.operational_state.transitioned',
      'kora.boot.ready',
      'kora.boot.failed',
      'kora.paused.cost_limit',
    ]);
    for (const t of EVENT_VOCABULARY) expect(t).toMatch(EVENT_TYPE_PATTERN);
  });

  it('the pattern refuses malformed types', () => {
    for (const bad of [
      'kora',
      'kora.',
      'kora..boot',
      'Kora.boot.ready',
      'kora.Boot',
      'kora.1boot',
      'kora.boot.ready ',
      'isokron.boot.ready',
      'kora.boot-ready',
    ]) {
      expect(bad).not.toMatch(EVENT_TYPE_PATTERN);
    }
    expect('kora.boot.exploded').toMatch(EVENT_TYPE_PATTERN);
  });
});

describe('buildTransitionPayload', () => {
  it('carries from/to, the new claim permission, sorted reasons and the trigger — nothing else', async () => {
    const { holder, last } = recorded('ready');
    await holder.transitionTo('ready', 'auth and cost degraded', {
      addReasons: ['token_expiring', 'auth', 'cost'],
      claimPermission: 'critical_only',
    });
    const { old, next, record } = last();
    expect(buildTransitionPayload(old, next, record)).toStrictEqual({
      from_primary_state: 'ready',
      to_primary_state: 'ready',
      claim_permission: 'critical_only',
      degradation_reasons: ['auth', 'cost', 'token_expiring'],
      trigger: 'auth and cost degraded',
    });
  });

  it('sorts reasons even when handed an unsorted state', () => {
    const [old, , record] = change('ready', 'ready', { trigger: 't' });
    const next = {
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: ['operator', 'auth'],
    };
    expect(
      buildTransitionPayload(old, next as unknown as OperationalState, record).degradation_reasons,
    ).toEqual(['auth', 'operator']);
  });
});

describe("the extra event: a pure mapping of the machine's facts", () => {
  it('row 1 (booting → ready) → kora.boot.ready', async () => {
    const { holder, last } = recorded();
    await holder.send({ type: 'boot.gates_passed' });
    expect(last().record.trigger).toBe('all §9.2 gates pass');
    expect(extraOf(last())).toBe(BOOT_READY_EVENT);
  });

  it('booting → ready through transitionTo, any wording: row 1, so kora.boot.ready', async () => {
    for (const trigger of ['all §9.2 gates pass', 'boot: All §9.2 gates pass (5/5)', 'gates ok']) {
      const { holder, last } = recorded();
      await holder.transitionTo('ready', trigger);
      expect(last().record.event).toBe('boot.gates_passed');
      expect(last().facts.map((f) => f.type)).toEqual(['transitioned', 'boot.ready']);
      expect(extraOf(last())).toBe(BOOT_READY_EVENT);
    }
  });

  it('row 3 (booting → stopped by boot.gate_failed) → kora.boot.failed', async () => {
    const { holder, last } = recorded();
    await holder.send({ type: 'boot.gate_failed', trigger: 'retry budget exhausted' });
    expect(extraOf(last())).toBe(BOOT_FAILED_EVENT);
  });

  it('booting → stopped via "invariant gate failure" wording → kora.boot.failed', async () => {
    const { holder, last } = recorded();
    await holder.transitionTo('stopped', 'Invariant gate failure: epoch table missing');
    expect(last().record.event).toBe('boot.gate_failed');
    expect(extraOf(last())).toBe(BOOT_FAILED_EVENT);
  });

  it('booting → stopped by STOP-KORA L4/L5 is no boot failure', async () => {
    const a = recorded();
    await a.holder.transitionTo('stopped', 'STOP-KORA L4');
    expect(a.last().record.event).toBe('stop');
    expect(extraOf(a.last())).toBeUndefined();
    const b = recorded();
    await b.holder.send({ type: 'stop', trigger: 'invariant gate failure, then STOP' });
    expect(extraOf(b.last())).toBeUndefined();
  });

  it('booting → stopped without a keyword is the plain stop (row 15): no boot failure', async () => {
    const { holder, last } = recorded();
    await holder.transitionTo('stopped', 'SIGTERM received');
    expect(last().record.event).toBe('stop');
    expect(extraOf(last())).toBeUndefined();
  });

  it('a stop from elsewhere is never a boot failure', async () => {
    const { holder, last } = recorded('ready');
    await holder.transitionTo('stopped', 'invariant gate failure');
    expect(extraOf(last())).toBeUndefined();
  });

  it('pause with cause cost_limit → kora.paused.cost_limit, from ready, active or booting', async () => {
    for (const from of ['ready', 'active', 'booting'] as const) {
      const { holder, last } = recorded(from);
      await holder.send({ type: 'pause', cause: 'cost_limit', trigger: 'spend cap' });
      expect(extraOf(last())).toBe(PAUSED_COST_LIMIT_EVENT);
    }
  });

  it('any → paused whose trigger contains "cost 100%" → kora.paused.cost_limit', async () => {
    const { holder, last } = recorded('active');
    await holder.transitionTo('paused', 'monthly cost 100% reached');
    expect(last().record.cause).toBe('cost_limit');
    expect(extraOf(last())).toBe(PAUSED_COST_LIMIT_EVENT);
    const boot = recorded();
    await boot.holder.transitionTo('paused', 'COST 100% at boot');
    expect(extraOf(boot.last())).toBe(PAUSED_COST_LIMIT_EVENT);
  });

  it('the trigger text decides only in transitionTo: a sent event says what it is', async () => {
    const { holder, last } = recorded('active');
    await holder.send({ type: 'pause', cause: 'operator', trigger: 'cost 100% (operator)' });
    expect(extraOf(last())).toBeUndefined();
    const boot = recorded();
    await boot.holder.send({ type: 'boot.epoch_mismatch', trigger: 'COST 100% at boot' });
    expect(extraOf(boot.last())).toBeUndefined();
    const ready = recorded();
    await ready.holder.send({ type: 'stop', trigger: 'all §9.2 gates pass' });
    expect(extraOf(ready.last())).toBeUndefined();
  });

  it('operator and substrate pauses get only the generic event', async () => {
    for (const cause of ['operator', 'substrate', 'stop_kora'] as const) {
      const { holder, last } = recorded('ready');
      await holder.send({ type: 'pause', cause });
      // The recorded trigger is the pause row's own text, which names "cost 100%" among others.
      expect(last().record.trigger).toContain('cost 100%');
      expect(extraOf(last())).toBeUndefined();
    }
  });

  it('a same-state update while paused is no new cost pause', async () => {
    const { holder, last } = recorded('ready');
    await holder.send({ type: 'pause', cause: 'operator' });
    await holder.transitionTo('paused', 'cost 100% too', { addReasons: ['cost'] });
    expect(last().record.event).toBe('update');
    expect(extraOf(last())).toBeUndefined();
  });

  it('every other row gets no extra', async () => {
    const { holder, changes } = recorded('ready');
    await holder.send({ type: 'claim.acquired' });
    await holder.send({ type: 'claim.released' });
    await holder.transitionTo('ready', 'degraded', { addReasons: ['auth'] });
    await holder.send({ type: 'pause', cause: 'operator' });
    await holder.send({ type: 'resume.operator_reset' });
    await holder.send({ type: 'stop', trigger: 'STOP-KORA L5' });
    expect(changes).toHaveLength(6);
    for (const c of changes) expect(extraOf(c)).toBeUndefined();
  });
});

describe('emitStateTransition', () => {
  it('appends generic then extra in ONE call, consecutive seq, one occurred_at', async () => {
    const { holder, last } = recorded();
    const gates = [
      {
        gate_id: 'g1',
        gate_class: 'invariant',
        outcome: 'pass',
        attempts: 1,
        elapsed_ms: 12,
        detail: 'ok',
      },
      {
        gateId: 'g2',
        gateClass: 'transient',
        outcome: 'pass',
        attempts: 3,
        elapsedMs: 40.5,
        detail: { tries: 3 },
      },
    ];
    await holder.send({ type: 'boot.gates_passed', details: { gates } });
    const sink = createMemorySink({ workspaceId: 'ws-1' });
    const sequence = createEmitSequence('inst-a');
    const { old, next, record } = last();
    const events = await emitStateTransition(sink, old, next, record, { sequence, now: fixedNow });
    expect(sink.appends).toBe(1);
    expect(sink.events).toEqual(events);
    expect(events.map((e) => [e.event_type, e.seq])).toEqual([
      [GENERIC_TRANSITION_EVENT, 1],
      [BOOT_READY_EVENT, 2],
    ]);
    for (const e of events) {
      expect(e.workspace_id).toBe('ws-1');
      expect(e.instance_id).toBe('inst-a');
      expect(e.occurred_at).toBe('2026-05-21T20:55:00.123Z');
    }
    const generic = {
      from_primary_state: 'booting',
      to_primary_state: 'ready',
      claim_permission: 'normal',
      degradation_reasons: [],
      trigger: 'all §9.2 gates pass',
    };
    expect(events[0]!.payload).toStrictEqual(generic);
    expect(events[1]!.payload).toStrictEqual({
      ...generic,
      gates: [
        {
          gate_id: 'g1',
          gate_class: 'invariant',
          outcome: 'pass',
          attempts: 1,
          elapsed_ms: 12,
          detail: 'ok',
        },
        {
          gate_id: 'g2',
          gate_class: 'transient',
          outcome: 'pass',
          attempts: 3,
          elapsed_ms: 40.5,
          detail: { tries: 3 },
        },
      ],
    });
    // The next change continues the instance's sequence.
    await holder.send({ type: 'claim.acquired' });
    const more = await emitStateTransition(sink, last().old, last().next, last().record, {
      sequence,
    });
    expect(more.map((e) => e.seq)).toEqual([3]);
  });

  it('boot.failed names the failed gate: from details, else the first failed gate', async () => {
    const sink = createMemorySink({ workspaceId: 'ws' });
    const gates = [
      {
        gate_id: 'g1',
        gate_class: 'invariant',
        outcome: 'pass',
        attempts: 1,
        elapsed_ms: 5,
        detail: null,
      },
      {
        gate_id: 'g3b',
        gate_class: 'invariant',
        outcome: 'fail',
        attempts: 1,
        elapsed_ms: 9,
        detail: 'epoch 7 ≠ 8',
      },
    ];
    const explicit = recorded();
    await explicit.holder.send({
      type: 'boot.gate_failed',
      details: { gates, failed_gate_id: 'g3b', failed_detail: 'epoch mismatch' },
    });
    const c1 = explicit.last();
    const [, failed] = await emitStateTransition(sink, c1.old, c1.next, c1.record);
    expect(failed!.event_type).toBe(BOOT_FAILED_EVENT);
    expect(failed!.payload).toMatchObject({
      to_primary_state: 'stopped',
      failed_gate_id: 'g3b',
      failed_detail: 'epoch mismatch',
    });
    expect((failed!.payload.gates as unknown[]).length).toBe(2);

    const derived = recorded();
    await derived.holder.send({ type: 'boot.gate_failed', details: { gates } });
    const c2 = derived.last();
    const [, failed2] = await emitStateTransition(sink, c2.old, c2.next, c2.record);
    expect(failed2!.payload).toMatchObject({ failed_gate_id: 'g3b', failed_detail: 'epoch 7 ≠ 8' });

    const bare = recorded();
    await bare.holder.send({ type: 'boot.gate_failed' });
    const c3 = bare.last();
    const [, failed3] = await emitStateTransition(sink, c3.old, c3.next, c3.record);
    expect(failed3!.payload).toMatchObject({
      gates: [],
      failed_gate_id: null,
      failed_detail: null,
    });
  });

  it('the cost pause carries the generic payload', async () => {
    const { holder, last } = recorded('active');
    await holder.send({ type: 'pause', cause: 'cost_limit', trigger: 'cost 100%' });
    const sink = createMemorySink({ workspaceId: 'ws' });
    const [g, extra] = await emitStateTransition(sink, last().old, last().next, last().record);
    expect(extra!.event_type).toBe(PAUSED_COST_LIMIT_EVENT);
    expect(extra!.payload).toStrictEqual(g!.payload);
    expect(g!.payload.degradation_reasons).toEqual(['cost']);
  });

  describe('fails loud', () => {
    const setup = async () => {
      const { holder, last } = recorded();
      await holder.send({ type: 'boot.gates_passed' });
      return last();
    };

    it('no sink → OperationalStateEmitError naming the generic event, logged once', async () => {
      const { old, next, record } = await setup();
      const logger = recordingLogger();
      const sequence = createEmitSequence('i');
      const err = await emitStateTransition(undefined as unknown as EventSink, old, next, record, {
        logger,
        sequence,
      }).catch((e) => e);
      expect(err).toBeInstanceOf(OperationalStateEmitError);
      expect(err.eventType).toBe(GENERIC_TRANSITION_EVENT);
      expect(err.message).toContain('"kora.operational_state.transitioned"');
      expect(err.message).toContain('no event sink');
      expect(logger.find('error', '[kora.operational_state.emit]')).toHaveLength(1);
      expect(sequence.last).toBe(0);
    });

    it('an empty workspace id → error, nothing appended, no seq used', async () => {
      const { old, next, record } = await setup();
      for (const workspaceId of ['', '   ']) {
        const appended: ChainEvent[][] = [];
        const sink: EventSink = { workspaceId, append: async (e) => void appended.push(e) };
        const sequence = createEmitSequence('i');
        const err = await emitStateTransition(sink, old, next, record, {
          logger: recordingLogger(),
          sequence,
        }).catch((e) => e);
        expect(err).toBeInstanceOf(OperationalStateEmitError);
        expect(err.message).toContain('workspace id is empty');
        expect(err.message).toContain(JSON.stringify(workspaceId));
        expect(appended).toHaveLength(0);
        expect(sequence.last).toBe(0);
      }
    });

    it('an event type not matching the pattern → error naming that type, nothing appended', async () => {
      const { old, next, record } = await setup();
      const sink = createMemorySink({ workspaceId: 'ws' });
      const err = await emitStateTransition(sink, old, next, record, {
        logger: recordingLogger(),
        selectExtra: () => 'Kora.Boot.Ready',
      }).catch((e) => e);
      expect(err).toBeInstanceOf(OperationalStateEmitError);
      expect(err.eventType).toBe('Kora.Boot.Ready');
      expect(err.message).toContain('does not match');
      expect(sink.events).toHaveLength(0);
    });

    it('a sink failure → error with the event type and the cause, logged once', async () => {
      const { old, next, record } = await setup();
      const logger = recordingLogger();
      const cause = new Error('connection refused');
      const sink: EventSink = {
        workspaceId: 'ws',
        append: () => Promise.reject(cause),
      };
      const err = await emitStateTransition(sink, old, next, record, { logger }).catch((e) => e);
      expect(err).toBeInstanceOf(OperationalStateEmitError);
      expect(err.eventType).toBe(GENERIC_TRANSITION_EVENT);
      expect(err.eventTypes).toEqual([GENERIC_TRANSITION_EVENT, BOOT_READY_EVENT]);
      expect(err.cause).toBe(cause);
      expect(err.message).toContain('kora.operational_state.transitioned');
      expect(err.message).toContain('connection refused');
      expect(err.transition).toBe('booting → ready');
      const lines = logger.find('error', '[kora.operational_state.emit]');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain('connection refused');
    });

    it('a sink refusing one event of the batch → the error names that event', async () => {
      const { old, next, record } = await setup();
      const sink: EventSink = {
        workspaceId: 'ws',
        append: () => Promise.reject(new Error('event_log refused event type kora.boot.ready')),
      };
      const err = await emitStateTransition(sink, old, next, record, {
        logger: recordingLogger(),
      }).catch((e) => e);
      expect(err.eventType).toBe(BOOT_READY_EVENT);
    });

    it('a throwing logger does not change the error', async () => {
      const { old, next, record } = await setup();
      const logger = {
        error: () => {
          throw new Error('log down');
        },
        warn() {},
        info() {},
      };
      const err = await emitStateTransition(
        { workspaceId: 'ws', append: () => Promise.reject(new Error('db down')) },
        old,
        next,
        record,
        { logger },
      ).catch((e) => e);
      expect(err).toBeInstanceOf(OperationalStateEmitError);
      expect(err.message).toContain('db down');
    });
  });
});

describe('makeEmitListener on a real holder', () => {
  function flakySink(workspaceId = 'ws') {
    const inner = createMemorySink({ workspaceId });
    let failing = false;
    const sink = {
      workspaceId,
      events: inner.events,
      set failing(v: boolean) {
        failing = v;
      },
      async append(events: ChainEvent[]) {
        if (failing) throw new Error('sink unavailable');
        await inner.append(events);
      },
    };
    return sink;
  }

  async function toggle(holder: OperationalStateHolder) {
    await holder.send(
      holder.current.primaryState === 'ready'
        ? { type: 'claim.acquired' }
        : { type: 'claim.released' },
    );
  }

  it('emits every committed change, generic then extra, seq gapless', async () => {
    const holderLogger = recordingLogger();
    const holder = createOperationalStateHolder({ logger: holderLogger });
    const sink = createMemorySink({ workspaceId: 'ws' });
    const emit = makeEmitListener(sink, { instanceId: 'inst-1', now: fixedNow });
    holder.addListener(emit);
    await holder.send({ type: 'boot.gates_passed' });
    await toggle(holder);
    await toggle(holder);
    await holder.send({ type: 'pause', cause: 'cost_limit' });
    expect(sink.events.map((e) => `${e.seq} ${e.event_type}`)).toEqual([
      `1 ${GENERIC_TRANSITION_EVENT}`,
      `2 ${BOOT_READY_EVENT}`,
      `3 ${GENERIC_TRANSITION_EVENT}`,
      `4 ${GENERIC_TRANSITION_EVENT}`,
      `5 ${GENERIC_TRANSITION_EVENT}`,
      `6 ${PAUSED_COST_LIMIT_EVENT}`,
    ]);
    expect(emit.stats).toEqual({ emitted: 6, failures: 0 });
    expect(emit.instanceId).toBe('inst-1');
    expect(sink.events.every((e) => e.instance_id === 'inst-1')).toBe(true);
  });

  it('a failing emit never rolls a transition back; counted and logged exactly once', async () => {
    const holderLogger = recordingLogger();
    const emitLogger = recordingLogger();
    const holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      logger: holderLogger,
    });
    const sink = flakySink();
    const emit = makeEmitListener(sink, { logger: emitLogger });
    const seen: string[] = [];
    holder.addListener(emit);
    // A listener after the emitter still runs.
    holder.addListener((_o, next) => void seen.push(next.primaryState));
    sink.failing = true;
    await expect(holder.send({ type: 'claim.acquired' })).resolves.toMatchObject({
      primaryState: 'active',
    });
    expect(holder.current.primaryState).toBe('active');
    expect(holder.history().map((r) => r.to_state)).toEqual(['active']);
    expect(emit.stats.failures).toBe(1);
    expect(emit.stats.emitted).toBe(0);
    expect(emit.stats.lastError).toContain('sink unavailable');
    expect(emitLogger.find('error', '[kora.operational_state.emit]')).toHaveLength(1);
    // The emitter handled it: the holder saw no listener failure and logged nothing.
    expect(holder.stats.listenerFailures).toBe(0);
    expect(holderLogger.find('error')).toHaveLength(0);
    expect(seen).toEqual(['active']);

    sink.failing = false;
    await toggle(holder);
    expect(holder.current.primaryState).toBe('ready');
    expect(emit.stats).toMatchObject({ emitted: 1, failures: 1 });
    // seq 1 went to the failed emit: the sink's loss, visible as a gap, never reused.
    expect(sink.events.map((e) => e.seq)).toEqual([2]);
  });

  it('a preflight failure (empty workspace) is counted; the machine keeps moving', async () => {
    const holder = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const logger = recordingLogger();
    const emit = makeEmitListener({ workspaceId: '', append: async () => {} }, { logger });
    holder.addListener(emit);
    await toggle(holder);
    await toggle(holder);
    expect(holder.current.primaryState).toBe('ready');
    expect(emit.stats.failures).toBe(2);
    expect(logger.find('error', 'workspace id is empty')).toHaveLength(2);
  });

  it('listeners get distinct instance ids unless one is given', () => {
    const sink = createMemorySink();
    const a = makeEmitListener(sink);
    const b = makeEmitListener(sink);
    expect(a.instanceId).not.toBe(b.instanceId);
    expect(a.instanceId).toContain(String(process.pid));
  });

  it('validates its options, quoting the bad value', () => {
    const sink = createMemorySink();
    expect(() => makeEmitListener(sink, { instanceId: '' })).toThrow(OperationalStateInputError);
    expect(() => makeEmitListener(sink, { now: 5 as unknown as () => number })).toThrow(/now.*5/);
    expect(() => makeEmitListener(sink, { logger: {} as never })).toThrow(/logger/);
    expect(() => createMemorySink({ workspaceId: '' })).toThrow(/workspaceId.*""/);
  });
});

/** Fake timers: scheduled callbacks run only when the test says so. */
function fakeTimers() {
  let id = 0;
  const pending = new Map<number, { fn: () => void; ms: number }>();
  return {
    pending,
    delays: [] as number[],
    setTimeout(fn: () => void, ms: number) {
      pending.set(++id, { fn, ms });
      this.delays.push(ms);
      return id;
    },
    clearTimeout(h: unknown) {
      pending.delete(h as number);
    },
    /** Runs the pending callbacks whose delay is at least `minMs` (retry timers, not flush timeouts). */
    fire(filter: (ms: number) => boolean = () => true) {
      for (const [k, t] of [...pending]) {
        if (!filter(t.ms)) continue;
        pending.delete(k);
        t.fn();
      }
    },
  };
}

const ev = (seq: number, event_type = GENERIC_TRANSITION_EVENT): ChainEvent => ({
  event_type,
  payload: { seq },
  workspace_id: 'ws',
  instance_id: 'i',
  seq,
  occurred_at: '2026-01-01T00:00:00.000Z',
});

const settle = () => new Promise((r) => setImmediate(r));

/** A writer that fails while `down`, and stores each (instance, seq) once. */
function fakeDb() {
  const stored = new Map<string, ChainEvent>();
  const order: number[] = [];
  const db = {
    down: false,
    refuse: undefined as string | undefined,
    writes: 0,
    stored,
    order,
    async write(events: ChainEvent[]) {
      db.writes++;
      if (db.down) throw new Error('ECONNREFUSED');
      if (events.some((e) => e.event_type === db.refuse)) {
        throw Object.assign(new Error(`refused ${db.refuse}`), { code: '23514' });
      }
      let n = 0;
      for (const e of events) {
        const key = `${e.instance_id}/${e.seq}`;
        if (stored.has(key)) continue;
        stored.set(key, e);
        order.push(e.seq);
        n++;
      }
      return n;
    },
  };
  return db;
}

describe('outbox', () => {
  const make = (db: ReturnType<typeof fakeDb>, timers = fakeTimers(), limit = 100) => {
    const logger = recordingLogger();
    const outbox = new Outbox((e) => db.write(e), {
      limit,
      timers,
      logger,
      random: () => 0.5,
      retry: { initialMs: 100, maxMs: 400 },
      isPermanent: (err) => (err as { code?: string }).code === '23514',
    });
    return { outbox, timers, logger };
  };

  it('stores appends in order when the writer is up', async () => {
    const db = fakeDb();
    const { outbox } = make(db);
    outbox.start();
    await Promise.all([outbox.append([ev(1), ev(2)]), outbox.append([ev(3)])]);
    expect(db.order).toEqual([1, 2, 3]);
    expect(outbox.stats).toMatchObject({ appended: 3, outboxDepth: 0, failures: 0 });
  });

  it('a failed append rejects, its events stay queued in order and land once after recovery', async () => {
    const db = fakeDb();
    const { outbox, timers, logger } = make(db);
    outbox.start();
    await outbox.append([ev(1)]);
    db.down = true;
    const e2 = await outbox.append([ev(2), ev(3)]).catch((e) => e);
    expect(e2).toBeInstanceOf(OutboxPendingError);
    expect(e2.message).toContain('ECONNREFUSED');
    // While backing off, later appends queue behind, rejected at once (fail loud).
    const e4 = await outbox.append([ev(4)]).catch((e) => e);
    expect(e4).toBeInstanceOf(OutboxPendingError);
    expect(outbox.stats.outboxDepth).toBe(3);
    expect(db.writes).toBe(2);
    // Still down at the first retry: the next delay doubles.
    timers.fire();
    await settle();
    expect(outbox.stats.failures).toBe(2);
    expect(timers.delays).toEqual([100, 200]);
    db.down = false;
    timers.fire();
    await settle();
    expect(db.order).toEqual([1, 2, 3, 4]);
    // Catching up writes the backlog in one batch.
    expect(db.writes).toBe(4);
    expect(outbox.stats).toMatchObject({ appended: 4, outboxDepth: 0, dropped: 0 });
    expect(logger.find('error', 'kept in the outbox')).toHaveLength(1);
    expect(logger.find('warn', 'recovered after 2')).toHaveLength(1);
    await expect(outbox.flush(1000)).resolves.toBe(true);
  });

  it('a retry of events the database already stored is a no-op (nothing duplicated)', async () => {
    const db = fakeDb();
    let lose = true;
    // The write commits but the answer is lost (connection dies after COMMIT).
    const outbox = new Outbox(
      async (events) => {
        const n = await db.write(events);
        if (lose) {
          lose = false;
          throw new Error('connection terminated');
        }
        return n;
      },
      { timers: fakeTimers(), random: () => 0.5, logger: recordingLogger() },
    );
    outbox.start();
    await expect(outbox.append([ev(1)])).rejects.toThrow(/connection terminated/);
    await outbox.flush(1000);
    expect(db.order).toEqual([1]);
    expect(outbox.stats.outboxDepth).toBe(0);
  });

  it('backoff doubles up to maxMs', async () => {
    const db = fakeDb();
    const { outbox, timers } = make(db);
    outbox.start();
    db.down = true;
    await outbox.append([ev(1)]).catch(() => {});
    for (let i = 0; i < 4; i++) {
      timers.fire();
      await settle();
    }
    expect(timers.delays).toEqual([100, 200, 400, 400, 400]);
  });

  it('overflow drops are explicit: rejected, logged and counted', async () => {
    const db = fakeDb();
    const { outbox, logger } = make(db, fakeTimers(), 3);
    outbox.start();
    db.down = true;
    await outbox.append([ev(1), ev(2)]).catch(() => {});
    const err = await outbox.append([ev(3), ev(4)]).catch((e) => e);
    expect(err).toBeInstanceOf(OutboxOverflowError);
    expect(outbox.stats).toMatchObject({ outboxDepth: 2, dropped: 2 });
    expect(logger.find('error', 'dropped 2 event(s)')).toHaveLength(1);
    await outbox.append([ev(5)]).catch(() => {});
    expect(outbox.stats.outboxDepth).toBe(3);
  });

  it('a permanent refusal is not retried and does not block the events behind it', async () => {
    const db = fakeDb();
    const { outbox, timers, logger } = make(db);
    outbox.start();
    db.down = true;
    await outbox.append([ev(1)]).catch(() => {});
    await outbox.append([ev(2, 'kora.boot.exploded')]).catch(() => {});
    await outbox.append([ev(3)]).catch(() => {});
    db.down = false;
    db.refuse = 'kora.boot.exploded';
    timers.fire();
    await settle();
    await settle();
    expect(db.order).toEqual([1, 3]);
    expect(outbox.stats).toMatchObject({ refused: 1, outboxDepth: 0, appended: 2 });
    expect(logger.find('error', 'refused 1 event(s)')).toHaveLength(1);
    const direct = await outbox.append([ev(4, 'kora.boot.exploded')]).catch((e) => e);
    expect(direct.code).toBe('23514');
    expect(outbox.stats.refused).toBe(2);
  });

  it('appends before start are kept and written once started', async () => {
    const db = fakeDb();
    const { outbox } = make(db);
    await expect(outbox.append([ev(1)])).rejects.toThrow(/not started/);
    expect(outbox.stats.outboxDepth).toBe(1);
    outbox.start();
    await expect(outbox.flush(1000)).resolves.toBe(true);
    expect(db.order).toEqual([1]);
  });

  it('flush resolves false on timeout; close stops the retry timer', async () => {
    const db = fakeDb();
    const { outbox, timers, logger } = make(db);
    outbox.start();
    db.down = true;
    await outbox.append([ev(1)]).catch(() => {});
    const flushed = outbox.flush(50);
    await settle();
    timers.fire((ms) => ms === 50);
    await expect(flushed).resolves.toBe(false);
    outbox.close();
    expect(timers.pending.size).toBe(0);
    expect(logger.find('error', 'closed with 1 event(s) not stored')).toHaveLength(1);
    const writes = db.writes;
    db.down = false;
    await settle();
    expect(db.writes).toBe(writes);
    await expect(outbox.append([ev(2)])).rejects.toThrow(/closed/);
    expect(outbox.stats.dropped).toBe(1);
  });

  it('validates its options', () => {
    const w = async () => 0;
    expect(() => new Outbox(w, { limit: 0 })).toThrow(/outboxLimit.*0/);
    expect(() => new Outbox(w, { retry: { initialMs: 500, maxMs: 100 } })).toThrow(/maxMs/);
    expect(() => new Outbox(w, { retry: { initialMs: -1 } })).toThrow(/-1/);
  });
});

describe("an emit failure is reported once, through the holder's logger (issue 9 item 8)", () => {
  const failing = (workspaceId = 'ws-fail'): EventSink => ({
    workspaceId,
    append: async () => {
      throw new Error('sink unavailable');
    },
  });

  /** Spies on every console method a logger default could reach. */
  function consoleSpies() {
    return (['error', 'warn', 'info', 'log', 'debug'] as const).map((m) =>
      vi.spyOn(console, m).mockImplementation(() => {}),
    );
  }

  afterEach(() => {
    vi.restoreAllMocks();
    resetHolderForTests();
  });

  it('without a logger of its own: one error line per failure on the holder logger, none on console', async () => {
    const spies = consoleSpies();
    const holderLogger = recordingLogger();
    const holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      logger: holderLogger,
    });
    const emit = makeEmitListener(failing());
    holder.addListener(emit);
    await expect(holder.send({ type: 'claim.acquired' })).resolves.toMatchObject({
      primaryState: 'active',
    });
    const lines = holderLogger.find('error');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('"kora.operational_state.emit"');
    expect(lines[0]).toContain('OperationalStateEmitError');
    expect(lines[0]).toContain('sink unavailable');
    expect(holderLogger.lines).toHaveLength(1);
    for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    expect(emit.stats).toMatchObject({ emitted: 0, failures: 1 });
    expect(emit.stats.lastError).toContain('sink unavailable');
    expect(holder.stats.listenerFailures).toBe(1);
    // The transition stands; the next failure is the next line, still exactly one.
    await holder.send({ type: 'claim.released' });
    expect(holder.current.primaryState).toBe('ready');
    expect(holderLogger.find('error')).toHaveLength(2);
    expect(emit.stats.failures).toBe(2);
    for (const spy of spies) expect(spy).not.toHaveBeenCalled();
  });

  it('without a logger, called directly, it rejects with the OperationalStateEmitError (counted)', async () => {
    const spies = consoleSpies();
    const { holder, changes } = recorded('ready');
    await holder.send({ type: 'claim.acquired' });
    const emit = makeEmitListener(failing());
    const { old, next, record } = changes[0]!;
    const err = await emit(old, next, record).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationalStateEmitError);
    expect(emit.stats.failures).toBe(1);
    for (const spy of spies) expect(spy).not.toHaveBeenCalled();
  });

  it('with a logger: one line there, nothing on the holder logger or console', async () => {
    const spies = consoleSpies();
    const holderLogger = recordingLogger();
    const emitLogger = recordingLogger();
    const holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      logger: holderLogger,
    });
    const emit = makeEmitListener(failing(), { logger: emitLogger });
    holder.addListener(emit);
    await holder.send({ type: 'claim.acquired' });
    expect(emitLogger.find('error', '[kora.operational_state.emit]')).toHaveLength(1);
    expect(emitLogger.lines).toHaveLength(1);
    expect(holderLogger.lines).toEqual([]);
    expect(holder.stats.listenerFailures).toBe(0);
    for (const spy of spies) expect(spy).not.toHaveBeenCalled();
  });

  it("wireOperationalState: each failure once on the holder's logger, none on console", async () => {
    const spies = consoleSpies();
    const wireLogger = recordingLogger();
    const holderLogger = recordingLogger();
    const summary = await wireOperationalState({
      sink: failing('ws-wire'),
      logger: wireLogger,
      holderOptions: { logger: holderLogger },
      gates: [{ id: 'config', gateClass: 'invariant', check: async () => true }],
    });
    expect(summary.result).toBe('ready');
    expect(getHolder()!.logger).toBe(holderLogger);
    // One change (booting → ready), one failed emit, one line — on the holder's logger.
    const lines = holderLogger.find('error');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('[kora.operational_state.emit]');
    expect(lines[0]).toContain('sink unavailable');
    expect(wireLogger.find('error')).toEqual([]);
    for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    await getHolder()!.send({ type: 'claim.acquired' });
    expect(holderLogger.find('error')).toHaveLength(2);
    expect(getHolder()!.stats.listenerFailures).toBe(0);
  });
});

describe('the emit listener batches concurrent transitions (issue 12)', () => {
  const burst = (holder: OperationalStateHolder, n: number) => {
    const sent: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const ready = holder.current.primaryState === 'ready';
      sent.push(holder.send({ type: ready ? 'claim.acquired' : 'claim.released' }));
    }
    return Promise.all(sent);
  };

  it('300 concurrent transitions → one append call, events in commit order, seq gapless', async () => {
    const sink = createMemorySink({ workspaceId: 'ws-1' });
    const holder = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const emit = makeEmitListener(sink, { instanceId: 'i-1' });
    holder.addListener(emit);
    await burst(holder, 300);
    expect(sink.appends).toBe(1);
    expect(emit.batches).toEqual({ batches: 1, changes: 300, largest: 300 });
    expect(sink.events.map((e) => e.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(sink.events.map((e) => e.payload.to_primary_state)).toEqual(
      sink.events.map((_, i) => (i % 2 === 0 ? 'active' : 'ready')),
    );
    // Sequential transitions still make one call each.
    await burst(holder, 1);
    await burst(holder, 1);
    expect(sink.appends).toBe(3);
  });

  it('a failed batch rejects every member: each reported once, none resolves before its events are stored', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const sink: EventSink = {
      workspaceId: 'ws-1',
      append: async () => {
        await gate;
        throw new Error('store down');
      },
    };
    const holder = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const logger = recordingLogger();
    const emit = makeEmitListener(sink, { logger });
    holder.addListener(emit);
    let settled = false;
    const done = burst(holder, 5).then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    release();
    await done;
    expect(emit.stats).toMatchObject({ emitted: 0, failures: 5 });
    expect(logger.find('error', '[kora.operational_state.emit]')).toHaveLength(5);
  });

  it('with appendEach, each change gets its own answer: a refused one fails alone', async () => {
    const stored: ChainEvent[][] = [];
    let calls = 0;
    const sink: EventSink = {
      workspaceId: 'ws-1',
      append: async () => {
        throw new Error('not used');
      },
      appendEach(changes) {
        calls++;
        return changes.map((events) => {
          if (events[0]!.seq === 2) return Promise.reject(new Error('refused'));
          stored.push(events);
          return Promise.resolve();
        });
      },
    };
    const holder = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const logger = recordingLogger();
    const emit = makeEmitListener(sink, { logger });
    holder.addListener(emit);
    await burst(holder, 3);
    expect(calls).toBe(1);
    expect(stored.map((e) => e[0]!.seq)).toEqual([1, 3]);
    expect(emit.stats).toMatchObject({ emitted: 2, failures: 1 });
    expect(logger.find('error', 'refused')).toHaveLength(1);
  });
});
