/**
 * The machine's typed facts (XState `emit`), as a caller of the public actor reads them
 * with `actor.on(...)`: one `transitioned` per committed change saying what changed, then
 * the outcome (boot ready, boot failed, a pause for cost). The chain events are a mapping
 * of these, so what they carry is what the chain can say. Expected values come from the
 * §9.1 table (derived rows) and the actor's own snapshot after the change.
 */
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import {
  EVENT_TYPES,
  type OperationalEvent,
  type OperationalFact,
  operationalStateMachine,
} from '../machines/operationalState.machine.js';
import { parseEvent } from '../src/events.js';
import { createOperationalStateHolder } from '../src/holder.js';
import { TRANSITION_TABLE } from '../src/table.js';
import type { PrimaryState } from '../src/vocabulary.js';

/** A holder in `from` whose public actor's facts are collected. */
function factsFrom(from: PrimaryState) {
  const holder = createOperationalStateHolder({ initial: { primaryState: from } });
  const facts: OperationalFact[] = [];
  holder.actor.on('*', (fact) => {
    facts.push(fact);
  });
  return { holder, facts };
}

/** The event that takes a row, with what its guard needs. */
function eventOfRow(event: OperationalEvent['type']): OperationalEvent {
  if (event === 'resume.credit_refresh') {
    return { type: event, reconciledSpendUsd: 1, thresholdUsd: 5 };
  }
  if (event === 'pause') return { type: event, cause: 'cost_limit' };
  return { type: event } as OperationalEvent;
}

describe('the machine says what happened: one fact per change, then its outcome', () => {
  for (const row of TRANSITION_TABLE) {
    it(`row ${row.row} (${row.from} → ${row.to} by ${row.event})`, () => {
      const { holder, facts } = factsFrom(row.from);
      holder.actor.send(eventOfRow(row.event));
      const { context } = holder.actor.getSnapshot();
      const outcome =
        row.event === 'boot.gates_passed'
          ? [{ type: 'boot.ready' }]
          : row.event === 'boot.gate_failed'
            ? [{ type: 'boot.failed' }]
            : row.event === 'pause'
              ? [{ type: 'paused.cost_limit', from: row.from }]
              : [];
      expect(facts).toStrictEqual([
        {
          type: 'transitioned',
          from: row.from,
          to: row.to,
          event: row.event,
          // No trigger sent: the row's own text.
          trigger: row.trigger,
          ...(row.event === 'pause' ? { cause: 'cost_limit' } : {}),
          // The fact describes the state after the change.
          claimPermission: context.claimPermission,
          degradationReasons: context.degradationReasons,
        },
        ...outcome,
      ]);
      // Entry keeps the context's primary state, which the next fact reads as `from`.
      expect(context.primaryState).toBe(row.to);
      expect(holder.current.primaryState).toBe(row.to);
    });
  }

  it('the context names the primary state after every step of a boot with a retry', () => {
    const actor = createActor(operationalStateMachine, { input: {} }).start();
    const steps: [OperationalEvent, PrimaryState][] = [
      [{ type: 'boot.gate_retry', gate: 'db' }, 'booting'],
      [{ type: 'boot.gates_passed' }, 'ready'],
      [{ type: 'claim.acquired' }, 'active'],
      [{ type: 'pause' }, 'paused'],
      [{ type: 'claim.released' }, 'paused'],
      [{ type: 'resume.operator_reset' }, 'ready'],
      [{ type: 'stop' }, 'stopped'],
    ];
    const froms: PrimaryState[] = [];
    actor.on('transitioned', (fact) => {
      froms.push(fact.from);
    });
    for (const [event, state] of steps) {
      actor.send(event);
      expect(actor.getSnapshot().context.primaryState, event.type).toBe(state);
    }
    // Each fact's `from` is where the step before it left the machine.
    expect(froms).toEqual(['booting', ...steps.slice(0, -1).map(([, s]) => s)]);
  });

  it('a sent trigger, cause and details are carried; the outcome carries the details too', () => {
    const details = { gates: [{ gate: '1', ok: true }] };
    const ready = factsFrom('booting');
    ready.holder.actor.send({ type: 'boot.gates_passed', trigger: 'gates ok', details });
    expect(ready.facts[0]).toMatchObject({ trigger: 'gates ok', details });
    expect(ready.facts[1]).toStrictEqual({ type: 'boot.ready', details });

    const failed = factsFrom('booting');
    failed.holder.actor.send({ type: 'boot.gate_failed', details });
    expect(failed.facts[0]).toMatchObject({ details });
    expect(failed.facts[1]).toStrictEqual({ type: 'boot.failed', details });
  });

  it('a pause names its cause (operator when none is given); no other change has one', () => {
    const op = factsFrom('ready');
    op.holder.actor.send({ type: 'pause' });
    expect(op.facts).toHaveLength(1);
    expect(op.facts[0]).toMatchObject({ event: 'pause', cause: 'operator' });

    // The cause's reason is added (STOP-KORA has none of its own); only cost has an outcome.
    const reasonOf = { stop_kora: [], substrate: ['substrate'], operator: ['operator'] };
    for (const cause of ['stop_kora', 'substrate', 'operator'] as const) {
      const other = factsFrom('active');
      other.holder.actor.send({ type: 'pause', cause });
      expect(other.facts.map((f) => f.type)).toEqual(['transitioned']);
      expect(other.facts[0]).toMatchObject({ cause, degradationReasons: reasonOf[cause] });
    }

    const update = factsFrom('ready');
    update.holder.actor.send({ type: 'update', addReasons: ['auth'] });
    expect(update.facts).toStrictEqual([
      {
        type: 'transitioned',
        from: 'ready',
        to: 'ready',
        event: 'update',
        trigger: 'update',
        claimPermission: 'normal',
        degradationReasons: ['auth'],
      },
    ]);
  });

  it('a refused event says nothing and changes nothing', () => {
    const ready = factsFrom('ready');
    ready.holder.actor.send({ type: 'resume.operator_reset' }); // no row from ready
    ready.holder.actor.send({ type: 'claim.released' }); // no claim held
    expect(ready.facts).toEqual([]);
    const paused = factsFrom('paused');
    paused.holder.actor.send({ type: 'resume.credit_refresh' }); // no figures: guard fails
    paused.holder.actor.send({ type: 'update', claimPermission: 'normal' }); // no claims in paused
    expect(paused.facts).toEqual([]);
    expect(paused.holder.actor.getSnapshot().context).toMatchObject({
      primaryState: 'paused',
      claimPermission: 'none',
    });
  });
});

describe('the event vocabulary', () => {
  it('EVENT_TYPES lists exactly the events the machine takes', () => {
    expect([...EVENT_TYPES].sort()).toEqual([...operationalStateMachine.root.events].sort());
  });

  it('an unknown event type is refused, naming every type the machine takes', () => {
    let message = '';
    try {
      parseEvent({ type: 'boot.gates_pass' });
    } catch (err) {
      message = (err as Error).message;
    }
    for (const type of operationalStateMachine.root.events) expect(message).toContain(type);
  });
});
