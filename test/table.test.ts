import { describe, expect, it } from 'vitest';
import { operationalStateMachine } from '../machines/operationalState.machine.js';
import {
  isValidTransition,
  TRANSITION_TABLE,
  transitionsFrom,
  transitionsTo,
} from '../src/table.js';
import { OperationalStateInputError, PRIMARY_STATES } from '../src/vocabulary.js';

// SPEC §2, typed here as the oracle the machine-derived table must equal.
const PAUSE = 'STOP-KORA L1–3, cost 100%, operator';
const STOP = 'STOP-KORA L4/L5';
const SPEC_TABLE: [number, string, string, string, string, string][] = [
  [1, 'booting', 'ready', 'all §9.2 gates pass', '', ''],
  [
    2,
    'booting',
    'booting',
    'transient gate failure',
    'retry budget not exhausted',
    'self (backoff)',
  ],
  [3, 'booting', 'stopped', 'invariant gate failure, or retry budget exhausted', '', 'operator'],
  [4, 'booting', 'paused', 'gate 3b epoch mismatch (§9.8)', '', 'operator'],
  [5, 'ready', 'active', 'claim acquired', '', 'self'],
  [6, 'active', 'ready', 'claim released', '', 'self'],
  [7, 'ready', 'paused', PAUSE, '', 'per reason'],
  [8, 'active', 'paused', PAUSE, '', 'per reason'],
  [9, 'booting', 'paused', PAUSE, '', 'per reason'],
  [
    10,
    'paused',
    'ready',
    'monthly credit refresh confirmed',
    'reconciled spend < threshold; claim already safe-released (§9.6)',
    'self (ramped, §9.6)',
  ],
  [11, 'paused', 'ready', 'operator clears via kora_control reset', '', 'operator'],
  [12, 'ready', 'stopped', STOP, '', 'operator (new boot)'],
  [13, 'active', 'stopped', STOP, '', 'operator (new boot)'],
  [14, 'paused', 'stopped', STOP, '', 'operator (new boot)'],
  [15, 'booting', 'stopped', STOP, '', 'operator (new boot)'],
];

describe('the derived §9.1 table', () => {
  it('equals the 15 rows of SPEC §2, row for row', () => {
    expect(
      TRANSITION_TABLE.map((r) => [r.row, r.from, r.to, r.trigger, r.guard, r.recoveryOwner]),
    ).toEqual(SPEC_TABLE);
  });

  it('names the domain event of every row', () => {
    expect(TRANSITION_TABLE.map((r) => r.event)).toEqual([
      'boot.gates_passed',
      'boot.gate_retry',
      'boot.gate_failed',
      'boot.epoch_mismatch',
      'claim.acquired',
      'claim.released',
      'pause',
      'pause',
      'pause',
      'resume.credit_refresh',
      'resume.operator_reset',
      'stop',
      'stop',
      'stop',
      'stop',
    ]);
  });

  it('is read from the machine: each row text is a transition description there', () => {
    const json = JSON.stringify(operationalStateMachine.definition);
    for (const row of TRANSITION_TABLE) expect(json).toContain(JSON.stringify(row.trigger));
    // `stop` is one transition on the parent of every non-final state, not four.
    const stops = json.split(JSON.stringify(STOP)).length - 1;
    expect(stops).toBeLessThan(4);
  });

  it('is frozen', () => {
    expect(Object.isFrozen(TRANSITION_TABLE)).toBe(true);
    expect(Object.isFrozen(TRANSITION_TABLE[0])).toBe(true);
  });

  it('answers isValidTransition for every pair of states', () => {
    for (const from of PRIMARY_STATES) {
      for (const to of PRIMARY_STATES) {
        const expected = SPEC_TABLE.some(([, f, t]) => f === from && t === to);
        expect(isValidTransition(from, to), `${from} → ${to}`).toBe(expected);
      }
    }
    expect(isValidTransition('paused', 'paused')).toBe(false);
    expect(isValidTransition('stopped', 'ready')).toBe(false);
  });

  it('lists transitions from and to a state in table order', () => {
    expect(transitionsFrom('booting').map((r) => r.row)).toEqual([1, 2, 3, 4, 9, 15]);
    expect(transitionsFrom('paused').map((r) => r.row)).toEqual([10, 11, 14]);
    expect(transitionsFrom('stopped')).toEqual([]);
    expect(transitionsTo('stopped').map((r) => r.row)).toEqual([3, 12, 13, 14, 15]);
    expect(transitionsTo('ready').map((r) => r.row)).toEqual([1, 6, 10, 11]);
    expect(transitionsTo('booting').map((r) => r.row)).toEqual([2]);
  });

  it('rejects unknown state names with an error naming the value', () => {
    expect(() => isValidTransition('readdy' as never, 'ready')).toThrow(OperationalStateInputError);
    expect(() => isValidTransition('ready', 'Active' as never)).toThrow(/"Active"/);
    expect(() => transitionsFrom('degraded' as never)).toThrow(/unknown primary state "degraded"/);
    expect(() => transitionsTo(42 as never)).toThrow(/42/);
  });
});
