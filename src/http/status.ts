/**
 * The status payload of SPEC §7 (the seed's keys), built from one consistent read of a
 * holder: the state, its history and the derived table's rows from that state.
 */
import type { OperationalStateHolder, TransitionRecord } from '../holder.js';
import type { SinkStats } from '../sinks/types.js';
import { transitionsFrom } from '../table.js';
import {
  type ClaimPermission,
  type DegradationReason,
  type OperationalState,
  PRIMARY_STATES,
  type PrimaryState,
} from '../vocabulary.js';
import type { AgentPayload, BootPayload, ChainStorePayload, ClaimsPayload } from './cockpit.js';

/** The `error` of the stub payload served before the holder exists. */
export const HOLDER_NOT_INITIALIZED = 'OperationalStateHolder not yet initialized';

/** One row of `valid_next_states`: a §9.1 row leaving the current state. */
export interface ValidNextState {
  readonly to_state: PrimaryState;
  /** The row's trigger text. */
  readonly trigger: string;
  /** The domain event that takes the row. */
  readonly event: string;
  readonly guard: string;
  readonly recovery_owner: string;
}

/**
 * Chain-event health (additive key `chain`, present only when an emitter or a sink was
 * configured, never in the stub). `null` where the source was not configured.
 */
export interface ChainHealth {
  /** Chain events the emit listener stored. */
  readonly emitted: number | null;
  /** Emits that failed (each logged once with `[kora.operational_state.emit]`). */
  readonly failures: number | null;
  /** The last emit failure's message (else the sink's last append error). */
  readonly last_error: string | null;
  /** Events waiting in the durable sink's outbox. */
  readonly outbox_depth: number | null;
  /** Events the outbox dropped because it was full. */
  readonly dropped: number | null;
  /**
   * Events the store refused for good (not retried, not stored) — what got past input
   * validation anyway. `null` when the sink does not count them.
   */
  readonly refused: number | null;
}

/** `GET /api/operational-state`. `stub` and `error` only before the holder exists. */
export interface StatusPayload {
  readonly primary_state: PrimaryState;
  readonly claim_permission: ClaimPermission;
  /** Sorted. */
  readonly degradation_reasons: readonly DegradationReason[];
  readonly is_degraded: boolean;
  /** Oldest first. */
  readonly transition_history: readonly TransitionRecord[];
  readonly valid_next_states: readonly ValidNextState[];
  readonly chain?: ChainHealth;
  /** The cockpit's keys (see `./cockpit.ts`): each only when the app was given its source. */
  readonly agent?: AgentPayload;
  readonly claims?: ClaimsPayload;
  readonly boot?: BootPayload;
  readonly chain_store?: ChainStorePayload;
  /** The millisecond time of each record of `transition_history` this app saw commit, by seq. */
  readonly history_times?: Readonly<Record<string, string>>;
  readonly stub?: true;
  readonly error?: string;
}

/** Where emit failures are counted: the emit listener's `stats` (structural). */
export interface EmitterLike {
  readonly stats: Readonly<{ emitted: number; failures: number; lastError?: string }>;
}

/** Where the outbox depth is read: a durable sink's `stats` (structural). */
export interface SinkLike {
  /** `refused`: the shipped durable sinks count the events their store refused. */
  readonly stats: Readonly<SinkStats & { refused?: number }>;
}

/** The stub payload, before the holder exists. */
export const STUB_STATUS: StatusPayload = Object.freeze({
  primary_state: 'booting',
  claim_permission: 'none',
  degradation_reasons: Object.freeze([]),
  is_degraded: false,
  transition_history: Object.freeze([]),
  valid_next_states: Object.freeze([]),
  stub: true,
  error: HOLDER_NOT_INITIALIZED,
}) as StatusPayload;

// The rows leaving a state never change: derive them once per state.
const NEXT_BY_STATE = new Map<PrimaryState, readonly ValidNextState[]>(
  PRIMARY_STATES.map((s) => [
    s,
    Object.freeze(
      transitionsFrom(s).map((r) =>
        Object.freeze({
          to_state: r.to,
          trigger: r.trigger,
          event: r.event,
          guard: r.guard,
          recovery_owner: r.recoveryOwner,
        }),
      ),
    ),
  ]),
);

/**
 * The `valid_next_states` of `state`: `transitionsFrom(state)` in the wire shape.
 *
 * @example
 * validNextStates('ready').map((r) => r.to_state); // ['active', 'paused', 'stopped']
 */
export function validNextStates(state: PrimaryState): readonly ValidNextState[] {
  return NEXT_BY_STATE.get(state) ?? [];
}

/** @internal The `chain` key, or undefined when neither source is configured. */
export function chainHealth(
  emitter: EmitterLike | undefined,
  sink: SinkLike | undefined,
): ChainHealth | undefined {
  if (!emitter && !sink) return undefined;
  const e = emitter?.stats;
  const s = sink?.stats;
  return {
    emitted: e ? e.emitted : null,
    failures: e ? e.failures : null,
    last_error: e?.lastError ?? s?.lastError ?? null,
    outbox_depth: s ? s.outboxDepth : null,
    dropped: s ? s.dropped : null,
    refused: typeof s?.refused === 'number' ? s.refused : null,
  };
}

/**
 * The status payload of `state` with `history` (already consistent with it).
 *
 * @example
 * statusFrom(opstate.current, opstate.history());
 */
export function statusFrom(
  state: OperationalState,
  history: readonly TransitionRecord[],
  chain?: ChainHealth,
): StatusPayload {
  return {
    primary_state: state.primaryState,
    claim_permission: state.claimPermission,
    degradation_reasons: state.degradationReasons,
    is_degraded: state.degradationReasons.length > 0,
    transition_history: history,
    valid_next_states: validNextStates(state.primaryState),
    ...(chain ? { chain } : {}),
  };
}

/**
 * The status payload of `holder` now, or the stub when there is no holder yet. Reads the
 * state and the history in one synchronous step: commits are synchronous, so they match.
 *
 * @example
 * statusOf(opstate).primary_state; // 'ready'
 * statusOf(undefined).stub; // true: the stub payload
 */
export function statusOf(
  holder: OperationalStateHolder | undefined,
  chain?: ChainHealth,
): StatusPayload {
  if (!holder) return STUB_STATUS;
  return statusFrom(holder.current, holder.history(), chain);
}

/** `/readyz`: ready only in ready/active with a claim permission other than none. */
export function readiness(
  holder: OperationalStateHolder | undefined,
): { ready: true } | { ready: false; reason: string } {
  if (!holder) return { ready: false, reason: HOLDER_NOT_INITIALIZED };
  const { primaryState, claimPermission } = holder.current;
  if (primaryState !== 'ready' && primaryState !== 'active') {
    return { ready: false, reason: `primary state is ${primaryState}` };
  }
  if (claimPermission === 'none') return { ready: false, reason: 'claim permission is none' };
  return { ready: true };
}
