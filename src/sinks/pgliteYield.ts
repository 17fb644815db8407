/**
 * PGlite runs in-process: each query is one synchronous WebAssembly call, and its promise
 * settles on the microtask queue. A loop of awaited PGlite queries (a queue filled with
 * thousands of tickets, an outbox draining) therefore never lets the event loop reach
 * I/O: sockets go unread and `/livez` goes unanswered until the loop ends — seconds. The
 * wrapper here gives the event loop one turn (`setImmediate`, which runs after pending
 * I/O) before every query, so such loops interleave with requests. One query that is long
 * by itself still holds the loop for its length.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { PgliteLike, PgliteTransactionLike, SqlRows } from './drivers.js';

/** The wrappers made here: wrapping one again would only add a second turn. */
const wrappers = new WeakSet<PgliteLike>();

function yieldingTx(tx: PgliteTransactionLike): PgliteTransactionLike {
  return {
    query: async (text: string, params?: unknown[]): Promise<SqlRows> => {
      await nextTurn();
      return tx.query(text, params);
    },
    exec: async (text: string) => {
      await nextTurn();
      return tx.exec(text);
    },
  };
}

/**
 * `db` (or the database `db()` returns at each call, for one opened later) with a turn of
 * the event loop before each query, `exec` and transaction, and before each query inside
 * a transaction. Order is kept: calls start in the order they were made. A wrapper is
 * returned as it is.
 *
 * @example
 * const db = yieldingPglite(await PGlite.create('./data'));
 * for (const t of tickets) await db.query('INSERT …', [t.id]); // HTTP is served in between
 */
export function yieldingPglite(db: PgliteLike | (() => PgliteLike)): PgliteLike {
  if (typeof db !== 'function' && wrappers.has(db)) return db;
  const get = typeof db === 'function' ? db : () => db;
  const wrapper: PgliteLike = {
    query: async (text: string, params?: unknown[]): Promise<SqlRows> => {
      await nextTurn();
      return get().query(text, params);
    },
    exec: async (text: string) => {
      await nextTurn();
      return get().exec(text);
    },
    transaction: async <T>(fn: (tx: PgliteTransactionLike) => Promise<T>): Promise<T> => {
      await nextTurn();
      return get().transaction((tx) => fn(yieldingTx(tx)));
    },
  };
  wrappers.add(wrapper);
  return wrapper;
}
