/**
 * The contract between the emitter and the stores of chain events (SPEC §4).
 */

/** One chain event as appended to a sink. */
export interface ChainEvent {
  /** `kora.operational_state.transitioned`, `kora.boot.ready`, ... */
  readonly event_type: string;
  readonly payload: Readonly<Record<string, unknown>>;
  readonly workspace_id: string;
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
  readonly prev_event_hash: string | null;
  readonly this_event_hash: string;
}

/** `verifyChain` outcome: ok, or the first broken link. */
export type VerifyChainResult =
  | { readonly ok: true; readonly events: number }
  | {
      readonly ok: false;
      readonly events: number;
      readonly eventId: string;
      readonly reason: string;
    };

/** A sink backed by a database: Postgres or PGlite. */
export interface DurableEventSink extends EventSink {
  /** Connects and applies the migrations (idempotent). */
  start(): Promise<void>;
  /** Resolves true once the outbox is empty, false when `timeoutMs` passed first. */
  flush(timeoutMs?: number): Promise<boolean>;
  /** Stops retrying and releases connections it owns. */
  close(): Promise<void>;
  readonly stats: Readonly<SinkStats>;
  verifyChain(workspaceId?: string): Promise<VerifyChainResult>;
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
