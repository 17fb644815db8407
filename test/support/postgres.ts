/**
 * Test databases on the machine's PostgreSQL service (127.0.0.1:5432): each suite gets
 * its own schema, dropped afterwards, so suites and runs never see each other's rows.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The server the integration tests use. */
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

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
