/**
 * The holder (ST1): one XState actor of the §9.1 machine, with the seed's API on top —
 * validated changes, a bounded history, and isolated, ordered listeners.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { type Actor, type ActorOptions, createActor, type SnapshotFrom } from 'xstate';
import {
  type OperationalEvent,
  type OperationalEventType,
  type OperationalStateMachine,
  operationalStateMachine,
} from '../machines/operationalState.machine.js';
import { parseEvent } from './events.js';
import { STATE_NODES, TRANSITION_TABLE, type TransitionRow } from './table.js';
import {
  type ClaimPermission,
  type DegradationReason,
  makeOperationalState,
  NO_CLAIM_STATES,
  type OperationalState,
  OperationalStateInputError,
  type PauseCause,
  type PrimaryState,
  parseClaimPermission,
  parsePrimaryState,
  parseReasons,
  parseTrigger,
  quote,
} from './vocabulary.js';

/** A console-compatible logger. */
export interface Logger {
  error(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  info(...args: unknown[]): void;
  debug?(...args: unknown[]): void;
}

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

/** Called after every committed change; may be async. */
export type StateListener = (
  old: OperationalState,
  next: OperationalState,
  record: TransitionRecord,
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
}

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

export interface OperationalStateHolderOptions {
  /** Default: booting, no reasons; claim permission by state. */
  initial?: Partial<OperationalState>;
  /** Retries per gate per boot (default 4, i.e. 5 attempts). */
  retryBudget?: number;
  /** History ring size (default 10). */
  historySize?: number;
  /** How long a transition waits for each listener (default 5000 ms). */
  listenerTimeoutMs?: number;
  /** Passed to XState's `createActor` (e.g. the Stately inspector's `inspect`). */
  inspect?: ActorOptions<OperationalStateMachine>['inspect'];
  logger?: Logger;
  /** Clock for history timestamps (default `Date.now`). */
  now?: () => number;
}

/** Counters a status page or metrics endpoint can read. */
export interface HolderStats {
  commits: number;
  rejected: number;
  listenerFailures: number;
  listenerTimeouts: number;
}

const defaults = {
  initial: {} as Partial<OperationalState>,
  retryBudget: 4,
  historySize: 10,
  listenerTimeoutMs: 5000,
  inspect: undefined as OperationalStateHolderOptions['inspect'],
  logger: console as Logger,
  now: Date.now as () => number,
};

/**
 * Rejection of a change the §9.1 table does not allow: an arrow not in the table, a
 * failed guard, or any change after `stopped`. The held state is unchanged.
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

type Snapshot = SnapshotFrom<OperationalStateMachine>;

interface ListenerEntry {
  readonly fn: StateListener;
  readonly name: string;
  /** Settles when this listener has handled every delivery so far (never rejects). */
  tail: Promise<void>;
  active: boolean;
  readonly pipelined: boolean;
  /**
   * Set when a delivery overran the timeout; cleared once the listener has caught up.
   * Meanwhile its deliveries still queue (in order, one at a time), but no transition
   * waits for them: one hung listener costs one timeout, not one per transition.
   */
  overrun: boolean;
}

interface InFlight {
  event: OperationalEvent;
  record?: TransitionRecord;
  old?: OperationalState;
  next?: OperationalState;
}

/** Marks code running inside a listener, so a transition it requests resolves at commit. */
const insideListener = new AsyncLocalStorage<true>();

const PAUSE_CAUSE_HINTS: readonly [RegExp, PauseCause][] = [
  [/cost 100%/i, 'cost_limit'],
  [/STOP-KORA/, 'stop_kora'],
  [/substrate|epoch/i, 'substrate'],
];

function primaryOf(snapshot: Snapshot): PrimaryState {
  let value: unknown = snapshot.value;
  while (value !== null && typeof value === 'object') value = Object.values(value)[0];
  return value as PrimaryState;
}

function stateValueOf(primary: PrimaryState): unknown {
  const path = STATE_NODES[primary].path;
  let value: unknown = path[path.length - 1];
  for (let i = path.length - 2; i >= 0; i--) value = { [path[i]!]: value };
  return value;
}

function utcSeconds(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}Z`;
}

function positiveInt(value: unknown, field: string, allowZero = false): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < (allowZero ? 0 : 1)) {
    throw new OperationalStateInputError(
      field,
      value,
      `${field} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${quote(value)}`,
    );
  }
  return value;
}

/**
 * The live operational state of one process. Create with
 * {@link createOperationalStateHolder} (or the process singleton {@link initHolder}).
 */
export class OperationalStateHolder {
  readonly #actor: Actor<OperationalStateMachine>;
  readonly #options: typeof defaults;
  readonly #listeners: ListenerEntry[] = [];
  readonly #history: TransitionRecord[] = [];
  #historyStart = 0;
  #current: OperationalState;
  #snapshot: Snapshot;
  #seq = 0;
  #inFlight: InFlight | undefined;
  readonly #stats: HolderStats = {
    commits: 0,
    rejected: 0,
    listenerFailures: 0,
    listenerTimeouts: 0,
  };

  /** @internal Use `createOperationalStateHolder`. */
  constructor(options: OperationalStateHolderOptions = {}) {
    const o = { ...defaults, ...stripUndefined(options) };
    positiveInt(o.retryBudget, 'retryBudget', true);
    positiveInt(o.historySize, 'historySize');
    positiveInt(o.listenerTimeoutMs, 'listenerTimeoutMs');
    if (typeof o.now !== 'function') {
      throw new OperationalStateInputError(
        'now',
        o.now,
        `now must be a function, got ${quote(o.now)}`,
      );
    }
    this.#options = o;
    this.#current = makeOperationalState(o.initial);
    const snapshot = operationalStateMachine.resolveState({
      value: stateValueOf(this.#current.primaryState) as never,
      context: {
        claimPermission: this.#current.claimPermission,
        degradationReasons: [...this.#current.degradationReasons],
        claimHeld: this.#current.primaryState === 'active',
        retries: {},
        retryBudget: o.retryBudget,
      },
    });
    this.#actor = createActor(operationalStateMachine, {
      snapshot,
      input: { retryBudget: o.retryBudget },
      ...(o.inspect ? { inspect: o.inspect } : {}),
    });
    // Every change the actor commits reaches the holder through this one subscription.
    this.#actor.subscribe({
      next: (s) => this.#onSnapshot(s),
      error: (err) => this.#logError('[kora.operational_state.holder] actor error', err),
    });
    // Starting a pure, in-memory actor starts nothing external.
    this.#actor.start();
    this.#snapshot = this.#actor.getSnapshot();
  }

  /** The current state (frozen). */
  get current(): OperationalState {
    return this.#current;
  }

  /** The XState snapshot of the holder's actor. */
  get snapshot(): Snapshot {
    return this.#snapshot;
  }

  /** Counters: commits, rejections, listener failures and timeouts. */
  get stats(): Readonly<HolderStats> {
    return { ...this.#stats };
  }

  /** The logger the holder reports to. */
  get logger(): Logger {
    return this.#options.logger;
  }

  /**
   * Sends a domain event (the XState-native path).
   *
   * @example
   * await holder.send({ type: 'pause', cause: 'cost_limit', trigger: 'cost 100%' });
   */
  async send(event: OperationalEvent): Promise<OperationalState> {
    return this.#commit(parseEvent(event));
  }

  /**
   * Moves to `to` (the seed's path): same primary state ⇒ `update`; otherwise the
   * table row for `(current, to)`, picked by trigger text where two rows share a pair.
   *
   * @example
   * await holder.transitionTo('ready', 'all §9.2 gates pass');
   * await holder.transitionTo('ready', 'auth degraded', { addReasons: ['auth'] });
   */
  async transitionTo(
    to: PrimaryState,
    trigger: string,
    opts: TransitionOptions = {},
  ): Promise<OperationalState> {
    const target = parsePrimaryState(to, 'to');
    const text = parseTrigger(trigger);
    const from = this.#current.primaryState;
    const fields = this.#transitionFields(opts);
    if (from === 'stopped') {
      this.#stats.rejected++;
      throw new InvalidStateTransitionError(
        from,
        target,
        text,
        target === from ? 'update' : undefined,
        'stopped is final',
      );
    }
    if (target === from)
      return this.#commit(parseEvent({ type: 'update', trigger: text, ...fields }));
    const rows = TRANSITION_TABLE.filter((r) => r.from === from && r.to === target);
    if (rows.length === 0) {
      this.#stats.rejected++;
      throw new InvalidStateTransitionError(
        from,
        target,
        text,
        undefined,
        `no §9.1 row ${from} → ${target}`,
      );
    }
    const row = pickRow(rows, text);
    const event: Record<string, unknown> = { type: row.event, trigger: text, ...fields };
    if (row.event === 'pause' && opts.cause === undefined) {
      event.cause = PAUSE_CAUSE_HINTS.find(([re]) => re.test(text))?.[1] ?? 'operator';
    }
    return this.#commit(parseEvent(event));
  }

  /**
   * Registers a listener; returns its unsubscribe function.
   *
   * @example
   * const off = holder.addListener((old, next, record) => console.log(record.trigger));
   * off();
   */
  addListener(listener: StateListener, options: AddListenerOptions = {}): () => void {
    if (typeof listener !== 'function') {
      throw new OperationalStateInputError(
        'listener',
        listener,
        `listener must be a function, got ${quote(listener)}`,
      );
    }
    const entry: ListenerEntry = {
      fn: listener,
      name: options.name ?? (listener.name || `listener#${this.#listeners.length + 1}`),
      tail: Promise.resolve(),
      overrun: false,
      active: true,
      // A listener may ask for it itself (the chain emit listener does).
      pipelined: (options.pipelined ?? (listener as { pipelined?: unknown }).pipelined) === true,
    };
    this.#listeners.push(entry);
    return () => {
      entry.active = false;
      const i = this.#listeners.indexOf(entry);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /**
   * The newest `limit` records (default: all kept), oldest first.
   *
   * @example
   * holder.history(3).map((r) => `${r.from_state} → ${r.to_state}`);
   */
  history(limit?: number): TransitionRecord[] {
    const size = this.#history.length;
    const n = limit === undefined ? size : Math.min(positiveInt(limit, 'limit', true), size);
    const out: TransitionRecord[] = [];
    for (let i = size - n; i < size; i++) {
      out.push(this.#history[(this.#historyStart + i) % size]!);
    }
    return out;
  }

  #transitionFields(opts: TransitionOptions): Record<string, unknown> {
    if (opts === null || typeof opts !== 'object') {
      throw new OperationalStateInputError(
        'opts',
        opts,
        `options must be an object, got ${quote(opts)}`,
      );
    }
    return stripUndefined({
      claimPermission:
        opts.claimPermission === undefined
          ? undefined
          : parseClaimPermission(opts.claimPermission, 'claimPermission'),
      addReasons:
        opts.addReasons === undefined ? undefined : parseReasons(opts.addReasons, 'addReasons'),
      removeReasons:
        opts.removeReasons === undefined
          ? undefined
          : parseReasons(opts.removeReasons, 'removeReasons'),
      details: opts.details,
      // Event-specific fields pass through; the event schema refuses them where they do not apply.
      cause: opts.cause,
      reconciledSpendUsd: opts.reconciledSpendUsd,
      thresholdUsd: opts.thresholdUsd,
    });
  }

  /** Validated event → one synchronous, atomic commit; then the listeners. */
  #commit(event: OperationalEvent): Promise<OperationalState> {
    const before = this.#snapshot;
    const from = this.#current.primaryState;
    if (before.status !== 'active') {
      this.#stats.rejected++;
      return Promise.reject(this.#explain(from, event, 'stopped is final'));
    }
    const inFlight: InFlight = { event };
    this.#inFlight = inFlight;
    try {
      this.#actor.send(event);
    } finally {
      this.#inFlight = undefined;
    }
    if (!inFlight.record) {
      this.#stats.rejected++;
      return Promise.reject(this.#explain(from, event));
    }
    const { record, old, next } = inFlight as Required<InFlight>;
    if (this.#listeners.length === 0) return Promise.resolve(next);
    const handled = this.#dispatch(old, next, record);
    // A transition requested from inside a listener resolves at commit: waiting for the
    // listeners would wait for the very listener that asked.
    if (insideListener.getStore()) return Promise.resolve(next);
    return handled.then(() => next);
  }

  /** The actor's subscription: records a change the holder asked for. */
  #onSnapshot(snapshot: Snapshot): void {
    const before = this.#snapshot;
    if (snapshot === before) return;
    this.#snapshot = snapshot;
    const inFlight = this.#inFlight;
    if (!inFlight) return;
    const { event } = inFlight;
    const old = this.#current;
    const to = primaryOf(snapshot);
    const next: OperationalState = Object.freeze({
      primaryState: to,
      claimPermission: snapshot.context.claimPermission,
      degradationReasons: Object.freeze(snapshot.context.degradationReasons),
    });
    this.#current = next;
    const row = TRANSITION_TABLE.find((r) => r.from === old.primaryState && r.event === event.type);
    const record: TransitionRecord = Object.freeze({
      seq: ++this.#seq,
      timestamp: utcSeconds(this.#options.now()),
      from_state: old.primaryState,
      to_state: to,
      trigger: event.trigger ?? row?.trigger ?? event.type.replace('.', ' '),
      event: event.type,
      ...(event.type === 'pause' ? { cause: event.cause ?? 'operator' } : {}),
      ...(event.details ? { details: Object.freeze({ ...event.details }) } : {}),
      claim_permission: next.claimPermission,
      degradation_reasons: next.degradationReasons,
    });
    this.#remember(record);
    this.#stats.commits++;
    inFlight.record = record;
    inFlight.old = old;
    inFlight.next = next;
  }

  /** A throwing logger must not break a transition either. */
  #logError(...args: unknown[]): void {
    try {
      this.#options.logger.error(...args);
    } catch {
      // Nothing left to report to.
    }
  }

  #remember(record: TransitionRecord): void {
    const max = this.#options.historySize;
    if (this.#history.length < max) {
      this.#history.push(record);
    } else {
      this.#history[this.#historyStart] = record;
      this.#historyStart = (this.#historyStart + 1) % max;
    }
  }

  #explain(
    from: PrimaryState,
    event: OperationalEvent,
    reason?: string,
  ): InvalidStateTransitionError {
    const rows = TRANSITION_TABLE.filter((r) => r.from === from && r.event === event.type);
    const row = rows[0];
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

  /** Queues the change on every listener; settles when all handled it or the timeout passed. */
  #dispatch(
    old: OperationalState,
    next: OperationalState,
    record: TransitionRecord,
  ): Promise<void> {
    const waits: Promise<void>[] = [];
    const pending = new Set<ListenerEntry>();
    for (const entry of this.#listeners) {
      let handled: Promise<void>;
      if (entry.pipelined) {
        // The next delivery waits for this one to start, not to finish.
        let done: Promise<void> = Promise.resolve();
        const started: Promise<void> = entry.tail.then(() => {
          if (entry.active) done = this.#invoke(entry, old, next, record);
        });
        entry.tail = started;
        handled = started
          .then(() => done)
          .then(() => {
            pending.delete(entry);
            if (entry.tail === started) entry.overrun = false;
          });
      } else {
        const tail: Promise<void> = entry.tail.then(async () => {
          if (entry.active) await this.#invoke(entry, old, next, record);
          pending.delete(entry);
          if (entry.tail === tail) entry.overrun = false; // caught up
        });
        entry.tail = tail;
        handled = tail;
      }
      if (entry.overrun) continue;
      pending.add(entry);
      waits.push(handled);
    }
    const all = Promise.all(waits).then(() => undefined);
    const ms = this.#options.listenerTimeoutMs;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const entry of pending) entry.overrun = true;
        this.#stats.listenerTimeouts += pending.size;
        this.#logError(
          `[kora.operational_state.holder] listener(s) ${[...pending].map((e) => quote(e.name)).join(', ')} ` +
            `did not handle transition #${record.seq} (${record.from_state} → ${record.to_state}) within ${ms} ms; not waiting`,
        );
        resolve();
      }, ms);
      timer.unref?.();
      all.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async #invoke(
    entry: ListenerEntry,
    old: OperationalState,
    next: OperationalState,
    record: TransitionRecord,
  ): Promise<void> {
    try {
      await insideListener.run(true, () => entry.fn(old, next, record));
    } catch (err) {
      this.#stats.listenerFailures++;
      this.#logError(
        `[kora.operational_state.holder] listener ${quote(entry.name)} failed on transition #${record.seq} ` +
          `(${record.from_state} → ${record.to_state}); state kept`,
        err,
      );
    }
  }
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

function stripUndefined<T extends object>(obj: T): T {
  const out = {} as T;
  for (const key of Object.keys(obj) as (keyof T)[]) {
    if (obj[key] !== undefined) out[key] = obj[key];
  }
  return out;
}

/**
 * Creates a holder around one actor of the §9.1 machine.
 *
 * @example
 * const holder = createOperationalStateHolder();
 * holder.addListener((old, next) => console.log(`${old.primaryState} → ${next.primaryState}`));
 * await holder.send({ type: 'boot.gates_passed' });
 * holder.current; // { primaryState: 'ready', claimPermission: 'normal', degradationReasons: [] }
 */
export function createOperationalStateHolder(
  options: OperationalStateHolderOptions = {},
): OperationalStateHolder {
  return new OperationalStateHolder(options);
}

let singleton: OperationalStateHolder | undefined;

/**
 * Creates the process-wide holder; the first call wins, later calls return it.
 *
 * @example
 * const holder = initHolder({ initial: { primaryState: 'booting' } });
 * getHolder() === holder; // true
 */
export function initHolder(options: OperationalStateHolderOptions = {}): OperationalStateHolder {
  singleton ??= createOperationalStateHolder(options);
  return singleton;
}

/** The process-wide holder, or `undefined` before `initHolder`. */
export function getHolder(): OperationalStateHolder | undefined {
  return singleton;
}

/** Forgets the process-wide holder (tests only). */
export function resetHolderForTests(): void {
  singleton = undefined;
}
