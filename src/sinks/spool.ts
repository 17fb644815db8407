/**
 * The chain spool (SPEC §10): an append-only, fsynced file of chain events in the agent's
 * data dir. A transition's events are in the spool before its promise resolves, so an
 * acknowledged transition survives a crash (kill -9, power loss after the fsync) even
 * when the database is down; the sink drains the spool to the store in order and the
 * spool shrinks once the events are stored. The next run replays what is left.
 *
 * Format: segment files `<n>.spool`, one record per line:
 * `<sha256 of the JSON, 16 hex>\t<JSON array of the events>\n`. JSON text holds no raw
 * newline, so a record is one line; a last line without its newline, or whose digest
 * does not match, is a write torn by a crash: that write was never acknowledged (its
 * fsync did not return), so it is dropped — reported, never half-stored.
 *
 * Group commit: appends that arrive while a write is in flight share the next write and
 * its one `fdatasync`.
 */
import { createHash } from 'node:crypto';
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../holder.js';
import { OperationalStateInputError, parsePositiveInt, quote } from '../vocabulary.js';
import type { ChainEvent } from './types.js';

/** Options of {@link Spool}; all optional but `dir`. */
export interface SpoolOptions {
  /** The spool's directory (created on open). */
  dir: string;
  /** Events kept at most, not yet stored (default 10,000); more are an explicit overflow. */
  limit?: number;
  /** A segment is closed and a new one begun past this size (default 4 MiB). */
  segmentBytes?: number;
  logger?: Logger;
  /** Log tag (default `[kora.operational_state.spool]`). */
  tag?: string;
}

/** Spool counters (the status payload and `/metrics` show some of them). */
export interface SpoolStats {
  /** Events in the spool not yet stored. */
  depth: number;
  /** Records (one per append) written since open. */
  records: number;
  /** `fdatasync` calls since open: `records / fsyncs` transitions share one fsync. */
  fsyncs: number;
  /** Events refused because the spool was full. */
  overflowed: number;
  /** Events recovered from an earlier run at open. */
  recovered: number;
  /** Torn or corrupt records dropped at open. */
  torn: number;
}

/** An append the spool had no room for: the events are not kept. */
export class SpoolOverflowError extends Error {
  override readonly name = 'SpoolOverflowError';
  constructor(
    readonly dropped: number,
    readonly limit: number,
  ) {
    super(
      `chain spool full (${limit} events not yet stored): ${dropped} event(s) dropped — the store has been unreachable`,
    );
  }
}

/** Events dropped by an overflow, to be marked in the chain by a gap event. */
export interface SpoolGap {
  readonly instance_id: string;
  readonly from_seq: number;
  readonly to_seq: number;
  readonly dropped: number;
}

interface Pending {
  readonly line: Buffer;
  readonly events: number;
  resolve(): void;
  reject(err: unknown): void;
}

const defaults = {
  limit: 10_000,
  segmentBytes: 4 * 1024 * 1024,
  tag: '[kora.operational_state.spool]',
};

const SEGMENT = /^(\d{12})\.spool$/;
const CURSOR = 'stored.json';

/**
 * How many records of the oldest waiting segment were stored when the last run closed. A
 * hint only (not fsynced): losing it replays stored events, which the store skips.
 */
async function readCursor(dir: string): Promise<{ segment: number; stored: number } | undefined> {
  try {
    const c = JSON.parse(await readFile(join(dir, CURSOR), 'utf8')) as Record<string, unknown>;
    return Number.isInteger(c.segment) && Number.isInteger(c.stored)
      ? { segment: c.segment as number, stored: c.stored as number }
      : undefined;
  } catch {
    return undefined;
  }
}
const segmentName = (n: number) => `${String(n).padStart(12, '0')}.spool`;

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

/**
 * The append-only, fsynced spool of one agent's chain events.
 *
 * @example
 * const spool = new Spool({ dir: './.kora-opstate/spool/default' });
 * const leftover = await spool.open(); // records a crashed run left, oldest first
 * await spool.append(events); // resolves once fsynced
 * spool.ack(); // the oldest record is stored: the spool may shrink
 */
export class Spool {
  readonly dir: string;
  readonly #limit: number;
  readonly #segmentBytes: number;
  readonly #logger: Logger;
  readonly #tag: string;
  readonly #stats: SpoolStats = {
    depth: 0,
    records: 0,
    fsyncs: 0,
    overflowed: 0,
    recovered: 0,
    torn: 0,
  };
  /** Per unacknowledged record, oldest first: its segment and its event count. */
  readonly #unacked: { segment: number; events: number }[] = [];
  #pending: Pending[] = [];
  #opening: Promise<ChainEvent[][]> | undefined;
  #handle: FileHandle | undefined;
  #segment = 0;
  #segmentSize = 0;
  #writing = false;
  #closed = false;
  #gaps: SpoolGap[] = [];
  #shrinkRun: Promise<void> | undefined;
  #shrinkAgain = false;
  /** Records written per segment (recovered ones included). */
  readonly #written = new Map<number, number>();
  /** Settles when the write loop is idle. */
  #idle: Promise<void> = Promise.resolve();

  constructor(options: SpoolOptions) {
    if (options === null || typeof options !== 'object') {
      throw new OperationalStateInputError(
        'spool',
        options,
        `spool options must be an object, got ${quote(options)}`,
      );
    }
    if (typeof options.dir !== 'string' || options.dir === '') {
      throw new OperationalStateInputError(
        'spool.dir',
        options.dir,
        `spool.dir must be a non-empty path, got ${quote(options.dir)}`,
      );
    }
    this.dir = options.dir;
    this.#limit = parsePositiveInt(options.limit ?? defaults.limit, 'spool.limit');
    this.#segmentBytes = parsePositiveInt(
      options.segmentBytes ?? defaults.segmentBytes,
      'spool.segmentBytes',
    );
    this.#logger = options.logger ?? console;
    this.#tag = options.tag ?? defaults.tag;
  }

  /** Counters, live. */
  get stats(): Readonly<SpoolStats> {
    return { ...this.#stats };
  }

  /** The bound on events not yet stored. */
  get limit(): number {
    return this.#limit;
  }

  /**
   * Opens the spool (idempotent): reads what an earlier run left, drops a torn last
   * record, and resolves with the leftover records, oldest first — the caller stores them
   * before anything appended now. They count as unacknowledged.
   */
  open(): Promise<ChainEvent[][]> {
    this.#opening ??= this.#open();
    return this.#opening;
  }

  async #open(): Promise<ChainEvent[][]> {
    await mkdir(this.dir, { recursive: true });
    const names = (await readdir(this.dir))
      .map((n) => SEGMENT.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    const leftover: ChainEvent[][] = [];
    const cursor = await readCursor(this.dir);
    // Used once: segment numbers restart when the spool was empty, so a kept cursor could
    // skip a later run's records.
    await unlink(join(this.dir, CURSOR)).catch(() => {});
    for (const n of names) {
      const path = join(this.dir, segmentName(n));
      const bytes = await readFile(path);
      const { records, goodBytes, bad } = decodeSegment(bytes);
      // Records an earlier run stored and said so at close (the cursor) are not replayed.
      const skip = cursor?.segment === n ? Math.min(cursor.stored, records.length) : 0;
      if (bad) {
        this.#stats.torn++;
        const last = n === names.at(-1);
        this.#log(
          'error',
          `${this.#tag} ${path}: ${bad} at byte ${goodBytes} of ${bytes.length}; ` +
            `${last ? 'it was never acknowledged, dropped' : 'the rest of this segment is set aside'} ` +
            `(${records.length} whole record(s) kept)`,
        );
        // The evidence is kept beside; the segment keeps its whole records, durably.
        await writeFile(`${path}.torn-${Date.now()}`, bytes.subarray(goodBytes)).catch(() => {});
        await truncate(path, goodBytes);
        const fh = await open(path, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      this.#written.set(n, records.length);
      for (const r of records.slice(skip)) {
        leftover.push(r);
        this.#unacked.push({ segment: n, events: r.length });
        this.#stats.depth += r.length;
        this.#stats.recovered += r.length;
      }
      this.#segment = n;
    }
    // New records go to a new segment: the old ones are deleted once their records are stored.
    this.#segment++;
    if (leftover.length) {
      this.#log(
        'warn',
        `${this.#tag} ${this.#stats.recovered} chain event(s) an earlier run left unstored (${leftover.length} transition(s)) will be stored first`,
      );
    }
    return leftover;
  }

  /**
   * Appends one transition's events; resolves once they are on disk (fsynced), with the
   * records written: a gap marker for each earlier overflow (made by `marker`, written
   * first, once there is room for it), then `events`. Rejects with
   * {@link SpoolOverflowError} when the spool is full: the events are not kept and the
   * gap is remembered.
   */
  async append(
    events: readonly ChainEvent[],
    marker?: (gap: SpoolGap) => ChainEvent,
  ): Promise<ChainEvent[][]> {
    if (this.#closed) throw new Error(`${this.#tag} closed`);
    if (events.length === 0) return [];
    const markers = marker ? this.#gaps.map((g) => [marker(g)]) : [];
    const needed = markers.length + events.length;
    if (this.#stats.depth + needed > this.#limit) {
      this.#overflow(events);
      throw new SpoolOverflowError(events.length, this.#limit);
    }
    if (marker) this.#gaps = [];
    const records = [...markers, [...events]];
    const done = records.map(
      (r) =>
        new Promise<void>((resolve, reject) => {
          this.#stats.depth += r.length;
          this.#pending.push({ line: encodeRecord(r), events: r.length, resolve, reject });
        }),
    );
    if (!this.#writing) this.#idle = this.#writeLoop();
    await Promise.all(done);
    return records;
  }

  /** The oldest unacknowledged record is stored (or refused for good): it may go. */
  ack(): void {
    const rec = this.#unacked.shift();
    if (!rec) return;
    this.#stats.depth -= rec.events;
    // Only when a segment may have emptied: not a directory scan per record.
    if (this.#unacked[0]?.segment === rec.segment) return;
    void this.#shrink().catch((err) => this.#log('warn', `${this.#tag} could not shrink`, err));
  }

  /** Closes the file; later appends fail. What is not stored stays for the next run. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#idle;
    for (const p of this.#pending.splice(0)) p.reject(new Error(`${this.#tag} closed`));
    const h = this.#handle;
    this.#handle = undefined;
    this.#segment++;
    await h?.close().catch(() => {});
    await this.#shrink().catch(() => {});
    const oldest = this.#unacked[0]?.segment;
    const cursor = join(this.dir, CURSOR);
    if (oldest === undefined) {
      await unlink(cursor).catch(() => {});
    } else {
      const waiting = this.#unacked.filter((r) => r.segment === oldest).length;
      const stored = (this.#written.get(oldest) ?? 0) - waiting;
      await writeFile(cursor, JSON.stringify({ segment: oldest, stored })).catch(() => {});
    }
  }

  #overflow(events: readonly ChainEvent[]): void {
    this.#stats.overflowed += events.length;
    const first = events[0]!;
    const last = events[events.length - 1]!;
    const gap = this.#gaps.at(-1);
    if (gap && gap.instance_id === first.instance_id && gap.to_seq + 1 === first.seq) {
      this.#gaps[this.#gaps.length - 1] = {
        ...gap,
        to_seq: last.seq,
        dropped: gap.dropped + events.length,
      };
    } else {
      this.#gaps.push({
        instance_id: first.instance_id,
        from_seq: first.seq,
        to_seq: last.seq,
        dropped: events.length,
      });
    }
    this.#log(
      'error',
      `${this.#tag} full (${this.#limit} events not yet stored): dropped ${events.length} event(s) ` +
        `(${first.instance_id} seq ${first.seq}–${last.seq}); the chain will carry a gap marker`,
    );
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length > 0) {
        const group = this.#pending;
        this.#pending = [];
        try {
          if (!this.#handle || this.#segmentSize >= this.#segmentBytes) await this.#rotate();
          const bytes =
            group.length === 1 ? group[0]!.line : Buffer.concat(group.map((p) => p.line));
          await this.#handle!.write(bytes);
          await this.#handle!.datasync();
          this.#segmentSize += bytes.length;
        } catch (err) {
          for (const p of group) {
            this.#stats.depth -= p.events;
            p.reject(err);
          }
          this.#log('error', `${this.#tag} write to ${this.dir} failed`, err);
          // A failed write may have left a partial record: continue in a fresh segment.
          const h = this.#handle;
          this.#handle = undefined;
          this.#segment++;
          await h?.close().catch(() => {});
          continue;
        }
        this.#stats.fsyncs++;
        this.#written.set(this.#segment, (this.#written.get(this.#segment) ?? 0) + group.length);
        for (const p of group) {
          this.#stats.records++;
          this.#unacked.push({ segment: this.#segment, events: p.events });
          p.resolve();
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  /** Begins a new segment; its directory entry is made durable too. */
  async #rotate(): Promise<void> {
    if (this.#handle) {
      await this.#handle.close();
      this.#handle = undefined;
      this.#segment++;
    }
    this.#handle = await open(join(this.dir, segmentName(this.#segment)), 'a');
    this.#segmentSize = 0;
    const dir = await open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /** Deletes segments none of whose records wait; an idle, drained spool keeps no file. */
  #shrink(): Promise<void> {
    if (this.#shrinkRun) {
      this.#shrinkAgain = true;
      return this.#shrinkRun;
    }
    this.#shrinkRun = this.#shrinkNow().finally(() => {
      this.#shrinkRun = undefined;
    });
    return this.#shrinkRun;
  }

  async #shrinkNow(): Promise<void> {
    do {
      this.#shrinkAgain = false;
      const drained = this.#unacked.length === 0 && this.#pending.length === 0 && !this.#writing;
      if (drained && this.#handle && this.#segmentSize > 0) {
        // Everything written is stored: the next record begins a fresh segment. Detached
        // before the await, so no write can go to the closing file.
        const h = this.#handle;
        this.#handle = undefined;
        this.#segment++;
        await h.close();
      }
      const waiting = new Set(this.#unacked.map((r) => r.segment));
      const names = await readdir(this.dir).catch(() => [] as string[]);
      for (const name of names) {
        const m = SEGMENT.exec(name);
        // The current segment (open, or about to be) is never deleted.
        if (m && Number(m[1]) < this.#segment && !waiting.has(Number(m[1]))) {
          await unlink(join(this.dir, name)).catch(() => {});
        }
      }
    } while (this.#shrinkAgain);
  }

  #log(level: 'error' | 'warn', text: string, err?: unknown): void {
    try {
      if (err === undefined) this.#logger[level](text);
      else this.#logger[level](text, err);
    } catch {
      // A throwing logger must not stop the spool.
    }
  }
}
