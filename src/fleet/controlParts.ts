/**
 * The receiver's parts (see `./controlReceiver.ts`): its options, counters and timers, and
 * the SQL it reads commands, its cursor and writes outcomes with.
 */
import { z } from 'zod';
import type { OperationalStateHolder } from '../holder.js';
import type { Logger } from '../logger.js';
import {
  functionSchema,
  loggerSchema,
  nonEmptyStringSchema,
  objectWithSchema,
  positiveIntSchema,
} from '../options.js';
import type { ChainKey } from '../sinks/keyed.js';
import type { SqlSession } from '../sinks/sql.js';
import type { ChainEvent, EventSink } from '../sinks/types.js';
import { CONTROL_REFUSED_EVENT, type ControlCommand, type ControlOutcome } from './controlAuth.js';

/** Timer functions (tests pass a manual clock). */
export interface ControlTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

/** @internal */
export const REAL_TIMERS: ControlTimers = {
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface ControlReceiverOptions {
  /** The instance commands are applied through. */
  holder: OperationalStateHolder;
  /** Reads commands, writes outcomes (a `pg.Pool`). */
  db: SqlSession;
  /** The LISTEN connection's URL; without it the receiver only polls. */
  connectionString?: string;
  workspaceId: string;
  /** Default: the holder's chain agent id. */
  agentId?: string;
  /** Default: the holder's chain instance id. */
  instanceId?: string;
  /** The chain key (§10): commands that do not verify with it are refused. */
  chainKey: string | Uint8Array | ChainKey;
  /** Where refusals are recorded (default the holder's sink). */
  sink?: EventSink;
  /** Between polls (default 5,000 ms). */
  pollMs?: number;
  /** Before reconnecting a lost LISTEN connection (default 1,000 ms). */
  reconnectMs?: number;
  timers?: ControlTimers;
  logger?: Logger;
  /** Called after each outcome is recorded (isolated: a throw is logged). */
  onOutcome?: (outcome: ControlOutcome) => void;
}

/** Counters of one receiver. */
export interface ControlReceiverStats {
  /** Notifications for this agent received. */
  notifications: number;
  /** Poll ticks. */
  polls: number;
  /** Passes over the command table. */
  passes: number;
  applied: number;
  refused: number;
  expired: number;
  /** The last command handled (the cursor). */
  cursor: number;
  /** Whether the LISTEN connection is up, and its backend pid. */
  listening: boolean;
  listenPid: number | null;
  /** LISTEN connections lost or refused. */
  listenLost: number;
  /** Passes or records that failed (each logged). */
  errors: number;
}

/** A running receiver; see {@link createControlReceiver}. */
export interface ControlReceiver {
  /** Reads the cursor from the chain, LISTENs, starts polling, and runs a first pass. */
  start(): Promise<void>;
  /** Stops listening and polling; resolves once the pass under way has ended. */
  stop(): Promise<void>;
  /** Runs a pass now (what a notification or a poll tick does). */
  wake(): Promise<void>;
  readonly stats: Readonly<ControlReceiverStats>;
}

/** @internal */
export const receiverOptions = z.object({
  holder: objectWithSchema<OperationalStateHolder>(['send'], 'must be an opstate instance', [
    'current',
  ]),
  db: objectWithSchema<SqlSession>(['query'], 'must be a database session (a query method)'),
  connectionString: nonEmptyStringSchema().optional(),
  workspaceId: nonEmptyStringSchema(),
  agentId: nonEmptyStringSchema(),
  instanceId: nonEmptyStringSchema(),
  chainKey: z.custom<string | Uint8Array | ChainKey>((v) => v !== undefined && v !== null, {
    error: 'is required (the chain key)',
  }),
  sink: objectWithSchema<EventSink>(['append'], 'must be an event sink').optional(),
  pollMs: positiveIntSchema(),
  reconnectMs: positiveIntSchema(),
  timers: objectWithSchema<ControlTimers>(['set', 'clear'], 'must have set and clear'),
  logger: loggerSchema(),
  onOutcome: functionSchema<(o: ControlOutcome) => void>().optional(),
});

// Ordered by the column (qualified), not by the text the select list makes of it.
/** @internal */
export const COMMANDS_SQL = `SELECT c.command_id::text AS command_id, c.workspace_id, c.target_agent, c.action,
       c.args, c.issued_by, c.issued_at, c.expires_at, c.key_id, c.mac,
       c.expires_at <= now() AS expired
  FROM kora_opstate_fleet_commands c
 WHERE c.workspace_id = $1 AND (c.target_agent IS NULL OR c.target_agent = $2)
   AND c.command_id > $3
 ORDER BY c.command_id LIMIT 100`;

// The commands this agent's chain says it handled: refusals, and transitions whose
// trigger the receiver itself wrote (`kora_control #<id> …`).
/** @internal */
export const CURSOR_SQL = `SELECT max(id)::text AS id FROM (
  SELECT (payload->>'command_id')::bigint AS id FROM event_log
   WHERE workspace_id = $1 AND agent_id = $2 AND event_type = '${CONTROL_REFUSED_EVENT}'
  UNION ALL
  SELECT substring(payload->>'trigger' FROM '^kora_control #([0-9]+) ')::bigint FROM event_log
   WHERE workspace_id = $1 AND agent_id = $2
     AND event_type = 'kora.operational_state.transitioned'
     AND payload->>'trigger' LIKE 'kora_control #%') handled`;

/** @internal */
export const OUTCOME_SQL = `INSERT INTO kora_opstate_fleet_outcomes
  (command_id, agent_id, instance_id, outcome, reason, from_state, to_state, mac)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
  ON CONFLICT (command_id, agent_id) DO UPDATE SET instance_id = EXCLUDED.instance_id,
    outcome = EXCLUDED.outcome, reason = EXCLUDED.reason, from_state = EXCLUDED.from_state,
    to_state = EXCLUDED.to_state, mac = EXCLUDED.mac, recorded_at = now()`;

/** The highest command id named by events not stored yet (a sink's spool). */
export function pendingCursor(sink: EventSink | undefined, agentId: string): number {
  const pending = (sink as { pending?: () => ChainEvent[] } | undefined)?.pending?.() ?? [];
  let max = 0;
  for (const e of pending) {
    if ((e.agent_id ?? 'default') !== agentId) continue;
    const id =
      e.event_type === CONTROL_REFUSED_EVENT
        ? Number(e.payload.command_id)
        : Number(/^kora_control #(\d+) /.exec(String(e.payload.trigger ?? ''))?.[1] ?? 0);
    if (id > max) max = id;
  }
  return max;
}

/** @internal */
export function rowToCommand(r: Record<string, unknown>): ControlCommand {
  return {
    command_id: Number(r.command_id),
    workspace_id: r.workspace_id as string,
    target_agent: r.target_agent as string | null,
    action: r.action as string,
    args: r.args as Record<string, unknown>,
    issued_by: r.issued_by as string,
    issued_at: r.issued_at as Date,
    expires_at: r.expires_at as Date,
    key_id: r.key_id as string,
    mac: r.mac as string,
  };
}
