/**
 * Generated paths, anchored to the spec. Every shortest and simple path of the machine
 * from its initial state (xstate/graph) is replayed through a fresh holder, and every step
 * is checked against test/support/specTable.ts — the §9.1 table typed from SPEC §2, not
 * read from the machine. The paths must show every fixture row taken with its effect,
 * every guard both holding and refusing, claims refused where the invariant forbids them
 * and nothing changing once stopped. So a row deleted from the machine fails here (no path
 * takes it), and so does a changed effect or guard (a step differs from the spec).
 */

import { describe, expect, it } from 'vitest';
import type { SnapshotFrom } from 'xstate';
import { getShortestPaths, getSimplePaths } from 'xstate/graph';
import {
  type OperationalEvent,
  type OperationalStateMachine,
  operationalStateMachine,
} from '../machines/operationalState.machine.js';
import { createOperationalStateHolder, InvalidStateTransitionError } from '../src/holder.js';
import type { OperationalState } from '../src/vocabulary.js';
import {
  DEFAULT_PAUSE_CAUSE,
  PAUSE_CAUSE_ADDS,
  rowAdds,
  SPEC_GUARDS,
  SPEC_INITIAL,
  SPEC_NO_CLAIM_STATES,
  SPEC_ROWS,
  type SpecRow,
  type SpecState,
  specStep,
} from './support/specTable.js';

type Snap = SnapshotFrom<OperationalStateMachine>;

const RETRY_BUDGET = 1;

// What the traversal may send: the parameters that reach every row, pause cause, guard
// outcome and invariant of the fixture (the coverage check below says if one is missing).
const EVENTS: OperationalEvent[] = [
  { type: 'boot.gates_passed' },
  { type: 'boot.gate_retry', gate: 'db' },
  { type: 'boot.gate_failed' },
  { type: 'boot.epoch_mismatch' },
  { type: 'claim.acquired' },
  { type: 'claim.released' },
  { type: 'pause' },
  { type: 'pause', cause: 'cost_limit' },
  { type: 'pause', cause: 'operator' },
  { type: 'pause', cause: 'substrate' },
  { type: 'pause', cause: 'stop_kora' },
  { type: 'resume.credit_refresh', reconciledSpendUsd: 10, thresholdUsd: 100 },
  { type: 'resume.credit_refresh', reconciledSpendUsd: 150, thresholdUsd: 100 },
  { type: 'resume.operator_reset' },
  { type: 'stop' },
  { type: 'update', addReasons: ['auth'] },
  { type: 'update', removeReasons: ['auth'], claimPermission: 'critical_only' },
  // Asking for claims where none may be granted: refused by the spec.
  { type: 'update', claimPermission: 'normal' },
  { type: 'pause', claimPermission: 'normal' },
];

function primaryOf(s: Snap): string {
  let v: unknown = s.value;
  while (v && typeof v === 'object') v = Object.values(v)[0];
  return String(v);
}

// Node identity for the traversal: the primary state and what the guards read. Retry
// counts are capped so that a machine ignoring its budget still has a finite graph.
const serializeState = (s: Snap) =>
  JSON.stringify([
    primaryOf(s),
    s.context.claimHeld,
    Object.entries(s.context.retries).map(([g, n]) => [g, Math.min(n, RETRY_BUDGET + 1)]),
    s.context.claimPermission,
  ]);

// Every pause cause is offered from ready; elsewhere only the default and `cost_limit`:
// the cause → reason rule belongs to the event (SPEC §2), and offering all four from every
// state triples the simple paths.
const READY_ONLY = EVENTS.filter((e) => e.type === 'pause' && e.cause && e.cause !== 'cost_limit');
const eventsAt = (s: Snap) =>
  primaryOf(s) === 'ready' ? EVENTS : EVENTS.filter((e) => !READY_ONLY.includes(e));

interface Step {
  event: OperationalEvent;
  /** The machine's graph node after the event. */
  state: Snap;
}

/**
 * Shortest and simple paths, without those that are a prefix of another: replaying the
 * longer one checks the same steps from the same fresh start.
 */
let generated: Step[][] | undefined;
function generatedPaths(): Step[][] {
  if (generated) return generated;
  const traversal = { events: eventsAt, input: { retryBudget: RETRY_BUDGET }, serializeState };
  const all = [
    ...getShortestPaths(operationalStateMachine, traversal),
    ...getSimplePaths(operationalStateMachine, traversal),
  ].map((p) => p.steps.slice(1) as Step[]);
  const keyOf = (steps: Step[]) => steps.map((s) => `${JSON.stringify(s.event)}\n`).join('');
  const byKey = new Map(all.map((steps) => [keyOf(steps), steps]));
  const keys = [...byKey.keys()].sort();
  // Sorted, a path's extensions follow it directly.
  generated = keys.filter((k, i) => !keys[i + 1]?.startsWith(k)).map((k) => byKey.get(k)!);
  return generated;
}

const show = (e: OperationalEvent) => JSON.stringify(e);
const stateOf = (s: SpecState): OperationalState => ({
  primaryState: s.primaryState,
  claimPermission: s.claimPermission,
  degradationReasons: s.degradationReasons,
});

/** Everything the paths must show, named from the fixture alone. */
const REQUIRED = [
  ...SPEC_ROWS.map((r) => `row ${r.row}`),
  ...Object.keys(PAUSE_CAUSE_ADDS).map((c) => `pause cause ${c}`),
  `pause without a cause (${DEFAULT_PAUSE_CAUSE})`,
  ...Object.entries(SPEC_GUARDS).flatMap(([g, { refusals }]) =>
    refusals.map((why) => `${g} refused: ${why}`),
  ),
  ...SPEC_NO_CLAIM_STATES.filter((s) => s !== 'stopped').map((s) => `claims refused in ${s}`),
  'nothing changes once stopped',
];

/** The row's own effect is visible: the event adds nothing itself, and the row changes something. */
function showsEffect(row: SpecRow, before: SpecState, event: OperationalEvent): boolean {
  if (event.claimPermission || event.addReasons || event.removeReasons) return false;
  const reasons = before.degradationReasons;
  return (
    rowAdds(row, event).every((r) => !reasons.includes(r)) &&
    row.removes.every((r) => reasons.includes(r)) &&
    (row.claim !== 'keep' || before.claimPermission !== 'normal')
  );
}

describe('generated paths (xstate/graph), checked against the SPEC §2 fixture', () => {
  it('generates paths from the initial state', () => {
    const paths = generatedPaths();
    expect(paths.length).toBeGreaterThan(100);
    expect(new Set(paths.map((p) => p.length)).size).toBeGreaterThan(5);
  });

  it('replays every path through a fresh holder; each step is what the spec says', async () => {
    const covered = new Set<string>();
    // Refusals depend only on the spec state: try them once per distinct one.
    const refusalsTried = new Set<string>();

    for (const path of generatedPaths()) {
      const holder = createOperationalStateHolder({ retryBudget: RETRY_BUDGET, logger: silent });
      let spec = SPEC_INITIAL;
      expect(holder.current).toEqual(stateOf(spec));
      for (const step of path) {
        const key = JSON.stringify(spec);
        if (!refusalsTried.has(key)) {
          refusalsTried.add(key);
          for (const event of EVENTS) {
            const outcome = specStep(spec, event, RETRY_BUDGET);
            if (outcome.taken) continue;
            const from = holder.current;
            const label = `${from.primaryState} ${show(event)} (spec refuses: ${outcome.why})`;
            const got = await holder.send(event).then(
              (s) => `accepted → ${JSON.stringify(s)}`,
              (err: unknown) => err,
            );
            expect(got, `${label}: the holder must reject it`).toBeInstanceOf(
              InvalidStateTransitionError,
            );
            expect(holder.current, `${label}: state unchanged`).toBe(from);
            if (outcome.row?.guard) covered.add(`${outcome.row.guard} refused: ${outcome.why}`);
            if (event.claimPermission === 'normal')
              covered.add(`claims refused in ${from.primaryState}`);
          }
        }

        const { event } = step;
        const outcome = specStep(spec, event, RETRY_BUDGET);
        const label = `${spec.primaryState} ${show(event)}${outcome.row ? ` (row ${outcome.row.row})` : ''}`;
        if (!outcome.taken) {
          expect.fail(`${label}: the machine takes it, the spec refuses it (${outcome.why})`);
        }
        const next = await holder.send(event);
        expect(next, `${label}: state and effect per the spec`).toEqual(stateOf(outcome.next));
        if (SPEC_NO_CLAIM_STATES.includes(next.primaryState)) {
          expect(next.claimPermission, `${label}: no claims in ${next.primaryState}`).toBe('none');
        }
        // The holder and the machine's graph agree on the node reached.
        expect(serializeState(holder.snapshot), `${label}: holder vs graph`).toBe(
          serializeState(step.state),
        );

        const row = outcome.row;
        if (row && showsEffect(row, spec, event)) {
          covered.add(`row ${row.row}`);
          if (event.type === 'pause') {
            covered.add(
              event.cause
                ? `pause cause ${event.cause}`
                : `pause without a cause (${DEFAULT_PAUSE_CAUSE})`,
            );
          }
        }
        spec = outcome.next;
      }

      if (spec.primaryState === 'stopped') {
        const final = holder.current;
        for (const event of EVENTS) {
          await expect(holder.send(event), `stopped ${show(event)}`).rejects.toThrow(
            /stopped is final/,
          );
        }
        expect(holder.current, 'nothing changes once stopped').toBe(final);
        covered.add('nothing changes once stopped');
      }
    }

    expect(
      REQUIRED.filter((c) => !covered.has(c)),
      'fixture cases no generated path shows',
    ).toEqual([]);
  });
});

const silent = { error() {}, warn() {}, info() {}, debug() {} };
