/**
 * Fleet control, the agent side (SPEC §12): the receiver LISTENs on `kora_control` on a
 * dedicated connection and also polls (the fallback: a dropped connection or a lost
 * notification delays a command by at most `pollMs`). Each pass reads the commands for
 * this agent after its cursor, in id order, and handles each once: verified with the
 * chain key, not expired, then sent through the instance — applied, or refused with the
 * 409 reason. The outcome lands on an outcome row and in the chain (the applied
 * transition's trigger names the command; a refusal is a `kora.control.refused` event).
 *
 * Exactly once: the cursor only moves forward, and on start it is read from this agent's
 * own chain (the commands its transitions and refusals name) — not from the outcome rows,
 * which a database writer could delete to replay a command.
 */
import pg from 'pg';
import { createEmitSequence, type EmitSequence } from '../emit.js';
import type { OperationalStateHolder } from '../holder.js';
import { errorText, type LogTag, report } from '../logger.js';
import { parseOptions } from '../options.js';
import type { ChainEvent } from '../sinks/types.js';
import { quote } from '../vocabulary.js';
import {
  CONTROL_CHANNEL,
  CONTROL_REFUSED_EVENT,
  type ControlCommand,
  type ControlOutcome,
  commandForgery,
  controlEvent,
  controlKey,
  outcomeMac,
} from './controlAuth.js';
import {
  COMMANDS_SQL,
  type ControlReceiver,
  type ControlReceiverOptions,
  type ControlReceiverStats,
  CURSOR_SQL,
  OUTCOME_SQL,
  pendingCursor,
  REAL_TIMERS,
  receiverOptions,
  rowToCommand,
} from './controlParts.js';

export type {
  ControlReceiver,
  ControlReceiverOptions,
  ControlReceiverStats,
  ControlTimers,
} from './controlParts.js';

// The kernel's tag list is shared; this one follows its pattern.
const TAG = '[kora.operational_state.control]' as LogTag;

/**
 * Creates the agent-side receiver of fleet control commands (call `start`).
 *
 * @example
 * const control = createControlReceiver({ holder: opstate, db: pool, connectionString: url,
 *   workspaceId: 'ws', chainKey: key });
 * await control.start();
 * // … on shutdown:
 * await control.stop();
 */
export function createControlReceiver(options: ControlReceiverOptions): ControlReceiver {
  const o = parseOptions(receiverOptions, options, (given) => {
    const holder = given.holder as OperationalStateHolder | undefined;
    return {
      agentId: holder?.chain?.agentId ?? 'default',
      instanceId: holder?.chain?.instanceId ?? `control-${process.pid}`,
      sink: holder?.sink,
      pollMs: 5000,
      reconnectMs: 1000,
      timers: REAL_TIMERS,
      logger: holder?.logger,
    };
  });
  const key = controlKey(o.chainKey);
  const { holder, db, timers, logger, agentId, workspaceId } = o;
  const stats: ControlReceiverStats = {
    notifications: 0,
    polls: 0,
    passes: 0,
    applied: 0,
    refused: 0,
    expired: 0,
    cursor: 0,
    listening: false,
    listenPid: null,
    listenLost: 0,
    errors: 0,
  };
  let sequence: EmitSequence | undefined;
  let started = false;
  let stopped = false;
  /**
   * The first pass of an agent whose chain names no command: expired commands are history
   * from before it existed, skipped without an outcome.
   */
  let fresh = false;
  let cursorRead = false;
  let listener: pg.Client | undefined;
  let pollTimer: unknown;
  let reconnectTimer: unknown;
  let running: Promise<void> | undefined;
  let again = false;

  async function recordInChain(c: ControlCommand, outcome: ControlOutcome): Promise<void> {
    if (!o.sink || outcome.outcome === 'applied') return;
    sequence ??= createEmitSequence(`${o.instanceId}:control`);
    const event: ChainEvent = {
      event_type: CONTROL_REFUSED_EVENT,
      payload: {
        command_id: c.command_id,
        action: c.action,
        target_agent: c.target_agent,
        outcome: outcome.outcome,
        reason: outcome.reason,
        primary_state: outcome.from_state,
      },
      workspace_id: (o.sink as { workspaceId?: string }).workspaceId ?? workspaceId,
      agent_id: agentId,
      instance_id: sequence.instanceId,
      seq: sequence.reserve(1),
      occurred_at: new Date().toISOString(),
    };
    await o.sink.append([event]);
  }

  async function handle(c: ControlCommand, expired: boolean): Promise<ControlOutcome | undefined> {
    const from = holder.current.primaryState;
    const base = { command_id: c.command_id, agent_id: agentId, instance_id: o.instanceId };
    const forged = commandForgery(key, c);
    if (forged) {
      return { ...base, outcome: 'refused', reason: forged, from_state: from, to_state: null };
    }
    if (expired) {
      if (fresh) return undefined;
      const reason = `expired at ${c.expires_at.toISOString()} (issued ${c.issued_at.toISOString()}): the agent was not there within the command's TTL`;
      return { ...base, outcome: 'expired', reason, from_state: from, to_state: null };
    }
    try {
      const next = await holder.send(controlEvent(c) as never);
      return {
        ...base,
        outcome: 'applied',
        reason: null,
        from_state: from,
        to_state: next.primaryState,
      };
    } catch (err) {
      // The 409 reason (InvalidStateTransitionError), or an argument the event refused.
      return {
        ...base,
        outcome: 'refused',
        reason: errorText(err),
        from_state: from,
        to_state: null,
      };
    }
  }

  async function record(c: ControlCommand, outcome: ControlOutcome): Promise<void> {
    stats[outcome.outcome]++;
    try {
      await recordInChain(c, outcome);
    } catch (err) {
      stats.errors++;
      report(
        logger,
        'error',
        TAG,
        `command #${c.command_id}: recording the refusal in the chain failed: ${errorText(err)}`,
      );
    }
    await db.query(OUTCOME_SQL, [
      c.command_id,
      agentId,
      outcome.instance_id,
      outcome.outcome,
      outcome.reason,
      outcome.from_state,
      outcome.to_state,
      outcomeMac(key, outcome),
    ]);
    report(
      logger,
      outcome.outcome === 'applied' ? 'info' : 'warn',
      TAG,
      `command #${c.command_id} ${c.action} ${outcome.outcome}${outcome.to_state ? ` → ${outcome.to_state}` : ''}${outcome.reason ? `: ${outcome.reason}` : ''}`,
    );
    try {
      o.onOutcome?.(outcome);
    } catch (err) {
      report(logger, 'warn', TAG, `onOutcome threw: ${errorText(err)}`);
    }
  }

  async function pass(): Promise<void> {
    stats.passes++;
    if (!cursorRead) {
      // Where this agent is, from its own chain (read by the first pass that can).
      const { rows } = await db.query(CURSOR_SQL, [workspaceId, agentId]);
      const fromChain = Math.max(Number(rows[0]?.id ?? 0), pendingCursor(o.sink, agentId));
      stats.cursor = fromChain;
      fresh = fromChain === 0;
      cursorRead = true;
    }
    for (;;) {
      const { rows } = await db.query(COMMANDS_SQL, [workspaceId, agentId, stats.cursor]);
      for (const row of rows) {
        if (stopped) return;
        const c = rowToCommand(row);
        if (c.command_id <= stats.cursor) continue;
        // The cursor moves before anything is recorded: a command is never handled twice,
        // even when recording its outcome fails.
        const outcome = await handle(c, row.expired === true);
        stats.cursor = c.command_id;
        if (outcome) {
          await record(c, outcome).catch((err) => {
            stats.errors++;
            report(
              logger,
              'error',
              TAG,
              `command #${c.command_id}: outcome row not written: ${errorText(err)}`,
            );
          });
        }
      }
      if (rows.length < 100) break;
    }
    fresh = false;
  }

  function wake(): Promise<void> {
    if (stopped || !started) return running ?? Promise.resolve();
    again = true;
    if (running) return running;
    const loop = async () => {
      while (again && !stopped) {
        again = false;
        try {
          await pass();
        } catch (err) {
          stats.errors++;
          report(
            logger,
            'warn',
            TAG,
            `reading commands failed (next poll retries): ${errorText(err)}`,
          );
        }
      }
      running = undefined;
    };
    running = loop();
    return running;
  }

  function schedulePoll(): void {
    if (stopped) return;
    pollTimer = timers.set(() => {
      stats.polls++;
      void wake().then(schedulePoll);
    }, o.pollMs);
  }

  function lost(client: pg.Client, err?: unknown): void {
    if (client !== listener) return;
    listener = undefined;
    stats.listening = false;
    stats.listenPid = null;
    stats.listenLost++;
    client.end().catch(() => {});
    if (stopped) return;
    report(
      logger,
      'warn',
      TAG,
      `LISTEN ${CONTROL_CHANNEL} connection lost${err ? `: ${errorText(err)}` : ''}; polling every ${o.pollMs} ms, reconnecting in ${o.reconnectMs} ms`,
    );
    reconnectTimer = timers.set(() => void listen(), o.reconnectMs);
  }

  async function listen(): Promise<void> {
    if (stopped || !o.connectionString) return;
    const client = new pg.Client({ connectionString: o.connectionString });
    listener = client;
    client.on('error', (err) => lost(client, err));
    client.on('end', () => lost(client));
    client.on('notification', (msg) => {
      if (msg.channel !== CONTROL_CHANNEL) return;
      let note: { workspace_id?: unknown; target_agent?: unknown };
      try {
        note = JSON.parse(msg.payload ?? '{}');
      } catch {
        return;
      }
      if (note.workspace_id !== workspaceId) return;
      if (note.target_agent !== null && note.target_agent !== agentId) return;
      stats.notifications++;
      void wake();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CONTROL_CHANNEL}`);
      const { rows } = await client.query('SELECT pg_backend_pid() AS pid');
      if (client !== listener) return;
      stats.listening = true;
      stats.listenPid = rows[0].pid as number;
      report(logger, 'info', TAG, `LISTEN ${CONTROL_CHANNEL} (backend pid ${stats.listenPid})`);
    } catch (err) {
      lost(client, err);
      return;
    }
    // What was issued while not listening.
    void wake();
  }

  return {
    get stats() {
      return { ...stats };
    },
    wake,
    async start() {
      if (started) return;
      started = true;
      await listen();
      schedulePoll();
      await wake();
      report(
        logger,
        'info',
        TAG,
        `control ${quote(agentId)} of ${quote(workspaceId)}: after command #${stats.cursor}, ${stats.listening ? `LISTEN ${CONTROL_CHANNEL}` : 'polling only'} (poll ${o.pollMs} ms)`,
      );
    },
    async stop() {
      stopped = true;
      timers.clear(pollTimer);
      timers.clear(reconnectTimer);
      const client = listener;
      listener = undefined;
      stats.listening = false;
      await client?.end().catch(() => {});
      await running;
    },
  };
}
