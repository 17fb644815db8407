/**
 * The database handles the sinks and the ticket source accept, as structural types. The
 * package's public declarations import neither `pg` nor `@electric-sql/pglite`, so a
 * TypeScript consumer needs no `@types/pg` and none of PGlite's Emscripten types, even
 * with `skipLibCheck: false`. A `pg.Pool` and a `PGlite` are what these describe.
 */

/** A query's result: the rows (each call site reads its own columns). */
export interface SqlRows {
  // biome-ignore lint/suspicious/noExplicitAny: rows are typed where they are read.
  rows: any[];
}

/** One connection checked out of a {@link PgPoolLike} (a `pg.PoolClient`). */
export interface PgClientLike {
  query(text: string, params?: unknown[]): Promise<SqlRows>;
  /** Returns it to the pool; an error destroys it instead. */
  release(err?: Error | boolean): void;
}

/**
 * What the Postgres sink and ticket source use of a `pg.Pool`. A `new pg.Pool(...)` is one.
 *
 * @example
 * import pg from 'pg';
 * const pool: PgPoolLike = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * createPostgresSink({ pool }); // the sink never ends a pool it was given
 */
export interface PgPoolLike {
  query(text: string, params?: unknown[]): Promise<SqlRows>;
  /** Checks out one connection (migrations and keyed appends run in one transaction). */
  connect(): Promise<PgClientLike>;
  /** Connections open (idle or in use); tells a pool from a single session. */
  readonly totalCount: number;
  on(event: 'error', listener: (err: Error) => void): unknown;
  off(event: 'error', listener: (err: Error) => void): unknown;
}

/** A PGlite transaction, as the sinks use it. */
export interface PgliteTransactionLike {
  query(text: string, params?: unknown[]): Promise<SqlRows>;
  exec(text: string): Promise<unknown>;
}

/**
 * What the PGlite sink uses of a `PGlite` (from `@electric-sql/pglite`). A
 * `await PGlite.create(dir)` is one.
 *
 * @example
 * import { PGlite } from '@electric-sql/pglite';
 * const db: PgliteLike = await PGlite.create('memory://');
 * createPgliteSink({ db }); // the sink never closes a database it was given
 */
export interface PgliteLike {
  query(text: string, params?: unknown[]): Promise<SqlRows>;
  /** Multi-statement text (the migrations). */
  exec(text: string): Promise<unknown>;
  transaction<T>(fn: (tx: PgliteTransactionLike) => Promise<T>): Promise<T>;
}
