/**
 * The wire vocabulary of R4.1 §9.1. The string values are load-bearing: they are
 * stored in chain events, served by the status API and matched by other systems.
 */
import { OperationalStateInputError, quote } from './input.js';

// The text rules and the input error live in input.ts (no imports, so the option
// validation can use them too); they stay importable from here.
export {
  checkText,
  MAX_DETAILS_BYTES,
  MAX_DETAILS_DEPTH,
  MAX_TRIGGER_LENGTH,
  OperationalStateInputError,
  parseDetails,
  parseTrigger,
  quote,
  sanitizeText,
} from './input.js';

/** The five primary states. `stopped` is final. */
export const PrimaryState = {
  BOOTING: 'booting',
  READY: 'ready',
  ACTIVE: 'active',
  PAUSED: 'paused',
  STOPPED: 'stopped',
} as const;
export type PrimaryState = (typeof PrimaryState)[keyof typeof PrimaryState];
export const PRIMARY_STATES: readonly PrimaryState[] = Object.freeze(Object.values(PrimaryState));

/** Why the process is degraded. Several may be active; "degraded" is never a primary state. */
export const DegradationReason = {
  COST: 'cost',
  AUTH: 'auth',
  DISPATCH: 'dispatch',
  SUBSTRATE: 'substrate',
  MIGRATION: 'migration',
  OPERATOR: 'operator',
  TOKEN_EXPIRING: 'token_expiring',
  RETRY_CEILING: 'retry_ceiling',
} as const;
export type DegradationReason = (typeof DegradationReason)[keyof typeof DegradationReason];
export const DEGRADATION_REASONS: readonly DegradationReason[] = Object.freeze(
  Object.values(DegradationReason),
);

/** Whether the process may mint new work claims. */
export const ClaimPermission = {
  NONE: 'none',
  CRITICAL_ONLY: 'critical_only',
  NORMAL: 'normal',
} as const;
export type ClaimPermission = (typeof ClaimPermission)[keyof typeof ClaimPermission];
export const CLAIM_PERMISSIONS: readonly ClaimPermission[] = Object.freeze(
  Object.values(ClaimPermission),
);

/** What paused the process (the `pause` event's `cause`). */
export const PauseCause = {
  STOP_KORA: 'stop_kora',
  COST_LIMIT: 'cost_limit',
  OPERATOR: 'operator',
  SUBSTRATE: 'substrate',
} as const;
export type PauseCause = (typeof PauseCause)[keyof typeof PauseCause];
export const PAUSE_CAUSES: readonly PauseCause[] = Object.freeze(Object.values(PauseCause));

/** Primary states in which claim permission is always `none`. */
export const NO_CLAIM_STATES: readonly PrimaryState[] = Object.freeze([
  PrimaryState.BOOTING,
  PrimaryState.PAUSED,
  PrimaryState.STOPPED,
]);

/**
 * An immutable operational state. `degradationReasons` is always sorted and unique.
 *
 * @example
 * const s = makeOperationalState({ primaryState: 'ready' });
 * // { primaryState: 'ready', claimPermission: 'normal', degradationReasons: [] }
 */
export interface OperationalState {
  readonly primaryState: PrimaryState;
  readonly claimPermission: ClaimPermission;
  readonly degradationReasons: readonly DegradationReason[];
}

function oneOf<T extends string>(
  values: readonly T[],
  kind: string,
): (value: unknown, field?: string) => T {
  const set = new Set<string>(values);
  return (value, field = kind) => {
    if (typeof value === 'string' && set.has(value)) return value as T;
    throw new OperationalStateInputError(
      field,
      value,
      `unknown ${kind} ${quote(value)} for ${field}; expected one of ${values.join(', ')}`,
    );
  };
}

/** Returns `value` as a `PrimaryState` or throws an `OperationalStateInputError` naming it. */
export const parsePrimaryState = oneOf(PRIMARY_STATES, 'primary state');
/** Returns `value` as a `ClaimPermission` or throws an `OperationalStateInputError` naming it. */
export const parseClaimPermission = oneOf(CLAIM_PERMISSIONS, 'claim permission');
/** Returns `value` as a `DegradationReason` or throws an `OperationalStateInputError` naming it. */
export const parseDegradationReason = oneOf(DEGRADATION_REASONS, 'degradation reason');
/** Returns `value` as a `PauseCause` or throws an `OperationalStateInputError` naming it. */
export const parsePauseCause = oneOf(PAUSE_CAUSES, 'pause cause');

/**
 * `value` when it is a positive whole number (non-negative with `allowZero`), else an
 * `OperationalStateInputError` naming `field` — for a single value outside an options
 * object (an option's nested field, a function argument). Also exported by options.ts.
 *
 * @example
 * positiveInt(30_000, 'leaseMs'); // 30000
 * positiveInt(-1, 'retryBudget', true); // throws: retryBudget must be a non-negative integer, got -1
 */
export function positiveInt(value: unknown, field: string, allowZero = false): number {
  // A plain check, not a zod schema: the vocabulary (and so the machine) loads no zod.
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= (allowZero ? 0 : 1)) {
    return value;
  }
  throw new OperationalStateInputError(
    field,
    value,
    `${field} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${quote(value)}`,
  );
}

/** @internal Kept for the sinks until they import `positiveInt` from options.ts. */
export const parsePositiveInt = (value: unknown, field: string): number =>
  positiveInt(value, field);

/** Validates a list of reasons; returns it sorted and unique. */
export function parseReasons(value: unknown, field = 'degradationReasons'): DegradationReason[] {
  if (!Array.isArray(value)) {
    throw new OperationalStateInputError(
      field,
      value,
      `${field} must be an array of degradation reasons, got ${quote(value)}`,
    );
  }
  return sortReasons(value.map((r, i) => parseDegradationReason(r, `${field}[${i}]`)));
}

/** @internal Sorted (by string value), unique copy. */
export function sortReasons(reasons: Iterable<DegradationReason>): DegradationReason[] {
  return [...new Set(reasons)].sort();
}

/** The claim permission a state gets when none is given. */
export function defaultClaimPermission(primaryState: PrimaryState): ClaimPermission {
  return NO_CLAIM_STATES.includes(primaryState) ? ClaimPermission.NONE : ClaimPermission.NORMAL;
}

/**
 * Builds a frozen, validated `OperationalState` from a partial one.
 *
 * @example
 * makeOperationalState({ primaryState: 'ready', degradationReasons: ['auth', 'cost', 'auth'] });
 * // → { primaryState: 'ready', claimPermission: 'normal', degradationReasons: ['auth', 'cost'] }
 */
export function makeOperationalState(partial: Partial<OperationalState> = {}): OperationalState {
  if (partial === null || typeof partial !== 'object') {
    throw new OperationalStateInputError(
      'state',
      partial,
      `operational state must be an object, got ${quote(partial)}`,
    );
  }
  const primaryState = parsePrimaryState(
    partial.primaryState ?? PrimaryState.BOOTING,
    'primaryState',
  );
  const claimPermission =
    partial.claimPermission === undefined
      ? defaultClaimPermission(primaryState)
      : parseClaimPermission(partial.claimPermission, 'claimPermission');
  if (NO_CLAIM_STATES.includes(primaryState) && claimPermission !== ClaimPermission.NONE) {
    throw new OperationalStateInputError(
      'claimPermission',
      claimPermission,
      `claim permission ${quote(claimPermission)} is not allowed in ${primaryState}; it must be "none"`,
    );
  }
  const degradationReasons = Object.freeze(
    parseReasons(partial.degradationReasons ?? [], 'degradationReasons'),
  );
  return Object.freeze({ primaryState, claimPermission, degradationReasons });
}

/** True when any degradation reason is active. */
export function isDegraded(state: OperationalState): boolean {
  return state.degradationReasons.length > 0;
}
