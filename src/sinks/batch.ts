/**
 * Group commit for the emit listener: the appends made in one turn of the event loop
 * (the holder delivers concurrent transitions to a pipelined listener back to back) go
 * to the sink together — one `appendEach` (one spool fsync, one store transaction) or,
 * for a sink without it, one `append` of all their events, in call order.
 */
import { setImmediate } from 'node:timers';
import type { ChainEvent, EventSink } from './types.js';

interface Member {
  readonly events: ChainEvent[];
  resolve(): void;
  reject(err: unknown): void;
}

/** Counters of a {@link BatchingAppender}. */
export interface BatchStats {
  /** Batches handed to the sink (`appendEach` or `append` calls). */
  readonly batches: number;
  /** Changes in them. */
  readonly changes: number;
  /** The most changes one batch held. */
  readonly largest: number;
}

/** Appends one change's events; resolves when the sink has them (as its `append` says). */
export interface BatchingAppender {
  (events: ChainEvent[]): Promise<void>;
  readonly stats: BatchStats;
}

/**
 * Wraps `sink` so that appends made in the same turn share one sink call. Each caller's
 * promise settles with its own change's outcome: with `appendEach`, the sink's answer for
 * that change; with `append` alone, the shared call's (a failure rejects every member).
 * Order is kept: batches, and the changes in a batch, reach the sink in call order.
 *
 * @example
 * const append = batchingAppender(sink);
 * await Promise.all([append(a), append(b)]); // one sink call with a's then b's events
 * @internal
 */
export function batchingAppender(sink: EventSink): BatchingAppender {
  let open: Member[] | undefined;
  const stats = { batches: 0, changes: 0, largest: 0 };
  // The real setImmediate (imported, so a test's fake timers do not hold the chain back):
  // it runs once the synchronous burst and its microtasks are done.
  const flush = () => {
    const members = open!;
    open = undefined;
    stats.batches++;
    stats.changes += members.length;
    stats.largest = Math.max(stats.largest, members.length);
    if (typeof sink.appendEach === 'function') {
      let results: Promise<void>[];
      try {
        results = sink.appendEach(members.map((m) => m.events));
      } catch (err) {
        for (const m of members) m.reject(err);
        return;
      }
      members.forEach((m, i) => {
        Promise.resolve(results[i]).then(m.resolve, m.reject);
      });
      return;
    }
    const events = members.length === 1 ? members[0]!.events : members.flatMap((m) => m.events);
    new Promise<void>((resolve) => resolve(sink.append(events))).then(
      () => {
        for (const m of members) m.resolve();
      },
      (err: unknown) => {
        for (const m of members) m.reject(err);
      },
    );
  };
  const append = (events: ChainEvent[]) =>
    new Promise<void>((resolve, reject) => {
      if (!open) {
        open = [];
        setImmediate(flush);
      }
      open.push({ events, resolve, reject });
    });
  Object.defineProperty(append, 'stats', { get: () => ({ ...stats }), enumerable: true });
  return append as BatchingAppender;
}
