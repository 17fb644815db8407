/**
 * The durable sinks' reads of the stored chain: an agent's transitions since it was last
 * ready or active (what a restart restores from) and the tail (the CLI and HTTP follow it).
 */
import { OperationalStateInputError, quote } from '../vocabulary.js';
import { type PositionedChainEvent, type SqlSession, TAIL_OLDEST_SQL, TAIL_SQL } from './sql.js';
import type { ChainEvent, TailOptions } from './types.js';

/** An agent's transitions after the last one into ready or active. */
const AGENT_TRANSITIONS_SQL = `SELECT instance_id, seq, chain_seq, event_type, payload,
  to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS occurred_at
  FROM event_log
  WHERE workspace_id = $1 AND agent_id = $2 AND event_type = 'kora.operational_state.transitioned'
    AND chain_seq > coalesce((
      SELECT max(chain_seq) FROM event_log
      WHERE workspace_id = $1 AND agent_id = $2 AND event_type = 'kora.operational_state.transitioned'
        AND payload->>'to_primary_state' IN ('ready', 'active')), 0)
  ORDER BY chain_seq`;

/**
 * @internal `agentId`'s transitions since it was last ready or active: the stored ones
 * (with their `chain_seq`), then those `pending()` (appended, not stored yet) answers
 * once they are read and the store does not hold, oldest first.
 */
export async function readAgentTransitions(
  session: SqlSession,
  workspaceId: string,
  agentId: string,
  pending: () => readonly ChainEvent[],
): Promise<(ChainEvent & { chain_seq?: number })[]> {
  const { rows } = await session.query(AGENT_TRANSITIONS_SQL, [workspaceId, agentId]);
  const stored: (ChainEvent & { chain_seq?: number })[] = rows.map((r) => ({
    event_type: r.event_type,
    payload: r.payload,
    workspace_id: workspaceId,
    agent_id: agentId,
    instance_id: r.instance_id,
    seq: Number(r.seq),
    occurred_at: r.occurred_at,
    chain_seq: Number(r.chain_seq),
  }));
  const seen = new Set(stored.map((e) => `${e.instance_id}\u0000${e.seq}`));
  const unstored = pending().filter(
    (e) =>
      (e.agent_id ?? 'default') === agentId &&
      e.event_type === 'kora.operational_state.transitioned' &&
      !seen.has(`${e.instance_id}\u0000${e.seq}`),
  );
  return [...stored, ...unstored];
}

/** @internal Validates tail options: the limit, the position after which to read, the end. */
export function resolveTailOptions(options: TailOptions): {
  limit: number;
  after: number;
  take: 'newest' | 'oldest';
} {
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
  return { limit, after, take };
}

/** @internal Reads the tail of `workspaceId`'s chain, oldest first (see `DurableChainSink.tail`). */
export async function readTail(
  session: SqlSession,
  workspaceId: string,
  { limit, after, take }: ReturnType<typeof resolveTailOptions>,
): Promise<PositionedChainEvent[]> {
  const { rows } = await session.query(take === 'newest' ? TAIL_SQL : TAIL_OLDEST_SQL, [
    workspaceId,
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
