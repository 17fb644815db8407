/**
 * Test databases on the machine's PostgreSQL service (127.0.0.1:5432): each suite gets
 * its own schema, dropped afterwards, so suites and runs never see each other's rows.
 *
 * The server and database come from one variable, `KORA_TEST_DATABASE_URL` (default
 * `postgres://postgres@127.0.0.1:5432/test`); its database is created on first use when
 * missing. Not `DATABASE_URL`: that one is the CLI's own setting, which a developer's
 * shell may hold for a real store. Child processes get per-test URLs explicitly.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The default of `KORA_TEST_DATABASE_URL`. */
export const DEFAULT_TEST_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** The server and database the integration tests use (`KORA_TEST_DATABASE_URL`). */
export const DATABASE_URL = process.env.KORA_TEST_DATABASE_URL || DEFAULT_TEST_DATABASE_URL;

let ensured: Promise<void> | undefined;

/** Creates the test database when it does not exist (a fresh machine has only `postgres`). */
function ensureDatabase(): Promise<void> {
  ensured ??= (async () => {
    const probe = new pg.Client({ connectionString: DATABASE_URL });
    try {
      await probe.connect();
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '3D000') throw err;
    } finally {
      await probe.end().catch(() => {});
    }
    const target = new URL(DATABASE_URL);
    const name = decodeURIComponent(target.pathname.slice(1));
    target.pathname = '/postgres';
    const admin = new pg.Client({ connectionString: target.toString() });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    } catch (err) {
      // Another test worker created it meanwhile.
      if ((err as { code?: string }).code !== '42P04') throw err;
    } finally {
      await admin.end();
    }
  })();
  return ensured;
}

export interface TestSchema {
  /** The schema's name, e.g. `t_3f9a...`. */
  readonly schema: string;
  /** A connection string whose sessions use the schema (`search_path`); pass it to child processes. */
  readonly url: string;
  /** A pool on `url`. */
  readonly pool: pg.Pool;
  /** Drops the schema and ends the pool. */
  drop(): Promise<void>;
}

/** A connection string with `search_path` set to `schema`. */
export function urlWithSchema(base: string, schema: string): string {
  const u = new URL(base);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

/** Creates a fresh schema on the test server. */
export async function createTestSchema(prefix = 't'): Promise<TestSchema> {
  const schema = `${prefix}_${randomBytes(6).toString('hex')}`;
  await ensureDatabase();
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA ${schema}`);
  } finally {
    await admin.end();
  }
  const url = urlWithSchema(DATABASE_URL, schema);
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  return {
    schema,
    url,
    pool,
    async drop() {
      await pool.end();
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      try {
        await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await c.end();
      }
    },
  };
}
