/**
 * The §9.1 transition table, derived from the machine — never typed a second time.
 */
import type { AnyStateNode } from 'xstate';
import {
  type OperationalEventType,
  operationalStateMachine,
  type RowMeta,
} from '../machines/operationalState.machine.js';
import { type PrimaryState, parsePrimaryState } from './vocabulary.js';

/** One row of the §9.1 table. */
export interface TransitionRow {
  /** Row number, 1–15. */
  readonly row: number;
  readonly from: PrimaryState;
  readonly to: PrimaryState;
  /** The row's trigger text (the transition's `description`). */
  readonly trigger: string;
  /** The domain event that takes this row. */
  readonly event: OperationalEventType;
  /** The guard column ('' when unguarded). */
  readonly guard: string;
  /** The recovery-owner column ('' when none). */
  readonly recoveryOwner: string;
}

/** @internal The leaf state node of each primary state. */
export const STATE_NODES: Readonly<Record<PrimaryState, AnyStateNode>> = Object.freeze({
  booting: operationalStateMachine.getStateNodeById('booting'),
  ready: operationalStateMachine.getStateNodeById('ready'),
  active: operationalStateMachine.getStateNodeById('active'),
  paused: operationalStateMachine.getStateNodeById('paused'),
  stopped: operationalStateMachine.getStateNodeById('stopped'),
});

/** @internal The primary state a leaf node stands for. */
export function primaryOfNode(node: AnyStateNode): PrimaryState | undefined {
  const p = (node.meta as { primaryState?: PrimaryState } | undefined)?.primaryState;
  return p;
}

function deriveTable(): TransitionRow[] {
  const rows: TransitionRow[] = [];
  for (const [from, leaf] of Object.entries(STATE_NODES) as [PrimaryState, AnyStateNode][]) {
    const seen = new Set<string>();
    // Walk from the leaf up: a child's handler for an event shadows its ancestors'.
    for (let node: AnyStateNode | undefined = leaf; node; node = node.parent) {
      for (const [eventType, defs] of node.transitions) {
        if (seen.has(eventType)) continue;
        seen.add(eventType);
        for (const def of defs) {
          const meta = def.meta as RowMeta | undefined;
          const target = def.target?.[0];
          if (!target || !meta) continue;
          const row = meta.rows[from];
          const to = primaryOfNode(target);
          if (row === undefined || !to) {
            throw new Error(
              `machine transition ${from} --${eventType}--> has no row number or target`,
            );
          }
          rows.push(
            Object.freeze({
              row,
              from,
              to,
              trigger: def.description ?? '',
              event: eventType as OperationalEventType,
              guard: meta.guard,
              recoveryOwner: meta.recoveryOwner,
            }),
          );
        }
      }
    }
  }
  return rows.sort((a, b) => a.row - b.row);
}

/**
 * The 15 rows of the §9.1 table (`any → X` expanded), in table order.
 *
 * @example
 * TRANSITION_TABLE.find((r) => r.row === 10);
 * // { row: 10, from: 'paused', to: 'ready', trigger: 'monthly credit refresh confirmed', ... }
 */
export const TRANSITION_TABLE: readonly TransitionRow[] = Object.freeze(deriveTable());

/**
 * True when the table has a row `from → to`.
 *
 * @example
 * isValidTransition('ready', 'active'); // true
 * isValidTransition('paused', 'paused'); // false
 */
export function isValidTransition(from: PrimaryState, to: PrimaryState): boolean {
  parsePrimaryState(from, 'from');
  parsePrimaryState(to, 'to');
  return TRANSITION_TABLE.some((r) => r.from === from && r.to === to);
}

/**
 * The rows leaving `state`, in table order.
 *
 * @example
 * transitionsFrom('active').map((r) => `${r.row}: → ${r.to} (${r.event})`);
 */
export function transitionsFrom(state: PrimaryState): TransitionRow[] {
  parsePrimaryState(state, 'state');
  return TRANSITION_TABLE.filter((r) => r.from === state);
}

/** The rows entering `state`, in table order. */
export function transitionsTo(state: PrimaryState): TransitionRow[] {
  parsePrimaryState(state, 'state');
  return TRANSITION_TABLE.filter((r) => r.to === state);
}
