/**
 * The Postgres ticket source: one `tickets` table (migration 2) shared by any number of
 * agent processes. A claim takes the next claimable row with `FOR UPDATE SKIP LOCKED`
 * and leases it; leases run on the database's clock, so worker clocks do not matter.
 * Works on PGlite too (pass `db`).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { z } from 'zod';
import { LOG_TAGS, type Logger, report } from '../../logger.js';
import {
  loggerSchema,
  nonEmptyStringSchema,
  objectWithSchema,
  parseOptions,
  positiveIntSchema,
} from '../../options.js';
import type { PgPoolLike } from '../../sinks/drivers.js';
import { applyMigrations } from '../../sinks/migrations.js';
import type { SqlSession } from '../../sinks/sql.js';
import { OperationalStateInputError, quote } from '../../vocabulary.js';
import type { NewTicket, Ticket, TicketResolution, TicketSource } from '../types.js';
import { checkClaimOptions, checkResolution } from './memory.js';

const TAG = LOG_TAGS.tickets;

export interface PostgresTicketSourceOptions {
  /** A pool to use (a `pg.Pool`); the source never ends it. */
  pool?: PgPoolLike;
  /** A session to use instead of a pool, e.g. a `PGlite`; never closed by the source. */
  db?: SqlSession;
  /**
   * Where to connect when neither `pool` nor `db` is given (default `DATABASE_URL`); the
   * source owns that pool: `close()` ends it, and its idle connections never keep the
   * process alive.
   */
  connectionString?: string;
  /** Connections of the pool the source creates (default 2). */
  maxConnections?: number;
  /** The queue this source claims from and enqueues to (default `'default'`). */
  queue?: string;
  logger?: Logger;
}

/** Tickets per status of one queue. */
export interface TicketCounts {
  queued: number;
  claimed: number;
  done: number;
  failed: number;
}

/** A {@link TicketSource} on a `tickets` table. */
export interface PostgresTicketSource extends TicketSource {
  readonly queue: string;
  /** Connects and applies the migrations (idempotent, safe from several processes at once). */
  start(): Promise<void>;
  /** Adds tickets in order (one statement); an existing id is left as it is. Returns the ids. */
  enqueue(tickets: readonly NewTicket[]): Promise<string[]>;
  /** Tickets per status. */
  counts(): Promise<TicketCounts>;
  /** Releases the pool it created. */
  close(): Promise<void>;
}

const CLAIM_SQL = `
WITH next AS (
  SELECT id FROM tickets
   WHERE queue = $1
     AND (status = 'queued' OR (status = 'claimed' AND lease_expires_at < now()))
     AND (NOT $4::boolean OR critical)
   ORDER BY critical DESC, position
   LIMIT 1
   FOR UPDATE SKIP LOCKED
)
UPDATE tickets t
   SET status = 'claimed',
       attempts = t.attempts + 1,
       lease_owner = $2,
       lease_token = gen_random_uuid(),
       lease_expires_at = now() + $3::double precision * interval '1 millisecond',
       updated_at = now()
  FROM next
 WHERE t.id = next.id
RETURNING t.id, t.payload, t.critical, t.attempts, t.lease_owner,
          t.lease_token::text AS lease_token, t.lease_expires_at`;

const HEARTBEAT_SQL = `
UPDATE tickets
   SET lease_expires_at = now() + $3::double precision * interval '1 millisecond', updated_at = now()
 WHERE id = $1 AND lease_token = $2::uuid AND status = 'claimed'
RETURNING lease_expires_at`;

const RELEASE_SQL = `
UPDATE tickets
   SET status = CASE WHEN $3::text = 'abandoned' THEN 'queued' ELSE $3::text END,
       resolution = $3::text,
       resolved_by = lease_owner,
       resolved_at = now(),
       detail = $4,
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
       updated_at = now()
 WHERE id = $1 AND lease_token = $2::uuid AND status = 'claimed'
RETURNING id`;

const ENQUEUE_SQL = `
INSERT INTO tickets (id, queue, payload, critical)
SELECT t.id, $1, coalesce(t.payload, '{}'::jsonb), coalesce(t.critical, false)
  FROM ROWS FROM (jsonb_to_recordset($2::jsonb) AS (id text, payload jsonb, critical boolean))
       WITH ORDINALITY AS t(id, payload, critical, ord)
 ORDER BY t.ord
ON CONFLICT (id) DO NOTHING`;

const COUNTS_SQL =
  'SELECT status, count(*)::int AS n FROM tickets WHERE queue = $1 GROUP BY status';

const sourceOptions = z.object({
  pool: objectWithSchema<PgPoolLike>(['query'], 'must be a pg.Pool').optional(),
  db: objectWithSchema<SqlSession>(['query'], 'must be a SQL session (e.g. a PGlite)').optional(),
  connectionString: z.string({ error: 'must be a string' }).optional(),
  queue: nonEmptyStringSchema(),
  maxConnections: positiveIntSchema(),
  logger: loggerSchema(),
});

/**
 * Creates the Postgres ticket source. Nothing connects until `start()`.
 *
 * @example
 * const source = createPostgresTicketSource({ connectionString: process.env.DATABASE_URL });
 * await source.start();
 * await source.enqueue([{ id: 't-1', payload: { issue: 42 } }, { id: 't-2', critical: true }]);
 * const ticket = await source.claimNext({ workerId: 'agent-1', leaseMs: 30_000 }); // t-2 first
 * await source.release(ticket!, 'done');
 */
export function createPostgresTicketSource(
  options: PostgresTicketSourceOptions = {},
): PostgresTicketSource {
  const o = parseOptions(sourceOptions, options, {
    connectionString: process.env.DATABASE_URL,
    queue: 'default',
    maxConnections: 2,
    logger: console as Logger,
  });
  const { pool: givenPool, db: givenDb, connectionString, queue, maxConnections: max, logger } = o;
  if (!givenPool && !givenDb && !connectionString) {
    throw new OperationalStateInputError(
      'connectionString',
      connectionString,
      `createPostgresTicketSource needs a pool, a db or a connectionString (or DATABASE_URL), got ${quote(connectionString)}`,
    );
  }
  let owned: pg.Pool | undefined;
  let session: SqlSession | undefined;
  let starting: Promise<void> | undefined;
  const onError = (err: Error) => report(logger, 'warn', TAG, `connection lost: ${err.message}`);
  const db = (): SqlSession => {
    if (!session) throw new Error(`${TAG} ticket source not started; call start()`);
    return session;
  };

  return {
    queue,
    start() {
      starting ??= (async () => {
        let s: SqlSession;
        if (givenDb) s = givenDb;
        else if (givenPool) s = givenPool;
        else {
          // Idle connections must not hold the process open (see the Postgres sink).
          owned = new pg.Pool({ connectionString, max, allowExitOnIdle: true });
          owned.on('error', onError);
          s = owned;
        }
        // A pool is checked out for the migration's one session; a PGlite is one already.
        await applyMigrations(s as Parameters<typeof applyMigrations>[0]);
        session = s;
      })().catch((err) => {
        starting = undefined;
        throw err;
      });
      return starting;
    },
    async enqueue(tickets) {
      if (!Array.isArray(tickets)) {
        throw new OperationalStateInputError(
          'tickets',
          tickets,
          `tickets must be an array, got ${quote(tickets)}`,
        );
      }
      const rows = tickets.map((t, i) => {
        const id = t.id ?? randomUUID();
        if (typeof id !== 'string' || id === '') {
          throw new OperationalStateInputError(
            `tickets[${i}].id`,
            id,
            `tickets[${i}].id must be a non-empty string, got ${quote(id)}`,
          );
        }
        return { id, payload: t.payload ?? {}, critical: t.critical === true };
      });
      if (rows.length > 0) await db().query(ENQUEUE_SQL, [queue, JSON.stringify(rows)]);
      return rows.map((r) => r.id);
    },
    async claimNext(o) {
      checkClaimOptions(o);
      const { rows } = await db().query(CLAIM_SQL, [
        queue,
        o.workerId,
        o.leaseMs,
        o.critical === true,
      ]);
      const row = rows[0] as
        | {
            id: string;
            payload: unknown;
            critical: boolean;
            attempts: number;
            lease_owner: string;
            lease_token: string;
            lease_expires_at: Date;
          }
        | undefined;
      if (!row) return undefined;
      return {
        id: row.id,
        payload: row.payload,
        critical: row.critical,
        attempts: Number(row.attempts),
        lease: {
          owner: row.lease_owner,
          token: row.lease_token,
          ms: o.leaseMs,
          expiresAt: new Date(row.lease_expires_at),
        },
      };
    },
    async heartbeat(ticket: Ticket) {
      const { rows } = await db().query(HEARTBEAT_SQL, [
        ticket.id,
        ticket.lease.token,
        ticket.lease.ms,
      ]);
      return rows.length === 1;
    },
    async release(ticket: Ticket, resolution: TicketResolution, detail?: string) {
      checkResolution(resolution);
      const { rows } = await db().query(RELEASE_SQL, [
        ticket.id,
        ticket.lease.token,
        resolution,
        detail ?? null,
      ]);
      return rows.length === 1;
    },
    async counts() {
      const { rows } = await db().query(COUNTS_SQL, [queue]);
      const counts: TicketCounts = { queued: 0, claimed: 0, done: 0, failed: 0 };
      for (const r of rows as { status: keyof TicketCounts; n: number }[]) counts[r.status] = r.n;
      return counts;
    },
    async close() {
      try {
        await starting;
      } catch {
        // Nothing was opened.
      }
      session = undefined;
      starting = undefined;
      if (owned) {
        owned.off('error', onError);
        const p = owned;
        owned = undefined;
        await p.end();
      }
    },
  };
}
