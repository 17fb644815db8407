/**
 * Generated paths: every shortest and simple path of the §9.1 machine from its initial
 * state (xstate/graph), replayed through a fresh holder and checked state by state.
 * At every step, each event the machine refuses there is tried too: the holder must
 * reject it and keep its state — that is where the guards' `false` outcomes and the
 * claim-permission invariant are exercised.
 */

import { describe, expect, it } from 'vitest';
import { type SnapshotFrom, transition } from 'xstate';
import { getShortestPaths, getSimplePaths } from 'xstate/graph';
import {
  type OperationalEvent,
  type OperationalStateMachine,
  operationalStateMachine,
} from '../machines/operationalState.machine.js';
import { createOperationalStateHolder, InvalidStateTransitionError } from '../src/holder.js';
import { TRANSITION_TABLE } from '../src/table.js';
import { NO_CLAIM_STATES, type PrimaryState } from '../src/vocabulary.js';

type Snap = SnapshotFrom<OperationalStateMachine>;

const RETRY_BUDGET = 1;

const EVENTS: OperationalEvent[] = [
  { type: 'boot.gates_passed' },
  { type: 'boot.gate_retry', gate: 'db' },
  { type: 'boot.gate_failed' },
  { type: 'boot.epoch_mismatch' },
  { type: 'claim.acquired' },
  { type: 'claim.released' },
  { type: 'pause', cause: 'operator' },
  { type: 'pause', cause: 'cost_limit' },
  { type: 'resume.credit_refresh', reconciledSpendUsd: 10, thresholdUsd: 100 },
  { type: 'resume.credit_refresh', reconciledSpendUsd: 150, thresholdUsd: 100 },
  { type: 'resume.operator_reset' },
  { type: 'stop' },
  { type: 'update', addReasons: ['auth'] },
  { type: 'update', removeReasons: ['auth'], claimPermission: 'critical_only' },
  // Asking for claims where none may be granted: refused by the machine.
  { type: 'update', claimPermission: 'normal' },
  { type: 'pause', claimPermission: 'normal' },
];

function primaryOf(s: Snap): PrimaryState {
  let v: unknown = s.value;
  while (v && typeof v === 'object') v = Object.values(v)[0];
  return v as PrimaryState;
}

// Node identity for the traversal: the primary state and what the guards read.
const serializeState = (s: Snap) =>
  JSON.stringify([primaryOf(s), s.context.claimHeld, s.context.retries, s.context.claimPermission]);

const traversal = {
  events: EVENTS,
  input: { retryBudget: RETRY_BUDGET },
  serializeState,
} as const;

/** The events the bare machine refuses in `snapshot` (no transition is taken). */
function refusedAt(snapshot: Snap): OperationalEvent[] {
  if (snapshot.status !== 'active') return EVENTS;
  return EVENTS.filter((e) => transition(operationalStateMachine, snapshot, e)[0] === snapshot);
}

describe('generated paths (xstate/graph)', () => {
  const shortest = getShortestPaths(operationalStateMachine, traversal);
  const simple = getSimplePaths(operationalStateMachine, traversal);
  const paths = [...shortest, ...simple];

  it('generates shortest and simple paths from the initial state', () => {
    expect(shortest.length).toBeGreaterThan(10);
    expect(simple.length).toBeGreaterThan(shortest.length);
  });

  it('replays every path through a fresh holder; the holder agrees state by state', async () => {
    const rowsTaken = new Set<number>();
    const guards = { retryBudgetLeft: new Set<boolean>(), creditRefreshSafe: new Set<boolean>() };
    const invariantRefusals = new Set<PrimaryState>();
    // Refusals depend only on the state: try them once per distinct state.
    const refusalsChecked = new Set<string>();

    for (const path of paths) {
      const holder = createOperationalStateHolder({ retryBudget: RETRY_BUDGET, logger: silent });
      let expected: Snap = path.steps[0]!.state;
      for (const step of path.steps.slice(1)) {
        // Everything the machine refuses here, the holder refuses, state unchanged.
        const from = holder.current;
        const key = JSON.stringify([serializeState(expected), from.degradationReasons]);
        const refusals = refusalsChecked.has(key) ? [] : refusedAt(expected);
        refusalsChecked.add(key);
        for (const refused of refusals) {
          await expect(holder.send(refused)).rejects.toBeInstanceOf(InvalidStateTransitionError);
          expect(holder.current).toBe(from);
          if (from.primaryState === 'booting' && refused.type === 'boot.gate_retry')
            guards.retryBudgetLeft.add(false);
          if (from.primaryState === 'paused' && refused.type === 'resume.credit_refresh') {
            guards.creditRefreshSafe.add(false);
          }
          if (refused.claimPermission === 'normal' && NO_CLAIM_STATES.includes(from.primaryState)) {
            invariantRefusals.add(from.primaryState);
          }
        }
        const event = step.event as OperationalEvent;
        const next = await holder.send(event);
        // The bare machine, stepped by the same events, is the reference; the traversal's
        // node for this step must agree on everything it tells states apart by.
        expected = transition(operationalStateMachine, expected, event)[0];
        expect(serializeState(expected)).toBe(serializeState(step.state));
        const row = TRANSITION_TABLE.find(
          (r) => r.from === from.primaryState && r.event === event.type,
        );
        if (row) rowsTaken.add(row.row);
        if (event.type === 'boot.gate_retry') guards.retryBudgetLeft.add(true);
        if (event.type === 'resume.credit_refresh') guards.creditRefreshSafe.add(true);

        expect(next.primaryState).toBe(primaryOf(expected));
        expect(next.claimPermission).toBe(expected.context.claimPermission);
        expect(next.degradationReasons).toEqual(expected.context.degradationReasons);
        expect(holder.snapshot.value).toEqual(expected.value);
        // The claim-permission invariant holds at every step.
        if (NO_CLAIM_STATES.includes(next.primaryState)) expect(next.claimPermission).toBe('none');
      }
      if (holder.current.primaryState === 'stopped') {
        // Nothing changes once stopped.
        for (const e of EVENTS) await expect(holder.send(e)).rejects.toThrow(/stopped is final/);
      }
    }

    const allRows = TRANSITION_TABLE.map((r) => r.row);
    expect(
      [...rowsTaken].sort((a, b) => a - b),
      'every §9.1 row is covered',
    ).toEqual(allRows);
    expect(guards.retryBudgetLeft, 'retryBudgetLeft true and false').toEqual(
      new Set([true, false]),
    );
    expect(guards.creditRefreshSafe, 'creditRefreshSafe true and false').toEqual(
      new Set([true, false]),
    );
    expect(invariantRefusals, 'claim asks refused in booting and paused').toEqual(
      new Set(['booting', 'paused']),
    );
  });
});

const silent = { error() {}, warn() {}, info() {}, debug() {} };
