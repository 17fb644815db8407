/**
 * Chain events (ST2, SPEC §4): one generic event for every committed change, plus at
 * most one per-trigger literal, appended to an {@link EventSink} in one call.
 *
 * Fail loud: a preflight failure or a sink failure is an {@link OperationalStateEmitError}
 * naming the event type and the cause, logged once at error level with the tag
 * `[kora.operational_state.emit]` and counted — while the state machine keeps moving.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { OperationalFact } from '../machines/operationalState.machine.js';
import {
  buildTransitionPayload,
  EVENT_TYPE_PATTERN,
  extraEventOf,
  extraPayload,
  factsOfRecord,
  GENERIC_TRANSITION_EVENT,
  type TransitionPayload,
} from './chainEvents.js';
import type { TransitionRecord } from './holder/delivery.js';
import { LOG_TAGS, type Logger, SILENT_LOGGER } from './logger.js';
import { type BatchStats, batchingAppender } from './sinks/batch.js';
import type { ChainEvent, EventSink } from './sinks/types.js';
import {
  checkText,
  type OperationalState,
  OperationalStateInputError,
  quote,
} from './vocabulary.js';

export * from './chainEvents.js';

/** The log tag of every emit failure. */
export const EMIT_LOG_TAG = LOG_TAGS.emit;

/**
 * A chain event that was not emitted, or not stored: a preflight failure (no sink, empty
 * workspace id, malformed event type) or the sink's failure. The transition itself stands.
 *
 * @example
 * await emitStateTransition(sink, old, next, record).catch((err) => {
 *   if (err instanceof OperationalStateEmitError) console.log(err.eventType, err.cause);
 * });
 */
export class OperationalStateEmitError extends Error {
  override readonly name = 'OperationalStateEmitError';
  /** The underlying failure. */
  override readonly cause: unknown;
  constructor(
    /** The event type that failed (for a whole-batch sink failure, the batch's first). */
    readonly eventType: string,
    cause: unknown,
    /** Every event type of the failed emission, generic first. */
    readonly eventTypes: readonly string[] = [eventType],
    /** `from → to` of the change, when known. */
    readonly transition?: string,
  ) {
    const others = eventTypes.filter((t) => t !== eventType);
    super(
      `chain event ${quote(eventType)}${others.length ? ` (with ${others.map(quote).join(', ')})` : ''}` +
        `${transition ? ` for ${transition}` : ''} failed: ${describe(cause)}`,
      { cause },
    );
    this.cause = cause;
  }
}

function describe(cause: unknown): string {
  if (cause instanceof Error) return cause.message || cause.name;
  return quote(cause);
}

/** Hands out one instance's chain `seq`: from 1, gapless. */
export interface EmitSequence {
  readonly instanceId: string;
  /** The last `seq` handed out (0 before the first). */
  readonly last: number;
  /** @internal Reserves `count` consecutive numbers; returns the first. */
  reserve(count: number): number;
}

/** An instance id unique to this process run: host, pid and a random suffix. */
export function defaultInstanceId(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

/**
 * A `seq` counter for one instance id. Every emitter of one process that shares an
 * instance id must share its sequence — the log's UNIQUE (instance_id, seq) would
 * otherwise swallow the second one's events as retries.
 *
 * @example
 * const seq = createEmitSequence('worker-1:boot-42');
 * await emitStateTransition(sink, old, next, record, { sequence: seq });
 */
export function createEmitSequence(instanceId: string = defaultInstanceId()): EmitSequence {
  if (typeof instanceId !== 'string' || instanceId.trim() === '') {
    throw new OperationalStateInputError(
      'instanceId',
      instanceId,
      `instanceId must be a non-empty string, got ${quote(instanceId)}`,
    );
  }
  // Stored with every event: text the store would refuse is refused here, at creation.
  checkText(instanceId, 'instanceId');
  let last = 0;
  return {
    instanceId,
    get last() {
      return last;
    },
    reserve(count: number) {
      const first = last + 1;
      last += count;
      return first;
    },
  };
}

/** The agent id when none is given. */
export const DEFAULT_AGENT_ID = 'default';

/**
 * Validates an agent id: 1–200 characters of letters, digits and `._:@-` (it names a
 * spool directory and is matched in the chain).
 *
 * @example
 * parseAgentId('worker-1'); // 'worker-1'
 */
export function parseAgentId(value: unknown, field = 'agentId'): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$/.test(value)) {
    throw new OperationalStateInputError(
      field,
      value,
      `${field} must be 1–200 characters of letters, digits and . _ : @ - (starting with a letter or digit), got ${quote(value)}`,
    );
  }
  return value;
}

export interface EmitOptions {
  /** The `seq` counter (default: a new one, with a fresh instance id, for this change alone). */
  sequence?: EmitSequence;
  /** What the machine emitted for the change (default: read from `record`'s event and cause). */
  facts?: readonly OperationalFact[];
  /** The agent the events belong to (default `'default'`): stable across runs. */
  agentId?: string;
  /** Clock for `occurred_at` (default `Date.now`). */
  now?: () => number;
  /** Where a failure is logged (default `console`). */
  logger?: Logger;
  /**
   * Picks the extra event instead of the facts' outcome ({@link extraEventOf}); a
   * deployment whose event log accepts more literals can add its own here.
   */
  selectExtra?: (
    old: OperationalState,
    next: OperationalState,
    record: TransitionRecord,
  ) => string | undefined;
}

function logOnce(logger: Logger, err: OperationalStateEmitError): void {
  try {
    logger.error(`${EMIT_LOG_TAG} ${err.message}`, err);
  } catch {
    // A throwing logger must not turn a reported failure into a second one.
  }
}

/** The batch event type a sink's failure is about: the one its message names, else the first. */
function failedType(types: readonly string[], cause: unknown): string {
  if (types.length > 1) {
    const text = describe(cause);
    // Longest first: the generic type's text never contains an extra's, but be exact.
    const named = [...types].sort((a, b) => b.length - a.length).find((t) => text.includes(t));
    if (named) return named;
  }
  return types[0]!;
}

/**
 * Emits one committed change: the generic event, then the per-trigger literal if any, in
 * ONE `sink.append` call. Resolves with the events appended; rejects with an
 * {@link OperationalStateEmitError} (already logged) when the emit failed.
 *
 * @example
 * const sink = createMemorySink({ workspaceId: 'ws-1' });
 * await emitStateTransition(sink, old, next, record);
 * sink.events.map((e) => e.event_type); // ['kora.operational_state.transitioned', 'kora.boot.ready']
 */
export async function emitStateTransition(
  sink: EventSink,
  old: OperationalState,
  next: OperationalState,
  record: TransitionRecord,
  options: EmitOptions = {},
): Promise<ChainEvent[]> {
  const emission = prepareEmission(sink, old, next, record, options);
  try {
    await sink.append(emission.events);
  } catch (err) {
    throw emission.failed(err);
  }
  return emission.events;
}

/** One change's events, numbered; `failed` makes (and logs) the error of their sink failure. */
type Emission = { events: ChainEvent[]; failed(cause: unknown): OperationalStateEmitError };

/** Preflight (throws, logged, before any seq is used), then the events (the seq is used). */
function prepareEmission(
  sink: EventSink,
  old: OperationalState,
  next: OperationalState,
  record: TransitionRecord,
  options: EmitOptions,
): Emission {
  const logger = options.logger ?? console;
  const transition = old && next ? `${old.primaryState} → ${next.primaryState}` : undefined;
  const fail = (eventType: string, cause: unknown, types?: readonly string[]) => {
    const err = new OperationalStateEmitError(eventType, cause, types, transition);
    logOnce(logger, err);
    return err;
  };

  if (!sink || typeof sink.append !== 'function') {
    throw fail(GENERIC_TRANSITION_EVENT, new TypeError(`no event sink (got ${quote(sink)})`));
  }
  const workspaceId = sink.workspaceId;
  if (typeof workspaceId !== 'string' || workspaceId.trim() === '') {
    throw fail(
      GENERIC_TRANSITION_EVENT,
      new TypeError(`the sink's workspace id is empty (got ${quote(workspaceId)})`),
    );
  }
  let extra: string | undefined;
  try {
    extra = options.selectExtra
      ? options.selectExtra(old, next, record)
      : extraEventOf(options.facts ?? factsOfRecord(record));
  } catch (err) {
    throw fail(GENERIC_TRANSITION_EVENT, err);
  }
  const types =
    extra === undefined ? [GENERIC_TRANSITION_EVENT] : [GENERIC_TRANSITION_EVENT, extra];
  for (const type of types) {
    if (typeof type !== 'string' || !EVENT_TYPE_PATTERN.test(type)) {
      throw fail(
        String(type),
        new TypeError(`event type ${quote(type)} does not match ${EVENT_TYPE_PATTERN}`),
        types,
      );
    }
  }
  let generic: TransitionPayload;
  let occurredAt: string;
  try {
    generic = buildTransitionPayload(old, next, record);
    occurredAt = new Date((options.now ?? Date.now)()).toISOString();
  } catch (err) {
    throw fail(GENERIC_TRANSITION_EVENT, err, types);
  }

  // Without a sequence the change is its own instance (a listener passes the one it keeps).
  const sequence = options.sequence ?? createEmitSequence();
  const first = sequence.reserve(types.length);
  const events: ChainEvent[] = types.map((event_type, i) => ({
    event_type,
    payload: i === 0 ? generic : extraPayload(event_type, generic, record.details),
    workspace_id: workspaceId,
    agent_id: options.agentId ?? DEFAULT_AGENT_ID,
    instance_id: sequence.instanceId,
    seq: first + i,
    occurred_at: occurredAt,
  }));
  return { events, failed: (cause) => fail(failedType(types, cause), cause, types) };
}

/** A holder listener that emits chain events, with its own counters. */
export interface EmitListener {
  (
    old: OperationalState,
    next: OperationalState,
    record: TransitionRecord,
    facts?: readonly OperationalFact[],
  ): Promise<void>;
  /** Events stored, emits failed (each logged once), and the last failure's message. */
  readonly stats: Readonly<{ emitted: number; failures: number; lastError?: string }>;
  /** The `instance_id` of every event this listener emits. */
  readonly instanceId: string;
  /** The `agent_id` of every event this listener emits. */
  readonly agentId: string;
  /** Sink calls made (`batches`) for how many changes: concurrent ones share one. */
  readonly batches: BatchStats;
  /** Read by `addListener`: delivered pipelined, never requesting a transition. */
  readonly pipelined: true;
  readonly requestsTransitions: false;
}

export interface EmitListenerOptions {
  /** Unique per process run (default: host, pid and a random suffix). */
  instanceId?: string;
  /** The agent, stable across runs (default `'default'`): a restart restores its pause. */
  agentId?: string;
  /**
   * Where a failed emit is logged (once). Default: none — the failure is rethrown to the
   * holder, which logs it with its own logger.
   */
  logger?: Logger;
  now?: () => number;
  selectExtra?: EmitOptions['selectExtra'];
}

/**
 * A holder listener that appends every committed change's chain events to `sink`. A
 * failed emit is counted in `stats` and reported exactly once, as an
 * {@link OperationalStateEmitError}: with a `logger`, logged there (tag
 * `[kora.operational_state.emit]`) and not thrown; without one, rethrown, so the holder
 * it is registered on logs it through the holder's own logger (as a listener failure,
 * counted in `holder.stats.listenerFailures`). Either way the transition stands.
 *
 * @example
 * // createOpstate({ sink }) registers one; a second chain (e.g. a mirror) is one more:
 * const mirror = makeEmitListener(createMemorySink({ workspaceId: 'ws-1' }));
 * opstate.addListener(mirror, { name: 'chain-mirror' });
 * mirror.stats; // { emitted: 0, failures: 0 }
 */
export function makeEmitListener(sink: EventSink, options: EmitListenerOptions = {}): EmitListener {
  const refuse = (field: string, value: unknown, must: string): never => {
    throw new OperationalStateInputError(
      field,
      value,
      `${field} must ${must}, got ${quote(value)}`,
    );
  };
  if (options === null || typeof options !== 'object') refuse('options', options, 'be an object');
  if (options.logger !== undefined && typeof options.logger?.error !== 'function') {
    refuse('logger', options.logger, 'have an error() method');
  }
  for (const field of ['now', 'selectExtra'] as const) {
    const v = options[field];
    if (v !== undefined && typeof v !== 'function') refuse(field, v, 'be a function');
  }
  const sequence = createEmitSequence(options.instanceId ?? defaultInstanceId());
  const agentId = parseAgentId(options.agentId ?? DEFAULT_AGENT_ID);
  const stats: { emitted: number; failures: number; lastError?: string } = {
    emitted: 0,
    failures: 0,
  };
  const emitOptions: EmitOptions = {
    sequence,
    agentId,
    // Without a logger of its own the listener reports nothing itself: it rethrows, and
    // the holder logs the failure once, through the holder's logger.
    logger: options.logger ?? SILENT_LOGGER,
    ...(options.now ? { now: options.now } : {}),
    ...(options.selectExtra ? { selectExtra: options.selectExtra } : {}),
  };
  // Concurrent transitions (delivered back to back: pipelined) share one sink call.
  const append = batchingAppender(sink);
  const listener = async (
    old: OperationalState,
    next: OperationalState,
    record: TransitionRecord,
    facts?: readonly OperationalFact[],
  ) => {
    let emission: Emission | undefined;
    try {
      // Synchronous up to the append: seqs are handed out in commit order.
      emission = prepareEmission(
        sink,
        old,
        next,
        record,
        facts ? { ...emitOptions, facts } : emitOptions,
      );
      await append(emission.events);
      stats.emitted += emission.events.length;
    } catch (cause) {
      // Reported once (a preflight failure already, a sink failure here) to `options.logger`;
      // without one, rethrown for the holder to log.
      const err = emission ? emission.failed(cause) : cause;
      stats.failures++;
      stats.lastError = err instanceof Error ? err.message : String(err);
      if (options.logger === undefined) throw err;
    }
  };
  Object.defineProperty(listener, 'name', { value: 'kora.operational_state.emit' });
  Object.defineProperty(listener, 'stats', { get: () => ({ ...stats }), enumerable: true });
  Object.defineProperty(listener, 'instanceId', { value: sequence.instanceId, enumerable: true });
  Object.defineProperty(listener, 'agentId', { value: agentId, enumerable: true });
  Object.defineProperty(listener, 'batches', { get: () => append.stats, enumerable: true });
  // Pipelined: concurrent transitions share one sink call; it never requests one.
  Object.defineProperty(listener, 'pipelined', { value: true, enumerable: true });
  Object.defineProperty(listener, 'requestsTransitions', { value: false, enumerable: true });
  return listener as EmitListener;
}
