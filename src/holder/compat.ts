/**
 * The seed's `transitionTo(to, trigger)` path: the only place trigger text decides
 * anything. It turns a target state and free text into the machine's event.
 */
import type { OperationalEventType } from '../../machines/operationalState.machine.js';
import { TRANSITION_TABLE, type TransitionRow } from '../table.js';
import {
  type ClaimPermission,
  type DegradationReason,
  OperationalStateInputError,
  type PauseCause,
  type PrimaryState,
  parseClaimPermission,
  parseReasons,
  quote,
} from '../vocabulary.js';
import { InvalidStateTransitionError } from './errors.js';

/** Extra fields for `transitionTo`. */
export interface TransitionOptions {
  claimPermission?: ClaimPermission;
  addReasons?: readonly DegradationReason[];
  removeReasons?: readonly DegradationReason[];
  details?: Record<string, unknown>;
  /** For a pause; inferred from the trigger text when absent. */
  cause?: PauseCause;
  /** For `resume.credit_refresh`. */
  reconciledSpendUsd?: number;
  thresholdUsd?: number;
}

/**
 * Trigger keywords (case-insensitive substrings, the seed's leniency) that pick the
 * specialised one of two rows sharing a `(from, to)` pair (SPEC §3).
 */
const ROW_KEYWORDS: readonly [string, OperationalEventType][] = [
  ['epoch', 'boot.epoch_mismatch'],
  ['credit', 'resume.credit_refresh'],
  ['invariant gate failure', 'boot.gate_failed'],
  ['retry budget', 'boot.gate_failed'],
];

/** A pause's cause read from the seed's trigger texts, when the caller named none. */
const PAUSE_CAUSE_HINTS: readonly [RegExp, PauseCause][] = [
  [/cost 100%/i, 'cost_limit'],
  [/STOP-KORA/, 'stop_kora'],
  [/substrate|epoch/i, 'substrate'],
];

/**
 * Where two rows share a pair, a keyword picks the specialised row; without one, the
 * pair's plain row — the one no keyword names: booting → paused is a `pause` (row 9),
 * paused → ready an operator reset (row 11), booting → stopped a `stop` (row 15). Taking
 * literally "the first row" made row 11 unreachable and every plain stop during boot a
 * boot failure (SPEC §3, decided 2026-11-26).
 */
function pickRow(rows: TransitionRow[], trigger: string): TransitionRow {
  if (rows.length === 1) return rows[0]!;
  const text = trigger.toLowerCase();
  for (const [word, event] of ROW_KEYWORDS) {
    const row = text.includes(word) ? rows.find((r) => r.event === event) : undefined;
    if (row) return row;
  }
  return rows.find((r) => !ROW_KEYWORDS.some(([, e]) => e === r.event)) ?? rows[0]!;
}

/** The rows of each `(from, to)` pair, found once (not a table search per change). */
const ROWS_BY_PAIR = new Map<string, TransitionRow[]>();
for (const row of TRANSITION_TABLE) {
  const key = `${row.from}>${row.to}`;
  ROWS_BY_PAIR.set(key, [...(ROWS_BY_PAIR.get(key) ?? []), row]);
}

/** Adds the options' defined fields to `event` (parsed; event-specific ones pass through). */
function addFields(event: Record<string, unknown>, opts: TransitionOptions): void {
  if (opts === null || typeof opts !== 'object') {
    throw new OperationalStateInputError(
      'opts',
      opts,
      `options must be an object, got ${quote(opts)}`,
    );
  }
  if (opts.claimPermission !== undefined) {
    event.claimPermission = parseClaimPermission(opts.claimPermission, 'claimPermission');
  }
  if (opts.addReasons !== undefined) event.addReasons = parseReasons(opts.addReasons, 'addReasons');
  if (opts.removeReasons !== undefined) {
    event.removeReasons = parseReasons(opts.removeReasons, 'removeReasons');
  }
  // The event schema refuses the event-specific ones where they do not apply.
  if (opts.details !== undefined) event.details = opts.details;
  if (opts.cause !== undefined) event.cause = opts.cause;
  if (opts.reconciledSpendUsd !== undefined) event.reconciledSpendUsd = opts.reconciledSpendUsd;
  if (opts.thresholdUsd !== undefined) event.thresholdUsd = opts.thresholdUsd;
}

/**
 * @internal The event `transitionTo(to, trigger, opts)` sends from `from` (not yet
 * validated): same primary state ⇒ `update`; otherwise the pair's row, picked by
 * trigger keywords; a pause without a cause gets one from the trigger text.
 * Throws `InvalidStateTransitionError` when no row joins the pair or `from` is final.
 */
export function eventForTransition(
  from: PrimaryState,
  to: PrimaryState,
  trigger: string,
  opts: TransitionOptions,
): Record<string, unknown> {
  const event: Record<string, unknown> = { type: 'update', trigger };
  addFields(event, opts);
  if (from === 'stopped') {
    throw new InvalidStateTransitionError(
      from,
      to,
      trigger,
      to === from ? 'update' : undefined,
      'stopped is final',
    );
  }
  if (to === from) return event;
  const rows = ROWS_BY_PAIR.get(`${from}>${to}`);
  if (rows === undefined) {
    throw new InvalidStateTransitionError(
      from,
      to,
      trigger,
      undefined,
      `no §9.1 row ${from} → ${to}`,
    );
  }
  event.type = pickRow(rows, trigger).event;
  if (event.type === 'pause' && opts.cause === undefined) {
    event.cause = PAUSE_CAUSE_HINTS.find(([re]) => re.test(trigger))?.[1] ?? 'operator';
  }
  return event;
}
