import type {
  OperationalEvent,
  OperationalEventType,
} from '../../machines/operationalState.machine.js';
import { TRANSITION_TABLE } from '../table.js';
import { NO_CLAIM_STATES, type PrimaryState, quote } from '../vocabulary.js';

/**
 * Rejection of a change the §9.1 table does not allow: an arrow not in the table, a
 * failed guard, or any change after `stopped`. The held state is unchanged.
 *
 * @example
 * try {
 *   await opstate.transitionTo('active', 'claim before boot');
 * } catch (err) {
 *   if (err instanceof InvalidStateTransitionError) console.log(err.from, err.to, err.reason);
 * }
 */
export class InvalidStateTransitionError extends Error {
  override readonly name = 'InvalidStateTransitionError';
  constructor(
    readonly from: PrimaryState,
    /** The requested primary state, or `undefined` when the event has no row from here. */
    readonly to: PrimaryState | undefined,
    readonly trigger: string,
    /** The domain event, when the request named or implied one. */
    readonly event: OperationalEventType | undefined,
    /** Why: 'no row', a guard's text, the claim-permission invariant, or 'stopped is final'. */
    readonly reason: string,
  ) {
    super(
      `invalid state transition ${from} → ${to ?? '?'} (${event ? `event ${quote(event)}, ` : ''}trigger ${quote(trigger)}): ${reason}`,
    );
  }
}

/** @internal Names why the machine took no transition for `event` from `from`. */
export function explainRejection(
  from: PrimaryState,
  event: OperationalEvent,
  reason?: string,
): InvalidStateTransitionError {
  const row = TRANSITION_TABLE.find((r) => r.from === from && r.event === event.type);
  const trigger = event.trigger ?? row?.trigger ?? event.type;
  let why = reason;
  if (!why) {
    const to = row?.to ?? from;
    if (
      event.claimPermission !== undefined &&
      event.claimPermission !== 'none' &&
      NO_CLAIM_STATES.includes(to)
    ) {
      why = `claim permission ${quote(event.claimPermission)} is not allowed in ${to} (must be "none")`;
    } else if (row?.guard) {
      why = `guard not satisfied: ${row.guard}`;
    } else if (event.type === 'claim.released') {
      why = 'no claim is held';
    } else {
      why = `no §9.1 row for event ${quote(event.type)} from ${from}`;
    }
  }
  return new InvalidStateTransitionError(
    from,
    row?.to ?? (event.type === 'update' ? from : undefined),
    trigger,
    event.type,
    why,
  );
}
