/**
 * @internal What keeps `GET …/chain/verify` cheap: verifications run one at a time,
 * requests for the same query share the one running, and a finished result is reused for
 * `maxAgeMs` (measured from when it finished, so a verification that takes longer than
 * `maxAgeMs` still cannot keep the store busy back to back).
 */

/** A verification's result and when it finished. */
export interface Verified<T> {
  readonly result: T;
  /** `Date.now()` when the verification finished. */
  readonly at: number;
  /** True when the result was finished before this request came (served from the cache). */
  readonly cached: boolean;
}

/** @internal */
export interface VerifyCache<T> {
  /**
   * The result for `key`: a stored one at most `maxAgeMs` old (unless `fresh`), else the
   * running verification of `key`, else `run` once the verifications before it are done.
   */
  get(key: string, run: () => Promise<T>, fresh: boolean): Promise<Verified<T>>;
}

/** Distinct queries remembered; the oldest is forgotten past this. */
const MAX_KEYS = 32;

/** @internal */
export function createVerifyCache<T>(
  maxAgeMs: number,
  // Looked up on each call, so a test clock on `Date` applies.
  now: () => number = () => Date.now(),
): VerifyCache<T> {
  const entries = new Map<
    string,
    { done?: { result: T; at: number }; running?: Promise<{ result: T; at: number }> }
  >();
  // One verification at a time, whatever the query: distinct queries cannot pile up work.
  let queue: Promise<unknown> = Promise.resolve();
  return {
    async get(key, run, fresh) {
      let entry = entries.get(key);
      if (!entry) {
        if (entries.size >= MAX_KEYS) {
          for (const [k, e] of entries) {
            if (!e.running) {
              entries.delete(k);
              break;
            }
          }
        }
        entry = {};
        entries.set(key, entry);
      }
      const e = entry;
      if (!fresh && e.done && maxAgeMs > 0 && now() - e.done.at < maxAgeMs) {
        return { ...e.done, cached: true };
      }
      if (!e.running) {
        const running = queue.then(run).then((result) => {
          e.done = { result, at: now() };
          return e.done;
        });
        e.running = running;
        queue = running.catch(() => {});
        void running
          .finally(() => {
            if (e.running === running) e.running = undefined;
          })
          .catch(() => {});
      }
      return { ...(await e.running), cached: false };
    },
  };
}
