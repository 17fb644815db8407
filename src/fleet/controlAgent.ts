/** Fleet control as `kora-opstate start` wires it (kept here: agent.ts stays short). */
import type { OperationalStateHolder } from '../holder.js';
import type { Logger } from '../logger.js';
import type { SqlSession } from '../sinks/sql.js';
import { type ControlReceiver, createControlReceiver } from './controlReceiver.js';

/**
 * @internal The receiver of the CLI's agent, on Postgres only (an embedded store runs one
 * agent: its operator API is the way in); undefined otherwise or without a chain key.
 */
export function agentControl(
  opstate: OperationalStateHolder,
  pool: SqlSession | undefined,
  store: { kind: string; url?: string },
  s: { workspace: string },
  chainKey: string | undefined,
  logger: Logger,
): ControlReceiver | undefined {
  if (!pool || store.kind !== 'postgres' || !store.url || !chainKey) return undefined;
  return createControlReceiver({
    holder: opstate,
    db: pool,
    connectionString: store.url,
    workspaceId: s.workspace,
    chainKey,
    logger,
  });
}
