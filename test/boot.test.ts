/**
 * Boot wire-in (SPEC §5): the gates on the singleton holder, with a fake clock (no test
 * sleeps), asserting the summary, the holder's history and the chain events the real
 * emitter appends to an in-memory sink.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Gate, gateRetryDelay, WIRE_IN_LOG_TAG, wireOperationalState } from '../src/boot.js';
import { BOOT_FAILED_EVENT, BOOT_READY_EVENT, GENERIC_TRANSITION_EVENT } from '../src/emit.js';
import { getHolder, initHolder, resetHolderForTests } from '../src/holder.js';
import { createMemorySink } from '../src/sinks/memory.js';
import type { ChainEvent, EventSink } from '../src/sinks/types.js';
import { fakeClock } from './support/fakeClock.js';
import { recordingLogger } from './support/logger.js';

afterEach(() => {
  resetHolderForTests();
});

const pass = (id: string, extra: Partial<Gate> = {}): Gate => ({
  id,
  gateClass: 'invariant',
  check: async () => true,
  ...extra,
});

/** A check answering from a script: one entry per call, the last repeated. */
function scripted(
  answers: (boolean | { ok: boolean; detail?: string; retry?: boolean } | Error)[],
) {
  let calls = 0;
  const check = async () => {
    const a = answers[Math.min(calls++, answers.length - 1)]!;
    if (a instanceof Error) throw a;
    return a;
  };
  return { check, calls: () => calls };
}

function setup() {
  const sink = createMemorySink({ workspaceId: 'ws-boot' });
  const clock = fakeClock();
  const logger = recordingLogger();
  const base = { sink, sleep: clock.sleep, now: clock.now, logger };
  const types = () => sink.events.map((e) => e.event_type);
  const payloadOf = (type: string) => sink.events.find((e) => e.event_type === type)?.payload;
  return { sink, clock, logger, base, types, payloadOf };
}

describe('wireOperationalState: gates', () => {
  it('all pass → ready, permission normal, kora.boot.ready with every gate result', async () => {
    const { base, types, payloadOf, sink } = setup();
    const summary = await wireOperationalState({
      ...base,
      gates: [
        pass('config'),
        {
          id: 'db',
          gateClass: 'transient',
          reason: 'substrate',
          check: async () => ({ ok: true, detail: 'pong' }),
        },
        pass('epoch', { gateClass: 'invariant_pause' }),
      ],
    });
    expect(summary.result).toBe('ready');
    expect(summary.failedGate).toBeUndefined();
    expect(summary.gates.map((g) => [g.gate_id, g.gate_class, g.outcome, g.attempts])).toEqual([
      ['config', 'invariant', 'pass', 1],
      ['db', 'transient', 'pass', 1],
      ['epoch', 'invariant_pause', 'pass', 1],
    ]);
    const holder = getHolder()!;
    expect(holder.current).toEqual({
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: [],
    });
    expect(holder.history().map((r) => r.event)).toEqual(['boot.gates_passed']);
    expect(types()).toEqual([GENERIC_TRANSITION_EVENT, BOOT_READY_EVENT]);
    expect(payloadOf(BOOT_READY_EVENT)).toMatchObject({
      from_primary_state: 'booting',
      to_primary_state: 'ready',
      claim_permission: 'normal',
      gates: [
        { gate_id: 'config', gate_class: 'invariant', outcome: 'pass', attempts: 1, detail: null },
        { gate_id: 'db', gate_class: 'transient', outcome: 'pass', attempts: 1, detail: 'pong' },
        { gate_id: 'epoch', gate_class: 'invariant_pause', outcome: 'pass', attempts: 1 },
      ],
    });
    expect(sink.events.map((e) => e.seq)).toEqual([1, 2]);
  });

  it('no gates → ready at once', async () => {
    const { base } = setup();
    expect(await wireOperationalState(base)).toEqual({ result: 'ready', gates: [] });
    expect(getHolder()!.current.primaryState).toBe('ready');
  });

  it('invariant fail → stopped, later gates not run, kora.boot.failed names the gate', async () => {
    const { base, types, payloadOf, clock } = setup();
    const later = scripted([true]);
    const summary = await wireOperationalState({
      ...base,
      gates: [
        pass('config'),
        {
          id: 'schema',
          gateClass: 'invariant',
          check: async () => {
            clock.advance(40);
            return { ok: false, detail: 'schema 6 < 7' };
          },
        },
        { id: 'after', gateClass: 'invariant', check: later.check },
      ],
    });
    expect(summary.result).toBe('stopped');
    expect(summary.failedGate).toEqual({
      gate_id: 'schema',
      gate_class: 'invariant',
      outcome: 'fail',
      attempts: 1,
      elapsed_ms: 40,
      detail: 'schema 6 < 7',
    });
    expect(summary.gates.map((g) => g.gate_id)).toEqual(['config', 'schema']);
    expect(later.calls()).toBe(0);
    expect(getHolder()!.current).toEqual({
      primaryState: 'stopped',
      claimPermission: 'none',
      degradationReasons: [],
    });
    expect(types()).toEqual([GENERIC_TRANSITION_EVENT, BOOT_FAILED_EVENT]);
    expect(payloadOf(BOOT_FAILED_EVENT)).toMatchObject({
      to_primary_state: 'stopped',
      failed_gate_id: 'schema',
      failed_detail: 'schema 6 < 7',
      gates: [
        { gate_id: 'config', outcome: 'pass' },
        { gate_id: 'schema', outcome: 'fail', elapsed_ms: 40 },
      ],
    });
    expect(payloadOf(GENERIC_TRANSITION_EVENT)?.trigger).toContain('invariant gate failure');
  });

  it('transient fail then pass: retries with backoff, the reason staged then cleared', async () => {
    const { base, types, payloadOf, clock, sink } = setup();
    const db = scripted([
      { ok: false, detail: 'connection refused' },
      new Error('ECONNRESET'),
      { ok: true, detail: 'pong' },
    ]);
    const seen: string[][] = [];
    const summary = await wireOperationalState({
      ...base,
      sleep: async (ms) => {
        // The reason is visible while the gate is being retried.
        seen.push([...getHolder()!.current.degradationReasons]);
        await clock.sleep(ms);
      },
      gates: [{ id: 'db', gateClass: 'transient', reason: 'substrate', check: db.check }],
    });
    expect(summary.result).toBe('ready');
    expect(summary.gates).toEqual([
      {
        gate_id: 'db',
        gate_class: 'transient',
        outcome: 'pass',
        attempts: 3,
        elapsed_ms: 6000,
        detail: 'pong',
      },
    ]);
    expect(clock.sleeps).toEqual([2000, 4000]);
    expect(seen).toEqual([['substrate'], ['substrate']]);
    const holder = getHolder()!;
    expect(holder.current.degradationReasons).toEqual([]);
    expect(holder.history().map((r) => [r.event, r.degradation_reasons])).toEqual([
      ['boot.gate_retry', ['substrate']],
      ['boot.gate_retry', ['substrate']],
      ['update', []],
      ['boot.gates_passed', []],
    ]);
    const retries = holder.history().filter((r) => r.event === 'boot.gate_retry');
    expect(retries[1]!.details).toEqual({
      gate_id: 'db',
      attempt: 2,
      detail: 'unexpected exception: ECONNRESET',
    });
    expect(types()).toEqual([
      GENERIC_TRANSITION_EVENT,
      GENERIC_TRANSITION_EVENT,
      GENERIC_TRANSITION_EVENT,
      GENERIC_TRANSITION_EVENT,
      BOOT_READY_EVENT,
    ]);
    expect(sink.events[0]!.payload).toMatchObject({
      from_primary_state: 'booting',
      to_primary_state: 'booting',
      degradation_reasons: ['substrate'],
    });
    expect(payloadOf(BOOT_READY_EVENT)).toMatchObject({
      degradation_reasons: [],
      gates: [{ gate_id: 'db', outcome: 'pass', attempts: 3, elapsed_ms: 6000 }],
    });
  });

  it('a reason held before the boot is not cleared by a passing gate', async () => {
    const { base } = setup();
    const db = scripted([false, true]);
    const summary = await wireOperationalState({
      ...base,
      holderOptions: { initial: { degradationReasons: ['auth'] } },
      gates: [{ id: 'auth', gateClass: 'transient', reason: 'auth', check: db.check }],
    });
    expect(summary.result).toBe('ready');
    expect(getHolder()!.current.degradationReasons).toEqual(['auth']);
  });

  it('budget exhausted → stopped after 5 attempts; backoff 2 s doubling, capped', async () => {
    const { base, types, payloadOf, clock } = setup();
    const db = scripted([{ ok: false, detail: 'connection refused' }]);
    const summary = await wireOperationalState({
      ...base,
      retry: { maxDelayMs: 10_000 },
      gates: [{ id: 'db', gateClass: 'transient', reason: 'substrate', check: db.check }],
    });
    expect(db.calls()).toBe(5);
    expect(clock.sleeps).toEqual([2000, 4000, 8000, 10_000]);
    expect(summary.result).toBe('stopped');
    expect(summary.failedGate).toMatchObject({
      gate_id: 'db',
      outcome: 'fail',
      attempts: 5,
      elapsed_ms: 24_000,
      detail: 'retry budget exhausted after 5 attempt(s): connection refused',
    });
    const holder = getHolder()!;
    expect(holder.history().map((r) => r.event)).toEqual([
      'boot.gate_retry',
      'boot.gate_retry',
      'boot.gate_retry',
      'boot.gate_retry',
      'boot.gate_failed',
    ]);
    // The failure leaves the reason standing: it says what stopped the boot.
    expect(holder.current).toEqual({
      primaryState: 'stopped',
      claimPermission: 'none',
      degradationReasons: ['substrate'],
    });
    expect(types().filter((t) => t === BOOT_FAILED_EVENT)).toHaveLength(1);
    expect(payloadOf(BOOT_FAILED_EVENT)).toMatchObject({
      failed_gate_id: 'db',
      failed_detail: 'retry budget exhausted after 5 attempt(s): connection refused',
      gates: [{ gate_id: 'db', gate_class: 'transient', outcome: 'fail', attempts: 5 }],
    });
  });

  it('a transient failure the check marks retry: false (no retry can fix it) → stopped at once', async () => {
    const { base, payloadOf, clock, logger } = setup();
    const db = scripted([
      { ok: false, detail: 'connection refused' },
      { ok: false, detail: 'database "nope" does not exist', retry: false },
      true,
    ]);
    const summary = await wireOperationalState({
      ...base,
      gates: [{ id: 'db', gateClass: 'transient', reason: 'substrate', check: db.check }],
    });
    // Retried while it could pass; stopped on the answer that said it never will.
    expect(db.calls()).toBe(2);
    expect(clock.sleeps).toEqual([2000]);
    expect(summary.result).toBe('stopped');
    expect(summary.failedGate).toMatchObject({
      gate_id: 'db',
      outcome: 'fail',
      attempts: 2,
      detail: 'database "nope" does not exist',
    });
    const holder = getHolder()!;
    expect(holder.history().map((r) => r.event)).toEqual(['boot.gate_retry', 'boot.gate_failed']);
    expect(holder.history()[1]!.trigger).toBe('failure no retry can fix: "db"');
    expect(payloadOf(BOOT_FAILED_EVENT)).toMatchObject({
      failed_gate_id: 'db',
      failed_detail: 'database "nope" does not exist',
    });
    expect(
      logger.find('error', 'boot stopped: gate "db" failed: database "nope" does not exist'),
    ).toHaveLength(1);
  });

  it('retry options are honoured: attempts, delay, factor', async () => {
    expect(
      [1, 2, 3, 4, 5, 6].map((n) =>
        gateRetryDelay(n, { attempts: 9, initialDelayMs: 2000, factor: 2, maxDelayMs: 30_000 }),
      ),
    ).toEqual([2000, 4000, 8000, 16_000, 30_000, 30_000]);
    const { base, clock } = setup();
    const db = scripted([false]);
    const summary = await wireOperationalState({
      ...base,
      retry: { attempts: 3, initialDelayMs: 100, factor: 3 },
      gates: [{ id: 'db', gateClass: 'transient', check: db.check }],
    });
    expect(summary.result).toBe('stopped');
    expect(db.calls()).toBe(3);
    expect(clock.sleeps).toEqual([100, 300]);
  });

  it('invariant_pause fail → paused with substrate (boot.epoch_mismatch), gate results recorded', async () => {
    const { base, types, payloadOf } = setup();
    const summary = await wireOperationalState({
      ...base,
      gates: [
        pass('config'),
        {
          id: 'epoch',
          gateClass: 'invariant_pause',
          check: async () => ({ ok: false, detail: 'epoch 41 ≠ 42' }),
        },
        pass('never'),
      ],
    });
    expect(summary.result).toBe('paused');
    expect(summary.failedGate).toMatchObject({ gate_id: 'epoch', detail: 'epoch 41 ≠ 42' });
    const holder = getHolder()!;
    expect(holder.current).toEqual({
      primaryState: 'paused',
      claimPermission: 'none',
      degradationReasons: ['substrate'],
    });
    const record = holder.history().at(-1)!;
    expect(record.event).toBe('boot.epoch_mismatch');
    expect(record.details).toMatchObject({
      failed_gate_id: 'epoch',
      failed_detail: 'epoch 41 ≠ 42',
      gates: [{ gate_id: 'config' }, { gate_id: 'epoch', outcome: 'fail' }],
    });
    expect(types()).toEqual([GENERIC_TRANSITION_EVENT]);
    expect(payloadOf(GENERIC_TRANSITION_EVENT)).toMatchObject({
      to_primary_state: 'paused',
      degradation_reasons: ['substrate'],
    });
  });

  it('a throwing check fails with "unexpected exception: …"; odd answers fail too', async () => {
    const { base, payloadOf } = setup();
    const summary = await wireOperationalState({
      ...base,
      gates: [
        {
          id: 'config',
          gateClass: 'invariant',
          check: async () => {
            throw new Error('ENOENT: kora.toml');
          },
        },
      ],
    });
    expect(summary.result).toBe('stopped');
    expect(summary.failedGate?.detail).toBe('unexpected exception: ENOENT: kora.toml');
    expect(payloadOf(BOOT_FAILED_EVENT)).toMatchObject({
      failed_detail: 'unexpected exception: ENOENT: kora.toml',
    });

    resetHolderForTests();
    const second = setup();
    const odd = await wireOperationalState({
      ...second.base,
      gates: [{ id: 'odd', gateClass: 'invariant', check: async () => 'yes' as never }],
    });
    expect(odd.failedGate?.detail).toBe('check returned "yes", not a boolean or { ok }');
  });

  it('a check that hangs past its timeoutMs fails with "timed out after … ms"', async () => {
    const { base } = setup();
    const summary = await wireOperationalState({
      ...base,
      gates: [
        {
          id: 'hangs',
          gateClass: 'invariant',
          timeoutMs: 5,
          check: () => new Promise<boolean>(() => {}),
        },
      ],
    });
    expect(summary.result).toBe('stopped');
    expect(summary.failedGate?.detail).toBe('timed out after 5 ms');
  });

  it('a broken sink still boots; every emit failure is logged', async () => {
    const { base, logger } = setup();
    const broken: EventSink = {
      workspaceId: 'ws-broken',
      append: async () => {
        throw new Error('disk full');
      },
    };
    const summary = await wireOperationalState({
      ...base,
      sink: broken,
      gates: [pass('config')],
    });
    expect(summary.result).toBe('ready');
    expect(getHolder()!.current.primaryState).toBe('ready');
    expect(logger.find('error', '[kora.operational_state.emit]').join('\n')).toContain('disk full');
  });

  it('is idempotent: a second call returns the first boot; no second listener, no second run', async () => {
    const { base, sink } = setup();
    const gate = scripted([true]);
    const gates: Gate[] = [{ id: 'config', gateClass: 'invariant', check: gate.check }];
    const first = wireOperationalState({ ...base, gates });
    const concurrent = wireOperationalState({ ...base, gates });
    expect(concurrent).toBe(first);
    const summary = await first;
    const again = await wireOperationalState({ ...base, gates });
    expect(again).toBe(summary);
    expect(gate.calls()).toBe(1);
    await getHolder()!.send({ type: 'claim.acquired' });
    // One listener: one generic event per change.
    expect(sink.events.filter((e) => e.event_type === GENERIC_TRANSITION_EVENT)).toHaveLength(2);
  });

  it('after resetHolderForTests a call wires a new holder', async () => {
    const { base } = setup();
    await wireOperationalState(base);
    const first = getHolder();
    resetHolderForTests();
    const second = setup();
    await wireOperationalState(second.base);
    expect(getHolder()).not.toBe(first);
    expect(second.sink.events.map((e) => e.event_type)).toContain(BOOT_READY_EVENT);
  });

  it('an operator pause during the boot ends it as paused; the remaining gates do not run', async () => {
    const { base } = setup();
    const later = scripted([true]);
    const summary = await wireOperationalState({
      ...base,
      gates: [
        {
          id: 'slow',
          gateClass: 'invariant',
          check: async () => {
            await getHolder()!.send({ type: 'pause', cause: 'operator', trigger: 'operator hold' });
            return true;
          },
        },
        { id: 'later', gateClass: 'invariant', check: later.check },
      ],
    });
    expect(summary.result).toBe('paused');
    expect(later.calls()).toBe(0);
    expect(base.logger.find('warn', 'boot overtaken')).toHaveLength(1);
  });

  it('a holder already past booting → result error, logged', async () => {
    const { base } = setup();
    const h = initHolder({ logger: base.logger });
    await h.send({ type: 'boot.gates_passed' });
    const summary = await wireOperationalState(base);
    expect(summary.result).toBe('error');
    expect(summary.error).toBe('the holder is ready, not booting; gates not run');
    expect(base.logger.find('error', WIRE_IN_LOG_TAG)).toHaveLength(1);
  });

  it('a machine budget smaller than retry.attempts: the refused retry stops the boot', async () => {
    const { base } = setup();
    const db = scripted([false]);
    const summary = await wireOperationalState({
      ...base,
      holderOptions: { retryBudget: 1 },
      gates: [{ id: 'db', gateClass: 'transient', check: db.check }],
    });
    expect(summary.result).toBe('stopped');
    expect(db.calls()).toBe(2);
    expect(base.logger.find('warn', 'retry refused')).toHaveLength(1);
  });
});

describe('wireOperationalState: options', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['missing sink', { sink: undefined }, 'sink must be an EventSink'],
    ['duplicate gate ids', { gates: [pass('a'), pass('a')] }, 'gate id "a" is used twice'],
    [
      'unknown gate class',
      { gates: [pass('a', { gateClass: 'soft' as never })] },
      'unknown gate class "soft" for gate "a"',
    ],
    [
      'unknown reason',
      { gates: [pass('a', { reason: 'mood' as never })] },
      'unknown degradation reason "mood"',
    ],
    ['empty id', { gates: [pass('')] }, 'gates[0].id must be a non-empty string, got ""'],
    [
      'no check',
      { gates: [pass('a', { check: 42 as never })] },
      'gate "a" needs a check function, got 42',
    ],
    [
      'bad timeoutMs',
      { gates: [pass('a', { timeoutMs: 0 })] },
      'gate "a": timeoutMs must be a positive number, got 0',
    ],
    [
      'bad attempts',
      { retry: { attempts: 0 } },
      'retry.attempts must be a positive integer, got 0',
    ],
    ['bad factor', { retry: { factor: 0.5 } }, 'retry.factor must be a number ≥ 1, got 0.5'],
    ['bad delay', { retry: { initialDelayMs: -1 } }, 'retry.initialDelayMs must be a non-negative'],
    ['bad sleep', { sleep: 'soon' }, 'sleep must be a function, got "soon"'],
    [
      'initial not booting',
      { holderOptions: { initial: { primaryState: 'ready' } } },
      'holderOptions.initial may only set degradationReasons',
    ],
  ];
  for (const [name, over, message] of cases) {
    it(`${name} → result error naming the value, logged, holder not created`, async () => {
      const { base, logger } = setup();
      const summary = await wireOperationalState({ ...base, ...over } as never);
      expect(summary.result).toBe('error');
      expect(summary.error).toContain(message);
      expect(logger.find('error', WIRE_IN_LOG_TAG).join('\n')).toContain(message);
      expect(getHolder()).toBeUndefined();
    });
  }

  it('never throws, even for a non-object', async () => {
    const logger = recordingLogger();
    const original = console.error;
    console.error = logger.error;
    try {
      await expect(wireOperationalState(null as never)).resolves.toMatchObject({ result: 'error' });
    } finally {
      console.error = original;
    }
    expect(logger.find('error', WIRE_IN_LOG_TAG)).toHaveLength(1);
  });

  it('an unexpected failure mid-boot (the backoff sleep rejects) → result error, tagged log, no throw', async () => {
    const { base, logger, sink } = setup();
    const flaky = scripted([false, true]);
    const summary = await wireOperationalState({
      ...base,
      sleep: async () => {
        throw new Error('timer wheel broke');
      },
      gates: [{ id: 'queue', gateClass: 'transient', reason: 'dispatch', check: flaky.check }],
    });
    expect(summary).toMatchObject({ result: 'error', error: 'timer wheel broke' });
    expect(logger.find('error', WIRE_IN_LOG_TAG).join('\n')).toContain(
      'boot failed unexpectedly: timer wheel broke',
    );
    // The retry that was under way is recorded; nothing pretends the boot finished.
    expect(getHolder()!.current.primaryState).toBe('booting');
    expect(
      getHolder()!
        .history()
        .map((r) => r.event),
    ).toEqual(['boot.gate_retry']);
    expect(sink.events.map((e) => e.event_type)).toEqual([GENERIC_TRANSITION_EVENT]);
    expect(flaky.calls()).toBe(1);
    // The wire-in stays idempotent after an error: the same summary, no second boot.
    expect(await wireOperationalState({ ...base })).toBe(summary);
    expect(flaky.calls()).toBe(1);
  });

  it('chain events carry the emit instance id given', async () => {
    const { base, sink } = setup();
    await wireOperationalState({ ...base, emit: { instanceId: 'agent-7:boot-1' } });
    expect(sink.events.map((e: ChainEvent) => e.instance_id)).toEqual([
      'agent-7:boot-1',
      'agent-7:boot-1',
    ]);
  });
});
