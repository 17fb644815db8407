/**
 * The durable sink over a SQL backend, shared by Postgres and PGlite: migrations at
 * `start()`, appends through the outbox, chain verification and reads.
 */
import type { Logger } from '../holder.js';
import { checkText, OperationalStateInputError, quote } from '../vocabulary.js';
import { type ChainKey, checkKeyedEvent, createChainKey, KeyedAppender } from './keyed.js';
import { applyMigrations } from './migrations.js';
import { Outbox, type OutboxOptions } from './outbox.js';
import { Spool, type SpoolGap, type SpoolStats } from './spool.js';
import {
  APPEND_SQL,
  CHAIN_GAP_EVENT,
  type DurableSinkStats,
  isPermanentSqlError,
  type PositionedChainEvent,
  type SqlSession,
  TAIL_OLDEST_SQL,
  TAIL_SQL,
} from './sql.js';
import type {
  ChainEvent,
  ChainHead,
  DurableEventSink,
  TailOptions,
  VerifyChainOptions,
  VerifyChainResult,
} from './types.js';
import { verifySqlChain } from './verify.js';

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
  /**
   * A directory for the crash-durable spool (SPEC §10): `append` resolves once the events
   * are fsynced there, the spool drains to the database in order, and a later run with
   * the same directory stores what a crashed run left first. Bounded by `outboxLimit`.
   * Default: none — `append` resolves when the database has the events.
   */
  spoolDir?: string;
  /**
   * The chain key (SPEC §10), at least 16 bytes (a string counts as its UTF-8 bytes).
   * With it, every link is an HMAC-SHA256 computed here — the key never enters the
   * database — so a database writer without it cannot add, alter, reorder or re-hash an
   * event without `verifyChain` failing. Agents of one workspace share it; once a chain
   * is keyed, unkeyed appends to it are refused. Default: none (unkeyed sha256 links,
   * which catch accidental corruption only).
   */
  chainKey?: string | Uint8Array;
}

/** An agent's transitions after the last one into ready or active. @internal */
const AGENT_TRANSITIONS_SQL = `SELECT instance_id, seq, chain_seq, event_type, payload,
  to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS occurred_at
  FROM event_log
  WHERE workspace_id = $1 AND agent_id = $2 AND event_type = 'kora.operational_state.transitioned'
    AND chain_seq > coalesce((
      SELECT max(chain_seq) FROM event_log
      WHERE workspace_id = $1 AND agent_id = $2 AND event_type = 'kora.operational_state.transitioned'
        AND payload->>'to_primary_state' IN ('ready', 'active')), 0)
  ORDER BY chain_seq`;

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
  // Stored with every event: text the store would refuse is refused here, at creation.
  return checkText(workspaceId, 'workspaceId');
}

/** Sink counters with the spool's, when the sink has one. */
export interface SpooledSinkStats extends DurableSinkStats {
  /** The spool's counters (absent without `spoolDir`). */
  spool?: Readonly<SpoolStats>;
}

/** A durable sink as shipped: the contract plus `refused` and stored positions. */
export interface DurableChainSink extends DurableEventSink {
  readonly stats: Readonly<SpooledSinkStats>;
  /**
   * Events appended but not stored yet, oldest first (what a crashed run left, then this
   * run's): a reader of the chain that must not miss them adds these.
   */
  pending(): ChainEvent[];
  /** The spool's directory, when the sink has one. */
  readonly spoolDir: string | undefined;
  /** An agent's transitions since it was last ready or active (see `readPersistingPause`). */
  agentTransitions(agentId: string): Promise<(ChainEvent & { chain_seq?: number })[]>;
  tail(options?: TailOptions): Promise<PositionedChainEvent[]>;
  /**
   * The chain head after this sink's last append (null before its first): `verifyChain`
   * of the sink's workspace fails when the chain no longer extends it.
   */
  readonly head: ChainHead | null;
  /** The public id of the sink's chain key (null without one): names the key, reveals nothing. */
  readonly keyId: string | null;
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
  readonly #spool: Spool | undefined;
  #spoolOpen: Promise<void> | undefined;
  #session: SqlSession | undefined;
  #starting: Promise<void> | undefined;
  #closed = false;
  readonly #key: ChainKey | undefined;
  readonly #keyed: KeyedAppender | undefined;
  #head: ChainHead | null = null;

  constructor(backend: SqlBackend, options: DurableSinkOptions) {
    this.workspaceId = resolveWorkspaceId(options.workspaceId);
    this.#key = options.chainKey === undefined ? undefined : createChainKey(options.chainKey);
    this.#keyed = this.#key ? new KeyedAppender(this.#key) : undefined;
    this.#backend = backend;
    this.#logger = options.logger ?? console;
    const limit = options.outboxLimit ?? 10_000;
    this.#spool =
      options.spoolDir === undefined
        ? undefined
        : new Spool({
            dir: options.spoolDir,
            limit,
            logger: this.#logger,
            tag: `${backend.tag} spool`,
          });
    this.#outbox = new Outbox((events) => this.#write(events), {
      // With a spool, the spool holds the bound; the outbox only mirrors what it holds.
      limit: this.#spool ? Number.MAX_SAFE_INTEGER : limit,
      retry: options.retry,
      logger: this.#logger,
      tag: backend.tag,
      timers: options.timers,
      random: options.random,
      isPermanent: isPermanentSqlError,
      ...(this.#spool
        ? {
            closeNote: `they stay in the spool ${this.#spool.dir} and the next run stores them first`,
          }
        : {}),
    });
  }

  /** Counters, live. With a spool, `dropped` counts its overflow too. */
  get stats(): Readonly<SpooledSinkStats> {
    const stats = this.#outbox.stats;
    if (!this.#spool) return stats;
    const spool = this.#spool.stats;
    return { ...stats, outboxDepth: spool.depth, dropped: stats.dropped + spool.overflowed, spool };
  }

  pending(): ChainEvent[] {
    return this.#outbox.pending();
  }

  /** The spool's directory (`spoolDir`), if the sink has one. */
  get spoolDir(): string | undefined {
    return this.#spool?.dir;
  }

  /**
   * `agentId`'s transitions since it was last ready or active, stored ones (with their
   * `chain_seq`) then ones not stored yet, oldest first: what a restart restores from.
   */
  async agentTransitions(agentId: string): Promise<(ChainEvent & { chain_seq?: number })[]> {
    const { rows } = await this.#ready().query(AGENT_TRANSITIONS_SQL, [this.workspaceId, agentId]);
    const stored: (ChainEvent & { chain_seq?: number })[] = rows.map((r) => ({
      event_type: r.event_type,
      payload: r.payload,
      workspace_id: this.workspaceId,
      agent_id: agentId,
      instance_id: r.instance_id,
      seq: Number(r.seq),
      occurred_at: r.occurred_at,
      chain_seq: Number(r.chain_seq),
    }));
    const seen = new Set(stored.map((e) => `${e.instance_id}\u0000${e.seq}`));
    const unstored = this.pending().filter(
      (e) =>
        (e.agent_id ?? 'default') === agentId &&
        e.event_type === 'kora.operational_state.transitioned' &&
        !seen.has(`${e.instance_id}\u0000${e.seq}`),
    );
    return [...stored, ...unstored];
  }

  get head(): ChainHead | null {
    return this.#head;
  }

  get keyId(): string | null {
    return this.#key?.keyId ?? null;
  }

  /** Connects and applies the migrations (idempotent); then the outbox drains. */
  start(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`${this.#backend.tag} sink is closed`));
    this.#starting ??= (async () => {
      await this.#openSpool();
      const session = await this.#backend.open();
      await applyMigrations(session);
      this.#session = session;
      this.#outbox.start();
    })().catch((err) => {
      // A failed start may be retried; meanwhile it is why nothing is stored.
      this.#starting = undefined;
      this.#outbox.noteFailure(err);
      throw err;
    });
    return this.#starting;
  }

  /**
   * Appends one committed change's events. With a spool, resolves once they are fsynced
   * there (the store gets them behind it, in order); without one, resolves once the store
   * has them and rejects when it has not yet — they then stay queued in order and are
   * retried (see `stats.outboxDepth`).
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
      if (this.#key) {
        try {
          checkKeyedEvent(e);
        } catch (err) {
          return Promise.reject(err);
        }
      }
    }
    if (!this.#spool) return this.#outbox.append(events);
    return this.#spooled(events);
  }

  /** Opens the spool once; what a crashed run left is queued before anything new. */
  #openSpool(): Promise<void> {
    const spool = this.#spool;
    if (!spool) return Promise.resolve();
    this.#spoolOpen ??= spool.open().then((leftover) => {
      for (const events of leftover) this.#queue(events, true);
    });
    return this.#spoolOpen;
  }

  /** Into the outbox, acknowledged in the spool once stored (or refused for good). */
  #queue(events: ChainEvent[], replay = false): void {
    const spool = this.#spool!;
    // The outbox's promise says whether the database has them yet; the caller already
    // has its answer (the spool), and the outbox reports failures itself.
    this.#outbox.append(events, { onSettled: () => spool.ack(), replay }).catch(() => {});
  }

  async #spooled(events: ChainEvent[]): Promise<void> {
    // Appends reach the spool in call order: each waits on the same open, then appends.
    await this.#openSpool();
    const written = await this.#spool!.append(events, (gap) => this.#gapEvent(gap, events[0]!));
    for (const record of written) this.#queue(record);
  }

  /** The chain's record of an overflow: it takes the first dropped event's `seq`. */
  #gapEvent(gap: SpoolGap, like: ChainEvent): ChainEvent {
    return {
      event_type: CHAIN_GAP_EVENT,
      payload: { ...gap, reason: 'spool overflow: the store was unreachable too long' },
      workspace_id: this.workspaceId,
      ...(like.agent_id !== undefined ? { agent_id: like.agent_id } : {}),
      instance_id: gap.instance_id,
      seq: gap.from_seq,
      occurred_at: like.occurred_at,
    };
  }

  /**
   * Resolves true once every queued event is stored, false when `timeoutMs` passed first —
   * at once when the store is not open nor opening: nothing can drain then.
   */
  flush(timeoutMs?: number): Promise<boolean> {
    if (!this.#starting) return Promise.resolve(this.#outbox.stats.outboxDepth === 0);
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
    await this.#spool?.close();
    this.#session = undefined;
    await this.#backend.shut();
  }

  async #write(events: ChainEvent[]): Promise<number> {
    const session = this.#session;
    if (!session) throw new Error(`${this.#backend.tag} sink not started`);
    if (this.#keyed) {
      const { stored, head } = await this.#keyed.append(session, events);
      if (head) this.#head = head;
      return stored;
    }
    const { rows } = await session.query(APPEND_SQL, [JSON.stringify(events)]);
    const r = rows[0]?.r as { stored: number; head_seq: number; head_hash: string } | undefined;
    const stored = Number(r?.stored ?? 0);
    if (r && stored > 0) this.#head = { chain_seq: Number(r.head_seq), hash: r.head_hash };
    return stored;
  }

  #ready(): SqlSession {
    if (!this.#session) throw new Error(`${this.#backend.tag} sink not started; call start()`);
    return this.#session;
  }

  /**
   * Verifies the workspace's chain, oldest first, and names the first event that does
   * not hold: a position gap, a broken link, a hash (v1, recomputed in SQL) or keyed link
   * (v2, with the sink's key) that does not verify, an unkeyed event after the chain
   * became keyed. `from` verifies incrementally from a head verified before;
   * `expectHeads` (and, for the sink's own workspace, its own {@link head}) must still be
   * in the chain — else the tail was truncated or rewritten.
   *
   * @example
   * const r = await sink.verifyChain(); // { ok: true, events: 1000, checked: 1000, head: { chain_seq: 1000, hash: '…' }, keyedFrom: 1, gaps: [] }
   * await sink.verifyChain(undefined, { from: r.head! }); // checks only the events after it
   */
  verifyChain(
    workspaceId: string = this.workspaceId,
    options: VerifyChainOptions = {},
  ): Promise<VerifyChainResult> {
    return verifySqlChain(this.#ready(), workspaceId, {
      ...options,
      ...(this.#key ? { key: this.#key } : {}),
      ...(this.#head && workspaceId === this.workspaceId ? { ownHead: this.#head } : {}),
    });
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
      agent_id: r.agent_id,
      instance_id: r.instance_id,
      seq: Number(r.seq),
      occurred_at: r.occurred_at,
      chain_seq: Number(r.chain_seq),
      prev_event_hash: r.prev_event_hash,
      this_event_hash: r.this_event_hash,
    }));
  }
}
