/**
 * Where an agent's chain key comes from (SPEC §10): `KORA_CHAIN_KEY`, else a key file
 * (`--chain-key-file`), else `<data-dir>/chain.key` — generated on first start (32 random
 * bytes as hex, created exclusively, mode 0600). The key is its text: the file's content
 * (trimmed) and `KORA_CHAIN_KEY` set to that content are the same key. Agents of one
 * workspace share it; it never enters the database.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorText } from './logger.js';

/** The shortest key text accepted (from the environment or a file). */
export const MIN_CHAIN_KEY_CHARS = 32;

/** The key file in a data dir. */
export const CHAIN_KEY_FILE = 'chain.key';

/** Where {@link resolveChainKey} looks. */
export interface ResolveChainKeyOptions {
  /** Default `process.env`: `KORA_CHAIN_KEY` is read from it. */
  env?: Readonly<Record<string, string | undefined>>;
  /** A key file given explicitly (`--chain-key-file`): it must exist. */
  keyFile?: string;
  /** The agent's data dir: `<dataDir>/chain.key` is the default key file. */
  dataDir?: string;
  /** Generate `<dataDir>/chain.key` when no key is found (`start`; never `verify-chain`). */
  create?: boolean;
}

/** A key found (or made), where from, and anything the operator should hear once. */
export interface ResolvedChainKey {
  /** The key text; undefined when none was found and `create` was not asked. */
  readonly key: string | undefined;
  /** `env` (KORA_CHAIN_KEY), `file` (an existing file), `generated` (created now), `none`. */
  readonly source: 'env' | 'file' | 'generated' | 'none';
  /** The key file read or created (absent for `env`). */
  readonly path?: string;
  /** Where it looked, in order (for a "no key" message). */
  readonly looked: readonly string[];
  /** E.g. the key file is readable by group or others. */
  readonly warning?: string;
}

/** A key that cannot be used: too short, unreadable, or a file given that is missing. */
export class ChainKeyError extends Error {
  override readonly name = 'ChainKeyError';
}

async function readKeyFile(path: string): Promise<{ key: string; warning?: string }> {
  const text = await readFile(path, 'utf8');
  const key = text.trim();
  if (key.length < MIN_CHAIN_KEY_CHARS) {
    throw new ChainKeyError(
      `chain key file ${path} holds ${key.length} characters; a key needs at least ${MIN_CHAIN_KEY_CHARS}`,
    );
  }
  const mode = (await stat(path)).mode & 0o777;
  const warning =
    mode & 0o077
      ? `chain key file ${path} is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}); run: chmod 600 ${path}`
      : undefined;
  return warning ? { key, warning } : { key };
}

/**
 * Creates `path` with a new key, exclusively: the key is written (mode 0600) and fsynced
 * under a temporary name, then linked into place — `link` fails when the file exists, so
 * two first starts at once end with one key, and a reader never sees a half-written one.
 */
async function generate(path: string): Promise<'created' | 'exists'> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const file = await open(tmp, 'wx', 0o600);
  try {
    await file.writeFile(`${randomBytes(32).toString('hex')}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return 'exists';
    throw err;
  } finally {
    await unlink(tmp).catch(() => {});
  }
  // The new name must survive a crash too.
  const dir = await open(join(path, '..'), 'r');
  try {
    await dir.sync();
  } catch {
    // Some file systems cannot fsync a directory; the key itself is synced.
  } finally {
    await dir.close();
  }
  return 'created';
}

/**
 * Finds the chain key: `KORA_CHAIN_KEY` (at least 32 characters), else `keyFile`, else
 * `<dataDir>/chain.key` — created there when `create` is set and it does not exist. Errors
 * name the variable or file, never the key.
 *
 * @example
 * const { key, source, path } = await resolveChainKey({ dataDir: '.kora-opstate', create: true });
 * const sink = createPgliteSink({ dataDir: '.kora-opstate/pglite', chainKey: key });
 */
export async function resolveChainKey(
  options: ResolveChainKeyOptions = {},
): Promise<ResolvedChainKey> {
  const env = options.env ?? process.env;
  const looked: string[] = [];
  const fromEnv = env.KORA_CHAIN_KEY;
  if (fromEnv !== undefined && fromEnv !== '') {
    const key = fromEnv.trim();
    if (key.length < MIN_CHAIN_KEY_CHARS) {
      throw new ChainKeyError(
        `KORA_CHAIN_KEY holds ${key.length} characters; a key needs at least ${MIN_CHAIN_KEY_CHARS}`,
      );
    }
    return { key, source: 'env', looked: ['KORA_CHAIN_KEY'] };
  }
  looked.push('KORA_CHAIN_KEY (not set)');
  if (options.keyFile !== undefined) {
    const path = resolve(options.keyFile);
    try {
      return { ...(await readKeyFile(path)), source: 'file', path, looked: [...looked, path] };
    } catch (err) {
      if (err instanceof ChainKeyError) throw err;
      throw new ChainKeyError(
        `cannot read the chain key file ${path} (--chain-key-file): ${errorText(err)}`,
      );
    }
  }
  if (options.dataDir === undefined) return { key: undefined, source: 'none', looked };
  const path = resolve(options.dataDir, CHAIN_KEY_FILE);
  looked.push(path);
  for (let attempt = 0; ; attempt++) {
    try {
      return { ...(await readKeyFile(path)), source: 'file', path, looked };
    } catch (err) {
      if (err instanceof ChainKeyError) throw err;
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new ChainKeyError(`cannot read the chain key file ${path}: ${errorText(err)}`);
      }
    }
    if (!options.create) return { key: undefined, source: 'none', looked };
    if (attempt > 0) throw new ChainKeyError(`chain key file ${path} vanished while being created`);
    await mkdir(options.dataDir, { recursive: true });
    if ((await generate(path)) === 'created') {
      return { ...(await readKeyFile(path)), source: 'generated', path, looked };
    }
    // Another start created it first: read theirs.
  }
}
