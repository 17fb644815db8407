/**
 * Fleet control, the issuing side (SPEC §12): `issueCommand` writes a command row (keyed
 * with the chain key, announced on `kora_control`), `readOutcomes` and `waitForOutcomes`
 * read what the agents did with it. The agent side is `./controlReceiver.ts`.
 */
import type { PgClientLike, PgPoolLike } from '../sinks/drivers.js';
import type { ChainKey } from '../sinks/keyed.js';
import type { SqlSession } from '../sinks/sql.js';
import {
  OperationalStateInputError,
  type PrimaryState,
  positiveInt,
  quote,
} from '../vocabulary.js';
import {
  type ControlAction,
  type ControlArgs,
  type ControlCommand,
  type ControlOutcome,
  type ControlOutcomeKind,
  commandMac,
  controlKey,
  DEFAULT_COMMAND_TTL_MS,
  outcomeMac,
  parseControlAction,
  parseControlArgs,
  sameMac,
} from './controlAuth.js';

export * from './controlAuth.js';
export {
  type ControlReceiver,
  type ControlReceiverOptions,
  type ControlReceiverStats,
  type ControlTimers,
  createControlReceiver,
} from './controlReceiver.js';

/** Advisory-lock class of command issuing ('Korc'): a workspace's commands commit in id order. */
export const CONTROL_LOCK_CLASS = 0x4b6f7263;

/** A `pg.Pool` (a client is checked out for the issuing transaction) or a `pg.Client`. */
export type ControlDb = PgPoolLike | SqlSession;

/** What {@link issueCommand} writes. */
export interface IssueCommandOptions {
  readonly workspaceId: string;
  readonly action: ControlAction;
  /** An agent id, or null for every agent of the workspace (`--all`). */
  readonly target: string | null;
  readonly args?: ControlArgs;
  /** The chain key (§10) the agents share. */
  readonly chainKey: string | Uint8Array | ChainKey;
  /** Who issued it (default `kora-opstate control`). */
  readonly issuedBy?: string;
  /** How long an agent that is down may still apply it (default 10 minutes). */
  readonly ttlMs?: number;
}

async function inTransaction<T>(db: ControlDb, fn: (c: SqlSession) => Promise<T>): Promise<T> {
  const pooled = 'totalCount' in db;
  const client: SqlSession = pooled ? await (db as PgPoolLike).connect() : (db as SqlSession);
  try {
    await client.query('BEGIN');
    try {
      const out = await fn(client);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  } finally {
    if (pooled) (client as PgClientLike).release();
  }
}

/**
 * Writes one command: its id taken under the workspace's issuing lock (ids commit in
 * order), its times on the database's clock, its MAC with the chain key. The insert
 * notifies `kora_control`; agents that are down find it when they come back, until it
 * expires.
 *
 * @example
 * const cmd = await issueCommand(pool, { workspaceId: 'ws', action: 'pause', target: null,
 *   args: { cause: 'operator', trigger: 'maintenance' }, chainKey: process.env.KORA_CHAIN_KEY });
 * cmd.command_id; // 17
 */
export async function issueCommand(
  db: ControlDb,
  options: IssueCommandOptions,
): Promise<ControlCommand> {
  const action = parseControlAction(options.action);
  const args = parseControlArgs(action, options.args ?? {});
  const ttlMs = positiveInt(options.ttlMs ?? DEFAULT_COMMAND_TTL_MS, 'ttlMs');
  const target = options.target;
  if (target !== null && (typeof target !== 'string' || target === '')) {
    throw new OperationalStateInputError('target', target, `invalid target ${quote(target)}`);
  }
  const key = controlKey(options.chainKey);
  const issuedBy = options.issuedBy ?? 'kora-opstate control';
  return inTransaction(db, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
      CONTROL_LOCK_CLASS,
      options.workspaceId,
    ]);
    const { rows } = await c.query(
      `SELECT nextval('kora_opstate_fleet_command_id_seq')::text AS id,
              floor(extract(epoch FROM now()) * 1000)::bigint::text AS now_ms`,
    );
    const issuedAt = new Date(Number(rows[0].now_ms));
    const unsigned = {
      command_id: Number(rows[0].id),
      workspace_id: options.workspaceId,
      target_agent: target,
      action,
      args: args as Record<string, unknown>,
      issued_by: issuedBy,
      issued_at: issuedAt,
      expires_at: new Date(issuedAt.getTime() + ttlMs),
    };
    const command: ControlCommand = {
      ...unsigned,
      key_id: key.keyId,
      mac: commandMac(key, unsigned),
    };
    await c.query(
      `INSERT INTO kora_opstate_fleet_commands (command_id, workspace_id, target_agent, action,
         args, issued_by, issued_at, expires_at, key_id, mac)
       VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)`,
      [
        command.command_id,
        command.workspace_id,
        command.target_agent,
        command.action,
        JSON.stringify(command.args),
        command.issued_by,
        command.issued_at.toISOString(),
        command.expires_at.toISOString(),
        command.key_id,
        command.mac,
      ],
    );
    return command;
  });
}

/** An outcome as read back, and whether its MAC verifies with the chain key. */
export interface ReadOutcome extends ControlOutcome {
  /** False: the row was written or altered without the chain key (not an agent's answer). */
  readonly verified: boolean;
  readonly recorded_at: Date;
}

/**
 * The outcomes recorded for a command so far, by agent id.
 *
 * @example
 * (await readOutcomes(pool, 17, key)).map((o) => `${o.agent_id} ${o.outcome}`);
 */
export async function readOutcomes(
  db: SqlSession,
  commandId: number,
  chainKey: string | Uint8Array | ChainKey,
): Promise<ReadOutcome[]> {
  const key = controlKey(chainKey);
  const { rows } = await db.query(
    `SELECT command_id::text, agent_id, instance_id, outcome, reason, from_state, to_state, mac,
            recorded_at
       FROM kora_opstate_fleet_outcomes WHERE command_id = $1 ORDER BY agent_id`,
    [commandId],
  );
  return rows.map((r) => {
    const o: ControlOutcome = {
      command_id: Number(r.command_id),
      agent_id: r.agent_id,
      instance_id: r.instance_id,
      outcome: r.outcome as ControlOutcomeKind,
      reason: r.reason,
      from_state: r.from_state as PrimaryState | null,
      to_state: r.to_state as PrimaryState | null,
    };
    return { ...o, verified: sameMac(r.mac, outcomeMac(key, o)), recorded_at: r.recorded_at };
  });
}

/**
 * The agents a command to every agent should hear from: the registry's live agents of the
 * workspace (migration 5), when it has any.
 */
export async function liveAgents(db: SqlSession, workspaceId: string): Promise<string[]> {
  const { rows } = await db.query(
    `SELECT agent_id FROM kora_opstate_fleet_agents
      WHERE workspace_id = $1 AND stopped_at IS NULL
        AND last_seen > now() - make_interval(secs => heartbeat_ms * 3 / 1000.0)
      ORDER BY agent_id`,
    [workspaceId],
  );
  return rows.map((r) => r.agent_id as string);
}

/** What {@link waitForOutcomes} waits for. */
export interface WaitForOutcomesOptions {
  /** The agents whose outcome is awaited; it returns once each has one (none: at the timeout). */
  readonly agents: readonly string[];
  readonly timeoutMs: number;
  /** Between reads (default 100 ms). */
  readonly pollMs?: number;
  /** The wait between reads (tests pass their own). */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
}

/**
 * Reads a command's outcomes until every agent in `agents` has one or `timeoutMs` passed;
 * resolves with what was recorded (possibly fewer).
 *
 * @example
 * const outcomes = await waitForOutcomes(pool, cmd.command_id, key, { agents: ['a1'], timeoutMs: 5000 });
 */
export async function waitForOutcomes(
  db: SqlSession,
  commandId: number,
  chainKey: string | Uint8Array | ChainKey,
  options: WaitForOutcomesOptions,
): Promise<ReadOutcome[]> {
  const now = options.now ?? Date.now;
  const sleep =
    options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const deadline = now() + options.timeoutMs;
  for (;;) {
    const outcomes = await readOutcomes(db, commandId, chainKey);
    const answered = new Set(outcomes.map((o) => o.agent_id));
    const all = options.agents.length > 0 && options.agents.every((a) => answered.has(a));
    if (all || now() >= deadline) return outcomes;
    await sleep(Math.min(options.pollMs ?? 100, Math.max(0, deadline - now())));
  }
}
