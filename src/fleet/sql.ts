/**
 * The registry's statements on `kora_opstate_fleet_agents` (migration 5). Every time is
 * the database's `now()`: agents on several hosts are compared on one clock, and no one's
 * skew makes an agent look gone (or alive).
 */
import type { SqlSession } from '../sinks/sql.js';
import type { ClaimPermission, DegradationReason, PrimaryState } from '../vocabulary.js';
import {
  countPresence,
  type FleetAgent,
  type FleetPresence,
  type FleetView,
  GONE_AFTER_HEARTBEATS,
} from './types.js';

/** The table (migration 5, `fleet_agents`). */
export const FLEET_TABLE = 'kora_opstate_fleet_agents';

/** SQL: true when row `a` has missed {@link GONE_AFTER_HEARTBEATS} heartbeats. */
const GONE = `a.last_seen < now() - a.heartbeat_ms * ${GONE_AFTER_HEARTBEATS} * interval '1 millisecond'`;

/** What one registry write says about its agent. */
export interface FleetRow {
  workspaceId: string;
  agentId: string;
  instanceId: string;
  version: string;
  pid: number | null;
  host: string | null;
  url: string | null;
  startedAt: Date;
  heartbeatMs: number;
  primaryState: string;
  claimPermission: string;
  degradationReasons: readonly string[];
  last: {
    seq: number;
    event: string;
    fromState: string;
    trigger: string;
    at: string;
  } | null;
}

/**
 * Inserts or refreshes the agent's row and moves `last_seen`. A row of another instance
 * of the same agent id is taken over only once that run is stopped or gone: two live runs
 * under one agent id must not overwrite each other every heartbeat.
 */
const UPSERT = `
INSERT INTO ${FLEET_TABLE} AS a (
  workspace_id, agent_id, instance_id, version, pid, host, url, started_at, heartbeat_ms,
  primary_state, claim_permission, degradation_reasons,
  last_seq, last_event, last_from_state, last_trigger, last_transition_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15, $16, $17)
ON CONFLICT (workspace_id, agent_id) DO UPDATE SET
  instance_id = EXCLUDED.instance_id, version = EXCLUDED.version, pid = EXCLUDED.pid,
  host = EXCLUDED.host, url = EXCLUDED.url, started_at = EXCLUDED.started_at,
  heartbeat_ms = EXCLUDED.heartbeat_ms, primary_state = EXCLUDED.primary_state,
  claim_permission = EXCLUDED.claim_permission,
  degradation_reasons = EXCLUDED.degradation_reasons,
  last_seq = EXCLUDED.last_seq, last_event = EXCLUDED.last_event,
  last_from_state = EXCLUDED.last_from_state, last_trigger = EXCLUDED.last_trigger,
  last_transition_at = EXCLUDED.last_transition_at,
  registered_at = CASE WHEN a.instance_id = EXCLUDED.instance_id THEN a.registered_at ELSE now() END,
  last_seen = now(), stopped_at = NULL
WHERE a.instance_id = EXCLUDED.instance_id OR a.stopped_at IS NOT NULL OR ${GONE}
RETURNING a.instance_id`;

/**
 * @internal Writes `row`; resolves `null` when written, else the instance id of the live
 * run that holds the agent id.
 */
export async function upsertFleetRow(db: SqlSession, row: FleetRow): Promise<string | null> {
  const { rows } = await db.query(UPSERT, [
    row.workspaceId,
    row.agentId,
    row.instanceId,
    row.version,
    row.pid,
    row.host,
    row.url,
    row.startedAt.toISOString(),
    row.heartbeatMs,
    row.primaryState,
    row.claimPermission,
    JSON.stringify(row.degradationReasons),
    row.last?.seq ?? null,
    row.last?.event ?? null,
    row.last?.fromState ?? null,
    row.last?.trigger ?? null,
    row.last?.at ?? null,
  ]);
  if (rows.length > 0) return null;
  const held = await db.query(
    `SELECT instance_id FROM ${FLEET_TABLE} WHERE workspace_id = $1 AND agent_id = $2`,
    [row.workspaceId, row.agentId],
  );
  return String(held.rows[0]?.instance_id ?? '?');
}

/** @internal Marks this run's row stopped (a graceful stop); false when the row is not its own. */
export async function markFleetRowStopped(
  db: SqlSession,
  ids: { workspaceId: string; agentId: string; instanceId: string },
  state: { primaryState: string; claimPermission: string; degradationReasons: readonly string[] },
): Promise<boolean> {
  const { rows } = await db.query(
    `UPDATE ${FLEET_TABLE} SET stopped_at = now(), last_seen = now(), primary_state = $4,
       claim_permission = $5, degradation_reasons = $6::jsonb
     WHERE workspace_id = $1 AND agent_id = $2 AND instance_id = $3 RETURNING agent_id`,
    [
      ids.workspaceId,
      ids.agentId,
      ids.instanceId,
      state.primaryState,
      state.claimPermission,
      JSON.stringify(state.degradationReasons),
    ],
  );
  return rows.length > 0;
}

const READ = `
SELECT a.*,
  GREATEST(0, floor(extract(epoch FROM (now() - a.last_seen)) * 1000))::bigint AS seen_ms_ago,
  CASE WHEN a.stopped_at IS NOT NULL THEN 'stopped' WHEN ${GONE} THEN 'gone' ELSE 'live' END
    AS presence
FROM ${FLEET_TABLE} a WHERE a.workspace_id = $1 ORDER BY a.agent_id`;

const iso = (v: unknown): string => (v instanceof Date ? v : new Date(String(v))).toISOString();
const isoOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : iso(v));

/** @internal One table row as the fleet shows it. */
export function fleetAgentOf(r: Record<string, unknown>): FleetAgent {
  const reasons =
    typeof r.degradation_reasons === 'string'
      ? JSON.parse(r.degradation_reasons)
      : r.degradation_reasons;
  return {
    workspace_id: String(r.workspace_id),
    agent_id: String(r.agent_id),
    instance_id: String(r.instance_id),
    version: String(r.version),
    pid: r.pid === null || r.pid === undefined ? null : Number(r.pid),
    host: (r.host as string | null) ?? null,
    url: (r.url as string | null) ?? null,
    started_at: iso(r.started_at),
    last_seen: iso(r.last_seen),
    seen_ms_ago: Number(r.seen_ms_ago),
    heartbeat_ms: Number(r.heartbeat_ms),
    presence: r.presence as FleetPresence,
    stopped_at: isoOrNull(r.stopped_at),
    primary_state: r.primary_state as PrimaryState,
    claim_permission: r.claim_permission as ClaimPermission,
    degradation_reasons: (reasons ?? []) as DegradationReason[],
    last_transition:
      r.last_seq === null || r.last_seq === undefined
        ? null
        : {
            seq: Number(r.last_seq),
            event: String(r.last_event),
            from_state: String(r.last_from_state),
            to_state: String(r.primary_state),
            trigger: String(r.last_trigger ?? ''),
            at: iso(r.last_transition_at),
          },
  };
}

/**
 * @internal Every agent of `workspaceId`, by agent id. A store the migration has not
 * reached yet (no table: no agent of this version ever started there) has no fleet.
 */
export async function readFleetRows(db: SqlSession, workspaceId: string): Promise<FleetAgent[]> {
  try {
    const { rows } = await db.query(READ, [workspaceId]);
    return rows.map((r) => fleetAgentOf(r as Record<string, unknown>));
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') return [];
    throw err;
  }
}

/**
 * @internal The fleet of `workspaceId` as the registry table holds it; `self` marks the
 * run given as `self` (the agent that answers).
 */
export async function readFleetView(
  db: SqlSession,
  workspaceId: string,
  self?: { agentId: string; instanceId: string },
): Promise<FleetView> {
  const agents = (await readFleetRows(db, workspaceId)).map((a) =>
    self && a.agent_id === self.agentId && a.instance_id === self.instanceId
      ? { ...a, self: true }
      : a,
  );
  return {
    workspace_id: workspaceId,
    source: 'postgres',
    gone_after_heartbeats: GONE_AFTER_HEARTBEATS,
    generated_at: new Date().toISOString(),
    agents,
    counts: countPresence(agents),
  };
}
