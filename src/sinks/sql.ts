/**
 * The SQL both durable sinks share (Postgres through `pg`, PGlite): the chain hash, the
 * append call, verification and tail reads. Text only — no I/O here.
 */
import type { SinkStats, StoredChainEvent } from './types.js';

/** What the sinks need of a database session: `pg.Pool`, `pg.Client` and `PGlite` all fit. */
export interface SqlSession {
  // biome-ignore lint/suspicious/noExplicitAny: rows are typed at each call site.
  query(text: string, params?: unknown[]): Promise<{ rows: any[] }>;
  /** Multi-statement text (PGlite); `pg` runs it through `query` without parameters. */
  exec?(text: string): Promise<unknown>;
  /**
   * Runs `fn` in one transaction on one connection (commit when it resolves, roll back
   * when it throws). PGlite has it; for a `pg.Pool` the sink checks out a client.
   */
  transaction?<T>(fn: (tx: SqlSession) => Promise<T>): Promise<T>;
}

/** Advisory-lock class ids (first key of the two-key form): 'Kora' and 'Korb'. */
export const MIGRATION_LOCK_CLASS = 0x4b6f7261;
export const CHAIN_LOCK_CLASS = 0x4b6f7262;

/**
 * The chain hash of one event, as SQL over column expressions:
 *
 *   sha256(utf8(coalesce(prev_event_hash, '') || canonical)), hex
 *   canonical = jsonb_build_array(event_id, workspace_id, instance_id, seq, event_type,
 *                                 occurred_at as 'YYYY-MM-DDTHH:MI:SS.ffffffZ' (UTC), payload)::text
 *
 * jsonb's text form is canonical (keys ordered, fixed spacing, numbers as stored), so the
 * stored columns always recompute to the same text. Stored hashes depend on this text:
 * never edit it — a new canonical form needs a new migration and a versioned verify.
 * @internal
 */
export function eventHashSql(c: {
  prev: string;
  eventId: string;
  workspaceId: string;
  instanceId: string;
  seq: string;
  eventType: string;
  occurredAt: string;
  payload: string;
}): string {
  return (
    `encode(sha256(convert_to(coalesce(${c.prev}, '') || jsonb_build_array(` +
    `${c.eventId}, ${c.workspaceId}, ${c.instanceId}, ${c.seq}, ${c.eventType}, ` +
    `to_char(${c.occurredAt} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ` +
    `${c.payload})::text, 'UTF8')), 'hex')`
  );
}

/** The recomputed hash of a stored `event_log` row. @internal */
export const STORED_ROW_HASH_SQL = eventHashSql({
  prev: 'prev_event_hash',
  eventId: 'event_id',
  workspaceId: 'workspace_id',
  instanceId: 'instance_id',
  seq: 'seq',
  eventType: 'event_type',
  occurredAt: 'occurred_at',
  payload: 'payload',
});

/**
 * One round trip per unkeyed append: the database locks, links and hashes, and answers
 * how many events it stored and the chain head after them (migration 3).
 * @internal
 */
export const APPEND_SQL = 'SELECT kora_opstate_append_linked($1::jsonb) AS r';
/** The same, committing asynchronously (migration 4): the sink runs its WAL barrier next. @internal */
export const APPEND_ASYNC_SQL = 'SELECT kora_opstate_append_linked_async($1::jsonb) AS r';

/** `occurred_at` as the emitter writes it (`Date#toISOString`), rendered back in SQL. */
const OCCURRED_AT_MS_SQL = `to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** The unkeyed link algorithm (migration 1's sha256 in SQL). @internal */
export const LINK_V1 = 'sha256-v1';
/** The keyed link algorithm (HMAC-SHA256 in the client, with the chain key). @internal */
export const LINK_V2 = 'hmac-sha256-v2';
/** The spool-overflow marker's event type. @internal */
export const CHAIN_GAP_EVENT = 'kora.chain.gap';

/** @internal */
export const VERIFY_PAGE = 5000;
/**
 * One page of the chain for verification: v1 rows are recomputed here; v2 rows carry
 * the fields their HMAC covers (checked in the client, which holds the key).
 * @internal
 */
export const VERIFY_SQL = `SELECT event_id::text AS event_id, chain_seq, prev_event_hash, this_event_hash,
  link_alg, key_id, workspace_id, agent_id, instance_id, seq, event_type,
  CASE WHEN link_alg = '${LINK_V1}' THEN ${STORED_ROW_HASH_SQL} END AS recomputed,
  CASE WHEN link_alg <> '${LINK_V1}' THEN ${OCCURRED_AT_MS_SQL} END AS occurred_at,
  CASE WHEN link_alg <> '${LINK_V1}' OR event_type = '${CHAIN_GAP_EVENT}' THEN payload END AS payload
  FROM event_log WHERE workspace_id = $1 AND chain_seq > $2 ORDER BY chain_seq LIMIT ${VERIFY_PAGE}`;

/** The rows at some positions (anchors): `$2` is a bigint[]. @internal */
export const ROWS_AT_SQL = `SELECT event_id::text AS event_id, chain_seq, this_event_hash, link_alg
  FROM event_log WHERE workspace_id = $1 AND chain_seq = ANY($2::bigint[])`;

/** The first keyed position (an incremental run starting past it). @internal */
export const KEYED_FROM_SQL = `SELECT chain_seq FROM event_log
  WHERE workspace_id = $1 AND link_alg <> '${LINK_V1}' ORDER BY chain_seq LIMIT 1`;

/** Gap markers at or before `$2` (a partial index holds them). @internal */
export const GAPS_SQL = `SELECT chain_seq, payload FROM event_log
  WHERE workspace_id = $1 AND event_type = '${CHAIN_GAP_EVENT}' AND chain_seq <= $2 ORDER BY chain_seq`;

const TAIL_SELECT = `SELECT event_id::text AS event_id, event_type, payload, workspace_id, agent_id, instance_id, seq,
  ${OCCURRED_AT_MS_SQL} AS occurred_at,
  chain_seq, prev_event_hash, this_event_hash
  FROM event_log WHERE workspace_id = $1 AND chain_seq > $2`;
/** @internal The newest `$3` after `$2` (newest first). */
export const TAIL_SQL = `${TAIL_SELECT} ORDER BY chain_seq DESC LIMIT $3`;
/** @internal The first `$3` after `$2`. */
export const TAIL_OLDEST_SQL = `${TAIL_SELECT} ORDER BY chain_seq LIMIT $3`;

/** A stored event with its position in the workspace's chain (from 1). */
export interface PositionedChainEvent extends StoredChainEvent {
  readonly chain_seq: number;
}

/** Sink counters; `refused` counts events the database refused for good (e.g. its CHECK). */
export interface DurableSinkStats extends SinkStats {
  refused: number;
}

/**
 * The database refused the events themselves — a data exception (22) or an integrity
 * violation (23), e.g. the vocabulary CHECK: no retry can fix that. Everything else —
 * connection loss (08), shutdown (57), resources (53), even a missing table (42, an
 * operator can repair it) — is retried with the events kept.
 * @internal
 */
export function isPermanentSqlError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(22|23)/.test(code);
}
