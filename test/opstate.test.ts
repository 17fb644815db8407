/**
 * The one instance (SPEC §11): `createOpstate` with its chain, the public actor (facts,
 * subscribe, waitFor, persisted snapshots), events sent straight to the actor, and the
 * boot on an explicit instance — two instances in one process share nothing.
 */

import { describe, expect, it } from 'vitest';
import { createActor, waitFor } from 'xstate';
import {
  type OperationalFact,
  operationalStateMachine,
} from '../machines/operationalState.machine.js';
import { bootOpstate } from '../src/boot.js';
import { createOpstate, InvalidStateTransitionError } from '../src/holder.js';
import { createMemorySink } from '../src/sinks/memory.js';
import { recordingLogger } from './support/logger.js';

const types = (facts: readonly OperationalFact[]) => facts.map((f) => f.type);

describe('createOpstate', () => {
  it('starts nothing external, and with a sink writes every change to its chain', async () => {
    const sink = createMemorySink({ workspaceId: 'ws' });
    const opstate = createOpstate({ sink, agentId: 'agent-7', instanceId: 'run-1' });
    expect(opstate.sink).toBe(sink);
    expect([opstate.chain?.agentId, opstate.chain?.instanceId]).toEqual(['agent-7', 'run-1']);
    expect(sink.events).toEqual([]);
    await opstate.send({ type: 'boot.gates_passed' });
    await opstate.send({ type: 'pause', cause: 'cost_limit' });
    expect(sink.events.map((e) => [e.event_type, e.seq, e.agent_id, e.instance_id])).toEqual([
      ['kora.operational_state.transitioned', 1, 'agent-7', 'run-1'],
      ['kora.boot.ready', 2, 'agent-7', 'run-1'],
      ['kora.operational_state.transitioned', 3, 'agent-7', 'run-1'],
      ['kora.paused.cost_limit', 4, 'agent-7', 'run-1'],
    ]);
    expect(opstate.chain?.stats).toMatchObject({ emitted: 4, failures: 0 });
  });

  it('connects one chain: a second connectSink returns the first listener', async () => {
    const first = createMemorySink({ workspaceId: 'a' });
    const opstate = createOpstate({ sink: first });
    const again = opstate.connectSink(createMemorySink({ workspaceId: 'b' }));
    expect(again).toBe(opstate.chain);
    await opstate.send({ type: 'boot.gates_passed' });
    expect(first.events).toHaveLength(2);
  });
});

describe('the public actor', () => {
  it('emits the facts of each change, outcome after the transition', async () => {
    const opstate = createOpstate();
    const seen: OperationalFact[] = [];
    const sub = opstate.actor.on('*', (fact) => seen.push(fact));
    await opstate.send({ type: 'boot.gates_passed', details: { gates: [] } });
    await opstate.send({ type: 'claim.acquired' });
    await opstate.send({ type: 'pause', cause: 'cost_limit', trigger: 'spend cap' });
    sub.unsubscribe();
    expect(types(seen)).toEqual([
      'transitioned',
      'boot.ready',
      'transitioned',
      'transitioned',
      'paused.cost_limit',
    ]);
    expect(seen[0]).toMatchObject({
      from: 'booting',
      to: 'ready',
      event: 'boot.gates_passed',
      trigger: 'all §9.2 gates pass',
      claimPermission: 'normal',
      details: { gates: [] },
    });
    expect(seen[4]).toEqual({ type: 'paused.cost_limit', from: 'active' });
    expect(seen[3]).toMatchObject({ from: 'active', to: 'paused', cause: 'cost_limit' });
  });

  it('a rejected event emits no fact and changes nothing', async () => {
    const opstate = createOpstate({ initial: { primaryState: 'ready' } });
    const seen: OperationalFact[] = [];
    opstate.actor.on('*', (fact) => seen.push(fact));
    await expect(opstate.send({ type: 'resume.operator_reset' })).rejects.toBeInstanceOf(
      InvalidStateTransitionError,
    );
    expect(seen).toEqual([]);
    expect(opstate.history()).toEqual([]);
    expect(opstate.current.primaryState).toBe('ready');
  });

  it('can be awaited with waitFor and observed with subscribe', async () => {
    const opstate = createOpstate();
    const values: unknown[] = [];
    const sub = opstate.actor.subscribe((s) => values.push(s.value));
    const ready = waitFor(opstate.actor, (s) => s.matches({ live: { unpaused: 'ready' } }));
    void opstate.transitionTo('ready', 'all §9.2 gates pass');
    await expect(ready).resolves.toBe(opstate.snapshot);
    sub.unsubscribe();
    expect(values).toContainEqual({ live: { unpaused: 'ready' } });
  });

  it('its persisted snapshot restores the same state in a bare actor', async () => {
    const opstate = createOpstate();
    await opstate.send({ type: 'boot.gates_passed' });
    await opstate.transitionTo('ready', 'auth degraded', { addReasons: ['auth'] });
    const persisted = opstate.actor.getPersistedSnapshot();
    const copy = createActor(operationalStateMachine, {
      snapshot: persisted as never,
      input: {},
    }).start();
    expect(copy.getSnapshot().value).toEqual({ live: { unpaused: 'ready' } });
    expect(copy.getSnapshot().context).toMatchObject({
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: ['auth'],
    });
    copy.stop();
  });

  it('an event sent straight to the actor is recorded, delivered and chained like send', async () => {
    const sink = createMemorySink({ workspaceId: 'ws' });
    const opstate = createOpstate({ sink, initial: { primaryState: 'ready' } });
    const delivered: string[] = [];
    opstate.addListener((old, next, record, facts) => {
      delivered.push(`${old.primaryState}→${next.primaryState} #${record.seq} ${types(facts)}`);
    });
    opstate.actor.send({ type: 'claim.acquired' });
    expect(opstate.current.primaryState).toBe('active');
    expect(opstate.history().map((r) => r.event)).toEqual(['claim.acquired']);
    await opstate.send({ type: 'claim.released' });
    expect(delivered).toEqual(['ready→active #1 transitioned', 'active→ready #2 transitioned']);
    expect(sink.events.map((e) => e.seq)).toEqual([1, 2]);
  });

  it('stop() ends the actor: later changes are refused, naming why', async () => {
    const opstate = createOpstate({ initial: { primaryState: 'ready' } });
    opstate.stop();
    const err = await opstate.send({ type: 'claim.acquired' }).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidStateTransitionError);
    expect(err.reason).toBe('the holder was stopped');
    expect(opstate.current.primaryState).toBe('ready');
    expect(opstate.stats.rejected).toBe(1);
  });
});

describe('bootOpstate on an explicit instance', () => {
  it('boots two instances of one process independently, each into its own chain', async () => {
    const sinks = [createMemorySink({ workspaceId: 'a' }), createMemorySink({ workspaceId: 'b' })];
    const [a, b] = sinks.map((sink) => createOpstate({ sink, logger: recordingLogger() }));
    const failing = [{ id: 'schema', gateClass: 'invariant' as const, check: async () => false }];
    const [ra, rb] = await Promise.all([
      bootOpstate(a!, { gates: [] }),
      bootOpstate(b!, { gates: failing }),
    ]);
    expect(ra.result).toBe('ready');
    expect(rb).toMatchObject({ result: 'stopped', failedGate: { gate_id: 'schema' } });
    expect(sinks[0]!.events.map((e) => e.event_type)).toEqual([
      'kora.operational_state.transitioned',
      'kora.boot.ready',
    ]);
    expect(sinks[1]!.events.map((e) => e.event_type)).toEqual([
      'kora.operational_state.transitioned',
      'kora.boot.failed',
    ]);
    expect(sinks[1]!.events[1]!.payload).toMatchObject({ failed_gate_id: 'schema' });
  });

  it('a second boot of the same instance returns the first one, running the gates once', async () => {
    const opstate = createOpstate();
    let checks = 0;
    const gates = [
      {
        id: 'g',
        gateClass: 'invariant' as const,
        check: async () => {
          checks++;
          return true;
        },
      },
    ];
    const first = bootOpstate(opstate, { gates });
    expect(bootOpstate(opstate, { gates })).toBe(first);
    await expect(first).resolves.toMatchObject({ result: 'ready' });
    expect(checks).toBe(1);
  });

  it('bad options resolve to an error naming the value, and the instance stays booting', async () => {
    const logger = recordingLogger();
    const opstate = createOpstate({ logger });
    const summary = await bootOpstate(opstate, { retry: { attempts: 0 } });
    expect(summary.result).toBe('error');
    expect(summary.error).toContain('retry.attempts must be a positive integer, got 0');
    expect(logger.find('error')[0]).toContain('[kora.operational_state.wire_in]');
    expect(opstate.current.primaryState).toBe('booting');
  });
});
