/**
 * `<data-dir>/verified-heads.json`: the chain heads `verify-chain` has verified, per store
 * and workspace. The next run verifies incrementally from there, and fails when the
 * chain no longer extends it (a truncated or rewritten tail) — something a database
 * writer cannot undo, since this file is not in the database.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorText } from '../logger.js';
import type { ChainHead } from '../sinks/types.js';

/** The file in the data dir. @internal */
export const VERIFIED_HEADS_FILE = 'verified-heads.json';

/** One remembered head. @internal */
export interface RememberedHead extends ChainHead {
  /** When it was verified (ISO-8601). */
  readonly verified_at: string;
  readonly keyed_from: number | null;
}

interface HeadsFile {
  version: 1;
  /** store identity → workspace → head */
  heads: Record<string, Record<string, RememberedHead>>;
}

const HASH = /^[0-9a-f]{64}$/;

async function load(path: string): Promise<HeadsFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, heads: {} };
    throw err;
  }
  let parsed: HeadsFile;
  try {
    parsed = JSON.parse(text) as HeadsFile;
  } catch (err) {
    throw new Error(
      `${path} is not valid JSON (${errorText(err)}); repair it, or move it away to start over`,
    );
  }
  if (parsed?.version !== 1 || typeof parsed.heads !== 'object' || parsed.heads === null) {
    throw new Error(`${path} is not a verified-heads file (version 1); move it away to start over`);
  }
  return parsed;
}

/** The head remembered for `store` / `workspace`, if any. @internal */
export async function readVerifiedHead(
  dataDir: string,
  store: string,
  workspace: string,
): Promise<RememberedHead | undefined> {
  const path = join(dataDir, VERIFIED_HEADS_FILE);
  const head = (await load(path)).heads[store]?.[workspace];
  if (head === undefined) return undefined;
  if (!Number.isSafeInteger(head.chain_seq) || head.chain_seq < 1 || !HASH.test(head.hash)) {
    throw new Error(
      `${path}: the head of ${store} workspace ${JSON.stringify(workspace)} is malformed; repair it, or move the file away to start over`,
    );
  }
  return head;
}

/** Remembers `head` (written atomically: a crash leaves the old file or the new). @internal */
export async function rememberVerifiedHead(
  dataDir: string,
  store: string,
  workspace: string,
  head: RememberedHead,
): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  const path = join(dataDir, VERIFIED_HEADS_FILE);
  const file = await load(path);
  file.heads[store] = { ...file.heads[store], [workspace]: head };
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(file, null, 2)}\n`);
  await rename(tmp, path);
}
