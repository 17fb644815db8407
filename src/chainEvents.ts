/**
 * The chain events of one committed change, as a pure mapping of what the machine said
 * (its facts): the generic `kora.operational_state.transitioned`, then at most one
 * outcome event (SPEC §4). No I/O; `emit.ts` appends what this builds.
 */
import type { OperationalFact, OperationalFactType } from '../machines/operationalState.machine.js';
import type { TransitionRecord } from './holder/delivery.js';
import type { OperationalState } from './vocabulary.js';

/** Emitted once for every committed change (the substrate's one generic edge event). */
export const GENERIC_TRANSITION_EVENT = 'kora.operational_state.transitioned';
/** Row 1: booting → ready, all §9.2 gates pass. */
export const BOOT_READY_EVENT = 'kora.boot.ready';
/** Row 3: booting → stopped on an invariant gate failure (not a STOP-KORA stop). */
export const BOOT_FAILED_EVENT = 'kora.boot.failed';
/** A pause caused by the cost limit (`cost 100%`). */
export const PAUSED_COST_LIMIT_EVENT = 'kora.paused.cost_limit';

/**
 * Every event type the event log accepts (its CHECK constraint holds the same list).
 *
 * @example
 * EVENT_VOCABULARY.includes(event.event_type); // true for every stored event
 */
export const EVENT_VOCABULARY = Object.freeze([
  GENERIC_TRANSITION_EVENT,
  BOOT_READY_EVENT,
  BOOT_FAILED_EVENT,
  PAUSED_COST_LIMIT_EVENT,
] as const);
export type ChainEventType = (typeof EVENT_VOCABULARY)[number];

/** The shape every event type must have (SPEC §4). */
export const EVENT_TYPE_PATTERN = /^kora\.[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;

/** One boot gate's outcome as carried by `kora.boot.ready` / `kora.boot.failed`. */
export type GateResultPayload = {
  gate_id: string | null;
  gate_class: string | null;
  outcome: string | null;
  attempts: number | null;
  elapsed_ms: number | null;
  detail: unknown;
};

/** The generic payload (SPEC §4); boot events add `gates`, and on failure `failed_*`. */
// A type alias, not an interface: payloads must fit `Record<string, unknown>`.
export type TransitionPayload = {
  from_primary_state: string;
  to_primary_state: string;
  claim_permission: string;
  /** Sorted. */
  degradation_reasons: string[];
  trigger: string;
  /** A `pause`'s cause (what a restart restores from). */
  pause_cause?: string;
  gates?: GateResultPayload[];
  failed_gate_id?: string | null;
  failed_detail?: unknown;
};

/**
 * The generic event's payload for one committed change.
 *
 * @example
 * buildTransitionPayload(old, next, record);
 * // { from_primary_state: 'booting', to_primary_state: 'ready', claim_permission: 'normal',
 * //   degradation_reasons: [], trigger: 'all §9.2 gates pass' }
 */
export function buildTransitionPayload(
  old: OperationalState,
  next: OperationalState,
  record: TransitionRecord,
): TransitionPayload {
  return {
    from_primary_state: old.primaryState,
    to_primary_state: next.primaryState,
    claim_permission: next.claimPermission,
    degradation_reasons: [...next.degradationReasons].sort(),
    trigger: record.trigger,
    ...(record.event === 'pause' && record.cause ? { pause_cause: record.cause } : {}),
  };
}

const OUTCOME_EVENTS: Readonly<Record<Exclude<OperationalFactType, 'transitioned'>, string>> = {
  'boot.ready': BOOT_READY_EVENT,
  'boot.failed': BOOT_FAILED_EVENT,
  'paused.cost_limit': PAUSED_COST_LIMIT_EVENT,
};

/**
 * The per-outcome chain event of one change's facts, if any: `kora.boot.ready` (row 1),
 * `kora.boot.failed` (row 3), `kora.paused.cost_limit` (a pause for cost). A pure mapping
 * of what the machine said; no trigger text is read (the seed's wordings pick the row
 * in `transitionTo`, before the machine sees the event).
 *
 * @example
 * opstate.addListener((old, next, record, facts) => console.log(extraEventOf(facts)));
 */
export function extraEventOf(facts: readonly OperationalFact[]): string | undefined {
  for (const fact of facts) {
    if (fact.type !== 'transitioned') return OUTCOME_EVENTS[fact.type];
  }
  return undefined;
}

/**
 * @internal The facts the machine emits for the change `record` describes — for a record
 * handed to {@link emitStateTransition} without them (e.g. from `history()`).
 */
export function factsOfRecord(record: TransitionRecord): OperationalFact[] {
  const facts: OperationalFact[] = [];
  const details = record.details ? { details: { ...record.details } } : {};
  if (record.event === 'boot.gates_passed') facts.push({ type: 'boot.ready', ...details });
  if (record.event === 'boot.gate_failed') facts.push({ type: 'boot.failed', ...details });
  if (record.event === 'pause' && record.cause === 'cost_limit') {
    facts.push({ type: 'paused.cost_limit', from: record.from_state });
  }
  return facts;
}

type Details = Readonly<Record<string, unknown>> | undefined;

function pick(obj: Record<string, unknown>, snake: string, camel: string): unknown {
  return obj[snake] !== undefined ? obj[snake] : obj[camel];
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** JSON-safe copy of a gate's detail: strings and plain JSON values as given, else text. */
function jsonValue(v: unknown): unknown {
  if (v === undefined) return null;
  try {
    const text = JSON.stringify(v);
    return text === undefined ? String(v) : JSON.parse(text);
  } catch {
    return String(v);
  }
}

/** Gate results from `record.details.gates`; snake_case or camelCase keys are read. */
function gatesOf(details: Details): GateResultPayload[] {
  const raw = details?.gates;
  if (!Array.isArray(raw)) return [];
  return raw
    .filter((g): g is Record<string, unknown> => g !== null && typeof g === 'object')
    .map((g) => ({
      gate_id: str(pick(g, 'gate_id', 'gateId')),
      gate_class: str(pick(g, 'gate_class', 'gateClass')),
      outcome: str(g.outcome),
      attempts: num(g.attempts),
      elapsed_ms: num(pick(g, 'elapsed_ms', 'elapsedMs')),
      detail: jsonValue(g.detail),
    }));
}

const FAILED_OUTCOMES = new Set(['fail', 'failed', 'failure', 'error', 'invariant_failure']);

/** @internal The payload of an extra event: the generic one, plus gates for boot events. */
export function extraPayload(
  type: string,
  generic: TransitionPayload,
  details: Details,
): TransitionPayload {
  if (type === BOOT_READY_EVENT) return { ...generic, gates: gatesOf(details) };
  if (type === BOOT_FAILED_EVENT) {
    const gates = gatesOf(details);
    // Without explicit fields, the first failed gate is the one that stopped the boot.
    const failed = gates.find((g) => g.outcome !== null && FAILED_OUTCOMES.has(g.outcome));
    const id = details
      ? pick(details as Record<string, unknown>, 'failed_gate_id', 'failedGateId')
      : undefined;
    const detail = details
      ? pick(details as Record<string, unknown>, 'failed_detail', 'failedDetail')
      : undefined;
    return {
      ...generic,
      gates,
      failed_gate_id: str(id) ?? failed?.gate_id ?? null,
      failed_detail: detail !== undefined ? jsonValue(detail) : (failed?.detail ?? null),
    };
  }
  return { ...generic };
}
