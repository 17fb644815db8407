/**
 * The package's SQL migrations: an append-only, ordered list applied once each, in order,
 * recorded in `kora_opstate_migrations`, under an advisory lock so several processes can
 * start at once. Never edit an applied migration — append a new one (its SQL text in
 * `migrations/`, one module per migration).
 */
import { ASYNC_COMMIT } from './migrations/asyncCommit.js';
import { EVENT_LOG } from './migrations/eventLog.js';
import { FLEET_AGENTS } from './migrations/fleetAgents.js';
import { FLEET_COMMANDS } from './migrations/fleetCommands.js';
import { GROUP_LINK } from './migrations/groupLink.js';
import { KEYED_CHAIN } from './migrations/keyedChain.js';
import { TICKETS } from './migrations/tickets.js';
import { MIGRATION_LOCK_CLASS, type SqlSession } from './sql.js';

/** One migration: applied once, in `version` order. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/**
 * The migrations, in order. Append-only: later features add entries with higher versions.
 *
 * @example
 * MIGRATIONS.map((m) => `${m.version} ${m.name}`); // ['1 event_log', '2 tickets', '3 keyed_chain', '4 async_commit', '5 fleet_agents', …]
 */
export const MIGRATIONS: Migration[] = [
  { version: 1, name: 'event_log', sql: EVENT_LOG },
  { version: 2, name: 'tickets', sql: TICKETS },
  { version: 3, name: 'keyed_chain', sql: KEYED_CHAIN },
  { version: 4, name: 'async_commit', sql: ASYNC_COMMIT },
  { version: 5, name: 'fleet_agents', sql: FLEET_AGENTS },
  { version: 6, name: 'fleet_commands', sql: FLEET_COMMANDS },
  { version: 7, name: 'group_link', sql: GROUP_LINK },
];

export interface ApplyMigrationsOptions {
  /** Default {@link MIGRATIONS}. */
  migrations?: readonly Migration[];
}

/** A `pg.Pool`: migrations need one session, so a client is checked out. */
interface PoolLike {
  connect(): Promise<SqlSession & { release(err?: unknown): void }>;
  totalCount: number;
}

function isPool(db: unknown): db is PoolLike {
  return (
    typeof (db as PoolLike).connect === 'function' &&
    typeof (db as PoolLike).totalCount === 'number'
  );
}

function checkOrder(migrations: readonly Migration[]): void {
  let last = 0;
  for (const m of migrations) {
    if (!Number.isInteger(m.version) || m.version <= last) {
      throw new Error(
        `migrations must have strictly increasing integer versions; ${JSON.stringify(m.version)} (${m.name}) follows ${last}`,
      );
    }
    last = m.version;
  }
}

/**
 * Applies the migrations not yet recorded, in order, in one transaction under an advisory
 * lock (per schema), so concurrent starts are safe and a second run is a no-op. Takes a
 * `pg.Pool`, a `pg.Client` or a `PGlite`.
 *
 * @example
 * await applyMigrations(pool); // { applied: [1], version: 1 }
 * await applyMigrations(pool); // { applied: [], version: 1 }
 */
export async function applyMigrations(
  db: SqlSession | PoolLike,
  options: ApplyMigrationsOptions = {},
): Promise<{ applied: number[]; version: number }> {
  const migrations = options.migrations ?? MIGRATIONS;
  checkOrder(migrations);
  if (isPool(db)) {
    const client = await db.connect();
    // Checked out, the client has no pool listener: a server going away mid-migration
    // must fail the query, not crash the process with an unhandled 'error'.
    let lost: unknown;
    const onError = (err: unknown) => {
      lost = err;
    };
    (client as unknown as NodeJS.EventEmitter).on?.('error', onError);
    try {
      return await applyMigrations(client, options);
    } finally {
      (client as unknown as NodeJS.EventEmitter).off?.('error', onError);
      client.release(lost as Error | undefined);
    }
  }
  const session = db as SqlSession;
  const run = (sql: string) => (session.exec ? session.exec(sql) : session.query(sql));
  await session.query('BEGIN');
  try {
    await session.query(
      `SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_CLASS}, hashtext(current_schema()))`,
    );
    await session.query(`CREATE TABLE IF NOT EXISTS kora_opstate_migrations (
      version    integer     NOT NULL PRIMARY KEY,
      name       text        NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await session.query('SELECT version FROM kora_opstate_migrations');
    const done = new Set(rows.map((r: { version: number | string }) => Number(r.version)));
    const applied: number[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await run(m.sql);
      await session.query('INSERT INTO kora_opstate_migrations (version, name) VALUES ($1, $2)', [
        m.version,
        m.name,
      ]);
      applied.push(m.version);
    }
    await session.query('COMMIT');
    const version = Math.max(0, ...done, ...applied);
    return { applied, version };
  } catch (err) {
    try {
      await session.query('ROLLBACK');
    } catch {
      // The connection is gone; the server rolled back.
    }
    throw err;
  }
}
