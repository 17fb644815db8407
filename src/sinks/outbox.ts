/**
 * The outbox of the durable sinks: no chain event is lost to a database outage.
 *
 * Every append is queued, in order, and written by one drain loop (one write in flight).
 * A write that fails rejects its caller — the emit fails loud — but its events stay
 * queued and are retried with backoff; later appends queue behind them, so nothing is
 * reordered. The database makes a retry of an already stored event a no-op, so nothing
 * is duplicated. The queue is bounded: an append that does not fit is dropped, logged
 * and counted — never silently.
 */
import { errorText, LOG_TAGS, type Logger, type LogTag, report } from '../logger.js';
import { positiveInt } from '../options.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import { Backoff, type OutboxTimers, type RetryOptions, SYSTEM_TIMERS } from './backoff.js';
import type { DurableSinkStats } from './sql.js';
import type { ChainEvent } from './types.js';

/** Writes a batch; resolves with how many events were newly stored. */
export type OutboxWriter = (events: ChainEvent[]) => Promise<number>;

export type { OutboxTimers } from './backoff.js';

export interface OutboxOptions {
  /** Events kept at most (default 10,000). */
  limit?: number;
  /** Backoff: `initialMs` (default 200) doubling up to `maxMs` (default 5,000), ±20% jitter. */
  retry?: RetryOptions;
  logger?: Logger;
  /** Log tag (default `[kora.operational_state.outbox]`). */
  tag?: LogTag;
  timers?: OutboxTimers;
  /** Jitter source in [0, 1) (default `Math.random`). */
  random?: () => number;
  /** Failures no retry can fix: the batch is refused (rejected, logged, counted), not kept. */
  isPermanent?: (err: unknown) => boolean;
  /** Events per write while catching up after a failure (default 500). */
  batchSize?: number;
  /** Where unstored events go when the outbox closes (default: lost with the process). */
  closeNote?: string;
}

const defaults = { limit: 10_000, batchSize: 500 };

/** An append the outbox had no room for. */
export class OutboxOverflowError extends Error {
  override readonly name = 'OutboxOverflowError';
  constructor(
    readonly dropped: number,
    readonly limit: number,
  ) {
    super(
      `outbox full (${limit} events queued): ${dropped} event(s) dropped — the database has been unreachable`,
    );
  }
}

/** An append whose events are queued behind a failure, to be retried. */
export class OutboxPendingError extends Error {
  override readonly name = 'OutboxPendingError';
  constructor(
    message: string,
    override readonly cause: unknown,
    /** Events queued, these included. */
    readonly depth: number,
  ) {
    super(message, { cause });
  }
}

/** Per-append options. */
export interface OutboxAppendOptions {
  /** Called once the events leave the queue for good: stored, or refused by the store. */
  onSettled?: () => void;
  /** Events an earlier run left: finding them stored already is expected, not a reused id. */
  replay?: boolean;
}

interface Entry {
  readonly events: ChainEvent[];
  readonly onSettled: (() => void) | undefined;
  /** Write attempts so far. */
  attempts: number;
  /** The caller, until told the outcome (success, or the first failure). */
  settle?: { resolve(): void; reject(err: unknown): void };
}

/**
 * The ordered, bounded retry queue in front of a writer.
 *
 * @example
 * const outbox = new Outbox((events) => db.insert(events), { limit: 10_000 });
 * outbox.start();
 * await outbox.append(events); // rejects if not stored yet; the events stay queued
 * await outbox.flush(5000); // true once everything is stored
 */
export class Outbox {
  readonly #write: OutboxWriter;
  readonly #limit: number;
  readonly #backoff: Backoff;
  readonly #batchSize: number;
  readonly #tag: LogTag;
  readonly #logger: Logger;
  readonly #timers: OutboxTimers;
  readonly #isPermanent: (err: unknown) => boolean;
  readonly #closeNote: string;
  readonly #queue: Entry[] = [];
  readonly #stats: DurableSinkStats = {
    appended: 0,
    failures: 0,
    outboxDepth: 0,
    dropped: 0,
    refused: 0,
  };
  readonly #flushers = new Set<(stored: boolean) => void>();
  #started = false;
  #closed = false;
  #draining = false;
  /** Write one entry per batch until the refused one is found. */
  #isolate = false;

  constructor(write: OutboxWriter, options: OutboxOptions = {}) {
    if (typeof write !== 'function') {
      throw new OperationalStateInputError(
        'write',
        write,
        `write must be a function, got ${quote(write)}`,
      );
    }
    this.#write = write;
    this.#limit = positiveInt(options.limit ?? defaults.limit, 'outboxLimit');
    this.#timers = options.timers ?? SYSTEM_TIMERS;
    this.#backoff = new Backoff(options.retry, this.#timers, options.random ?? Math.random);
    this.#batchSize = positiveInt(options.batchSize ?? defaults.batchSize, 'batchSize');
    this.#tag = options.tag ?? LOG_TAGS.outbox;
    this.#logger = options.logger ?? console;
    this.#isPermanent = options.isPermanent ?? (() => false);
    this.#closeNote = options.closeNote ?? 'they are lost with this process';
  }

  /** Counters; `outboxDepth` is the number of events not stored yet. */
  get stats(): Readonly<DurableSinkStats> {
    return { ...this.#stats };
  }

  /** The events queued, not stored yet, oldest first. */
  pending(): ChainEvent[] {
    return this.#queue.flatMap((e) => e.events);
  }

  /**
   * Records a failure met before writing could begin (the sink's connect or migration),
   * so `stats.lastError` and the close report say why nothing was stored.
   * @internal
   */
  noteFailure(err: unknown): void {
    this.#stats.lastError = errorText(err);
  }

  /** Begins writing (appends before this are kept, and rejected as not stored yet). */
  start(): void {
    if (this.#closed || this.#started) return;
    this.#started = true;
    void this.#drain();
  }

  /** Queues `events`; resolves once they are stored, rejects on their first failure. */
  append(events: ChainEvent[], options: OutboxAppendOptions = {}): Promise<void> {
    const done = this.#enqueue(events, options);
    void this.#drain();
    return done;
  }

  /**
   * Queues several changes' events, in order, each its own entry (a refusal refuses only
   * it), written together (up to `batchSize` events a write): one promise per change.
   */
  appendEach(changes: readonly ChainEvent[][], options: OutboxAppendOptions = {}): Promise<void>[] {
    const done = changes.map((events) => this.#enqueue(events, options));
    void this.#drain();
    return done;
  }

  #enqueue(events: ChainEvent[], options: OutboxAppendOptions): Promise<void> {
    if (!Array.isArray(events)) {
      const text = `events must be an array, got ${quote(events)}`;
      return Promise.reject(new OperationalStateInputError('events', events, text));
    }
    if (events.length === 0) return Promise.resolve();
    if (this.#closed) return Promise.reject(this.#drop(events, new Error(`${this.#tag} closed`)));
    if (this.#stats.outboxDepth + events.length > this.#limit) {
      return Promise.reject(
        this.#drop(events, new OutboxOverflowError(events.length, this.#limit)),
      );
    }
    const entry: Entry = {
      events: [...events],
      onSettled: options.onSettled,
      attempts: options.replay ? 1 : 0,
    };
    this.#queue.push(entry);
    this.#stats.outboxDepth += events.length;
    if (!this.#started) {
      return Promise.reject(
        new OutboxPendingError(
          `sink not started: ${events.length} event(s) queued (${this.#stats.outboxDepth} in the outbox)`,
          undefined,
          this.#stats.outboxDepth,
        ),
      );
    }
    if (this.#backoff.waiting) {
      // Backing off: not stored now; the retry will write it after those before it.
      return Promise.reject(
        new OutboxPendingError(
          `sink unavailable (${this.#stats.lastError ?? 'retrying'}): ${events.length} event(s) queued behind ` +
            `${this.#stats.outboxDepth - events.length}, retrying`,
          undefined,
          this.#stats.outboxDepth,
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      entry.settle = { resolve, reject };
    });
  }

  /**
   * Resolves true once every queued event is stored, false when `timeoutMs` (default
   * 5,000) passed first. A pending retry is tried at once.
   */
  flush(timeoutMs = 5000): Promise<boolean> {
    if (this.#idle()) return Promise.resolve(true);
    if (this.#started && !this.#closed && this.#backoff.waiting) {
      this.#backoff.cancel();
      void this.#drain();
    }
    return new Promise<boolean>((resolve) => {
      let timer: unknown;
      const done = (stored: boolean) => {
        this.#flushers.delete(done);
        this.#timers.clearTimeout(timer);
        resolve(stored);
      };
      this.#flushers.add(done);
      timer = this.#timers.setTimeout(() => done(false), timeoutMs);
    });
  }

  /** Stops retrying. Events still queued are reported (they are not stored). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#backoff.cancel();
    if (this.#stats.outboxDepth > 0) {
      this.#log(
        'error',
        `closed with ${this.#stats.outboxDepth} event(s) not stored (last error: ${this.#stats.lastError ?? (this.#started ? 'none' : 'none: the sink never started')}); ${this.#closeNote}`,
      );
    }
    for (const entry of this.#queue) {
      entry.settle?.reject(new Error(`${this.#tag} closed before the events were stored`));
      entry.settle = undefined;
    }
    for (const f of [...this.#flushers]) f(this.#stats.outboxDepth === 0);
  }

  #idle(): boolean {
    return this.#stats.outboxDepth === 0 && !this.#draining;
  }

  #drop(events: ChainEvent[], err: Error): Error {
    this.#stats.dropped += events.length;
    const first = events[0]!;
    this.#log(
      'error',
      `dropped ${events.length} event(s) (${first.instance_id} seq ${first.seq}…): ${err.message}`,
    );
    return err;
  }

  #log(level: 'error' | 'warn', text: string, err?: unknown): void {
    report(this.#logger, level, this.#tag, text, err);
  }

  /** The next batch: the head entry, plus the entries queued behind it (catching up). */
  #nextBatch(): Entry[] {
    const batch = [this.#queue[0]!];
    if (this.#isolate) return batch;
    let size = batch[0]!.events.length;
    for (let i = 1; i < this.#queue.length; i++) {
      const e = this.#queue[i]!;
      if (size + e.events.length > this.#batchSize) break;
      batch.push(e);
      size += e.events.length;
    }
    return batch;
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.#queue.length > 0 && this.#started && !this.#closed && !this.#backoff.waiting) {
        const batch = this.#nextBatch();
        const events = batch.flatMap((e) => e.events);
        const retry = batch.some((e) => e.attempts > 0);
        for (const e of batch) e.attempts++;
        let stored: number;
        try {
          stored = await this.#write(events);
        } catch (err) {
          this.#stats.failures++;
          this.#stats.lastError = errorText(err);
          if (this.#isPermanent(err)) {
            if (batch.length > 1) {
              this.#isolate = true;
              continue;
            }
            this.#refuse(batch[0]!, err);
            continue;
          }
          this.#backOff(err);
          break;
        }
        this.#queue.splice(0, batch.length);
        this.#stats.outboxDepth -= events.length;
        this.#stats.appended += stored;
        const failed = this.#backoff.reset();
        if (failed > 0) this.#log('warn', `recovered after ${failed} failed attempt(s)`);
        this.#isolate = false;
        if (stored < events.length && !retry) {
          // The store skips only the very same event (another one under a taken
          // (instance_id, seq) is refused): a write whose answer was lost, tried again.
          this.#log(
            'warn',
            `${events.length - stored} event(s) of instance ` +
              `${quote(events[0]!.instance_id)} (seq ${events[0]!.seq}…) were stored already (the same events, written before); skipped`,
          );
        }
        for (const e of batch) {
          e.settle?.resolve();
          e.settle = undefined;
          this.#settled(e);
        }
      }
    } finally {
      this.#draining = false;
    }
    if (this.#idle()) for (const f of [...this.#flushers]) f(true);
  }

  #refuse(entry: Entry, err: unknown): void {
    this.#queue.shift();
    this.#stats.outboxDepth -= entry.events.length;
    this.#stats.refused += entry.events.length;
    const first = entry.events[0]!;
    this.#log(
      'error',
      `the database refused ${entry.events.length} event(s) (${first.instance_id} seq ${first.seq}…; ` +
        `${entry.events.map((e) => e.event_type).join(', ')}); not retried: ${errorText(err)}`,
    );
    entry.settle?.reject(err);
    entry.settle = undefined;
    this.#settled(entry);
  }

  #settled(entry: Entry): void {
    try {
      entry.onSettled?.();
    } catch (err) {
      this.#log('error', 'onSettled failed', err);
    }
  }

  #backOff(err: unknown): void {
    const delay = this.#backoff.next();
    if (this.#backoff.streak === 1) {
      this.#log(
        'error',
        `append failed; ${this.#stats.outboxDepth} event(s) kept in the outbox, retrying with backoff`,
        err,
      );
    }
    // Every caller still waiting learns now that its events are not stored yet.
    for (const entry of this.#queue) {
      if (!entry.settle) continue;
      entry.settle.reject(
        new OutboxPendingError(
          `append failed (${errorText(err)}); ${entry.events.length} event(s) kept in the outbox ` +
            `(${this.#stats.outboxDepth} queued), retrying`,
          err,
          this.#stats.outboxDepth,
        ),
      );
      entry.settle = undefined;
    }
    this.#backoff.wait(delay, () => void this.#drain());
  }
}
