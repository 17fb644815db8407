/**
 * The outbox's retry schedule: after a failed write the next try waits `initialMs`,
 * doubling per consecutive failure up to `maxMs`, ±20% jitter so agents that lost the
 * same database do not retry in step.
 */

import { positiveInt } from '../options.js';
import { OperationalStateInputError } from '../vocabulary.js';

/** Timer functions (tests pass fakes). */
export interface OutboxTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Backoff bounds, in milliseconds. */
export interface RetryOptions {
  initialMs?: number;
  maxMs?: number;
}

const defaults = { initialMs: 200, maxMs: 5000 };

/** The real timers. */
export const SYSTEM_TIMERS: OutboxTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * @internal Consecutive failures and the one pending retry.
 *
 * @example
 * const backoff = new Backoff({ initialMs: 200, maxMs: 5000 }, SYSTEM_TIMERS, Math.random);
 * backoff.wait(backoff.next(), retry); // ~200 ms, then ~400, ~800… up to ~5,000
 * backoff.reset(); // a write succeeded: answers how many failed before it
 */
export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #timers: OutboxTimers;
  readonly #random: () => number;
  /** Consecutive failed writes. */
  #streak = 0;
  #timer: unknown;

  constructor(retry: RetryOptions | undefined, timers: OutboxTimers, random: () => number) {
    this.#initialMs = positiveInt(retry?.initialMs ?? defaults.initialMs, 'retry.initialMs');
    this.#maxMs = positiveInt(retry?.maxMs ?? defaults.maxMs, 'retry.maxMs');
    if (this.#maxMs < this.#initialMs) {
      throw new OperationalStateInputError(
        'retry.maxMs',
        this.#maxMs,
        `retry.maxMs (${this.#maxMs}) must be ≥ retry.initialMs (${this.#initialMs})`,
      );
    }
    this.#timers = timers;
    this.#random = random;
  }

  /** Consecutive failures so far. */
  get streak(): number {
    return this.#streak;
  }

  /** A retry is scheduled (nothing is written until it fires or is cancelled). */
  get waiting(): boolean {
    return this.#timer !== undefined;
  }

  /** Counts one more failure; answers the delay before the next try. */
  next(): number {
    this.#streak++;
    const base = Math.min(this.#maxMs, this.#initialMs * 2 ** Math.min(this.#streak - 1, 30));
    return Math.round(base * (0.8 + 0.4 * this.#random()));
  }

  /** Schedules `retry` in `delay` ms. */
  wait(delay: number, retry: () => void): void {
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      retry();
    }, delay);
    // A retry timer alone must not keep the process alive; flush() before exit.
    (this.#timer as { unref?: () => void } | undefined)?.unref?.();
  }

  /** Drops the scheduled retry, if any. */
  cancel(): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** A write succeeded: answers the failures before it, and starts counting again. */
  reset(): number {
    const failed = this.#streak;
    this.#streak = 0;
    return failed;
  }
}
