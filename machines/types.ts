/**
 * The statechart's vocabulary: the domain events it takes, its context and input, the
 * facts it emits, and its transition metadata. Types and constants only.
 */
import type {
  ClaimPermission,
  DegradationReason,
  PauseCause,
  PrimaryState,
} from '../src/vocabulary.js';

/** Fields every domain event may carry. */
export interface EventCommon {
  /** Free text, at most 1,000 characters; defaults to the row text. */
  trigger?: string;
  claimPermission?: ClaimPermission;
  addReasons?: readonly DegradationReason[];
  removeReasons?: readonly DegradationReason[];
  /** JSON object recorded with the change (e.g. gate results). */
  details?: Record<string, unknown>;
}

/** The domain events of §2, one per row family, plus the same-state `update`. */
export type OperationalEvent =
  | ({ type: 'boot.gates_passed' } & EventCommon)
  | ({ type: 'boot.gate_retry'; gate?: string } & EventCommon)
  | ({ type: 'boot.gate_failed' } & EventCommon)
  | ({ type: 'boot.epoch_mismatch' } & EventCommon)
  | ({ type: 'claim.acquired' } & EventCommon)
  | ({ type: 'claim.released' } & EventCommon)
  | ({ type: 'pause'; cause?: PauseCause } & EventCommon)
  | ({
      type: 'resume.credit_refresh';
      reconciledSpendUsd?: number;
      thresholdUsd?: number;
    } & EventCommon)
  | ({ type: 'resume.operator_reset' } & EventCommon)
  | ({ type: 'stop' } & EventCommon)
  | ({ type: 'update' } & EventCommon);

export type OperationalEventType = OperationalEvent['type'];

export const EVENT_TYPES = [
  'boot.gates_passed',
  'boot.gate_retry',
  'boot.gate_failed',
  'boot.epoch_mismatch',
  'claim.acquired',
  'claim.released',
  'pause',
  'resume.credit_refresh',
  'resume.operator_reset',
  'stop',
  'update',
] as const satisfies readonly OperationalEventType[];

export interface OperationalContext {
  /** The primary state the machine is in (set on entry; facts read it as `from`). */
  primaryState: PrimaryState;
  claimPermission: ClaimPermission;
  /** Sorted, unique. */
  degradationReasons: DegradationReason[];
  /** A claim is held (set by `claim.acquired`, cleared by `claim.released`). */
  claimHeld: boolean;
  /** `boot.gate_retry` count per gate in this boot. */
  retries: Record<string, number>;
  /** Retries allowed per gate (attempts = budget + 1). */
  retryBudget: number;
}

export interface OperationalInput {
  claimPermission?: ClaimPermission;
  degradationReasons?: readonly DegradationReason[];
  retryBudget?: number;
}

/** Fields of the fact every committed change emits. */
export interface TransitionedFact {
  type: 'transitioned';
  from: PrimaryState;
  to: PrimaryState;
  event: OperationalEventType;
  /** The event's trigger, else the row's text. */
  trigger: string;
  /** A `pause`'s cause (default `operator`). */
  cause?: PauseCause;
  details?: Record<string, unknown>;
  claimPermission: ClaimPermission;
  degradationReasons: readonly DegradationReason[];
}

/**
 * What the machine says happened, in typed facts (XState `emit`): one `transitioned` per
 * committed change, then at most one outcome — the boot passed (row 1), the boot failed
 * (row 3), or a pause for cost (rows 7–9 with cause `cost_limit`). Chain events are a
 * pure mapping of these.
 */
export type OperationalFact =
  | TransitionedFact
  | { type: 'boot.ready'; details?: Record<string, unknown> }
  | { type: 'boot.failed'; details?: Record<string, unknown> }
  | { type: 'paused.cost_limit'; from: PrimaryState };

export type OperationalFactType = OperationalFact['type'];

/** Transition metadata: the table's guard and recovery-owner columns, and row numbers. */
export interface RowMeta {
  /** Source state → row number in the §9.1 table. */
  rows: Partial<Record<PrimaryState, number>>;
  guard: string;
  recoveryOwner: string;
}
