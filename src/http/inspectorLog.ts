/**
 * The offline inspector's record (SPEC §12, `GET /api/inspector`): a bounded ring of the
 * served actor's steps — each committed change with the event that caused it, the XState
 * state value and the context right after it.
 *
 * Derived from the outside of the instance, without an inspection observer of its own
 * (XState takes `inspect` only when the actor is created, which is the caller's business,
 * and `--inspect` may already use it): `opstate.actor.subscribe` is called synchronously
 * on every snapshot, after the holder's own observer (subscribed at creation) committed
 * the change's record, so a snapshot whose newest record is new is one step: the record
 * gives the event, the snapshot its value and context. Events the machine ignored change
 * nothing and leave no step. Changes committed before the log followed the instance are
 * taken from its history, with the context the record carries (origin `history`).
 */
import type { OperationalStateHolder, TransitionRecord } from '../holder.js';
import type { Logger } from '../logger.js';
import type { PrimaryState } from '../vocabulary.js';
import { HTTP_LOG_TAG } from './respond.js';

/** The event of a step, as its transition record names it. */
export interface InspectorStepEvent {
  /** The domain event (`boot.gates_passed`, `pause`, …) or `xstate.init` for the first snapshot. */
  readonly type: string;
  readonly trigger?: string;
  readonly cause?: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

/** One step of the actor: an event and the snapshot right after it. */
export interface InspectorStep {
  /** 1, 2, …: the step's number in this log (never reused; `?after=` takes it). */
  readonly i: number;
  /** When the step was taken (ms since the epoch; a `history` step: its record's second). */
  readonly at_ms: number;
  /** `live`: seen as it happened; `history`: committed before the log followed the actor. */
  readonly origin: 'live' | 'history';
  /** The transition record's seq; null for the initial snapshot. */
  readonly seq: number | null;
  readonly event: InspectorStepEvent;
  /** The primary state before the step (null for the initial snapshot). */
  readonly from: PrimaryState | null;
  /** The primary state after it. */
  readonly state: PrimaryState;
  /** The XState state value after it (a `history` step: null, not recorded). */
  readonly value: unknown;
  /** The machine's context after it (a `history` step: the fields its record carries). */
  readonly context: Readonly<Record<string, unknown>>;
  /** The snapshot's status: `active`, or `done` once the actor reached `stopped`. */
  readonly status: string;
}

/** What `GET /api/inspector` answers. */
export interface InspectorView {
  /** Steps kept at most (the newest). */
  readonly capacity: number;
  /** Steps recorded since the log began (the newest step's `i`). */
  readonly recorded: number;
  /** Older steps that fell off the ring. */
  readonly dropped: number;
  /** The instance is being followed (false before the served holder exists). */
  readonly following: boolean;
  /** Oldest first: those after `after`, the newest `limit` of them. */
  readonly steps: readonly InspectorStep[];
}

/** @internal The app's inspector log. */
export interface InspectorLog {
  /** Starts following `holder` (once; later calls do nothing). Returns the unsubscribe. */
  follow(holder: OperationalStateHolder): () => void;
  /** Steps after `after` (default 0: all kept), the newest `limit` of them. */
  view(after?: number, limit?: number): InspectorView;
}

/** The context a transition record carries (the fields the machine keeps in step with it). */
function recordContext(r: TransitionRecord): Record<string, unknown> {
  return {
    primaryState: r.to_state,
    claimPermission: r.claim_permission,
    degradationReasons: [...r.degradation_reasons],
    claimHeld: r.to_state === 'active',
  };
}

function eventOf(r: TransitionRecord): InspectorStepEvent {
  return {
    type: r.event,
    trigger: r.trigger,
    ...(r.cause ? { cause: r.cause } : {}),
    ...(r.details ? { details: r.details } : {}),
  };
}

/**
 * @internal A ring of at most `capacity` steps; `now` stamps the live ones.
 *
 * @example
 * const log = createInspectorLog(500, Date.now, console);
 * log.follow(opstate);
 * log.view(0, 50).steps.map((s) => `${s.event.type} → ${s.state}`);
 */
export function createInspectorLog(
  capacity: number,
  now: () => number,
  logger: Logger,
): InspectorLog {
  // A ring: once full, each step overwrites the oldest (no shifting on the commit path).
  const steps: InspectorStep[] = [];
  let start = 0;
  let recorded = 0;
  let following = false;

  function push(step: Omit<InspectorStep, 'i'>): void {
    const s = Object.freeze({ i: ++recorded, ...step });
    if (steps.length < capacity) steps.push(s);
    else {
      steps[start] = s;
      start = (start + 1) % capacity;
    }
  }

  function follow(holder: OperationalStateHolder): () => void {
    if (following) return () => {};
    following = true;
    const kept = holder.history();
    let lastSeq = kept.at(-1)?.seq ?? 0;
    for (const r of kept) {
      push({
        at_ms: Date.parse(r.timestamp),
        origin: 'history',
        seq: r.seq,
        event: eventOf(r),
        from: r.from_state,
        state: r.to_state,
        value: null,
        context: recordContext(r),
        status: r.to_state === 'stopped' ? 'done' : 'active',
      });
    }
    const first = holder.snapshot;
    if (kept.length === 0) {
      push({
        at_ms: now(),
        origin: 'live',
        seq: null,
        event: { type: 'xstate.init' },
        from: null,
        state: holder.current.primaryState,
        value: first.value,
        context: first.context as unknown as Record<string, unknown>,
        status: first.status,
      });
    }
    const sub = holder.actor.subscribe({
      next: (snapshot) => {
        // Isolated like a listener: a failure here must not reach the actor's observers.
        try {
          const r = holder.history(1)[0];
          if (!r || r.seq <= lastSeq) return;
          lastSeq = r.seq;
          push({
            at_ms: now(),
            origin: 'live',
            seq: r.seq,
            event: eventOf(r),
            from: r.from_state,
            state: r.to_state,
            value: snapshot.value,
            context: snapshot.context as unknown as Record<string, unknown>,
            status: snapshot.status,
          });
        } catch (err) {
          logger.warn(`${HTTP_LOG_TAG} the inspector log missed a step`, err);
        }
      },
      error: () => {
        // The holder reports the actor's errors; the log only stops growing.
      },
    });
    return () => sub.unsubscribe();
  }

  function view(after = 0, limit = capacity): InspectorView {
    // Step numbers are consecutive: the kept ones are oldest..recorded.
    const oldest = recorded - steps.length + 1;
    const from = Math.max(after + 1, oldest, recorded - limit + 1);
    const out: InspectorStep[] = [];
    for (let i = from; i <= recorded; i++) {
      out.push(steps[(start + (i - oldest)) % steps.length]!);
    }
    return { capacity, recorded, dropped: recorded - steps.length, following, steps: out };
  }

  return { follow, view };
}
