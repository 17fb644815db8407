/**
 * The fleet's shapes (SPEC §12): one {@link FleetAgent} per agent of a workspace, as
 * `GET /api/fleet`, the `/fleet` page and `kora-opstate fleet --json` show it.
 */
import type { ClaimPermission, DegradationReason, PrimaryState } from '../vocabulary.js';

/**
 * A row is gone when its `last_seen` is older than this many of its own heartbeats: one
 * missed write is a slow database or a busy event loop, three in a row is an agent that
 * no longer runs (killed, hung, or cut off from the database).
 */
export const GONE_AFTER_HEARTBEATS = 3;

/** The default heartbeat interval of a registry (ms). */
export const DEFAULT_HEARTBEAT_MS = 5000;

/** `live`: heartbeating; `gone`: its heartbeat stopped; `stopped`: it stopped gracefully. */
export type FleetPresence = 'live' | 'gone' | 'stopped';

/** The last committed transition an agent wrote. */
export interface FleetTransition {
  readonly seq: number;
  readonly event: string;
  readonly from_state: string;
  readonly to_state: string;
  readonly trigger: string;
  /** ISO 8601 (whole seconds: the transition record's own timestamp). */
  readonly at: string;
}

/** One agent of the fleet. */
export interface FleetAgent {
  readonly workspace_id: string;
  readonly agent_id: string;
  readonly instance_id: string;
  readonly version: string;
  readonly pid: number | null;
  readonly host: string | null;
  /** Its status server (panel, API), when it has one. */
  readonly url: string | null;
  readonly started_at: string;
  readonly last_seen: string;
  /** How long ago `last_seen` was, on the database's clock (ms). */
  readonly seen_ms_ago: number;
  readonly heartbeat_ms: number;
  readonly presence: FleetPresence;
  readonly stopped_at: string | null;
  readonly primary_state: PrimaryState;
  readonly claim_permission: ClaimPermission;
  readonly degradation_reasons: readonly DegradationReason[];
  readonly last_transition: FleetTransition | null;
  /** True for the agent that answered (`/api/fleet`). */
  readonly self?: boolean;
}

/** What `GET /api/fleet` answers. */
export interface FleetView {
  readonly workspace_id: string;
  /** `postgres`: the registry table; `local`: only this agent (an embedded store is one process). */
  readonly source: 'postgres' | 'local';
  readonly gone_after_heartbeats: number;
  /** When the view was read (ISO 8601, ms). */
  readonly generated_at: string;
  readonly agents: readonly FleetAgent[];
  /** Counts by presence. */
  readonly counts: Readonly<Record<FleetPresence, number>>;
}

/** Anything that can list the fleet: a {@link FleetRegistry}, or a view of one agent. */
export interface FleetSource {
  list(): Promise<FleetView>;
}

/** @internal Counts by presence. */
export function countPresence(agents: readonly FleetAgent[]): Record<FleetPresence, number> {
  const counts: Record<FleetPresence, number> = { live: 0, gone: 0, stopped: 0 };
  for (const a of agents) counts[a.presence]++;
  return counts;
}
