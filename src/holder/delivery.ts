/**
 * What XState lacks and the holder adds: awaited, ordered, isolated, timed delivery of
 * each committed change to the listeners (SPEC §3).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type {
  OperationalEventType,
  OperationalFact,
} from '../../machines/operationalState.machine.js';
import { LOG_TAGS, type Logger, report } from '../logger.js';
import {
  type ClaimPermission,
  type DegradationReason,
  type OperationalState,
  OperationalStateInputError,
  type PauseCause,
  type PrimaryState,
  quote,
} from '../vocabulary.js';

/** One committed change, as kept in the history ring and handed to listeners. */
export interface TransitionRecord {
  /** Commit number of this holder, from 1. */
  readonly seq: number;
  /** UTC, `YYYY-MM-DDTHH:MM:SSZ`. */
  readonly timestamp: string;
  readonly from_state: PrimaryState;
  readonly to_state: PrimaryState;
  readonly trigger: string;
  readonly event: OperationalEventType;
  /** The `pause` event's cause. */
  readonly cause?: PauseCause;
  /** The event's details, e.g. gate results. */
  readonly details?: Readonly<Record<string, unknown>>;
  readonly claim_permission: ClaimPermission;
  readonly degradation_reasons: readonly DegradationReason[];
}

/**
 * Called after every committed change; may be async. `facts` are what the machine
 * emitted for it: the `transitioned` fact, then the outcome (boot ready or failed, a
 * cost pause) if any.
 */
export type StateListener = (
  old: OperationalState,
  next: OperationalState,
  record: TransitionRecord,
  facts: readonly OperationalFact[],
) => void | Promise<void>;

export interface AddListenerOptions {
  /** Shown in logs when the listener fails. */
  name?: string;
  /**
   * Deliver the next change as soon as this listener's synchronous part has returned for
   * the previous one, instead of after its promise settled. Invocations still start in
   * commit order and never interleave their synchronous parts; each transition still
   * waits for its own promise. Lets a listener batch work across concurrent transitions
   * (the chain spool shares one fsync among them).
   */
  pipelined?: boolean;
  /**
   * Whether this listener may request a transition from the asynchronous part of its code
   * (after an `await`), so that transition resolves at commit instead of waiting for this
   * very listener. Such calls run in an `AsyncLocalStorage` context, whose promise hooks
   * every promise in the process pays for while one is active. Undeclared: an `async
   * function` is assumed to; a plain function runs without the context until it first
   * returns a promise (that call's later transitions do not wait for it; its later calls
   * run in the context). `false`: never — one requested after an `await` then waits for
   * this listener until the timeout. A transition requested in the synchronous part is
   * always known to come from inside. The package's own listeners declare `false`.
   */
  requestsTransitions?: boolean;
}

/** @internal One committed change on its way to the listeners. */
export interface Delivery {
  readonly old: OperationalState;
  readonly next: OperationalState;
  readonly record: TransitionRecord;
  readonly facts: readonly OperationalFact[];
}

interface ListenerEntry {
  readonly fn: StateListener;
  readonly name: string;
  /** Deliveries not yet handed to it, in commit order. */
  readonly queue: Job[];
  /** Calls whose promise is pending (one at most, unless pipelined: then only sync parts order). */
  inFlight: number;
  active: boolean;
  readonly pipelined: boolean;
  /** Runs in the {@link insideListener} context (it may request transitions after an await). */
  marked: boolean;
  /** Undeclared: marked once it shows an asynchronous part (see {@link call}). */
  readonly adaptive: boolean;
  /**
   * Set when a delivery overran the timeout; cleared once the listener has caught up.
   * Meanwhile its deliveries still queue (in order, one at a time), but no transition
   * waits for them: one hung listener costs one timeout, not one per transition.
   */
  overrun: boolean;
}

/** One delivery queued on one listener; `watch` when its transition waits for it. */
interface Job {
  readonly d: Delivery;
  readonly watch: Watch | undefined;
}

/**
 * Marks the asynchronous code of listeners that may request transitions, so a transition
 * they request resolves at commit. Enabled only while such a call is in flight: Node 20
 * implements it with promise hooks, a cost on every promise of the process.
 */
const insideListener = new AsyncLocalStorage<true>();
/** Calls of marked listeners in flight (the context is disabled at 0). */
let markedInFlight = 0;
/** Depth of listener code running synchronously right now (no context needed for it). */
let syncDepth = 0;

/** @internal True while a listener's code runs: its synchronous part, or a marked one's async part. */
export function isInsideListener(): boolean {
  return syncDepth > 0 || (markedInFlight > 0 && insideListener.getStore() === true);
}

/** `async function`s (bound ones too): known to have an asynchronous part before the first call. */
const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as FunctionConstructor;

function call(entry: ListenerEntry, d: Delivery): void | Promise<void> {
  syncDepth++;
  try {
    if (!entry.marked) {
      const result = entry.fn(d.old, d.next, d.record, d.facts);
      if (entry.adaptive && typeof (result as PromiseLike<void> | undefined)?.then === 'function') {
        // An undeclared plain function that returned a promise: its later calls run in the
        // context. This call's asynchronous part ran without it, so a transition it requests
        // could not be told from an outside one: until the listener catches up, no
        // transition waits for it (as after a timeout) — it cannot wait for itself.
        entry.marked = true;
        entry.overrun = true;
      }
      return result;
    }
    markedInFlight++;
    let result: void | Promise<void>;
    try {
      result = insideListener.run(true, () => entry.fn(d.old, d.next, d.record, d.facts));
    } catch (err) {
      unmark();
      throw err;
    }
    if (typeof (result as PromiseLike<void> | undefined)?.then !== 'function') {
      unmark();
      return result;
    }
    return Promise.resolve(result).finally(unmark);
  } finally {
    syncDepth--;
  }
}

// Disabled once the process is idle (the next turn of the event loop), not after every
// call: a burst of changes runs in microtasks, and each enable/disable re-installs the
// promise hooks — measured, toggling per change cost more than the hooks left on.
let disableQueued = false;
const disableIfIdle = () => {
  disableQueued = false;
  if (markedInFlight === 0) insideListener.disable();
};
function unmark(): void {
  if (--markedInFlight === 0 && !disableQueued) {
    disableQueued = true;
    setImmediate(disableIfIdle).unref();
  }
}

/** @internal Counters the delivery updates. */
export interface DeliveryStats {
  listenerFailures: number;
  listenerTimeouts: number;
}

/** A delivery being waited for: settled (or timed out) once `resolve` is cleared. */
interface Watch {
  readonly deadline: number;
  /** Cleared once settled, so a finished delivery holds nothing while it waits to be dropped. */
  pending: Set<ListenerEntry> | undefined;
  d: Delivery | undefined;
  resolve: (() => void) | undefined;
}

/** @internal The holder's listeners and their delivery. */
export class Listeners {
  readonly #entries: ListenerEntry[] = [];
  readonly #watches: Watch[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  // Date.now: the clock fake timers move together with setTimeout.
  readonly #clock = () => Date.now();
  constructor(
    private readonly timeoutMs: number,
    private readonly logger: Logger,
    private readonly stats: DeliveryStats,
  ) {}

  get size(): number {
    return this.#entries.length;
  }

  add(listener: StateListener, options: AddListenerOptions = {}): () => void {
    if (typeof listener !== 'function') {
      throw new OperationalStateInputError(
        'listener',
        listener,
        `listener must be a function, got ${quote(listener)}`,
      );
    }
    const declared =
      options.requestsTransitions ??
      (listener as { requestsTransitions?: unknown }).requestsTransitions;
    const requests = declared === undefined ? undefined : declared !== false;
    const entry: ListenerEntry = {
      fn: listener,
      name: options.name ?? (listener.name || `listener#${this.#entries.length + 1}`),
      queue: [],
      inFlight: 0,
      overrun: false,
      active: true,
      // A listener may ask for it itself (the chain emit listener does).
      pipelined: (options.pipelined ?? (listener as { pipelined?: unknown }).pipelined) === true,
      marked: requests === true || (requests === undefined && listener instanceof AsyncFunction),
      adaptive: requests === undefined,
    };
    this.#entries.push(entry);
    return () => {
      entry.active = false; // its queued deliveries are settled without a call
      const i = this.#entries.indexOf(entry);
      if (i >= 0) this.#entries.splice(i, 1);
    };
  }

  /** Queues the change on every listener; settles when all handled it or the timeout passed. */
  dispatch(d: Delivery): Promise<OperationalState> {
    if (this.#entries.length === 0) return Promise.resolve(d.next);
    // Resolves with the new state itself: the transition's own promise, no second hop.
    let resolve!: () => void;
    const done = new Promise<OperationalState>((r) => {
      resolve = () => r(d.next);
    });
    const watch: Watch = {
      deadline: this.#clock() + this.timeoutMs,
      pending: new Set(),
      d,
      resolve,
    };
    for (const entry of this.#entries) {
      const waited = !entry.overrun;
      if (waited) watch.pending!.add(entry);
      entry.queue.push({ d, watch: waited ? watch : undefined });
      this.#queued.add(entry);
    }
    if (watch.pending!.size === 0) {
      watch.resolve = watch.pending = watch.d = undefined;
      resolve();
    } else {
      this.#watches.push(watch);
      this.#arm();
    }
    // One microtask hands every queued change to every idle listener: never inside the
    // commit, and not one promise hop per listener.
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#pumpAll);
    }
    return done;
  }

  readonly #queued = new Set<ListenerEntry>();
  #scheduled = false;
  readonly #pumpAll = () => {
    this.#scheduled = false;
    for (const entry of this.#queued) this.#pump(entry);
  };

  /** Calls `entry` with its queued changes, in order, while it is not busy with one. */
  #pump(entry: ListenerEntry): void {
    while ((entry.pipelined || entry.inFlight === 0) && entry.queue.length > 0) {
      const job = entry.queue.shift()!;
      if (!entry.active) {
        this.#settle(entry, job);
        continue;
      }
      let result: void | Promise<void>;
      try {
        result = call(entry, job.d);
      } catch (err) {
        this.#failed(entry, job.d, err);
        this.#settle(entry, job);
        continue;
      }
      if (typeof (result as PromiseLike<void> | undefined)?.then !== 'function') {
        this.#settle(entry, job);
        continue;
      }
      entry.inFlight++; // unless pipelined, the next call waits for this promise
      Promise.resolve(result).then(
        () => this.#finish(entry, job),
        (err) => {
          this.#failed(entry, job.d, err);
          this.#finish(entry, job);
        },
      );
    }
    if (entry.queue.length === 0) this.#queued.delete(entry);
  }

  #finish(entry: ListenerEntry, job: Job): void {
    entry.inFlight--;
    this.#settle(entry, job);
    this.#pump(entry);
  }

  /** `entry` handled `job`: its transition stops waiting for it; caught up, it is not overrun. */
  #settle(entry: ListenerEntry, job: Job): void {
    if (entry.queue.length === 0 && entry.inFlight === 0) entry.overrun = false;
    const w = job.watch;
    if (w?.pending === undefined) return;
    w.pending.delete(entry);
    if (w.pending.size > 0) return;
    const resolve = w.resolve!;
    w.resolve = w.pending = w.d = undefined;
    resolve();
    // Finished deliveries leave the queue from its head (they finish in commit order).
    const watches = this.#watches;
    while (watches.length > 0 && watches[0]!.resolve === undefined) watches.shift();
  }

  /**
   * One timer for all deliveries in flight (not one each): armed for the oldest
   * unfinished delivery's deadline. Deadlines are in commit order, so the head is always
   * the next to expire.
   */
  #arm(): void {
    if (this.#timer !== undefined) return;
    while (this.#watches.length > 0 && this.#watches[0]!.resolve === undefined) {
      this.#watches.shift();
    }
    const head = this.#watches[0];
    if (!head) return;
    const delay = Math.min(this.timeoutMs, Math.max(0, head.deadline - this.#clock()));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const now = this.#clock();
      while (this.#watches.length > 0) {
        const w = this.#watches[0]!;
        if (w.resolve !== undefined && w.deadline > now) break;
        this.#watches.shift();
        if (w.resolve !== undefined) this.#expire(w);
      }
      this.#arm();
    }, delay);
    this.#timer.unref?.();
  }

  #expire(w: Watch): void {
    const pending = w.pending!;
    const d = w.d!;
    const resolve = w.resolve!;
    w.resolve = w.pending = w.d = undefined;
    for (const entry of pending) entry.overrun = true;
    this.stats.listenerTimeouts += pending.size;
    report(
      this.logger,
      'error',
      LOG_TAGS.holder,
      `listener(s) ${[...pending].map((e) => quote(e.name)).join(', ')} ` +
        `did not handle transition #${d.record.seq} (${d.record.from_state} → ${d.record.to_state}) within ${this.timeoutMs} ms; not waiting`,
    );
    resolve();
  }

  #failed(entry: ListenerEntry, d: Delivery, err: unknown): void {
    this.stats.listenerFailures++;
    report(
      this.logger,
      'error',
      LOG_TAGS.holder,
      `listener ${quote(entry.name)} failed on transition #${d.record.seq} ` +
        `(${d.record.from_state} → ${d.record.to_state}); state kept`,
      err,
    );
  }
}
