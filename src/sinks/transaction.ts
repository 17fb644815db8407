/**
 * One transaction on one connection, whatever the session: PGlite's own, or a client
 * checked out of a `pg.Pool`.
 */
import type { SqlSession } from './sql.js';

/** A `pg.Pool`-like: `connect()` checks out one client of its own. */
interface ClientPool {
  connect(): Promise<SqlSession & { release(err?: Error | boolean): void }>;
}

/**
 * Runs `fn` in one transaction: the session's own `transaction` (PGlite), or a client
 * checked out of a pool with BEGIN/COMMIT/ROLLBACK.
 * @internal
 */
export async function inTransaction<T>(
  session: SqlSession,
  fn: (tx: SqlSession) => Promise<T>,
): Promise<T> {
  if (typeof session.transaction === 'function') return session.transaction(fn);
  const pool = session as unknown as ClientPool;
  if (typeof pool.connect !== 'function') {
    throw new Error('this SQL session cannot run a transaction (no transaction() or connect())');
  }
  const client = await pool.connect();
  // A checked-out client has no pool listener: a server that goes away (restart, admin
  // shutdown) would emit an unhandled 'error' and crash the process. The query fails.
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  (client as unknown as NodeJS.EventEmitter).on?.('error', onError);
  try {
    await client.query('BEGIN').catch((err: Error) => {
      broken = err;
      throw err;
    });
    try {
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((rollbackErr: Error) => {
        broken = rollbackErr;
      });
      throw err;
    }
  } finally {
    (client as unknown as NodeJS.EventEmitter).off?.('error', onError);
    client.release(broken);
  }
}
