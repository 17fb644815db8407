/**
 * Behaviour the StrykerJS run (`npm run mutate`) showed no test held: each test here
 * kills mutants of src/holder.ts or the machine that the other suites let survive.
 * Every assertion is something a caller relies on: what an error says and carries, what
 * the counters count, which listener a log line names, when a transition waits.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createActor } from 'xstate';
import {
  DEFAULT_RETRY_BUDGET,
  operationalStateMachine,
} from '../machines/operationalState.machine.js';
import {
  createOperationalStateHolder,
  createOpstate,
  InvalidStateTransitionError,
} from '../src/holder.js';
import { createMemorySink } from '../src/sinks/memory.js';
import { OperationalStateInputError } from '../src/vocabulary.js';
import { recordingLogger } from './support/logger.js';

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
};

/** Lets every already-resolved promise chain of the holder run (no timer is waited for). */
const drained = () => new Promise<void>((r) => setImmediate(r));

/** The rejection of `p`, which must reject. */
async function refusal<E extends Error>(p: Promise<unknown>): Promise<E> {
  try {
    await p;
  } catch (err) {
    return err as E;
  }
  throw new Error('expected a rejection');
}

/** The error `fn` throws, which it must. */
function thrown<E extends Error>(fn: () => unknown): E {
  try {
    fn();
  } catch (err) {
    return err as E;
  }
  throw new Error('expected a throw');
}

describe('holder: a refusal says what was refused and why', () => {
  it('an arrow the table lacks: the pair, the trigger and the row rule, and the error’s name', async () => {
    const h = createOperationalStateHolder();
    const err = await refusal<InvalidStateTransitionError>(h.transitionTo('active', 'x'));
    expect(err).toBeInstanceOf(InvalidStateTransitionError);
    expect(err.name).toBe('InvalidStateTransitionError');
    expect(err).toMatchObject({ from: 'booting', to: 'active', trigger: 'x', event: undefined });
    expect(err.reason).toBe('no §9.1 row booting → active');
    expect(err.message).toBe(
      'invalid state transition booting → active (trigger "x"): no §9.1 row booting → active',
    );
  });

  it('an event with no row from here: no target state, the event named', async () => {
    const h = createOperationalStateHolder();
    const err = await refusal<InvalidStateTransitionError>(h.send({ type: 'claim.acquired' }));
    expect(err).toMatchObject({ from: 'booting', to: undefined, event: 'claim.acquired' });
    expect(err.reason).toBe('no §9.1 row for event "claim.acquired" from booting');
    expect(err.message).toBe(
      'invalid state transition booting → ? (event "claim.acquired", trigger "claim.acquired"): ' +
        'no §9.1 row for event "claim.acquired" from booting',
    );
  });

  it('a failed guard on an event sent without a trigger: the row’s own trigger text and target', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'paused' } });
    const err = await refusal<InvalidStateTransitionError>(
      h.send({ type: 'resume.credit_refresh', reconciledSpendUsd: 5, thresholdUsd: 1 }),
    );
    expect(err).toMatchObject({
      from: 'paused',
      to: 'ready',
      trigger: 'monthly credit refresh confirmed',
      event: 'resume.credit_refresh',
    });
    expect(err.reason).toMatch(/^guard not satisfied: reconciled spend < threshold/);
  });

  it('a refused update names the current state as its target', async () => {
    const h = createOperationalStateHolder();
    const err = await refusal<InvalidStateTransitionError>(
      h.send({ type: 'update', claimPermission: 'normal' }),
    );
    expect(err).toMatchObject({ from: 'booting', to: 'booting', event: 'update' });
    expect(err.reason).toBe('claim permission "normal" is not allowed in booting (must be "none")');
  });

  it('an exhausted retry budget is blamed on the budget, even when the event asks for no claims', async () => {
    const h = createOperationalStateHolder({ retryBudget: 1 });
    await h.send({ type: 'boot.gate_retry', gate: 'db', claimPermission: 'none' });
    const err = await refusal<InvalidStateTransitionError>(
      h.send({ type: 'boot.gate_retry', gate: 'db', claimPermission: 'none' }),
    );
    expect(err.reason).toBe('guard not satisfied: retry budget not exhausted');
  });

  it('claim.released with no claim held says so; another event with no row does not', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'paused' } });
    const released = await refusal<InvalidStateTransitionError>(h.send({ type: 'claim.released' }));
    expect(released.reason).toBe('no claim is held');
    const acquired = await refusal<InvalidStateTransitionError>(h.send({ type: 'claim.acquired' }));
    expect(acquired.reason).toBe('no §9.1 row for event "claim.acquired" from paused');
  });

  it('after stopped: a same-state request is an update, another a bare arrow; each one counted', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'stopped' } });
    const same = await refusal<InvalidStateTransitionError>(h.transitionTo('stopped', 'again'));
    expect(same).toMatchObject({ to: 'stopped', event: 'update', reason: 'stopped is final' });
    const other = await refusal<InvalidStateTransitionError>(h.transitionTo('ready', 'again'));
    expect(other).toMatchObject({ to: 'ready', event: undefined, reason: 'stopped is final' });
    expect(h.stats.rejected).toBe(2);
    const sent = await refusal<InvalidStateTransitionError>(h.send({ type: 'stop' }));
    expect(sent).toMatchObject({ event: 'stop', reason: 'stopped is final' });
    expect(h.stats.rejected).toBe(3);
    expect(h.stats.commits).toBe(0);
  });

  it('stats count commits and refusals', async () => {
    const h = createOperationalStateHolder({ retryBudget: 0 });
    await expect(h.send({ type: 'boot.gate_retry' })).rejects.toThrow(InvalidStateTransitionError);
    expect(h.stats).toMatchObject({ commits: 0, rejected: 1 });
    await h.send({ type: 'boot.gates_passed' });
    await h.transitionTo('ready', 'auth degraded', { addReasons: ['auth'] });
    expect(h.stats).toMatchObject({ commits: 2, rejected: 1 });
  });
});

describe('holder: options and input', () => {
  it('a retry budget of 0 is allowed: the first retry is refused, the boot can still fail', async () => {
    const h = createOperationalStateHolder({ retryBudget: 0 });
    await expect(h.send({ type: 'boot.gate_retry', gate: 'db' })).rejects.toThrow(
      /retry budget not exhausted/,
    );
    await h.send({ type: 'boot.gate_failed' });
    expect(h.current.primaryState).toBe('stopped');
  });

  it('bad transitionTo options are refused, naming the field', async () => {
    const h = createOperationalStateHolder();
    for (const opts of [null, 'auth']) {
      const err = await refusal<OperationalStateInputError>(
        h.transitionTo('ready', 'all §9.2 gates pass', opts as never),
      );
      expect(err).toBeInstanceOf(OperationalStateInputError);
      expect(err.field).toBe('opts');
      expect(err.message).toMatch(/options must be an object, got/);
    }
    const bad = await refusal<OperationalStateInputError>(
      h.transitionTo('ready', 'all §9.2 gates pass', { claimPermission: 'all' as never }),
    );
    expect(bad.field).toBe('claimPermission');
    expect(h.current.primaryState).toBe('booting');
    // Bad input is the caller's error, not a refused transition: `rejected` counts only those.
    expect(h.stats.rejected).toBe(0);
  });

  it('a bad clock or listener is refused, naming the field', () => {
    expect(
      thrown<OperationalStateInputError>(() =>
        createOperationalStateHolder({ now: 'today' as never }),
      ).field,
    ).toBe('now');
    const h = createOperationalStateHolder();
    expect(thrown<OperationalStateInputError>(() => h.addListener(42 as never)).field).toBe(
      'listener',
    );
  });
});

describe('holder: what a commit records', () => {
  it('a pause sent without a cause is an operator pause; a given cause is recorded', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    await h.send({ type: 'pause' });
    expect(h.current.degradationReasons).toEqual(['operator']);
    expect(h.history().at(-1)).toMatchObject({ event: 'pause', cause: 'operator' });

    const c = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    await c.send({ type: 'pause', cause: 'cost_limit', trigger: 'cost 100%' });
    expect(c.history().at(-1)).toMatchObject({ event: 'pause', cause: 'cost_limit' });
  });

  it('an explicit cause wins over the one the trigger text suggests', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    await h.transitionTo('paused', 'cost 100% reached, but the operator paused', {
      cause: 'operator',
    });
    expect(h.history().at(-1)?.cause).toBe('operator');
    expect(h.current.degradationReasons).toEqual(['operator']);
  });

  it('an event with no row and no trigger is recorded under its type in words', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'active' } });
    await h.transitionTo('paused', 'operator pause');
    await h.send({ type: 'claim.released' });
    expect(h.history().at(-1)).toMatchObject({
      from_state: 'paused',
      to_state: 'paused',
      event: 'claim.released',
      trigger: 'claim released',
    });
  });

  it('a holder created active holds a claim: no credit refresh until it is released (§9.6)', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'active' } });
    await h.transitionTo('paused', 'cost 100%');
    const refresh = {
      type: 'resume.credit_refresh',
      reconciledSpendUsd: 1,
      thresholdUsd: 5,
    } as const;
    await expect(h.send(refresh)).rejects.toThrow(/claim already safe-released/);
    await h.send({ type: 'claim.released' });
    await h.send(refresh);
    expect(h.current).toEqual({
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: [],
    });
  });
});

describe('holder: listener names, unsubscribing, overruns', () => {
  it('an unnamed listener is logged by its position; the failure log names the transition', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ logger });
    h.addListener(() => {});
    h.addListener(() => {
      throw new Error('boom');
    });
    await h.transitionTo('ready', 'all §9.2 gates pass');
    expect(logger.find('error')).toEqual([
      '[kora.operational_state.holder] listener "listener#2" failed on transition #1 ' +
        '(booting → ready); state kept Error: boom',
    ]);
  });

  for (const pipelined of [false, true]) {
    const kind = pipelined ? 'pipelined' : 'plain';

    it(`a ${kind} listener unsubscribed with deliveries queued gets none of them`, async () => {
      const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
      const entered = deferred();
      const release = deferred();
      const seen: number[] = [];
      const off = h.addListener(
        async (_o, _n, record) => {
          seen.push(record.seq);
          if (record.seq === 1) {
            entered.resolve();
            await release.promise;
          }
        },
        { pipelined },
      );
      const first = h.transitionTo('ready', 'u1');
      await entered.promise;
      const queued = [h.transitionTo('ready', 'u2'), h.transitionTo('ready', 'u3')];
      off();
      release.resolve();
      await Promise.all([first, ...queued]);
      expect(seen).toEqual([1]);
    });
  }

  it('a plain listener that overran is not waited for while it works through its backlog, and is once caught up', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      listenerTimeoutMs: 50,
      logger,
    });
    const hang = new Map([1, 3, 5].map((seq) => [seq, deferred()]));
    const reached = new Map([1, 3].map((seq) => [seq, deferred()]));
    const seen: number[] = [];
    h.addListener(
      async (_o, _n, record) => {
        seen.push(record.seq);
        reached.get(record.seq)?.resolve();
        await hang.get(record.seq)?.promise;
      },
      { name: 'hung' },
    );
    // A fast listener beside it is never blamed for its overrun.
    h.addListener(() => {}, { name: 'fast' });
    await h.transitionTo('ready', 'u1'); // waits the 50 ms once
    expect(h.stats.listenerTimeouts).toBe(1);
    expect(logger.find('error', 'did not handle transition #1')).toEqual([
      expect.stringContaining('listener(s) "hung" did not handle'),
    ]);
    await h.transitionTo('ready', 'u2');
    await h.transitionTo('ready', 'u3');
    // Released, it works through its backlog and hangs again on #3: still behind, so
    // #4 does not wait for it.
    hang.get(1)!.resolve();
    await reached.get(3)!.promise;
    await h.transitionTo('ready', 'u4');
    expect(h.stats.listenerTimeouts).toBe(1);
    // Caught up (#4 handled), it is waited for again: a new hang costs a new timeout.
    hang.get(3)!.resolve();
    await drained();
    expect(seen).toEqual([1, 2, 3, 4]);
    await h.transitionTo('ready', 'u5');
    expect(h.stats.listenerTimeouts).toBe(2);
    expect(logger.find('error', 'did not handle transition #5')).toHaveLength(1);
    hang.get(5)!.resolve();
  });

  it('a pipelined listener that overran is waited for again once its latest delivery settled', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      listenerTimeoutMs: 50,
      logger,
    });
    const hang = new Map([1, 2, 3, 4].map((seq) => [seq, deferred()]));
    const done = new Map([1, 2, 3, 4].map((seq) => [seq, deferred()]));
    h.addListener(
      async (_o, _n, record) => {
        await hang.get(record.seq)?.promise;
        done.get(record.seq)?.resolve();
      },
      { name: 'hung', pipelined: true },
    );
    h.addListener(() => {}, { name: 'fast', pipelined: true });
    await h.transitionTo('ready', 'u1'); // waits the 50 ms once
    expect(h.stats.listenerTimeouts).toBe(1);
    expect(logger.find('error', 'did not handle transition #1')).toEqual([
      expect.stringContaining('listener(s) "hung" did not handle'),
    ]);
    await h.transitionTo('ready', 'u2'); // not waited: #1 overran
    // #1 settles while #2 still hangs: still behind, so #3 is not waited for either.
    hang.get(1)!.resolve();
    await done.get(1)!.promise;
    await drained();
    await h.transitionTo('ready', 'u3');
    expect(h.stats.listenerTimeouts).toBe(1);
    // Its latest delivery (#3) settled: caught up, so a new hang costs a new timeout.
    hang.get(2)!.resolve();
    hang.get(3)!.resolve();
    await done.get(3)!.promise;
    await drained();
    await h.transitionTo('ready', 'u4');
    expect(h.stats.listenerTimeouts).toBe(2);
    expect(logger.find('error', 'did not handle transition #4')).toHaveLength(1);
    hang.get(4)!.resolve();
  });

  it('a timeout names every listener it gave up on', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ listenerTimeoutMs: 50, logger });
    const stuck = deferred();
    h.addListener(() => stuck.promise, { name: 'a' });
    h.addListener(() => stuck.promise, { name: 'b' });
    await h.transitionTo('ready', 'all §9.2 gates pass');
    expect(logger.find('error', 'listener(s) "a", "b" did not handle transition #1')).toHaveLength(
      1,
    );
    expect(h.stats.listenerTimeouts).toBe(2);
    stuck.resolve();
  });

  it('a listener unsubscribed while still busy with a change holds up no later one', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const entered = deferred();
    const stuck = deferred();
    const off = h.addListener(async () => {
      entered.resolve();
      await stuck.promise;
    });
    const first = h.transitionTo('ready', 'u1');
    await entered.promise;
    off();
    let settled = false;
    const second = h.transitionTo('ready', 'u2').then(() => {
      settled = true;
    });
    await drained();
    expect(settled).toBe(true);
    stuck.resolve();
    await Promise.all([first, second]);
  });

  it('unsubscribing twice leaves the other listeners subscribed', async () => {
    const h = createOperationalStateHolder();
    const seen: string[] = [];
    const off = h.addListener(() => {});
    h.addListener((_o, next) => {
      seen.push(next.primaryState);
    });
    off();
    off();
    await h.transitionTo('ready', 'all §9.2 gates pass');
    expect(seen).toEqual(['ready']);
  });
});

describe('the machine on its own (a bare actor, as a caller of the public machine gets it)', () => {
  it('starts booting with no claims, no reasons, no claim held and the default retry budget', () => {
    // @ts-expect-error a JavaScript caller may omit the input: every field has a default.
    const actor = createActor(operationalStateMachine).start();
    expect(actor.getSnapshot().value).toEqual({ live: { unpaused: 'booting' } });
    expect(actor.getSnapshot().context).toEqual({
      primaryState: 'booting',
      claimPermission: 'none',
      degradationReasons: [],
      claimHeld: false,
      retries: {},
      retryBudget: DEFAULT_RETRY_BUDGET,
    });
    actor.stop();
  });

  it('takes its permission, reasons (sorted) and retry budget from input', () => {
    const actor = createActor(operationalStateMachine, {
      input: {
        claimPermission: 'critical_only',
        degradationReasons: ['substrate', 'auth'],
        retryBudget: 1,
      },
    }).start();
    expect(actor.getSnapshot().context).toMatchObject({
      claimPermission: 'critical_only',
      degradationReasons: ['auth', 'substrate'],
      retryBudget: 1,
    });
    actor.send({ type: 'boot.gate_retry' });
    actor.send({ type: 'boot.gate_retry' }); // over budget: ignored
    expect(actor.getSnapshot().context.retries).toEqual({ boot: 1 });
    actor.stop();
  });

  it('every row out of booting into booting, paused or stopped leaves no claim permission, whatever the input said', () => {
    const cases = [
      [{ type: 'boot.gate_retry' }, { live: { unpaused: 'booting' } }, ['auth']],
      [{ type: 'boot.gate_failed' }, 'stopped', ['auth']],
      [{ type: 'boot.epoch_mismatch' }, { live: 'paused' }, ['auth', 'substrate']],
    ] as const;
    for (const [event, state, reasons] of cases) {
      const actor = createActor(operationalStateMachine, {
        input: { claimPermission: 'critical_only', degradationReasons: ['auth'] },
      }).start();
      actor.send(event);
      const { value, context } = actor.getSnapshot();
      expect(value).toEqual(state);
      expect(context.claimPermission).toBe('none');
      expect(context.degradationReasons).toEqual(reasons);
      actor.stop();
    }
  });

  it('a credit refresh needs the reconciled spend strictly below the threshold (row 10)', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'paused' } });
    await expect(
      h.send({ type: 'resume.credit_refresh', reconciledSpendUsd: 5, thresholdUsd: 5 }),
    ).rejects.toThrow(/reconciled spend < threshold/);
    await h.send({ type: 'resume.credit_refresh', reconciledSpendUsd: 4.99, thresholdUsd: 5 });
    expect(h.current.primaryState).toBe('ready');
  });

  it('the bare machine resumes on a credit refresh only when spend and threshold are numbers', () => {
    // The holder validates events; a caller of the bare machine may send decoded JSON,
    // where `null < 5` and `1 < '5'` would hold.
    const refreshes = [
      { reconciledSpendUsd: null, thresholdUsd: 5 },
      { reconciledSpendUsd: '1', thresholdUsd: 5 },
      { reconciledSpendUsd: 1, thresholdUsd: '5' },
      { reconciledSpendUsd: 1 },
    ];
    for (const fields of refreshes) {
      const actor = createActor(operationalStateMachine, { input: {} }).start();
      actor.send({ type: 'pause', cause: 'cost_limit' });
      actor.send({ type: 'resume.credit_refresh', ...fields } as never);
      expect(actor.getSnapshot().value, JSON.stringify(fields)).toEqual({ live: 'paused' });
      actor.send({ type: 'resume.credit_refresh', reconciledSpendUsd: 1, thresholdUsd: 5 });
      expect(actor.getSnapshot().value).toEqual({ live: { unpaused: 'ready' } });
      actor.stop();
    }
  });

  it('retries without a gate share one budget, apart from the named gates', async () => {
    const h = createOperationalStateHolder({ retryBudget: 1 });
    await h.send({ type: 'boot.gate_retry' });
    await expect(h.send({ type: 'boot.gate_retry' })).rejects.toThrow(/retry budget/);
    await h.send({ type: 'boot.gate_retry', gate: 'db' });
    expect(h.snapshot.context.retries).toEqual({ boot: 1, db: 1 });
  });
});

describe('the instance: its public actor, its chain, stopping', () => {
  it('an event sent straight to the public actor is recorded and delivered like the holder’s own', async () => {
    const h = createOperationalStateHolder();
    const seen: string[] = [];
    h.addListener((_o, next, record) => {
      seen.push(`${record.seq} ${record.event} ${next.primaryState}`);
    });
    h.actor.send({ type: 'claim.acquired' }); // no row from booting: nothing recorded
    h.actor.send({ type: 'boot.gates_passed' });
    expect(h.current).toEqual({
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: [],
    });
    expect(h.history()).toMatchObject([
      { seq: 1, from_state: 'booting', to_state: 'ready', event: 'boot.gates_passed' },
    ]);
    expect(h.stats.commits).toBe(1);
    await drained();
    expect(seen).toEqual(['1 boot.gates_passed ready']);
    // A refused request after it is refused, not answered with that change.
    await expect(h.send({ type: 'boot.gates_passed' })).rejects.toThrow(
      InvalidStateTransitionError,
    );
    expect(h.stats).toMatchObject({ commits: 1, rejected: 1 });
  });

  it('an event the actor cannot apply is logged; the holder refuses everything after it', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' }, logger });
    // Straight to the actor there is no input check: a reason list that is not a list.
    h.actor.send({ type: 'update', addReasons: 5 } as never);
    expect(logger.find('error', 'actor error')).toHaveLength(1);
    const err = await refusal<InvalidStateTransitionError>(h.send({ type: 'stop' }));
    expect(err).toBeInstanceOf(InvalidStateTransitionError);
    expect(err.reason).toBe('the actor failed (see the logged actor error)');
    expect(h.current.primaryState).toBe('ready');
    expect(h.stats).toMatchObject({ commits: 0, rejected: 1 });
  });

  it('stop() ends the actor: later changes are refused, counted, the state kept', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    h.stop();
    const sent = await refusal<InvalidStateTransitionError>(h.send({ type: 'stop' }));
    expect(sent).toMatchObject({ from: 'ready', event: 'stop', reason: 'the holder was stopped' });
    const moved = await refusal<InvalidStateTransitionError>(h.transitionTo('paused', 'x'));
    expect(moved.reason).toBe('the holder was stopped');
    expect(h.stats).toMatchObject({ commits: 0, rejected: 2 });
    expect(h.current.primaryState).toBe('ready');
  });

  it('with a sink the instance has a chain with the given ids and clock; the first sink stays', async () => {
    const sink = createMemorySink();
    const at = Date.parse('2026-03-04T05:06:07.000Z');
    const o = createOpstate({ sink, agentId: 'agent-7', instanceId: 'run-1', now: () => at });
    expect(o.sink).toBe(sink);
    expect([o.chain?.agentId, o.chain?.instanceId]).toEqual(['agent-7', 'run-1']);
    const other = createMemorySink();
    expect(o.connectSink(other, { agentId: 'agent-8' })).toBe(o.chain);
    expect(o.sink).toBe(sink);
    await o.send({ type: 'boot.gates_passed' });
    expect(sink.events.map((e) => e.event_type)).toEqual([
      'kora.operational_state.transitioned',
      'kora.boot.ready',
    ]);
    for (const e of sink.events) {
      expect(e).toMatchObject({ agent_id: 'agent-7', instance_id: 'run-1' });
      expect(Date.parse(e.occurred_at)).toBe(at);
    }
    expect(other.events).toEqual([]);
    expect(o.chain?.stats).toMatchObject({ emitted: 2, failures: 0 });
  });

  it('without a sink there is no chain until one is connected; a failing sink is logged once, on the holder’s logger', async () => {
    const logger = recordingLogger();
    const h = createOpstate({ logger });
    expect(h.chain).toBeUndefined();
    expect(h.sink).toBeUndefined();
    const sink = {
      workspaceId: 'ws',
      append: () => Promise.reject(new Error('disk full')),
    };
    const chain = h.connectSink(sink);
    expect(h.chain).toBe(chain);
    expect(h.sink).toBe(sink);
    await h.send({ type: 'boot.gates_passed' });
    // Logged by the chain under its own tag, not a second time as a listener failure.
    expect(logger.find('error', 'disk full')).toEqual([
      expect.stringMatching(/^\[kora\.operational_state\.emit\] /),
    ]);
    expect(h.logger).toBe(logger);
    expect(chain.stats.failures).toBe(1);
    expect(h.current.primaryState).toBe('ready');
  });

  it('options given as undefined take their defaults', async () => {
    const h = createOperationalStateHolder({
      retryBudget: undefined,
      historySize: undefined,
      listenerTimeoutMs: undefined,
      logger: undefined,
      now: undefined,
      initial: undefined,
    });
    for (let i = 0; i < DEFAULT_RETRY_BUDGET; i++) await h.send({ type: 'boot.gate_retry' });
    await expect(h.send({ type: 'boot.gate_retry' })).rejects.toThrow(/retry budget/);
    expect(h.history()).toHaveLength(DEFAULT_RETRY_BUDGET);
  });

  it('a named listener function is logged by its name', async () => {
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ logger });
    h.addListener(function auditTrail() {
      throw new Error('boom');
    });
    await h.send({ type: 'boot.gates_passed' });
    expect(logger.find('error', 'listener "auditTrail" failed on transition #1')).toHaveLength(1);
  });
});

describe('the listener timeout, on a fake clock', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a transition waits 5 s for a hung listener by default, then goes on and says so', async () => {
    vi.useFakeTimers();
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ logger });
    const stuck = deferred();
    h.addListener(() => stuck.promise, { name: 'slow' });
    let settled = false;
    const sent = h.send({ type: 'boot.gates_passed' }).then(() => {
      settled = true;
    });
    await vi.advanceTimersByTimeAsync(4999);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await sent;
    expect(h.stats.listenerTimeouts).toBe(1);
    expect(logger.find('error')).toEqual([
      '[kora.operational_state.holder] listener(s) "slow" did not handle transition #1 ' +
        '(booting → ready) within 5000 ms; not waiting',
    ]);
    stuck.resolve();
  });

  it('a change every listener handled in time leaves no timeout behind', async () => {
    vi.useFakeTimers();
    const logger = recordingLogger();
    const h = createOperationalStateHolder({ logger, listenerTimeoutMs: 100 });
    h.addListener(async () => {});
    await h.send({ type: 'boot.gates_passed' });
    await vi.advanceTimersByTimeAsync(1000);
    expect(logger.lines).toEqual([]);
    expect(h.stats.listenerTimeouts).toBe(0);
  });
});
