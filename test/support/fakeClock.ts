/**
 * A fake clock for boot and poller tests: `sleep(ms)` advances `now()` at once and records
 * the wait, so a 2 s → 30 s backoff costs nothing and its schedule can be asserted.
 */
export interface FakeClock {
  /** Current fake time (ms). */
  now(): number;
  /** Advances the clock by `ms` and resolves on the next microtask. */
  sleep(ms: number): Promise<void>;
  /** Advances the clock without a sleep (e.g. time a check took). */
  advance(ms: number): void;
  /** Every `sleep` asked for, in order. */
  readonly sleeps: number[];
}

export function fakeClock(start = Date.UTC(2026, 4, 21, 20, 55, 0)): FakeClock {
  let t = start;
  const sleeps: number[] = [];
  return {
    now: () => t,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      t += ms;
    },
    advance: (ms: number) => {
      t += ms;
    },
    sleeps,
  };
}
