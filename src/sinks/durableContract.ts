/**
 * What both durable sinks (Postgres, PGlite) promise and accept: their options, the
 * interface they ship, and what a concrete sink gives the shared implementation
 * (`durable.ts`) to reach its database.
 */
import type { Logger, LogTag } from '../logger.js';
import { checkText, OperationalStateInputError, quote } from '../vocabulary.js';
import type { OutboxTimers, RetryOptions } from './backoff.js';
import type { SpoolStats } from './spool.js';
import type { DurableSinkStats, PositionedChainEvent, SqlSession } from './sql.js';
import type { ChainEvent, ChainHead, DurableEventSink, TailOptions } from './types.js';

/** Options both durable sinks accept. */
export interface DurableSinkOptions {
  /** The workspace this sink appends to and verifies by default (default `'default'`). */
  workspaceId?: string;
  /** Events kept while the database is unreachable (default 10,000). */
  outboxLimit?: number;
  /** Retry backoff: doubles from `initialMs` (default 200) up to `maxMs` (default 5,000). */
  retry?: RetryOptions;
  logger?: Logger;
  /** Timer functions (tests pass fakes). */
  timers?: OutboxTimers;
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
  readonly tag: LogTag;
  /** Opens the database (idempotent); returns the session to use. */
  open(): Promise<SqlSession>;
  /** Releases what `open` acquired. */
  shut(): Promise<void>;
  /**
   * A server whose writers run at once (Postgres): appends commit asynchronously, so the
   * chain lock is not held across the WAL flush, and the sink then runs this barrier —
   * a synchronous commit that writes WAL, so the flush covers the append — before it
   * acknowledges. Without it (PGlite: one session), appends commit synchronously.
   */
  readonly walBarrier?: string;
}
