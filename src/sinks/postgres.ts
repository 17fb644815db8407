/**
 * The Postgres sink: chain events into `event_log` through `pg`, via the outbox.
 */
import pg from 'pg';
import { LOG_TAGS, type Logger, report } from '../logger.js';
import { positiveInt } from '../options.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import type { PgPoolLike } from './drivers.js';
import { type DurableChainSink, type DurableSinkOptions, SqlEventSink } from './durable.js';

export interface PostgresSinkOptions extends DurableSinkOptions {
  /** A pool to use (a `pg.Pool`); the sink never ends it. */
  pool?: PgPoolLike;
  /**
   * Where to connect when no `pool` is given (default `DATABASE_URL`); the sink owns that
   * pool: `close()` ends it, and its idle connections never keep the process alive.
   */
  connectionString?: string;
  /** Connections of the pool the sink creates (default 2). */
  maxConnections?: number;
  /** Connect timeout of the pool the sink creates (default 5,000 ms). */
  connectTimeoutMs?: number;
}

/**
 * Creates the Postgres sink. Nothing connects until `start()`, which applies the
 * migrations (idempotent, safe from several processes at once).
 *
 * @example
 * const sink = createPostgresSink({ workspaceId: 'ws-1', connectionString: process.env.DATABASE_URL });
 * const opstate = createOpstate({ sink });
 * await bootOpstate(opstate, {
 *   gates: [{ id: 'event_log', gateClass: 'transient', reason: 'substrate', check: async () => (await sink.start(), true) }],
 * });
 * // ... on shutdown:
 * await sink.flush(5000);
 * await sink.close();
 */
export function createPostgresSink(options: PostgresSinkOptions = {}): DurableChainSink {
  const given = options.pool;
  if (given !== undefined && (given === null || typeof given.query !== 'function')) {
    throw new OperationalStateInputError(
      'pool',
      given,
      `pool must be a pg.Pool, got ${quote(given)}`,
    );
  }
  const connectionString = options.connectionString ?? process.env.DATABASE_URL;
  if (!given && (typeof connectionString !== 'string' || connectionString === '')) {
    throw new OperationalStateInputError(
      'connectionString',
      connectionString,
      `createPostgresSink needs a pool or a connectionString (or DATABASE_URL), got ${quote(connectionString)}`,
    );
  }
  const max = positiveInt(options.maxConnections ?? 2, 'maxConnections');
  const connectTimeoutMs = positiveInt(options.connectTimeoutMs ?? 5000, 'connectTimeoutMs');
  const logger: Logger = options.logger ?? console;
  let pool: PgPoolLike | undefined;
  let owned: pg.Pool | undefined;
  // Connections die with the server (restart, failover): without a listener an idle
  // client's error would crash the process. The pool replaces them on the next query.
  const onError = (err: Error) =>
    report(logger, 'warn', LOG_TAGS.postgres, `connection lost: ${err.message}`);
  return new SqlEventSink(
    {
      tag: LOG_TAGS.postgres,
      // A transactional WAL record, committed synchronously: its flush covers the append.
      walBarrier: "SELECT pg_logical_emit_message(true, 'kora-opstate', '')",
      async open() {
        if (!pool) {
          if (given) {
            pool = given;
          } else {
            owned = new pg.Pool({
              connectionString,
              max,
              connectionTimeoutMillis: connectTimeoutMs,
              // An idle connection must not hold the process open: an embedder that forgets
              // close() still exits once its work is done (a query in flight still holds it).
              allowExitOnIdle: true,
            });
            pool = owned;
          }
          pool.on('error', onError);
        }
        return pool;
      },
      async shut() {
        if (!pool) return;
        pool.off('error', onError);
        pool = undefined;
        const end = owned;
        owned = undefined;
        await end?.end();
      },
    },
    options,
  );
}
