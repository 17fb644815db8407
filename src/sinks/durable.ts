/**
 * The durable sink over a SQL backend, shared by Postgres and PGlite: migrations at
 * `start()`, appends through the outbox, chain verification and reads.
 */
import { type Logger, report } from '../logger.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import {
  type DurableChainSink,
  type DurableSinkOptions,
  resolveWorkspaceId,
  type SpooledSinkStats,
  type SqlBackend,
} from './durableContract.js';
import { type ChainKey, checkKeyedEvent, createChainKey } from './keyed.js';
import { KeyedAppender } from './keyedAppender.js';
import { applyMigrations } from './migrations.js';
import { Outbox } from './outbox.js';
import { readAgentTransitions, readTail, resolveTailOptions } from './reads.js';
import { Spool, type SpoolGap } from './spool.js';
import {
  APPEND_ASYNC_SQL,
  APPEND_SQL,
  CHAIN_GAP_EVENT,
  isPermanentSqlError,
  type PositionedChainEvent,
  type SqlSession,
} from './sql.js';
import type {
  ChainEvent,
  ChainHead,
  TailOptions,
  VerifyChainOptions,
  VerifyChainResult,
} from './types.js';
import { verifySqlChain } from './verify.js';

export type { DurableChainSink, DurableSinkOptions, SpooledSinkStats } from './durableContract.js';

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
  /** Appends commit asynchronously, then wait on the backend's WAL barrier (Postgres). */
  #asyncCommit = false;

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
        : new Spool({ dir: options.spoolDir, limit, logger: this.#logger });
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
    return readAgentTransitions(this.#ready(), this.workspaceId, agentId, () => this.pending());
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
      this.#asyncCommit = await this.#probeBarrier(session);
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
    return this.appendEach([events])[0]!;
  }

  /**
   * {@link append} for several committed changes at once, in order (the emit listener's
   * batch): one spool write and fsync, one store write (one transaction, one chain lock)
   * for all of them. One promise per change; a change the store refuses is refused alone.
   */
  appendEach(changes: readonly ChainEvent[][]): Promise<void>[] {
    const results: Promise<void>[] = [];
    const accepted: ChainEvent[][] = [];
    const slots: number[] = [];
    for (const events of changes) {
      const refused = this.#check(events);
      if (refused) {
        results.push(Promise.reject(refused));
        continue;
      }
      slots.push(results.length);
      results.push(Promise.resolve());
      accepted.push(events);
    }
    if (accepted.length === 0) return results;
    const done = this.#spool ? this.#spooled(accepted) : this.#outbox.appendEach(accepted);
    done.forEach((p, i) => {
      results[slots[i]!] = p;
    });
    return results;
  }

  #check(events: ChainEvent[]): Error | undefined {
    for (const e of events) {
      if (e.workspace_id !== this.workspaceId) {
        return new OperationalStateInputError(
          'workspace_id',
          e.workspace_id,
          `event for workspace ${quote(e.workspace_id)} appended to the sink of ${quote(this.workspaceId)}`,
        );
      }
      if (this.#key) {
        try {
          checkKeyedEvent(e);
        } catch (err) {
          return err as Error;
        }
      }
    }
    return undefined;
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

  /** Into the spool (one write), then into the outbox together (one store write). */
  #spooled(changes: ChainEvent[][]): Promise<void>[] {
    // Appends reach the spool in call order: each waits on the same open, then appends.
    const written = this.#openSpool().then(() =>
      this.#spool!.appendEach(changes, (gap) => this.#gapEvent(gap, changes[0]![0]!)),
    );
    const each = changes.map((_, i) => written.then((all) => all[i]!));
    // Once every change has its answer (fsynced or overflowed), the fsynced ones queue in
    // order, in one outbox call.
    void Promise.allSettled(each).then((settled) => {
      const records = settled.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
      if (records.length === 0) return;
      const spool = this.#spool!;
      for (const p of this.#outbox.appendEach(records, { onSettled: () => spool.ack() })) {
        p.catch(() => {});
      }
    });
    return each.map((p) => p.then(() => undefined));
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

  /** Whether the server runs the WAL barrier (a role may lack it): appends commit async then. */
  async #probeBarrier(session: SqlSession): Promise<boolean> {
    const barrier = this.#backend.walBarrier;
    if (barrier === undefined) return false;
    try {
      await session.query(barrier);
      return true;
    } catch (err) {
      // Not allowed or not there (42501, 42883): synchronous commits, as before migration 4.
      if (!/^42/.test(String((err as { code?: unknown })?.code))) throw err;
      report(
        this.#logger,
        'warn',
        this.#backend.tag,
        'no WAL barrier; appends commit synchronously',
        err,
      );
      return false;
    }
  }

  async #write(events: ChainEvent[]): Promise<number> {
    const session = this.#session;
    if (!session) throw new Error(`${this.#backend.tag} sink not started`);
    const asyncCommit = this.#asyncCommit;
    let stored: number;
    let durable = false;
    if (this.#keyed) {
      // With the barrier, a group of offers commits asynchronously and waits for it.
      const r = await this.#keyed.append(session, events, asyncCommit);
      if (r.head) this.#head = r.head;
      stored = r.stored;
      durable = r.durable;
      if (r.unsigned) {
        report(
          this.#logger,
          'warn',
          this.#backend.tag,
          `refused ${r.unsigned} offer(s) in event_offer of workspace ${quote(this.workspaceId)} that are not signed with the chain key (key id ${this.#key!.keyId}): never linked — someone without the key wrote them`,
        );
      }
    } else {
      const sql = asyncCommit ? APPEND_ASYNC_SQL : APPEND_SQL;
      const { rows } = await session.query(sql, [JSON.stringify(events)]);
      const r = rows[0]?.r as { stored: number; head_seq: number; head_hash: string } | undefined;
      stored = Number(r?.stored ?? 0);
      if (r && stored > 0) this.#head = { chain_seq: Number(r.head_seq), hash: r.head_hash };
    }
    // Durable only once the WAL is flushed past the commit. An unkeyed append committed
    // asynchronously waits on the barrier's own synchronous commit, outside the chain
    // lock; so does a keyed retry that found its events stored (their first commit). A
    // keyed append that stored something is flushed already (KeyedAppender).
    if (asyncCommit && !durable) await session.query(this.#backend.walBarrier!);
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
    const resolved = resolveTailOptions(options);
    return readTail(this.#ready(), options.workspaceId ?? this.workspaceId, resolved);
  }
}
