import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeEmitListener } from '../src/emit.js';
import {
  createOperationalStateHolder,
  getHolder,
  InvalidStateTransitionError,
  initHolder,
  type OperationalStateHolder,
  resetHolderForTests,
  type TransitionRecord,
} from '../src/holder.js';
import { createMemorySink } from '../src/sinks/memory.js';
import type { OperationalState } from '../src/vocabulary.js';
import { recordingLogger } from './support/logger.js';

const ready = (h: OperationalStateHolder) => h.transitionTo('ready', 'all §9.2 gates pass');
const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
};

afterEach(() => resetHolderForTests());

describe('holder: the seed cases', () => {
  it('constructs in booting/none with no reasons, and current is a frozen snapshot', () => {
    const h = createOperationalStateHolder();
    expect(h.current).toEqual({
      primaryState: 'booting',
      claimPermission: 'none',
      degradationReasons: [],
    });
    expect(Object.isFrozen(h.current)).toBe(true);
    expect(Object.isFrozen(h.current.degradationReasons)).toBe(true);
    expect(h.snapshot.value).toEqual({ live: { unpaused: 'booting' } });
    expect(h.snapshot.status).toBe('active');
  });

  it('constructs from a partial initial state, defaulting claim permission by state', () => {
    expect(createOperationalStateHolder({ initial: { primaryState: 'ready' } }).current).toEqual({
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: [],
    });
    const h = createOperationalStateHolder({
      initial: { primaryState: 'paused', degradationReasons: ['operator', 'cost', 'operator'] },
    });
    expect(h.current).toEqual({
      primaryState: 'paused',
      claimPermission: 'none',
      degradationReasons: ['cost', 'operator'],
    });
    expect(h.snapshot.value).toEqual({ live: 'paused' });
  });

  it('a valid arrow updates the state and resolves with it', async () => {
    const h = createOperationalStateHolder();
    const next = await ready(h);
    expect(next).toEqual({
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: [],
    });
    expect(h.current).toBe(next);
    expect(await h.transitionTo('active', 'claim acquired')).toMatchObject({
      primaryState: 'active',
    });
  });

  it('an invalid arrow rejects with the offending pair in the message, state unchanged', async () => {
    const h = createOperationalStateHolder();
    const before = h.current;
    const err = await h.transitionTo('active', 'claim acquired').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidStateTransitionError);
    expect((err as Error).message).toContain('booting → active');
    expect((err as Error).message).toContain('"claim acquired"');
    expect(err).toMatchObject({ from: 'booting', to: 'active', trigger: 'claim acquired' });
    expect(h.current).toBe(before);
    expect(h.history()).toEqual([]);
    expect(h.stats.rejected).toBe(1);
  });

  it('same primary state bypasses the table (degradation update on READY)', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const next = await h.transitionTo('ready', 'auth token failing', { addReasons: ['auth'] });
    expect(next).toEqual({
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: ['auth'],
    });
    expect(h.history().at(-1)).toMatchObject({
      from_state: 'ready',
      to_state: 'ready',
      event: 'update',
    });
  });

  it('the self-transition row BOOTING → BOOTING ("transient gate failure") works', async () => {
    const h = createOperationalStateHolder();
    await h.transitionTo('booting', 'transient gate failure', { addReasons: ['substrate'] });
    expect(h.current).toEqual({
      primaryState: 'booting',
      claimPermission: 'none',
      degradationReasons: ['substrate'],
    });
    // And the XState-native row 2 event, with its retry budget.
    await h.send({ type: 'boot.gate_retry', gate: 'db' });
    expect(h.history().at(-1)).toMatchObject({
      from_state: 'booting',
      to_state: 'booting',
      event: 'boot.gate_retry',
      trigger: 'transient gate failure',
    });
  });

  it('composes claim permission + added + removed reasons', async () => {
    const h = createOperationalStateHolder({
      initial: { primaryState: 'ready', degradationReasons: ['cost', 'dispatch'] },
    });
    const next = await h.transitionTo('ready', 'partial recovery', {
      claimPermission: 'critical_only',
      addReasons: ['token_expiring', 'auth'],
      removeReasons: ['dispatch'],
    });
    expect(next).toEqual({
      primaryState: 'ready',
      claimPermission: 'critical_only',
      degradationReasons: ['auth', 'cost', 'token_expiring'],
    });
  });

  it('a listener gets (old, next, record) and holder.current is already next', async () => {
    const h = createOperationalStateHolder();
    const seen: [OperationalState, OperationalState, TransitionRecord, OperationalState][] = [];
    h.addListener((old, next, record) => {
      seen.push([old, next, record, h.current]);
    });
    const next = await ready(h);
    expect(seen).toHaveLength(1);
    const [old, got, record, currentThen] = seen[0]!;
    expect(old.primaryState).toBe('booting');
    expect(got).toBe(next);
    expect(currentThen).toBe(next);
    expect(record).toMatchObject({
      trigger: 'all §9.2 gates pass',
      from_state: 'booting',
      to_state: 'ready',
    });
  });

  it('a throwing listener does not block later listeners', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ logger });
    const calls: string[] = [];
    h.addListener(
      () => {
        calls.push('a');
        throw new Error('boom');
      },
      { name: 'thrower' },
    );
    h.addListener(() => {
      calls.push('b');
    });
    await ready(h);
    expect(calls).toEqual(['a', 'b']);
    expect(logger.find('error', '"thrower" failed on transition #1')).toHaveLength(1);
    expect(h.stats.listenerFailures).toBe(1);
  });

  it('a throwing or rejecting listener does not roll the state back', async () => {
    const h = createOperationalStateHolder({ logger: recordingLogger() });
    h.addListener(() => {
      throw new Error('sync boom');
    });
    h.addListener(async () => {
      throw new Error('async boom');
    });
    await expect(ready(h)).resolves.toMatchObject({ primaryState: 'ready' });
    expect(h.current.primaryState).toBe('ready');
    expect(h.stats.listenerFailures).toBe(2);
  });

  it('concurrent transitionTo calls serialize: none lost, listener order = commit order', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const order: string[] = [];
    h.addListener(async (_old, _next, record) => {
      // A slow listener widens any race window between concurrent callers.
      await new Promise((r) => setTimeout(r, 5));
      order.push(record.trigger);
    });
    const triggers = Array.from({ length: 8 }, (_, i) => `t${i}`);
    const results = await Promise.all(
      triggers.map((t, i) =>
        h.transitionTo('ready', t, { addReasons: i % 2 ? ['auth'] : ['cost'] }),
      ),
    );
    expect(results).toHaveLength(8);
    expect(order).toEqual(triggers);
    expect(h.history().map((r) => r.trigger)).toEqual(triggers.slice(-8).slice(-10));
    expect(h.current.degradationReasons).toEqual(['auth', 'cost']);
  });

  it('getHolder() is undefined before init', () => {
    expect(getHolder()).toBeUndefined();
  });

  it('initHolder constructs the singleton; the first call wins', async () => {
    const first = initHolder({ initial: { primaryState: 'ready' } });
    const second = initHolder({ initial: { primaryState: 'paused' } });
    expect(second).toBe(first);
    expect(getHolder()).toBe(first);
    expect(getHolder()!.current.primaryState).toBe('ready');
  });

  it('resetHolderForTests clears the singleton', () => {
    const first = initHolder();
    resetHolderForTests();
    expect(getHolder()).toBeUndefined();
    expect(initHolder()).not.toBe(first);
  });
});

describe('holder: transitions', () => {
  it('transitionTo carries its details and an explicit pause cause into the record', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    await h.transitionTo('ready', 'recheck', { details: { probe: 'db', ms: 12 } });
    // A trigger with no cause hint: the cause is the one given, not the fallback 'operator'.
    await h.transitionTo('paused', 'ledger says so', { cause: 'cost_limit' });
    expect(h.history()).toMatchObject([
      { event: 'update', trigger: 'recheck', details: { probe: 'db', ms: 12 } },
      { event: 'pause', trigger: 'ledger says so', cause: 'cost_limit' },
    ]);
    expect(h.history()[0]).not.toHaveProperty('cause');
    expect(h.history()[1]).not.toHaveProperty('details');
  });

  it('send() is the XState-native path and resolves with the new state', async () => {
    const h = createOperationalStateHolder();
    await h.send({ type: 'boot.gates_passed', claimPermission: 'critical_only' });
    expect(h.current).toMatchObject({ primaryState: 'ready', claimPermission: 'critical_only' });
    await h.send({ type: 'claim.acquired' });
    await h.send({ type: 'pause', cause: 'cost_limit' });
    expect(h.current).toEqual({
      primaryState: 'paused',
      claimPermission: 'none',
      degradationReasons: ['cost'],
    });
    expect(h.history().at(-1)).toMatchObject({
      event: 'pause',
      cause: 'cost_limit',
      trigger: 'STOP-KORA L1–3, cost 100%, operator',
    });
  });

  it('transitionTo picks the row by trigger text where two rows share a pair', async () => {
    const boot = createOperationalStateHolder();
    await boot.transitionTo('stopped', 'STOP-KORA L5 from the operator console');
    expect(boot.history().at(-1)?.event).toBe('stop');

    const failed = createOperationalStateHolder();
    await failed.transitionTo('stopped', 'invariant gate failure: schema');
    expect(failed.history().at(-1)?.event).toBe('boot.gate_failed');

    const spent = createOperationalStateHolder();
    await spent.transitionTo('stopped', 'Retry budget exhausted: "event_store"');
    expect(spent.history().at(-1)?.event).toBe('boot.gate_failed');

    // Without a keyword, booting → stopped is the plain stop (row 15), not a boot failure.
    const plain = createOperationalStateHolder();
    await plain.transitionTo('stopped', 'SIGTERM received');
    expect(plain.history().at(-1)?.event).toBe('stop');

    const epoch = createOperationalStateHolder();
    await epoch.transitionTo('paused', 'gate 3b epoch mismatch');
    expect(epoch.history().at(-1)?.event).toBe('boot.epoch_mismatch');
    expect(epoch.current.degradationReasons).toEqual(['substrate']);

    const pausedOp = createOperationalStateHolder();
    await pausedOp.transitionTo('paused', 'operator pause');
    expect(pausedOp.history().at(-1)).toMatchObject({ event: 'pause', cause: 'operator' });
    expect(pausedOp.current.degradationReasons).toEqual(['operator']);

    const credit = createOperationalStateHolder({
      initial: { primaryState: 'paused', degradationReasons: ['cost'] },
    });
    await credit.transitionTo('ready', 'monthly credit refresh confirmed', {
      reconciledSpendUsd: 10,
      thresholdUsd: 100,
    });
    expect(credit.history().at(-1)?.event).toBe('resume.credit_refresh');
    expect(credit.current).toEqual({
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: [],
    });

    const reset = createOperationalStateHolder({
      initial: { primaryState: 'paused', degradationReasons: ['operator'] },
    });
    await reset.transitionTo('ready', 'kora_control reset');
    expect(reset.history().at(-1)?.event).toBe('resume.operator_reset');
    expect(reset.current.degradationReasons).toEqual([]);
  });

  it('transitionTo infers the pause cause from the trigger text', async () => {
    const cost = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    await cost.transitionTo('paused', 'cost 100% of monthly budget');
    expect(cost.history().at(-1)?.cause).toBe('cost_limit');
    expect(cost.current.degradationReasons).toEqual(['cost']);
    const stopKora = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    await stopKora.transitionTo('paused', 'STOP-KORA L2');
    expect(stopKora.history().at(-1)?.cause).toBe('stop_kora');
    expect(stopKora.current.degradationReasons).toEqual([]);
  });

  it('a failed guard rejects and names the guard; the state is unchanged', async () => {
    const h = createOperationalStateHolder({
      initial: { primaryState: 'paused', degradationReasons: ['cost'] },
    });
    const err = await h
      .send({ type: 'resume.credit_refresh', reconciledSpendUsd: 120, thresholdUsd: 100 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidStateTransitionError);
    expect((err as Error).message).toMatch(/paused → ready.*reconciled spend < threshold/);
    expect(h.current.primaryState).toBe('paused');
  });

  it('the retry budget allows retryBudget retries per gate, then rejects', async () => {
    const h = createOperationalStateHolder({ retryBudget: 2 });
    await h.send({ type: 'boot.gate_retry', gate: 'db' });
    await h.send({ type: 'boot.gate_retry', gate: 'db' });
    await expect(h.send({ type: 'boot.gate_retry', gate: 'db' })).rejects.toThrow(
      /retry budget not exhausted/,
    );
    // Per gate: another gate still has its own budget.
    await expect(h.send({ type: 'boot.gate_retry', gate: 'auth' })).resolves.toMatchObject({
      primaryState: 'booting',
    });
  });

  it('claim permission stays none in booting, paused and stopped', async () => {
    const h = createOperationalStateHolder();
    await expect(h.transitionTo('booting', 'x', { claimPermission: 'normal' })).rejects.toThrow(
      /claim permission "normal" is not allowed in booting/,
    );
    await expect(h.send({ type: 'pause', claimPermission: 'critical_only' })).rejects.toThrow(
      InvalidStateTransitionError,
    );
    expect(h.current).toEqual({
      primaryState: 'booting',
      claimPermission: 'none',
      degradationReasons: [],
    });
    await h.send({ type: 'pause' });
    await expect(h.send({ type: 'update', claimPermission: 'normal' })).rejects.toThrow(
      /not allowed in paused/,
    );
    await h.send({ type: 'update', claimPermission: 'none', addReasons: ['auth'] });
    expect(h.current.claimPermission).toBe('none');
  });

  it('claim.released while paused clears only the held-claim flag', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    await h.send({ type: 'claim.acquired' });
    await h.send({ type: 'pause', cause: 'cost_limit' });
    expect(h.snapshot.context.claimHeld).toBe(true);
    // The credit refresh guard refuses while the claim is still held (§9.6).
    await expect(
      h.send({ type: 'resume.credit_refresh', reconciledSpendUsd: 1, thresholdUsd: 2 }),
    ).rejects.toThrow(InvalidStateTransitionError);
    await h.send({ type: 'claim.released' });
    expect(h.current.primaryState).toBe('paused');
    expect(h.snapshot.context.claimHeld).toBe(false);
    await expect(h.send({ type: 'claim.released' })).rejects.toThrow(/no claim is held/);
    await h.send({ type: 'resume.credit_refresh', reconciledSpendUsd: 1, thresholdUsd: 2 });
    expect(h.current.primaryState).toBe('ready');
  });

  it('nothing changes once stopped', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    await h.send({ type: 'stop' });
    expect(h.current).toEqual({
      primaryState: 'stopped',
      claimPermission: 'none',
      degradationReasons: [],
    });
    expect(h.snapshot.status).toBe('done');
    for (const attempt of [
      () => h.transitionTo('stopped', 'again'),
      () => h.transitionTo('ready', 'revive'),
      () => h.send({ type: 'update', addReasons: ['auth'] }),
      () => h.send({ type: 'stop' }),
    ]) {
      await expect(attempt()).rejects.toThrow(/stopped is final/);
    }
    expect(h.current.primaryState).toBe('stopped');
    expect(h.history()).toHaveLength(1);
  });
});

describe('holder: listeners', () => {
  it('the transition promise resolves after every listener handled it', async () => {
    const h = createOperationalStateHolder();
    const gate = deferred();
    const entered = deferred();
    let handled = false;
    h.addListener(async () => {
      entered.resolve();
      await gate.promise;
      handled = true;
    });
    let resolved = false;
    const p = ready(h).then(() => {
      resolved = true;
    });
    // The listener holds the delivery; a full turn of the event loop changes nothing.
    await entered.promise;
    await new Promise((r) => setImmediate(r));
    expect(h.current.primaryState).toBe('ready'); // committed already
    expect(resolved).toBe(false);
    gate.resolve();
    await p;
    expect(handled).toBe(true);
  });

  it('a listener may read the holder and request a transition without deadlock', async () => {
    const h = createOperationalStateHolder();
    const log: string[] = [];
    h.addListener(async (_old, next, record) => {
      log.push(`${record.seq}:${next.primaryState}`);
      if (next.primaryState === 'ready') {
        // Resolves at commit, not after the listeners (this one is still running).
        const inner = await h.transitionTo('active', 'claim acquired');
        log.push(`inner resolved ${inner.primaryState}`);
      }
    });
    await ready(h);
    expect(h.current.primaryState).toBe('active');
    expect(log.slice(0, 2)).toEqual(['1:ready', 'inner resolved active']);
    // The nested transition is delivered to the listener after the first finished.
    await vi.waitFor(() => expect(log).toEqual(['1:ready', 'inner resolved active', '2:active']));
  });

  it('a listener may request a transition after an await: it still resolves at commit', async () => {
    const h = createOperationalStateHolder();
    const log: string[] = [];
    h.addListener(async (_old, next, record) => {
      log.push(`${record.seq}:${next.primaryState}`);
      if (next.primaryState !== 'ready') return;
      await new Promise((r) => setImmediate(r)); // the asynchronous part, a later turn
      await Promise.resolve();
      const inner = await h.transitionTo('active', 'claim acquired');
      log.push(`inner resolved ${inner.primaryState}`);
    });
    await ready(h);
    expect(log).toEqual(['1:ready', 'inner resolved active', '2:active']);
    expect(h.stats.listenerTimeouts).toBe(0);
  });

  it('an async function is waited for from its first call: a change committed meanwhile waits for it', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const gate = deferred();
    const entered = deferred();
    const handled: number[] = [];
    h.addListener(async (_old, _next, record) => {
      if (record.seq === 1) {
        entered.resolve();
        await gate.promise;
      }
      handled.push(record.seq);
    });
    const first = h.transitionTo('active', 'claim acquired');
    await entered.promise; // its first call is in flight, held by the gate
    let resolved = false;
    const second = h.transitionTo('ready', 'claim released').then(() => {
      resolved = true;
    });
    await new Promise((r) => setImmediate(r));
    expect(resolved).toBe(false);
    gate.resolve();
    await Promise.all([first, second]);
    expect(handled).toEqual([1, 2]);
  });

  it('requestsTransitions: true — a plain function is in the context from its first call', async () => {
    const h = createOperationalStateHolder({ listenerTimeoutMs: 2000 });
    const log: string[] = [];
    h.addListener(
      (_old, next) => {
        if (next.primaryState !== 'ready') return undefined;
        return new Promise((r) => setImmediate(r))
          .then(() => h.transitionTo('active', 'claim acquired'))
          .then((s) => {
            log.push(`inner ${s.primaryState}`);
          });
      },
      { requestsTransitions: true },
    );
    await ready(h);
    expect(log).toEqual(['inner active']);
    expect(h.stats.listenerTimeouts).toBe(0);
  });

  it('an undeclared plain function returning a promise: no deadlock on its first, waited for after', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ listenerTimeoutMs: 2000, logger });
    const log: string[] = [];
    const gate = deferred();
    let handled = 0;
    // Not an `async function`: nothing says it has an asynchronous part until it returns one.
    h.addListener((_old, _next, record) => {
      if (record.seq === 1) {
        return Promise.resolve()
          .then(() => h.transitionTo('active', 'claim acquired'))
          .then((s) => {
            log.push(`inner ${s.primaryState}`);
          });
      }
      if (record.seq === 3) return gate.promise.then(() => void handled++);
      handled++;
      return undefined;
    });
    await ready(h);
    // The first call's own transition did not wait for the call that requested it.
    expect(log).toEqual(['inner active']);
    expect(h.stats.listenerTimeouts).toBe(0);
    expect(logger.find('error', 'did not handle')).toHaveLength(0);
    // Since then it runs in the context: a change committed while it is busy waits for it.
    const p3 = h.transitionTo('ready', 'claim released');
    await new Promise((r) => setImmediate(r)); // call 3 is in flight, held by the gate
    let resolved = false;
    const p4 = h.transitionTo('ready', 'heartbeat').then(() => {
      resolved = true;
    });
    await new Promise((r) => setImmediate(r));
    expect(resolved).toBe(false);
    gate.resolve();
    await Promise.all([p3, p4]);
    expect(handled).toBe(3);
  });

  it('requestsTransitions: false — the synchronous part is still known as inside; an outside call is not', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ listenerTimeoutMs: 100, logger });
    const log: string[] = [];
    h.addListener(
      (_old, next) => {
        if (next.primaryState !== 'ready') return;
        // Requested synchronously, from inside: resolves at commit, no deadlock.
        void h
          .transitionTo('active', 'claim acquired')
          .then((s) => log.push(`sync ${s.primaryState}`));
      },
      { name: 'plain', requestsTransitions: false },
    );
    await ready(h);
    await vi.waitFor(() => expect(log).toEqual(['sync active']));
    expect(h.stats.listenerTimeouts).toBe(0);
    // An outside caller still waits for every listener to have handled its change.
    let handled = false;
    const gate = deferred();
    h.addListener(
      async () => {
        await gate.promise;
        handled = true;
      },
      { requestsTransitions: false },
    );
    const p = h.transitionTo('ready', 'claim released').then(() => handled);
    gate.resolve();
    expect(await p).toBe(true);
  });

  it('requestsTransitions: false and a transition awaited after an await: waits for itself until the timeout (logged)', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ listenerTimeoutMs: 100, logger });
    let innerResolved!: (state: string) => void;
    const inner = new Promise<string>((r) => {
      innerResolved = r;
    });
    h.addListener(
      async (_old, next) => {
        if (next.primaryState !== 'ready') return;
        await Promise.resolve();
        const s = await h.transitionTo('active', 'claim acquired');
        innerResolved(s.primaryState);
      },
      { name: 'undeclared', requestsTransitions: false },
    );
    await ready(h);
    expect(await inner).toBe('active');
    expect(logger.find('error', '"undeclared" did not handle transition #2')).toHaveLength(1);
  });

  it('a listener never runs concurrently with itself, and sees commits in order', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    let running = 0;
    let maxRunning = 0;
    const seqs: number[] = [];
    h.addListener(async (_o, _n, record) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 1));
      seqs.push(record.seq);
      running--;
    });
    await Promise.all(Array.from({ length: 20 }, (_, i) => h.transitionTo('ready', `u${i}`)));
    expect(maxRunning).toBe(1);
    expect(seqs).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it('a listener that overruns its timeout is logged and skipped; others still run', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ listenerTimeoutMs: 50, logger });
    const stuck = deferred();
    const seen: string[] = [];
    h.addListener(() => stuck.promise, { name: 'slowpoke' });
    h.addListener((_o, next) => {
      seen.push(next.primaryState);
    });
    const next = await ready(h);
    expect(next.primaryState).toBe('ready');
    expect(seen).toEqual(['ready']);
    expect(logger.find('error', '"slowpoke" did not handle transition #1')).toHaveLength(1);
    expect(h.stats.listenerTimeouts).toBe(1);
    stuck.resolve();
  });

  it('a hung listener costs one timeout, not one per transition; it catches up in order, one at a time', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ listenerTimeoutMs: 50, logger });
    const stuck = deferred();
    const slow: number[] = [];
    let running = 0;
    let maxRunning = 0;
    h.addListener(
      async (_o, _n, record) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        if (record.seq === 1) await stuck.promise;
        slow.push(record.seq);
        running--;
      },
      { name: 'hung' },
    );
    const fast: number[] = [];
    h.addListener((_o, _n, record) => {
      fast.push(record.seq);
    });
    await ready(h); // waits the 50 ms once
    for (let i = 2; i <= 6; i++) await h.transitionTo('ready', `u${i}`);
    // The later transitions did not wait for the hung listener (no further timeouts),
    // and did not run it concurrently with its hung call.
    expect(fast).toEqual([1, 2, 3, 4, 5, 6]);
    expect(slow).toEqual([]);
    expect(logger.find('error', '"hung" did not handle transition')).toHaveLength(1);
    expect(h.stats.listenerTimeouts).toBe(1);
    // Released, it handles every queued delivery in commit order, never two at once…
    stuck.resolve();
    await vi.waitFor(() => expect(slow).toEqual([1, 2, 3, 4, 5, 6]));
    expect(maxRunning).toBe(1);
    // …and, caught up, it is waited for again.
    const seen = h.transitionTo('ready', 'u7');
    await seen;
    expect(slow.at(-1)).toBe(7);
  });

  it('addListener returns an unsubscribe', async () => {
    const h = createOperationalStateHolder();
    const seen: string[] = [];
    const off = h.addListener((_o, next) => {
      seen.push(next.primaryState);
    });
    await ready(h);
    off();
    off(); // idempotent
    await h.transitionTo('active', 'claim acquired');
    expect(seen).toEqual(['ready']);
  });

  it('refuses a listener that is not a function, naming it', () => {
    const h = createOperationalStateHolder();
    expect(() => h.addListener('nope' as never)).toThrow(/listener must be a function, got "nope"/);
  });
});

describe('holder: pipelined listeners', () => {
  it('the next change is delivered once the last delivery has started; each transition still waits for its own', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const started: number[] = [];
    const gates = new Map<number, ReturnType<typeof deferred>>();
    h.addListener(
      (_old, _next, record) => {
        // The synchronous part: runs in commit order, never interleaved.
        started.push(record.seq);
        const gate = deferred();
        gates.set(record.seq, gate);
        return gate.promise;
      },
      { pipelined: true },
    );
    const settled: number[] = [];
    const sends = [1, 2, 3].map((i) =>
      h.send({ type: 'update', trigger: `u${i}` }).then(() => settled.push(i)),
    );
    // All three deliveries start while the first one's promise is still pending.
    await vi.waitFor(() => expect(started).toEqual([1, 2, 3]));
    expect(settled).toEqual([]);
    // The second finishes first: only its transition resolves.
    gates.get(2)!.resolve();
    await vi.waitFor(() => expect(settled).toEqual([2]));
    gates.get(1)!.resolve();
    gates.get(3)!.resolve();
    await Promise.all(sends);
    expect(settled.sort()).toEqual([1, 2, 3]);
  });

  it('a plain listener is not pipelined: the second delivery waits for the first to settle', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const started: number[] = [];
    const first = deferred();
    h.addListener((_old, _next, record) => {
      started.push(record.seq);
      return record.seq === 1 ? first.promise : undefined;
    });
    const a = h.send({ type: 'update', trigger: 'a' });
    const b = h.send({ type: 'update', trigger: 'b' });
    await vi.waitFor(() => expect(started).toEqual([1]));
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([1]);
    first.resolve();
    await Promise.all([a, b]);
    expect(started).toEqual([1, 2]);
  });

  it('a listener may ask for it itself (as the chain emit listener does)', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const started: number[] = [];
    const gate = deferred();
    const listener = Object.assign(
      (_old: OperationalState, _next: OperationalState, record: TransitionRecord) => {
        started.push(record.seq);
        return gate.promise;
      },
      { pipelined: true as const },
    );
    h.addListener(listener);
    const sends = [h.send({ type: 'update' }), h.send({ type: 'update' })];
    await vi.waitFor(() => expect(started).toEqual([1, 2]));
    gate.resolve();
    await Promise.all(sends);
    expect(makeEmitListener(createMemorySink({ workspaceId: 'ws' })).pipelined).toBe(true);
  });
});

describe('holder: history', () => {
  it('is a bounded ring (default 10), newest last', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    for (let i = 1; i <= 25; i++) await h.transitionTo('ready', `t${i}`);
    const all = h.history();
    expect(all).toHaveLength(10);
    expect(all.map((r) => r.trigger)).toEqual(Array.from({ length: 10 }, (_, i) => `t${i + 16}`));
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i + 16));
  });

  it('history(limit) returns the newest limit records, oldest first', async () => {
    const h = createOperationalStateHolder({ historySize: 4, initial: { primaryState: 'ready' } });
    for (let i = 1; i <= 6; i++) await h.transitionTo('ready', `t${i}`);
    expect(h.history(2).map((r) => r.trigger)).toEqual(['t5', 't6']);
    expect(h.history(100).map((r) => r.trigger)).toEqual(['t3', 't4', 't5', 't6']);
    expect(h.history(0)).toEqual([]);
    expect(() => h.history(-1)).toThrow(/limit must be a non-negative integer, got -1/);
  });

  it('timestamps are UTC YYYY-MM-DDTHH:MM:SSZ from the injected clock', async () => {
    const h = createOperationalStateHolder({ now: () => Date.UTC(2026, 0, 2, 3, 4, 5, 678) });
    await ready(h);
    expect(h.history()[0]!.timestamp).toBe('2026-01-02T03:04:05Z');
    const real = createOperationalStateHolder();
    await ready(real);
    expect(real.history()[0]!.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('records everything a listener needs, same-state changes included', async () => {
    const h = createOperationalStateHolder({ now: () => 0 });
    await h.send({
      type: 'boot.gates_passed',
      details: { gates: [{ gate_id: 'db', outcome: 'pass' }] },
    });
    await h.transitionTo('ready', 'auth degraded', {
      addReasons: ['auth'],
      claimPermission: 'critical_only',
    });
    await h.send({ type: 'pause', cause: 'substrate', trigger: 'substrate down' });
    expect(h.history()).toEqual([
      {
        seq: 1,
        timestamp: '1970-01-01T00:00:00Z',
        from_state: 'booting',
        to_state: 'ready',
        trigger: 'all §9.2 gates pass',
        event: 'boot.gates_passed',
        details: { gates: [{ gate_id: 'db', outcome: 'pass' }] },
        claim_permission: 'normal',
        degradation_reasons: [],
      },
      {
        seq: 2,
        timestamp: '1970-01-01T00:00:00Z',
        from_state: 'ready',
        to_state: 'ready',
        trigger: 'auth degraded',
        event: 'update',
        claim_permission: 'critical_only',
        degradation_reasons: ['auth'],
      },
      {
        seq: 3,
        timestamp: '1970-01-01T00:00:00Z',
        from_state: 'ready',
        to_state: 'paused',
        trigger: 'substrate down',
        event: 'pause',
        cause: 'substrate',
        claim_permission: 'none',
        degradation_reasons: ['auth', 'substrate'],
      },
    ]);
  });
});

describe('holder: options', () => {
  it('validates options when the holder is created, naming the bad value', () => {
    expect(() => createOperationalStateHolder({ historySize: 0 })).toThrow(
      /historySize must be a positive integer, got 0/,
    );
    expect(() => createOperationalStateHolder({ retryBudget: -1 })).toThrow(/retryBudget.*-1/);
    expect(() => createOperationalStateHolder({ listenerTimeoutMs: 1.5 })).toThrow(
      /listenerTimeoutMs.*1\.5/,
    );
    expect(() => createOperationalStateHolder({ now: 'today' as never })).toThrow(
      /now must be a function, got "today"/,
    );
    expect(() =>
      createOperationalStateHolder({ initial: { primaryState: 'degraded' as never } }),
    ).toThrow(/unknown primary state "degraded"/);
    expect(() =>
      createOperationalStateHolder({
        initial: { primaryState: 'paused', claimPermission: 'normal' },
      }),
    ).toThrow(/"normal" is not allowed in paused/);
  });

  it('passes inspect to the actor, so an inspector sees the events', async () => {
    const types: string[] = [];
    const h = createOperationalStateHolder({ inspect: (e) => types.push(e.type) });
    await ready(h);
    expect(types).toContain('@xstate.actor');
    expect(types).toContain('@xstate.event');
    expect(types).toContain('@xstate.snapshot');
  });
});
