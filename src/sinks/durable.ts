/**
 * The durable sink over a SQL backend, shared by Postgres and PGlite: migrations at
 * `start()`, appends through the outbox, chain verification and reads.
 */
import type { Logger } from '../holder.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import { applyMigrations } from './migrations.js';
import { Outbox, type OutboxOptions } from './outbox.js';
import {
  APPEND_SQL,
  type DurableSinkStats,
  isPermanentSqlError,
  type PositionedChainEvent,
  type SqlSession,
  TAIL_OLDEST_SQL,
  TAIL_SQL,
  VERIFY_PAGE,
  VERIFY_SQL,
} from './sql.js';
import type { ChainEvent, DurableEventSink, TailOptions, VerifyChainResult } from './types.js';

/** Options both durable sinks accept. */
export interface DurableSinkOptions {
  /** The workspace this sink appends to and verifies by default (default `'default'`). */
  workspaceId?: string;
  /** Events kept while the database is unreachable (default 10,000). */
  outboxLimit?: number;
  /** Retry backoff: doubles from `initialMs` (default 200) up to `maxMs` (default 5,000). */
  retry?: { initialMs?: number; maxMs?: number };
  logger?: Logger;
  /** Timer functions (tests pass fakes). */
  timers?: OutboxOptions['timers'];
  /** Jitter source in [0, 1) (default `Math.random`). */
  random?: () => number;
}

/** @internal Validates the shared options. */
export function resolveWorkspaceId(value: unknown): string {
  const workspaceId = value ?? 'default';
  if (typeof workspaceId !== 'string' || workspaceId.trim() === '') {
    throw new OperationalStateInputError(
      'workspaceId',
      workspaceId,
      `workspaceId must be a non-empty string, got ${quote(workspaceId)}`,
    );
  }
  return workspaceId;
}

/** A durable sink as shipped: the contract plus `refused` and stored positions. */
export interface DurableChainSink extends DurableEventSink {
  readonly stats: Readonly<DurableSinkStats>;
  tail(options?: TailOptions): Promise<PositionedChainEvent[]>;
}

/** How a concrete sink reaches its database. @internal */
export interface SqlBackend {
  /** Log tag, e.g. `[kora.operational_state.sink.postgres]`. */
  readonly tag: string;
  /** Opens the database (idempotent); returns the session to use. */
  open(): Promise<SqlSession>;
  /** Releases what `open` acquired. */
  shut(): Promise<void>;
}

/**
 * The durable sink over a SQL backend: migrations at `start()`, appends through the
 * outbox, verification and reads.
 * @internal Use `createPostgresSink` or `createPgliteSink`.
 */
export class SqlEventSink implements DurableChainSink {
  readonly workspaceId: string;
  readonly #backend: SqlBackend;
  readonly #outbox: Outbox;
  readonly #logger: Logger;
  #session: SqlSession | undefined;
  #starting: Promise<void> | undefined;
  #closed = false;

  constructor(backend: SqlBackend, options: DurableSinkOptions) {
    this.workspaceId = resolveWorkspaceId(options.workspaceId);
    this.#backend = backend;
    this.#logger = options.logger ?? console;
    this.#outbox = new Outbox((events) => this.#write(events), {
      limit: options.outboxLimit,
      retry: options.retry,
      logger: this.#logger,
      tag: backend.tag,
      timers: options.timers,
      random: options.random,
      isPermanent: isPermanentSqlError,
    });
  }

  /** Counters, live. */
  get stats(): Readonly<DurableSinkStats> {
    return this.#outbox.stats;
  }

  /** Connects and applies the migrations (idempotent); then the outbox drains. */
  start(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`${this.#backend.tag} sink is closed`));
    this.#starting ??= (async () => {
      const session = await this.#backend.open();
      await applyMigrations(session);
      this.#session = session;
      this.#outbox.start();
    })().catch((err) => {
      // A failed start may be retried.
      this.#starting = undefined;
      throw err;
    });
    return this.#starting;
  }

  /**
   * Appends one committed change's events. Rejects when they are not stored yet; they
   * then stay queued in order and are retried (see `stats.outboxDepth`).
   */
  append(events: ChainEvent[]): Promise<void> {
    for (const e of events) {
      if (e.workspace_id !== this.workspaceId) {
        return Promise.reject(
          new OperationalStateInputError(
            'workspace_id',
            e.workspace_id,
            `event for workspace ${quote(e.workspace_id)} appended to the sink of ${quote(this.workspaceId)}`,
          ),
        );
      }
    }
    return this.#outbox.append(events);
  }

  flush(timeoutMs?: number): Promise<boolean> {
    return this.#outbox.flush(timeoutMs);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#outbox.close();
    try {
      await this.#starting;
    } catch {
      // Nothing was opened.
    }
    this.#session = undefined;
    await this.#backend.shut();
  }

  async #write(events: ChainEvent[]): Promise<number> {
    const session = this.#session;
    if (!session) throw new Error(`${this.#backend.tag} sink not started`);
    const { rows } = await session.query(APPEND_SQL, [JSON.stringify(events)]);
    return Number(rows[0]?.stored ?? 0);
  }

  #ready(): SqlSession {
    if (!this.#session) throw new Error(`${this.#backend.tag} sink not started; call start()`);
    return this.#session;
  }

  /**
   * Recomputes the workspace's chain in the database, oldest first; names the first
   * broken link.
   *
   * @example
   * await sink.verifyChain(); // { ok: true, events: 1000 }
   */
  async verifyChain(workspaceId: string = this.workspaceId): Promise<VerifyChainResult> {
    const session = this.#ready();
    let after = 0;
    let prevHash: string | null = null;
    let events = 0;
    for (;;) {
      const { rows } = await session.query(VERIFY_SQL, [workspaceId, after]);
      for (const row of rows as {
        event_id: string;
        chain_seq: number | string;
        prev_event_hash: string | null;
        this_event_hash: string;
        recomputed: string;
      }[]) {
        const pos = Number(row.chain_seq);
        const broken = (reason: string): VerifyChainResult => ({
          ok: false,
          events,
          eventId: row.event_id,
          reason,
        });
        if (pos !== after + 1) {
          return broken(`chain position gap: expected ${after + 1}, found ${pos} (events removed)`);
        }
        if (row.prev_event_hash !== prevHash) {
          return broken(
            prevHash === null
              ? 'first event has a prev_event_hash'
              : `prev_event_hash does not link to the previous event's this_event_hash`,
          );
        }
        if (row.recomputed !== row.this_event_hash) {
          return broken(
            `this_event_hash mismatch: the stored event (payload or fields) hashes to ` +
              `${row.recomputed.slice(0, 12)}…, stored ${String(row.this_event_hash).slice(0, 12)}…`,
          );
        }
        events++;
        after = pos;
        prevHash = row.this_event_hash;
      }
      if (rows.length < VERIFY_PAGE) return { ok: true, events };
    }
  }

  /**
   * The newest `limit` events (default 50) of the workspace, oldest first; `afterSeq`
   * keeps only chain positions after it; `take: 'oldest'` reads the first `limit` of
   * those instead, so a follower paging on the last `chain_seq` it saw misses nothing.
   *
   * @example
   * const last = await sink.tail({ limit: 10 });
   * const next = await sink.tail({ afterSeq: last.at(-1)!.chain_seq, take: 'oldest' });
   */
  async tail(options: TailOptions = {}): Promise<PositionedChainEvent[]> {
    const limit = options.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 0) {
      throw new OperationalStateInputError(
        'limit',
        limit,
        `limit must be a non-negative integer, got ${quote(limit)}`,
      );
    }
    const after = options.afterSeq ?? 0;
    if (!Number.isInteger(after) || after < 0) {
      throw new OperationalStateInputError(
        'afterSeq',
        after,
        `afterSeq must be a non-negative integer, got ${quote(after)}`,
      );
    }
    const take = options.take ?? 'newest';
    if (take !== 'newest' && take !== 'oldest') {
      throw new OperationalStateInputError(
        'take',
        take,
        `take must be "newest" or "oldest", got ${quote(take)}`,
      );
    }
    const { rows } = await this.#ready().query(take === 'newest' ? TAIL_SQL : TAIL_OLDEST_SQL, [
      options.workspaceId ?? this.workspaceId,
      after,
      limit,
    ]);
    if (take === 'newest') rows.reverse();
    return rows.map((r) => ({
      event_id: r.event_id,
      event_type: r.event_type,
      payload: r.payload,
      workspace_id: r.workspace_id,
      instance_id: r.instance_id,
      seq: Number(r.seq),
      occurred_at: r.occurred_at,
      chain_seq: Number(r.chain_seq),
      prev_event_hash: r.prev_event_hash,
      this_event_hash: r.this_event_hash,
    }));
  }
}
