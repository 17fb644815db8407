/**
 * The spool's files (SPEC §10): the segment format, the close cursor and the recovery of
 * what an earlier run left. The writer with its group commit is `spool.ts`.
 *
 * Format: segment files `<n>.spool`, one record per line:
 * `<sha256 of the JSON, 16 hex>\t<JSON array of the events>\n`. JSON text holds no raw
 * newline, so a record is one line; a last line without its newline, or whose digest
 * does not match, is a write torn by a crash: that write was never acknowledged (its
 * fsync did not return), so it is dropped — reported, never half-stored.
 *
 * Segments are numbered in write order; the spool deletes one once none of its records
 * waits to be stored.
 */
import { createHash } from 'node:crypto';
import {
  type FileHandle,
  open,
  readdir,
  readFile,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { ChainEvent } from './types.js';

const SEGMENT = /^(\d{12})\.spool$/;
const CURSOR = 'stored.json';

/** A segment's file name. */
const segmentName = (n: number) => `${String(n).padStart(12, '0')}.spool`;

/** A segment's path. */
const segmentPath = (dir: string, n: number) => join(dir, segmentName(n));

/** A segment's number, or undefined for a file that is not a segment. */
function segmentNumber(name: string): number | undefined {
  const m = SEGMENT.exec(name);
  return m ? Number(m[1]) : undefined;
}

function digest(json: string): string {
  return createHash('sha256').update(json, 'utf8').digest('hex').slice(0, 16);
}

/** @internal One record's line. */
export function encodeRecord(events: readonly ChainEvent[]): Buffer {
  const json = JSON.stringify(events);
  return Buffer.from(`${digest(json)}\t${json}\n`, 'utf8');
}

/** @internal Parses a segment: the whole records, and where the good part ends. */
export function decodeSegment(bytes: Buffer): {
  records: ChainEvent[][];
  goodBytes: number;
  bad?: string;
} {
  const records: ChainEvent[][] = [];
  let at = 0;
  while (at < bytes.length) {
    const nl = bytes.indexOf(0x0a, at);
    if (nl < 0) return { records, goodBytes: at, bad: 'a record without its newline (torn write)' };
    const line = bytes.subarray(at, nl).toString('utf8');
    const tab = line.indexOf('\t');
    const json = tab === 16 ? line.slice(17) : '';
    if (tab !== 16 || digest(json) !== line.slice(0, 16)) {
      return {
        records,
        goodBytes: at,
        bad: 'a record whose digest does not match (torn or corrupt)',
      };
    }
    let events: ChainEvent[];
    try {
      events = JSON.parse(json) as ChainEvent[];
    } catch {
      return { records, goodBytes: at, bad: 'a record that is not JSON' };
    }
    records.push(events);
    at = nl + 1;
  }
  return { records, goodBytes: at };
}

/** The segment numbers in `dir`, oldest first. */
async function listSegments(dir: string): Promise<number[]> {
  return (await readdir(dir))
    .map(segmentNumber)
    .filter((n): n is number => n !== undefined)
    .sort((a, b) => a - b);
}

/** How many records of the oldest waiting segment were stored when a run closed. */
export interface SpoolCursor {
  readonly segment: number;
  readonly stored: number;
}

/**
 * Reads and removes the cursor. A hint only (not fsynced): losing it replays
 * stored events, which the store skips. Used once: segment numbers restart when the spool
 * was empty, so a kept cursor could skip a later run's records.
 */
async function takeCursor(dir: string): Promise<SpoolCursor | undefined> {
  let cursor: SpoolCursor | undefined;
  try {
    const c = JSON.parse(await readFile(join(dir, CURSOR), 'utf8')) as Record<string, unknown>;
    if (Number.isInteger(c.segment) && Number.isInteger(c.stored)) {
      cursor = { segment: c.segment as number, stored: c.stored as number };
    }
  } catch {
    // No cursor (or an unreadable one): everything left is replayed.
  }
  await unlink(join(dir, CURSOR)).catch(() => {});
  return cursor;
}

/** @internal Writes the cursor at close; none when nothing waits. Best effort, as it is a hint. */
export async function writeCursor(dir: string, cursor: SpoolCursor | undefined): Promise<void> {
  const path = join(dir, CURSOR);
  if (cursor === undefined) await unlink(path).catch(() => {});
  else await writeFile(path, JSON.stringify(cursor)).catch(() => {});
}

/**
 * Cuts a segment back to its whole records, durably; the cut bytes are kept
 * beside it (`<segment>.torn-<ms>`) as evidence.
 */
async function repairSegment(path: string, bytes: Buffer, goodBytes: number): Promise<void> {
  await writeFile(`${path}.torn-${Date.now()}`, bytes.subarray(goodBytes)).catch(() => {});
  await truncate(path, goodBytes);
  await fsyncPath(path, 'r+');
}

/** Makes a directory's entries (a new segment) durable. */
function syncDir(dir: string): Promise<void> {
  return fsyncPath(dir, 'r');
}

async function fsyncPath(path: string, flags: string): Promise<void> {
  const fh = await open(path, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * @internal Deletes the segments of `dir` that `drop` names; a segment (or the directory)
 * already gone is fine.
 */
export async function deleteSegments(dir: string, drop: (n: number) => boolean): Promise<void> {
  for (const n of await listSegments(dir).catch(() => [] as number[])) {
    if (drop(n)) await unlink(segmentPath(dir, n)).catch(() => {});
  }
}

/** What an earlier run left in a spool directory. */
export interface RecoveredSpool {
  /** The records not stored yet, oldest first, each with its segment. */
  readonly unstored: { segment: number; events: ChainEvent[] }[];
  /** Whole records per segment, stored or not. */
  readonly written: Map<number, number>;
  /** The newest segment's number (0 when there is none). */
  readonly last: number;
}

/**
 * @internal Reads the segments an earlier run left, oldest first. A torn or corrupt tail
 * is reported through `onTorn` (its message), then cut off with {@link repairSegment};
 * records the close cursor says were stored are not returned.
 */
export async function recoverSegments(
  dir: string,
  onTorn: (message: string) => void,
): Promise<RecoveredSpool> {
  const segments = await listSegments(dir);
  const cursor = await takeCursor(dir);
  const unstored: RecoveredSpool['unstored'] = [];
  const written = new Map<number, number>();
  for (const n of segments) {
    const path = segmentPath(dir, n);
    const bytes = await readFile(path);
    const { records, goodBytes, bad } = decodeSegment(bytes);
    // Records an earlier run stored and said so at close (the cursor) are not replayed.
    const skip = cursor?.segment === n ? Math.min(cursor.stored, records.length) : 0;
    if (bad) {
      const last = n === segments.at(-1);
      onTorn(
        `${path}: ${bad} at byte ${goodBytes} of ${bytes.length}; ` +
          `${last ? 'it was never acknowledged, dropped' : 'the rest of this segment is set aside'} ` +
          `(${records.length} whole record(s) kept)`,
      );
      // The evidence is kept beside; the segment keeps its whole records, durably.
      await repairSegment(path, bytes, goodBytes);
    }
    written.set(n, records.length);
    for (const events of records.slice(skip)) unstored.push({ segment: n, events });
  }
  return { unstored, written, last: segments.at(-1) ?? 0 };
}

/**
 * @internal The segment being written: appends go to it, each fsynced (`fdatasync`), and a
 * new one begins past `segmentBytes`. `segment` is its number — the segment open, or the
 * one the next write opens: no segment below it is written to again.
 */
export class SegmentWriter {
  segment = 0;
  readonly #dir: string;
  readonly #segmentBytes: number;
  #handle: FileHandle | undefined;
  #size = 0;

  constructor(dir: string, segmentBytes: number) {
    this.#dir = dir;
    this.#segmentBytes = segmentBytes;
  }

  /** Writes `bytes` durably; resolves with the segment they are in. */
  async write(bytes: Buffer): Promise<number> {
    if (!this.#handle || this.#size >= this.#segmentBytes) await this.#rotate();
    await this.#handle!.write(bytes);
    await this.#handle!.datasync();
    this.#size += bytes.length;
    return this.segment;
  }

  /**
   * Leaves the current segment (after a failed write, which may have left a partial
   * record, or at close): the next write begins a fresh one. Never throws.
   */
  async abandon(): Promise<void> {
    const h = this.#detach();
    await h?.close().catch(() => {});
  }

  /** Closes the current segment if anything was written to it (the spool is drained). */
  async finish(): Promise<void> {
    if (!this.#handle || this.#size === 0) return;
    // Detached before the await, so no write can go to the closing file.
    await this.#detach()!.close();
  }

  #detach(): FileHandle | undefined {
    const h = this.#handle;
    this.#handle = undefined;
    this.segment++;
    return h;
  }

  /** Begins a new segment; its directory entry is made durable too. */
  async #rotate(): Promise<void> {
    if (this.#handle) {
      await this.#handle.close();
      this.#handle = undefined;
      this.segment++;
    }
    this.#handle = await open(segmentPath(this.#dir, this.segment), 'a');
    this.#size = 0;
    await syncDir(this.#dir);
  }
}
