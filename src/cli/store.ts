/**
 * Where the CLI keeps the chain (and the demo tickets): the embedded PGlite directory by
 * default, Postgres when `DATABASE_URL` (or `--database-url`) is set.
 *
 * PGlite serves one process per directory, so `start` takes a lock file in it naming its
 * pid and status URL. `events` and `verify-chain` read a locked store through that
 * agent's status API instead of opening the directory a second time.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { verifyQueryString, verifyResultFromJson } from '../http/chainVerify.js';
import { errorText, LOG_TAGS, type Logger, report, SILENT_LOGGER } from '../logger.js';
import type { DurableChainSink, DurableSinkOptions } from '../sinks/durable.js';
import { createPgliteSink } from '../sinks/pglite.js';
import { createPostgresSink } from '../sinks/postgres.js';
import type { PositionedChainEvent } from '../sinks/sql.js';
import type { TailOptions, VerifyChainOptions, VerifyChainResult } from '../sinks/types.js';
import { quote } from '../vocabulary.js';
import { type CliIo, UsageError } from './command.js';
import { readStoreLock } from './lock.js';
import { maskUrl, storeFault } from './storeFault.js';

/** @internal The default home of the embedded store. */
export const DEFAULT_DATA_DIR = '.kora-opstate';
/** @internal The default workspace of the CLI's chain. */
export const DEFAULT_WORKSPACE = 'default';

/** @internal */
export type StoreLocation =
  | { readonly kind: 'postgres'; readonly url: string; readonly label: string }
  | { readonly kind: 'pglite'; readonly dir: string; readonly label: string };

/** @internal The flags every store-reading command shares. */
export const STORE_OPTIONS = {
  'data-dir': { type: 'string' },
  'database-url': { type: 'string' },
  workspace: { type: 'string' },
} as const;

/** @internal */
export const STORE_USAGE = `  --data-dir DIR       the embedded store's directory (default ./${DEFAULT_DATA_DIR}; env KORA_DATA_DIR)
  --database-url URL   use this Postgres instead (env DATABASE_URL)
  --workspace ID       the chain's workspace (default ${DEFAULT_WORKSPACE}; env KORA_WORKSPACE)`;

type Values = Record<string, unknown>;

/** @internal Postgres when a URL is given, else the PGlite directory. */
export function resolveStore(values: Values, io: CliIo): StoreLocation {
  const url = (values['database-url'] as string | undefined) ?? io.env.DATABASE_URL;
  if (url !== undefined && url !== '') {
    const from = values['database-url'] !== undefined ? '--database-url' : 'DATABASE_URL';
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new UsageError(`invalid ${from} ${quote(maskUrl(url))}: not a URL`);
    }
    if (!/^postgres(ql)?:$/.test(parsed.protocol)) {
      throw new UsageError(`invalid ${from} ${quote(maskUrl(url))}: not a postgres:// URL`);
    }
    // The label names the server and database only: never a password.
    return { kind: 'postgres', url, label: `postgres ${parsed.host}${parsed.pathname}` };
  }
  const dir = resolve(
    io.cwd,
    (values['data-dir'] as string | undefined) ?? io.env.KORA_DATA_DIR ?? DEFAULT_DATA_DIR,
  );
  return { kind: 'pglite', dir, label: `embedded PGlite ${dir}` };
}

/** @internal */
export function resolveWorkspace(values: Values, io: CliIo): string {
  const ws = (values.workspace as string | undefined) ?? io.env.KORA_WORKSPACE ?? DEFAULT_WORKSPACE;
  if (ws.trim() === '') {
    const from = values.workspace !== undefined ? '--workspace' : 'KORA_WORKSPACE';
    throw new UsageError(`invalid ${from} ${quote(ws)}: empty`);
  }
  return ws;
}

// The lock `start` takes on the embedded store's directory lives in ./lock.ts.
export { acquireStoreLock, readStoreLock, type StoreLock } from './lock.js';

/** @internal What `events` and `verify-chain` read. */
export interface ChainReader {
  readonly via: string;
  tail(options: TailOptions & { limit: number }): Promise<PositionedChainEvent[]>;
  /** Through a running agent, the agent also checks its own head (and uses its key). */
  verifyChain(options?: VerifyChainOptions): Promise<VerifyChainResult>;
  /** True when read through a running agent. */
  readonly remote: boolean;
  close(): Promise<void>;
}

/** @internal The chain of `workspace`, read directly or through the running agent. */
export async function openChainReader(
  store: StoreLocation,
  workspaceId: string,
  /** The chain key, for verifying a keyed chain read directly (not through an agent). */
  chainKey?: string,
  /** Sent to a running agent as `Authorization: Bearer …` (its `/chain/verify` needs it when it has one). */
  operatorToken?: string,
): Promise<ChainReader> {
  if (store.kind === 'pglite') {
    const lock = await readStoreLock(store.dir);
    if (lock) {
      if (!lock.url) {
        throw new Error(
          `the embedded store ${store.dir} is held by kora-opstate start (pid ${lock.pid}), which is still starting; try again in a moment`,
        );
      }
      return remoteReader(lock.url, workspaceId, operatorToken);
    }
    let exists = true;
    await readFile(join(store.dir, 'pglite', 'PG_VERSION')).catch(() => {
      exists = false;
    });
    if (!exists) {
      throw new Error(
        `no embedded store at ${store.dir} (run \`kora-opstate start\` first, or pass --data-dir / DATABASE_URL)`,
      );
    }
  }
  const sink = openSink(store, workspaceId, SILENT_LOGGER, undefined, chainKey ? { chainKey } : {});
  try {
    await sink.start();
  } catch (err) {
    await sink.close().catch(() => {});
    if (store.kind !== 'postgres') throw err;
    // One line naming the store (password masked), and what to do when it refused us.
    throw new Error(
      storeFault(err, store.url)?.line ??
        `cannot reach the store ${maskUrl(store.url)}: ${errorText(err)}`,
    );
  }
  return {
    via: store.label,
    remote: false,
    tail: (o) => sink.tail({ ...o, workspaceId }),
    verifyChain: (options) => sink.verifyChain(workspaceId, options),
    close: () => sink.close(),
  };
}

/** @internal A sink of its own on the store (it owns its connections). */
export function openSink(
  store: StoreLocation,
  workspaceId: string,
  logger: Logger,
  db?: PGlite | pg.Pool,
  /** More sink options (the spool directory, the chain key). */
  extra: Omit<DurableSinkOptions, 'workspaceId' | 'logger'> = {},
): DurableChainSink {
  if (store.kind === 'postgres') {
    return createPostgresSink({
      ...extra,
      workspaceId,
      logger,
      ...(db ? { pool: db as pg.Pool } : { connectionString: store.url }),
    });
  }
  return createPgliteSink({
    ...extra,
    workspaceId,
    logger,
    ...(db ? { db: db as PGlite } : { dataDir: join(store.dir, 'pglite') }),
  });
}

/**
 * @internal The agent's data dir (the spool, the chain key, verified heads): `--data-dir`,
 * `KORA_DATA_DIR`, else `./.kora-opstate` — also when the chain lives in Postgres.
 */
export function resolveDataDir(values: Values, io: CliIo): string {
  return resolve(
    io.cwd,
    (values['data-dir'] as string | undefined) ?? io.env.KORA_DATA_DIR ?? DEFAULT_DATA_DIR,
  );
}

/**
 * @internal What identifies a store in `verified-heads.json`: `pglite:<dir>`, or
 * `postgres://host:port/db` (plus its `options`, e.g. a search_path) — never a password.
 */
export function storeIdentity(store: StoreLocation): string {
  if (store.kind === 'pglite') return `pglite:${store.dir}`;
  const u = new URL(store.url);
  const options = u.searchParams.get('options');
  const host = u.hostname || 'localhost';
  return `postgres://${host}:${u.port || '5432'}${u.pathname || '/'}${options ? `?options=${encodeURIComponent(options)}` : ''}`;
}

/** @internal The agent's status API as a chain reader (its workspace must match). */
function remoteReader(base: string, workspaceId: string, operatorToken?: string): ChainReader {
  let verified = '';
  const get = async (path: string): Promise<Record<string, unknown>> => {
    const res = await fetch(new URL(path, base), {
      headers: operatorToken ? { authorization: `Bearer ${operatorToken}` } : {},
    });
    const body = (await res.json()) as Record<string, unknown>;
    if (res.status === 401) {
      throw new Error(
        `the running agent at ${base} needs its operator token to verify: pass --operator-token or set KORA_OPERATOR_TOKEN${operatorToken ? ' (the one given was refused)' : ''}`,
      );
    }
    if (!res.ok) throw new Error(`${base}${path}: ${res.status} ${String(body.error ?? '')}`);
    if (body.workspace_id !== workspaceId) {
      throw new UsageError(
        `the running agent at ${base} writes workspace ${quote(body.workspace_id)}, not ${quote(workspaceId)}; pass --workspace ${String(body.workspace_id)}`,
      );
    }
    return body;
  };
  return {
    // After a verification: how old the agent's answer is (it may serve a recent result).
    get via() {
      return `the running agent at ${base}${verified}`;
    },
    async tail({ limit, afterSeq = 0, take = 'newest' }) {
      const body = await get(
        `/api/operational-state/chain?limit=${limit}&after_seq=${afterSeq}&take=${take}`,
      );
      return body.events as PositionedChainEvent[];
    },
    remote: true,
    async verifyChain(options) {
      const b = await get(`/api/operational-state/chain/verify${verifyQueryString(options)}`);
      if (b.cached === true && typeof b.verified_at === 'string') {
        verified = `, its result of ${b.verified_at}`;
      }
      return verifyResultFromJson(b);
    },
    close: async () => {},
  };
}

/** @internal A pg pool on `url` whose idle errors are reported, not thrown. */
export function openPool(url: string, logger: Logger, max = 6): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 5000 });
  pool.on('error', (err) => report(logger, 'warn', LOG_TAGS.cli, `postgres pool: ${err.message}`));
  return pool;
}
