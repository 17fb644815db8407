/**
 * The embedded store's lock: PGlite serves one process per directory, so `start` owns the
 * directory through `agent.lock.json` ({ pid, token, started_at, url? }).
 *
 * - Taken by exclusive create (`open(…, 'wx')`): of two simultaneous takers exactly one
 *   succeeds; the other reads the winner's file and names its pid (and URL once known).
 * - Owned by a random token, not a pid: `update` and `release` touch the file only while
 *   it still holds that token, so a process never overwrites or deletes another's lock.
 * - A stale lock (its pid is gone) is taken over under a takeover guard
 *   (`agent.lock.json.takeover`, itself exclusive-created): the taker re-reads the lock,
 *   removes it only if it is still the dead owner's file, and creates its own with 'wx'.
 *   A guard whose process died, or that is older than {@link GUARD_STALE_MS}, is
 *   abandoned and removed the same way.
 *
 * Removal is "rename aside, check, unlink" ({@link removeIfUnchanged}): a file that
 * changed between the look and the removal is put back instead of lost.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** @internal What `start` writes into the embedded store's directory while it runs. */
export interface LockFile {
  pid: number;
  /** Random per acquisition: who owns this file (a pid can be reused). Absent in v0.1 locks. */
  token?: string;
  started_at?: string;
  /** The agent's status API, once it listens: where `events`/`verify-chain` read a held store. */
  url?: string;
}

/** @internal A held lock on the embedded store. */
export interface StoreLock {
  /** Records the status URL; throws if this process no longer owns the lock. */
  update(url: string): Promise<void>;
  /** Removes the lock if it is still ours (idempotent; never touches another owner's lock). */
  release(): Promise<void>;
}

const LOCK_FILE = 'agent.lock.json';
/** @internal */
export const lockPath = (dir: string) => join(dir, LOCK_FILE);
const guardPath = (dir: string) => join(dir, `${LOCK_FILE}.takeover`);

/**
 * A takeover is a few file operations; a guard older than this belongs to a taker that
 * hung or died between its checks (pid reuse could hide the death), so it is abandoned.
 */
const GUARD_STALE_MS = 10_000;
/**
 * Between its 'wx' create and its write a lock file is empty. One that still does not
 * parse after this long was left by a taker that died in that gap: it is stale.
 */
const UNREADABLE_GRACE_MS = 5_000;

const newToken = () => randomBytes(16).toString('hex');
const serialize = (lock: LockFile) => `${JSON.stringify(lock)}\n`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, it is just not ours to signal.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const errno = (err: unknown) => (err as NodeJS.ErrnoException).code;

/** One look at a lock (or guard) file: its bytes, parsed content and identity. */
interface Seen {
  readonly raw: string;
  readonly lock: LockFile | undefined;
  readonly ino: number;
  readonly mtimeMs: number;
}

function parseLock(raw: string): LockFile | undefined {
  try {
    const v = JSON.parse(raw) as LockFile | null;
    if (v !== null && typeof v === 'object' && Number.isInteger(v.pid) && v.pid > 0) return v;
  } catch {
    // Empty or torn: being written right now, or left by a taker that died mid-write.
  }
  return undefined;
}

async function look(path: string): Promise<Seen | undefined> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    const raw = await fh.readFile('utf8');
    return { raw, lock: parseLock(raw), ino: st.ino, mtimeMs: st.mtimeMs };
  } finally {
    await fh.close();
  }
}

/** A look that waits out the empty moment between another taker's create and its write. */
async function settledLook(path: string): Promise<Seen | undefined> {
  for (;;) {
    const seen = await look(path);
    if (!seen || seen.lock || Date.now() - seen.mtimeMs > UNREADABLE_GRACE_MS) return seen;
    await sleep(10);
  }
}

/** Exclusive create with `content`; false when the file exists. */
async function createExclusive(path: string, content: string): Promise<boolean> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'wx', 0o644);
  } catch (err) {
    if (errno(err) === 'EEXIST') return false;
    throw err;
  }
  try {
    await fh.writeFile(content);
  } catch (err) {
    // Ours alone (just created): an empty lock must not be left behind.
    await fh.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw err;
  }
  await fh.close();
  return true;
}

/**
 * Removes `path` only if it is still the file `seen` describes: renamed aside (atomic),
 * checked, then unlinked — or linked back if it had changed in between.
 */
async function removeIfUnchanged(path: string, seen: Seen): Promise<boolean> {
  const aside = `${path}.${newToken()}.gone`;
  try {
    await rename(path, aside);
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
  const moved = await look(aside);
  if (moved && moved.raw === seen.raw && moved.ino === seen.ino) {
    await unlink(aside);
    return true;
  }
  // Someone else's file: put it back (exclusive, so nothing newer is overwritten).
  await link(aside, path).catch(() => {});
  await unlink(aside).catch(() => {});
  return false;
}

function heldError(dir: string, lock: LockFile): Error {
  const where = lock.url ? `, ${lock.url}` : ', still starting: no status URL yet';
  return new Error(
    `the embedded store ${dir} is in use by another kora-opstate start (pid ${lock.pid}${where}); ` +
      'stop it, pass another --data-dir, or share a Postgres with DATABASE_URL ' +
      `(if no such process runs, remove ${lockPath(dir)})`,
  );
}

/** Takes the takeover guard, or removes an abandoned one; undefined when not taken now. */
async function takeGuard(dir: string): Promise<(() => Promise<void>) | undefined> {
  const path = guardPath(dir);
  const token = newToken();
  const text = serialize({ pid: process.pid, token, started_at: new Date().toISOString() });
  if (await createExclusive(path, text)) {
    return async () => {
      const now = await look(path);
      if (now?.lock?.token === token) await removeIfUnchanged(path, now);
    };
  }
  const seen = await look(path);
  if (!seen) return undefined;
  const abandoned =
    Date.now() - seen.mtimeMs > GUARD_STALE_MS ||
    (seen.lock !== undefined && !alive(seen.lock.pid));
  if (abandoned) await removeIfUnchanged(path, seen);
  return undefined;
}

/**
 * Replaces the stale lock `stale` with ours: under the guard, only if the lock is still
 * that file. `busy`: another taker holds the guard now.
 */
async function takeOver(dir: string, stale: Seen, ours: string): Promise<'won' | 'lost' | 'busy'> {
  const releaseGuard = await takeGuard(dir);
  if (!releaseGuard) return 'busy';
  try {
    const path = lockPath(dir);
    const now = await look(path);
    if (now && (now.raw !== stale.raw || now.ino !== stale.ino)) return 'lost';
    if (now) await removeIfUnchanged(path, now);
    return (await createExclusive(path, ours)) ? 'won' : 'lost';
  } finally {
    await releaseGuard();
  }
}

/** @internal The live agent holding the embedded store, if any (a stale lock is ignored). */
export async function readStoreLock(dir: string): Promise<LockFile | undefined> {
  const lock = (await settledLook(lockPath(dir)))?.lock;
  if (!lock || lock.pid === process.pid || !alive(lock.pid)) return undefined;
  return lock;
}

/**
 * @internal Takes the embedded store for this process; throws naming the holder (pid, URL)
 * when a live agent has it — another lock taken in this same process counts as live.
 */
export async function acquireStoreLock(dir: string): Promise<StoreLock> {
  await mkdir(dir, { recursive: true });
  const path = lockPath(dir);
  const token = newToken();
  let mine: LockFile = { pid: process.pid, token, started_at: new Date().toISOString() };
  const text = serialize(mine);
  const deadline = Date.now() + GUARD_STALE_MS + UNREADABLE_GRACE_MS;
  for (;;) {
    if (await createExclusive(path, text)) break;
    const seen = await settledLook(path);
    if (seen) {
      if (seen.lock && alive(seen.lock.pid)) throw heldError(dir, seen.lock);
      const outcome = await takeOver(dir, seen, text);
      if (outcome === 'won') break;
      if (outcome === 'busy') {
        if (Date.now() > deadline) {
          throw new Error(
            `could not take the embedded store ${dir}: another process kept taking over its stale lock (${guardPath(dir)})`,
          );
        }
        await sleep(10);
      }
    }
  }

  let released = false;
  return {
    async update(url) {
      const now = await look(path);
      if (!now || now.lock?.token !== token) {
        throw new Error(
          `lost the lock on the embedded store ${dir}: ${now?.lock ? `it is now held by pid ${now.lock.pid}` : 'its lock file is gone or unreadable'}`,
        );
      }
      mine = { ...mine, url };
      // A reader sees the old file or the new one, never a half-written one.
      const tmp = `${path}.${token}.tmp`;
      await writeFile(tmp, serialize(mine));
      await rename(tmp, path);
    },
    async release() {
      if (released) return;
      released = true;
      const now = await look(path);
      if (now && now.lock?.token === token) await removeIfUnchanged(path, now);
    },
  };
}
