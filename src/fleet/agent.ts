/** The fleet registry as `kora-opstate start` wires it (kept here: agent.ts stays short). */
import type { OperationalStateHolder } from '../holder.js';
import type { FleetControlOptions } from '../http/options.js';
import type { Logger } from '../logger.js';
import type { SqlSession } from '../sinks/sql.js';
import { quote } from '../vocabulary.js';
import type { ControlDb } from './control.js';
import { createFleetRegistry, type FleetRegistry } from './registry.js';

/** The heartbeat setting of `start` (ms): env `KORA_FLEET_HEARTBEAT_MS`, default 5000. */
export const FLEET_HEARTBEAT_ENV = 'KORA_FLEET_HEARTBEAT_MS';

/**
 * @internal The registry of the CLI's agent: on Postgres (`pool`) it registers in the
 * shared table; on the embedded store (no pool) the fleet is this agent alone.
 */
export function agentFleet(
  opstate: OperationalStateHolder,
  pool: SqlSession | undefined,
  s: { workspace: string; agentId: string; instanceId: string },
  logger: Logger,
  env: Record<string, string | undefined>,
): FleetRegistry {
  const text = env[FLEET_HEARTBEAT_ENV];
  if (text !== undefined && !/^[1-9]\d{0,7}$/.test(text)) {
    throw new Error(
      `invalid ${FLEET_HEARTBEAT_ENV} ${quote(text)}: expected a whole number of ms from 1 to 99999999`,
    );
  }
  return createFleetRegistry({
    opstate,
    ...(pool ? { db: pool } : {}),
    workspaceId: s.workspace,
    agentId: s.agentId,
    instanceId: s.instanceId,
    logger,
    ...(text ? { heartbeatMs: Number(text) } : {}),
  });
}

/**
 * @internal The `/fleet` page's controls of the CLI's agent (`fleetControl`): on Postgres
 * with a chain key only — an embedded store runs one agent, and its panel acts on it.
 */
export function fleetControlOption(
  pool: ControlDb | undefined,
  s: { workspace: string },
  chainKey: string | undefined,
): { fleetControl?: FleetControlOptions } {
  return pool && chainKey ? { fleetControl: { db: pool, workspaceId: s.workspace, chainKey } } : {};
}
