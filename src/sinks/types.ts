/**
 * The contract between the emitter and the stores of chain events (SPEC §4).
 */

/** One chain event as appended to a sink. */
export interface ChainEvent {
  /** `kora.operational_state.transitioned`, `kora.boot.ready`, ... */
  readonly event_type: string;
  readonly payload: Readonly<Record<string, unknown>>;
  readonly workspace_id: string;
  /** The agent (stable across runs; default `'default'`): what a restart restores from. */
  readonly agent_id?: string;
  /** The emitting process (holder) instance. */
  readonly instance_id: string;
  /** Per instance, from 1, gapless. */
  readonly seq: number;
  /** ISO-8601 UTC. */
  readonly occurred_at: string;
}

/** Where chain events go. `append` gets one committed change's events (generic + extra). */
export interface EventSink {
  readonly workspaceId: string;
  append(events: ChainEvent[]): Promise<void>;
  /**
   * Optional: several committed changes' events at once, in order, stored together (one
   * write where the store allows), with one promise per change — so a refusal or an
   * overflow is one change's alone. Without it the emitter batches into one `append`.
   */
  appendEach?(changes: ChainEvent[][]): Promise<void>[];
}

/** Counters a durable sink keeps (the status API and `/metrics` show them). */
export interface SinkStats {
  /** Events stored. */
  appended: number;
  /** Append attempts that failed (each retry counts). */
  failures: number;
  /** Events waiting in the outbox. */
  outboxDepth: number;
  /** Events dropped because the outbox was full (each logged). */
  dropped: number;
  /** The last append error's message, if any. */
  lastError?: string;
}

/** A stored chain event, as read back. */
export interface StoredChainEvent extends ChainEvent {
  readonly event_id: string;
  /** Always present when read back (`'default'` for events stored without one). */
  readonly agent_id: string;
  readonly prev_event_hash: string | null;
  readonly this_event_hash: string;
}

/** A position in a workspace's chain and the hash stored there: what a verifier anchors on. */
export interface ChainHead {
  readonly chain_seq: number;
  /** The event's `this_event_hash` (64 hex). */
  readonly hash: string;
}

/** A `kora.chain.gap` event: events a spool overflow dropped before they were stored. */
export interface ChainGap {
  /** Where the marker stands in the chain. */
  readonly chain_seq: number;
  /** The instance whose events were dropped, and their `seq` range. */
  readonly instance_id: string;
  readonly from_seq: number;
  readonly to_seq: number;
  readonly dropped: number;
  readonly reason?: string;
}

/** What `verifyChain` checks besides the links (all optional). */
export interface VerifyChainOptions {
  /**
   * Incremental: a head verified before. Only the events after it are checked, once the
   * chain is found to still hold it (same hash at that position). Default: from #1.
   */
  from?: ChainHead;
  /** Heads the chain must still extend (kept elsewhere); a missing or changed one fails. */
  expectHeads?: readonly ChainHead[];
}

/** What every `verifyChain` result says besides ok/broken. */
interface VerifyChainSummary {
  /**
   * Ok: the chain's length (its head's `chain_seq`). Broken: the events before the
   * broken one that verified (its position minus one).
   */
  readonly events: number;
  /** Events checked by this call (fewer than `events` when incremental). */
  readonly checked: number;
  /** The last event that verified (ok: the chain head); null for an empty chain. */
  readonly head: ChainHead | null;
  /** The position of the first keyed (HMAC) event; null while the chain is unkeyed. */
  readonly keyedFrom: number | null;
  /** Every `kora.chain.gap` event up to `head`, oldest first. */
  readonly gaps: readonly ChainGap[];
}

/**
 * `verifyChain` outcome: ok, or the first broken link — `eventId` and `chainSeq` name
 * the event (`eventId` is null when the event named is gone, e.g. a truncated tail).
 */
export type VerifyChainResult =
  | (VerifyChainSummary & { readonly ok: true })
  | (VerifyChainSummary & {
      readonly ok: false;
      readonly eventId: string | null;
      readonly chainSeq: number | null;
      readonly reason: string;
    });

/** A sink backed by a database: Postgres or PGlite. */
export interface DurableEventSink extends EventSink {
  /** Connects and applies the migrations (idempotent). */
  start(): Promise<void>;
  /** Resolves true once the outbox is empty, false when `timeoutMs` passed first. */
  flush(timeoutMs?: number): Promise<boolean>;
  /** Stops retrying and releases connections it owns. */
  close(): Promise<void>;
  readonly stats: Readonly<SinkStats>;
  /** Checks the workspace's chain (default: the sink's): links, hashes or keyed links, anchors. */
  verifyChain(workspaceId?: string, options?: VerifyChainOptions): Promise<VerifyChainResult>;
  /** `limit` events of the workspace (see {@link TailOptions}), oldest first. */
  tail(options?: TailOptions): Promise<StoredChainEvent[]>;
}

/** Which stored events `tail` reads. */
export interface TailOptions {
  /** How many (default 50). */
  limit?: number;
  /** Default: the sink's workspace. */
  workspaceId?: string;
  /** Only chain positions after this one (default 0). */
  afterSeq?: number;
  /**
   * `newest` (default): the newest `limit` of those — what `events -n` shows. `oldest`:
   * the first `limit` after `afterSeq` — a cursor that pages forward without a gap.
   */
  take?: 'newest' | 'oldest';
}
