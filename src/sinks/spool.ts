/**
 * The chain spool (SPEC §10): an append-only, fsynced file of chain events in the agent's
 * data dir. A transition's events are in the spool before its promise resolves, so an
 * acknowledged transition survives a crash (kill -9, power loss after the fsync) even
 * when the database is down; the sink drains the spool to the store in order and the
 * spool shrinks once the events are stored. The next run replays what is left. The file
 * format and the recovery of a torn write are `spoolFile.ts`.
 *
 * Group commit: appends that arrive while a write is in flight share the next write and
 * its one `fdatasync`.
 */
import { mkdir } from 'node:fs/promises';
import { LOG_TAGS, type Logger, report } from '../logger.js';
import { positiveInt } from '../options.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import {
  deleteSegments,
  encodeRecord,
  recoverSegments,
  SegmentWriter,
  writeCursor,
} from './spoolFile.js';
import type { ChainEvent } from './types.js';

export { decodeSegment, encodeRecord } from './spoolFile.js';

/** Options of {@link Spool}; all optional but `dir`. */
export interface SpoolOptions {
  /** The spool's directory (created on open). */
  dir: string;
  /** Events kept at most, not yet stored (default 10,000); more are an explicit overflow. */
  limit?: number;
  /** A segment is closed and a new one begun past this size (default 4 MiB). */
  segmentBytes?: number;
  logger?: Logger;
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

/**
 * An append the spool had no room for: the events are not kept (counted in `dropped`,
 * and a `kora.chain.gap` marker precedes the next record).
 *
 * @example
 * await sink.append(events).catch((err) => {
 *   if (err instanceof SpoolOverflowError) alertOperator(err.message);
 * });
 */
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
};

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
  readonly #file: SegmentWriter;
  readonly #logger: Logger;
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
    this.#limit = positiveInt(options.limit ?? defaults.limit, 'spool.limit');
    this.#file = new SegmentWriter(
      this.dir,
      positiveInt(options.segmentBytes ?? defaults.segmentBytes, 'spool.segmentBytes'),
    );
    this.#logger = options.logger ?? console;
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
    const found = await recoverSegments(this.dir, (text) => {
      this.#stats.torn++;
      this.#log('error', text);
    });
    for (const [n, records] of found.written) this.#written.set(n, records);
    const leftover: ChainEvent[][] = [];
    for (const { segment, events } of found.unstored) {
      leftover.push(events);
      this.#unacked.push({ segment, events: events.length });
      this.#stats.depth += events.length;
      this.#stats.recovered += events.length;
    }
    // New records go to a new segment: the old ones are deleted once their records are stored.
    this.#file.segment = found.last + 1;
    if (leftover.length) {
      this.#log(
        'warn',
        `${this.#stats.recovered} chain event(s) an earlier run left unstored (${leftover.length} transition(s)) will be stored first`,
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
    const [done] = this.appendEach([events], marker);
    return done!;
  }

  /**
   * {@link append} for several transitions at once, in order: their records share one
   * write and one `fdatasync`. One promise per transition (each may overflow alone).
   */
  appendEach(
    changes: readonly (readonly ChainEvent[])[],
    marker?: (gap: SpoolGap) => ChainEvent,
  ): Promise<ChainEvent[][]>[] {
    const done = changes.map((events) => this.#enqueue(events, marker));
    if (this.#pending.length > 0 && !this.#writing) this.#idle = this.#writeLoop();
    return done;
  }

  #enqueue(
    events: readonly ChainEvent[],
    marker?: (gap: SpoolGap) => ChainEvent,
  ): Promise<ChainEvent[][]> {
    if (this.#closed) return Promise.reject(new Error(`${LOG_TAGS.spool} closed`));
    if (events.length === 0) return Promise.resolve([]);
    const markers = marker ? this.#gaps.map((g) => [marker(g)]) : [];
    const needed = markers.length + events.length;
    if (this.#stats.depth + needed > this.#limit) {
      this.#overflow(events);
      return Promise.reject(new SpoolOverflowError(events.length, this.#limit));
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
    return Promise.all(done).then(() => records);
  }

  /** The oldest unacknowledged record is stored (or refused for good): it may go. */
  ack(): void {
    const rec = this.#unacked.shift();
    if (!rec) return;
    this.#stats.depth -= rec.events;
    // Only when a segment may have emptied: not a directory scan per record.
    if (this.#unacked[0]?.segment === rec.segment) return;
    void this.#shrink().catch((err) => this.#log('warn', 'could not shrink', err));
  }

  /** Closes the file; later appends fail. What is not stored stays for the next run. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#idle;
    for (const p of this.#pending.splice(0)) p.reject(new Error(`${LOG_TAGS.spool} closed`));
    await this.#file.abandon();
    await this.#shrink().catch(() => {});
    const oldest = this.#unacked[0]?.segment;
    if (oldest === undefined) {
      await writeCursor(this.dir, undefined);
    } else {
      const waiting = this.#unacked.filter((r) => r.segment === oldest).length;
      const stored = (this.#written.get(oldest) ?? 0) - waiting;
      await writeCursor(this.dir, { segment: oldest, stored });
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
      `full (${this.#limit} events not yet stored): dropped ${events.length} event(s) ` +
        `(${first.instance_id} seq ${first.seq}–${last.seq}); the chain will carry a gap marker`,
    );
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length > 0) {
        const group = this.#pending;
        this.#pending = [];
        let segment: number;
        try {
          segment = await this.#file.write(
            group.length === 1 ? group[0]!.line : Buffer.concat(group.map((p) => p.line)),
          );
        } catch (err) {
          for (const p of group) {
            this.#stats.depth -= p.events;
            p.reject(err);
          }
          this.#log('error', `write to ${this.dir} failed`, err);
          // A failed write may have left a partial record: continue in a fresh segment.
          await this.#file.abandon();
          continue;
        }
        this.#stats.fsyncs++;
        this.#written.set(segment, (this.#written.get(segment) ?? 0) + group.length);
        for (const p of group) {
          this.#stats.records++;
          this.#unacked.push({ segment, events: p.events });
          p.resolve();
        }
      }
    } finally {
      this.#writing = false;
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
      // Everything written is stored: the next record begins a fresh segment.
      if (drained) await this.#file.finish();
      const waiting = new Set(this.#unacked.map((r) => r.segment));
      // The current segment (open, or about to be) is never deleted.
      await deleteSegments(this.dir, (n) => n < this.#file.segment && !waiting.has(n));
    } while (this.#shrinkAgain);
  }

  #log(level: 'error' | 'warn', text: string, err?: unknown): void {
    report(this.#logger, level, LOG_TAGS.spool, text, err);
  }
}
