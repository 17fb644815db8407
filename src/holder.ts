/** The holder (ST1): the one instance — the §9.1 actor, its history, listeners and chain. */
import { type Actor, createActor, type SnapshotFrom } from 'xstate';
import {
  type OperationalEvent,
  type OperationalFact,
  type OperationalStateMachine,
  operationalStateMachine,
} from '../machines/operationalState.machine.js';
import { type EmitListener, makeEmitListener } from './emit.js';
import { parseEvent } from './events.js';
import { eventForTransition, type TransitionOptions } from './holder/compat.js';
import {
  type AddListenerOptions,
  type Delivery,
  isInsideListener,
  Listeners,
  type StateListener,
  type TransitionRecord,
} from './holder/delivery.js';
import { explainRejection, InvalidStateTransitionError } from './holder/errors.js';
import {
  defaults,
  type HolderStats,
  type OperationalStateHolderOptions,
  positiveInt,
  secondsClock,
  stripUndefined,
} from './holder/options.js';
import { LOG_TAGS, type Logger, report } from './logger.js';
import type { EventSink } from './sinks/types.js';
import { STATE_NODES } from './table.js';
import {
  makeOperationalState,
  type OperationalState,
  OperationalStateInputError,
  type PrimaryState,
  parsePrimaryState,
  parseTrigger,
  quote,
} from './vocabulary.js';

export type { TransitionOptions } from './holder/compat.js';
export type {
  AddListenerOptions,
  StateListener,
  TransitionRecord,
} from './holder/delivery.js';
export { InvalidStateTransitionError } from './holder/errors.js';
export type { HolderStats, OperationalStateHolderOptions } from './holder/options.js';
export type { Logger } from './logger.js';

type Snapshot = SnapshotFrom<OperationalStateMachine>;

const STOPPED_BECAUSE: Partial<Record<Snapshot['status'], string>> = {
  done: 'stopped is final',
  error: 'the actor failed (see the logged actor error)',
};

function stateValueOf(primary: PrimaryState): unknown {
  const path = STATE_NODES[primary].path;
  let value: unknown = path[path.length - 1];
  for (let i = path.length - 2; i >= 0; i--) value = { [path[i]!]: value };
  return value;
}

/**
 * The live operational state of one process: one XState actor of the §9.1 machine (public,
 * as {@link OperationalStateHolder.actor}), plus what XState lacks — a bounded history
 * and awaited, ordered, isolated, timed listener delivery. Create with
 * {@link createOpstate} (or {@link createOperationalStateHolder}).
 */
export class OperationalStateHolder<S extends EventSink = EventSink> {
  readonly #actor: Actor<OperationalStateMachine>;
  readonly #options: typeof defaults;
  readonly #listeners: Listeners;
  readonly #history: TransitionRecord[] = [];
  #historyStart = 0;
  #current: OperationalState;
  #seq = 0;
  readonly #timestamp: () => string;
  /** Facts the actor emitted for the change being committed (from its `transitioned`). */
  #facts: OperationalFact[] = [];
  #chain: EmitListener | undefined;
  #sink: S | undefined;
  /** The last committed change and its delivery, for the `send` that caused it. */
  #last: { delivery: Delivery; handled: Promise<OperationalState> | undefined } | undefined;
  readonly #stats: HolderStats = {
    commits: 0,
    rejected: 0,
    listenerFailures: 0,
    listenerTimeouts: 0,
  };

  /** @internal Use `createOpstate`. */
  constructor(options: OperationalStateHolderOptions<S> = {}) {
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
    this.#timestamp = secondsClock(o.now);
    this.#listeners = new Listeners(o.listenerTimeoutMs, o.logger, this.#stats);
    this.#current = makeOperationalState(o.initial);
    const snapshot = operationalStateMachine.resolveState({
      value: stateValueOf(this.#current.primaryState) as never,
      context: {
        primaryState: this.#current.primaryState,
        claimPermission: this.#current.claimPermission,
        degradationReasons: [...this.#current.degradationReasons],
        claimHeld: this.#current.primaryState === 'active',
        retries: {},
        retryBudget: o.retryBudget,
      },
    });
    // The retry budget is in the snapshot's context: given a snapshot, input is ignored.
    this.#actor = createActor(operationalStateMachine, {
      snapshot,
      input: {},
      ...(o.inspect ? { inspect: o.inspect } : {}),
    });
    // The machine says what happened; the snapshot notification that follows its facts
    // closes the change. Events sent straight to the public actor are recorded too.
    this.#actor.on('*', (fact) => void this.#facts.push(fact));
    this.#actor.subscribe({
      next: () => this.#onCommit(),
      error: (err) => report(this.#options.logger, 'error', LOG_TAGS.holder, 'actor error', err),
    });
    // Starting a pure, in-memory actor starts nothing external.
    this.#actor.start();
    if (o.sink !== undefined) {
      this.connectSink(o.sink as S, { agentId: o.agentId, instanceId: o.instanceId });
    }
  }

  /** The chain-event listener (its `stats`, `instanceId`, `agentId`), once a sink is connected. */
  get chain(): EmitListener | undefined {
    return this.#chain;
  }

  /** The sink the chain events go to, if any. */
  get sink(): S | undefined {
    return this.#sink;
  }

  /** @internal Registers the chain listener for `sink` (once; later calls return it). */
  connectSink(sink: S, ids: { agentId?: string; instanceId?: string } = {}): EmitListener {
    if (this.#chain) return this.#chain;
    // An emit failure is logged once, by the listener, on the holder's logger.
    const chain = makeEmitListener(sink, {
      ...stripUndefined(ids),
      logger: this.#options.logger,
      now: this.#options.now,
    });
    this.#listeners.add(chain);
    this.#chain = chain;
    this.#sink = sink;
    return chain;
  }

  /**
   * The XState actor itself: `subscribe`, `on` (the machine's facts), `waitFor`,
   * `getPersistedSnapshot`, inspection. Events sent to it directly are recorded and
   * delivered like the holder's own, without the holder's input checks.
   *
   * @example
   * import { waitFor } from 'xstate';
   * await waitFor(opstate.actor, (s) => s.matches({ live: { unpaused: 'ready' } }));
   */
  get actor(): Actor<OperationalStateMachine> {
    return this.#actor;
  }

  /** The current state (frozen). */
  get current(): OperationalState {
    return this.#current;
  }

  /** The XState snapshot of the holder's actor. */
  get snapshot(): Snapshot {
    return this.#actor.getSnapshot();
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
   * await opstate.send({ type: 'pause', cause: 'cost_limit', trigger: 'cost 100%' });
   */
  async send(event: OperationalEvent): Promise<OperationalState> {
    return this.#commit(parseEvent(event));
  }

  /**
   * Moves to `to` (the seed's path): same primary state ⇒ `update`; otherwise the
   * table row for `(current, to)`, picked by trigger text where two rows share a pair.
   *
   * @example
   * await opstate.transitionTo('ready', 'all §9.2 gates pass');
   * await opstate.transitionTo('ready', 'auth degraded', { addReasons: ['auth'] });
   */
  async transitionTo(
    to: PrimaryState,
    trigger: string,
    opts: TransitionOptions = {},
  ): Promise<OperationalState> {
    const target = parsePrimaryState(to, 'to');
    const text = parseTrigger(trigger);
    let event: Record<string, unknown>;
    try {
      event = eventForTransition(this.#current.primaryState, target, text, opts);
    } catch (err) {
      if (err instanceof InvalidStateTransitionError) this.#stats.rejected++;
      throw err;
    }
    return this.#commit(parseEvent(event));
  }

  /**
   * Registers a listener; returns its unsubscribe function.
   *
   * @example
   * const off = opstate.addListener((old, next, record) => console.log(record.trigger));
   * off();
   */
  addListener(listener: StateListener, options: AddListenerOptions = {}): () => void {
    return this.#listeners.add(listener, options);
  }

  /**
   * The newest `limit` records (default: all kept), oldest first.
   *
   * @example
   * opstate.history(3).map((r) => `${r.from_state} → ${r.to_state}`);
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

  /** Stops the actor: later changes are refused; queued deliveries still run. */
  stop(): void {
    this.#actor.stop();
  }

  /** Validated event → one synchronous, atomic commit; then the listeners. */
  #commit(event: OperationalEvent): Promise<OperationalState> {
    const from = this.#current.primaryState;
    const status = this.#actor.getSnapshot().status;
    if (status !== 'active') {
      this.#stats.rejected++;
      const why = STOPPED_BECAUSE[status] ?? 'the holder was stopped';
      return Promise.reject(explainRejection(from, event, why));
    }
    this.#last = undefined;
    this.#actor.send(event);
    const last = this.#last as
      | { delivery: Delivery; handled: Promise<OperationalState> | undefined }
      | undefined;
    this.#last = undefined;
    if (!last) {
      this.#stats.rejected++;
      return Promise.reject(explainRejection(from, event));
    }
    const { next } = last.delivery;
    // A transition requested from inside a listener resolves at commit: waiting for the
    // listeners would wait for the very listener that asked.
    if (!last.handled || isInsideListener()) return Promise.resolve(next);
    return last.handled;
  }

  /** After the actor's snapshot changed: records the change its facts describe. */
  #onCommit(): void {
    const facts = this.#facts;
    if (facts.length === 0) return;
    this.#facts = [];
    const fact = facts[0];
    if (fact?.type !== 'transitioned') return;
    const old = this.#current;
    const next: OperationalState = Object.freeze({
      primaryState: fact.to,
      claimPermission: fact.claimPermission,
      degradationReasons: Object.freeze(fact.degradationReasons),
    });
    this.#current = next;
    const record: TransitionRecord = Object.freeze({
      seq: ++this.#seq,
      timestamp: this.#timestamp(),
      from_state: fact.from,
      to_state: fact.to,
      trigger: fact.trigger,
      event: fact.event,
      ...(fact.cause ? { cause: fact.cause } : {}),
      ...(fact.details ? { details: Object.freeze({ ...fact.details }) } : {}),
      claim_permission: next.claimPermission,
      degradation_reasons: next.degradationReasons,
    });
    this.#remember(record);
    this.#stats.commits++;
    const delivery: Delivery = { old, next, record, facts: Object.freeze(facts) };
    const handled = this.#listeners.size > 0 ? this.#listeners.dispatch(delivery) : undefined;
    this.#last = { delivery, handled };
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
}

/**
 * Creates a holder around one actor of the §9.1 machine (no chain; see `createOpstate`).
 *
 * @example
 * const holder = createOperationalStateHolder();
 * holder.addListener((old, next) => console.log(`${old.primaryState} → ${next.primaryState}`));
 * await holder.send({ type: 'boot.gates_passed' });
 * holder.current; // { primaryState: 'ready', claimPermission: 'normal', degradationReasons: [] }
 */
export function createOperationalStateHolder(o: OpstateOptions = {}): OperationalStateHolder {
  return new OperationalStateHolder(o);
}

/**
 * Creates the one instance an agent process runs: the actor of the §9.1 machine, its
 * history and listeners, and — given a `sink` — the chain. Boot, claims, the HTTP app,
 * the inspector and the CLI take it as an argument.
 *
 * @example
 * const opstate = createOpstate({ sink: createPgliteSink({ workspaceId: 'ws-1', dataDir }) });
 * await opstate.send({ type: 'boot.gates_passed' });
 * opstate.current.primaryState; // 'ready'
 * opstate.chain?.stats; // { emitted: 2, failures: 0 }
 */
export function createOpstate<S extends EventSink = EventSink>(
  options: OpstateOptions<S> = {},
): Opstate<S> {
  return new OperationalStateHolder<S>(options);
}

/** The running instance {@link createOpstate} returns, and its options (all optional). */
export type Opstate<S extends EventSink = EventSink> = OperationalStateHolder<S>;
export type OpstateOptions<S extends EventSink = EventSink> = OperationalStateHolderOptions<S>;

let singleton: OperationalStateHolder | undefined;

/**
 * The seed's process singleton over {@link createOpstate}: the first call creates it.
 *
 * @example
 * const opstate = initHolder({ initial: { primaryState: 'booting' } });
 * getHolder() === opstate; // true
 */
export function initHolder(options: OpstateOptions = {}): Opstate {
  singleton ??= createOpstate(options);
  return singleton;
}

/**
 * The process singleton, or `undefined` before {@link initHolder}.
 *
 * @example
 * getHolder()?.current.primaryState; // 'booting'
 */
export function getHolder(): Opstate | undefined {
  return singleton;
}

/** @internal Forgets the process singleton (tests only; not exported by the package). */
export function resetHolderForTests(): void {
  singleton = undefined;
}
