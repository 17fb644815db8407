/**
 * Where the CLI keeps the chain (and the demo tickets): the embedded PGlite directory by
 * default, Postgres when `DATABASE_URL` (or `--database-url`) is set.
 *
 * PGlite serves one process per directory, so `start` takes a lock file in it naming its
 * pid and status URL. `events` and `verify-chain` read a locked store through that
 * agent's status API instead of opening the directory a second time.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import type { Logger } from '../holder.js';
import type { DurableChainSink } from '../sinks/durable.js';
import { createPgliteSink } from '../sinks/pglite.js';
import { createPostgresSink } from '../sinks/postgres.js';
import type { PositionedChainEvent } from '../sinks/sql.js';
import type { TailOptions, VerifyChainResult } from '../sinks/types.js';
import { quote } from '../vocabulary.js';
import { type CliIo, UsageError } from './io.js';

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
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new UsageError(`invalid database URL ${quote(url)}`);
    }
    if (!/^postgres(ql)?:$/.test(parsed.protocol)) {
      throw new UsageError(`database URL ${quote(url)} is not a postgres:// URL`);
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
  if (ws.trim() === '') throw new UsageError(`invalid workspace ${quote(ws)}: empty`);
  return ws;
}

/** What `start` writes into the embedded store's directory while it runs. */
interface LockFile {
  pid: number;
  url?: string;
}

const lockPath = (dir: string) => join(dir, 'agent.lock.json');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** @internal The live agent holding the embedded store, if any (a stale lock is ignored). */
export async function readStoreLock(dir: string): Promise<LockFile | undefined> {
  let lock: LockFile;
  try {
    lock = JSON.parse(await readFile(lockPath(dir), 'utf8')) as LockFile;
  } catch {
    return undefined;
  }
  if (!Number.isInteger(lock.pid) || lock.pid === process.pid || !alive(lock.pid)) return undefined;
  return lock;
}

/** @internal A held lock on the embedded store: `update` records the status URL. */
export interface StoreLock {
  update(url: string): Promise<void>;
  release(): Promise<void>;
}

/** @internal Takes the embedded store for this process; throws when a live agent has it. */
export async function acquireStoreLock(dir: string): Promise<StoreLock> {
  await mkdir(dir, { recursive: true });
  const held = await readStoreLock(dir);
  if (held) {
    throw new Error(
      `the embedded store ${dir} is in use by another kora-opstate start (pid ${held.pid}${held.url ? `, ${held.url}` : ''}); stop it, pass another --data-dir, or share a Postgres with DATABASE_URL`,
    );
  }
  const write = (lock: LockFile) => writeFile(lockPath(dir), `${JSON.stringify(lock)}\n`);
  await write({ pid: process.pid });
  return {
    update: (url) => write({ pid: process.pid, url }),
    release: () => rm(lockPath(dir), { force: true }),
  };
}

/** @internal What `events` and `verify-chain` read. */
export interface ChainReader {
  readonly via: string;
  tail(options: TailOptions & { limit: number }): Promise<PositionedChainEvent[]>;
  verifyChain(): Promise<VerifyChainResult>;
  close(): Promise<void>;
}

const quiet: Logger = { error: () => {}, warn: () => {}, info: () => {} };

/** @internal The chain of `workspace`, read directly or through the running agent. */
export async function openChainReader(
  store: StoreLocation,
  workspaceId: string,
): Promise<ChainReader> {
  if (store.kind === 'pglite') {
    const lock = await readStoreLock(store.dir);
    if (lock) {
      if (!lock.url) {
        throw new Error(
          `the embedded store ${store.dir} is held by kora-opstate start (pid ${lock.pid}), which is still starting; try again in a moment`,
        );
      }
      return remoteReader(lock.url, workspaceId);
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
  const sink = openSink(store, workspaceId, quiet);
  await sink.start();
  return {
    via: store.label,
    tail: (o) => sink.tail({ ...o, workspaceId }),
    verifyChain: () => sink.verifyChain(workspaceId),
    close: () => sink.close(),
  };
}

/** @internal A sink of its own on the store (it owns its connections). */
export function openSink(
  store: StoreLocation,
  workspaceId: string,
  logger: Logger,
  db?: PGlite | pg.Pool,
): DurableChainSink {
  if (store.kind === 'postgres') {
    return createPostgresSink({
      workspaceId,
      logger,
      ...(db ? { pool: db as pg.Pool } : { connectionString: store.url }),
    });
  }
  return createPgliteSink({
    workspaceId,
    logger,
    ...(db ? { db: db as PGlite } : { dataDir: join(store.dir, 'pglite') }),
  });
}

/** @internal The agent's status API as a chain reader (its workspace must match). */
function remoteReader(base: string, workspaceId: string): ChainReader {
  const get = async (path: string): Promise<Record<string, unknown>> => {
    const res = await fetch(new URL(path, base));
    const body = (await res.json()) as Record<string, unknown>;
    if (!res.ok) throw new Error(`${base}${path}: ${res.status} ${String(body.error ?? '')}`);
    if (body.workspace_id !== workspaceId) {
      throw new UsageError(
        `the running agent at ${base} writes workspace ${quote(body.workspace_id)}, not ${quote(workspaceId)}; pass --workspace ${String(body.workspace_id)}`,
      );
    }
    return body;
  };
  return {
    via: `the running agent at ${base}`,
    async tail({ limit, afterSeq = 0, take = 'newest' }) {
      const body = await get(
        `/api/operational-state/chain?limit=${limit}&after_seq=${afterSeq}&take=${take}`,
      );
      return body.events as PositionedChainEvent[];
    },
    async verifyChain() {
      const b = await get('/api/operational-state/chain/verify');
      return b.ok
        ? { ok: true, events: b.events as number }
        : {
            ok: false,
            events: b.events as number,
            eventId: b.event_id as string,
            reason: b.reason as string,
          };
    },
    close: async () => {},
  };
}

/** @internal A pg pool on `url` whose idle errors are reported, not thrown. */
export function openPool(url: string, logger: Logger, max = 6): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 5000 });
  pool.on('error', (err) => logger.warn(`[kora-opstate] postgres pool: ${err.message}`));
  return pool;
}
