/**
 * The fleet registry (SPEC §12): an agent on a shared Postgres keeps one row of
 * `kora_opstate_fleet_agents` about itself — written on start, after each committed
 * transition (an isolated holder listener that never waits on the database) and every
 * heartbeat — and marks it stopped on a graceful stop. Without a database (an embedded
 * store is one process) the fleet is this agent alone, shown from memory.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import type { OperationalStateHolder, TransitionRecord } from '../holder.js';
import { errorText, type Logger } from '../logger.js';
import {
  functionSchema,
  loggerSchema,
  nonEmptyStringSchema,
  objectWithSchema,
  parseOptions,
  positiveIntSchema,
} from '../options.js';
import type { SqlSession } from '../sinks/sql.js';
import { type OperationalState, quote } from '../vocabulary.js';
import { type FleetRow, markFleetRowStopped, readFleetView, upsertFleetRow } from './sql.js';
import {
  countPresence,
  DEFAULT_HEARTBEAT_MS,
  type FleetAgent,
  type FleetSource,
  type FleetView,
  GONE_AFTER_HEARTBEATS,
} from './types.js';
import { packageVersion } from './version.js';

/** @internal The registry's log tag. */
export const FLEET_TAG = '[kora.operational_state.fleet]';

/** The timer a registry's heartbeat uses (injectable: tests drive it by hand). */
export interface FleetTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Options of {@link createFleetRegistry}; all but `opstate` optional. */
export interface FleetRegistryOptions {
  /** The instance whose state the row shows (what `createOpstate()` returns). */
  opstate: OperationalStateHolder;
  /** The shared Postgres (a `pg.Pool`). Without it the fleet is this agent alone, nothing is written. */
  db?: SqlSession;
  /** Default `default`. */
  workspaceId?: string;
  /** Default: the instance's chain agent id, else `default`. */
  agentId?: string;
  /** Default: the instance's chain instance id. */
  instanceId?: string;
  /** How often the row is refreshed (ms; default 5000). Gone after {@link GONE_AFTER_HEARTBEATS} of them. */
  heartbeatMs?: number;
  /** This agent's status server, shown in the fleet (also settable at `start`). */
  url?: string;
  /** Default: this package's version. */
  version?: string;
  /** Default `process.pid`. */
  pid?: number;
  /** Default `os.hostname()`. */
  host?: string;
  /** Default: the instance's logger. */
  logger?: Logger;
  /** Default: the global timers (unref'd, so a heartbeat never holds a process open). */
  timers?: FleetTimers;
  /** The start time shown (default `new Date()` at creation). */
  now?: () => Date;
  /** How long `stop` waits for a write in flight and for marking the row stopped (ms; default 5000). */
  stopTimeoutMs?: number;
}

/** Counters of a registry. */
export interface FleetRegistryStats {
  writes: number;
  failures: number;
  /** Writes refused because another live run holds this agent id. */
  conflicts: number;
  lastError: string | undefined;
}

/** What {@link createFleetRegistry} returns. */
export interface FleetRegistry extends FleetSource {
  /** `postgres` with a `db`, else `local`. */
  readonly mode: 'postgres' | 'local';
  readonly stats: Readonly<FleetRegistryStats>;
  /** Registers (first write) and starts the heartbeat; never throws (failures are logged and retried). */
  start(options?: { url?: string }): Promise<void>;
  /** Writes the row now; resolves when written (or the write failed, logged). */
  heartbeat(): Promise<void>;
  /** Stops the heartbeat and the listener, and marks the row stopped. */
  stop(): Promise<void>;
}

const defaultTimers: FleetTimers = {
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

const schema = z.object({
  opstate: objectWithSchema<OperationalStateHolder>(
    ['addListener', 'history'],
    'must be the instance createOpstate() returns',
    ['current'],
  ),
  db: objectWithSchema<SqlSession>(['query'], 'must be a pg.Pool or a SQL session').optional(),
  workspaceId: nonEmptyStringSchema(),
  agentId: nonEmptyStringSchema(),
  instanceId: nonEmptyStringSchema(),
  heartbeatMs: positiveIntSchema(),
  url: z.string().optional(),
  version: nonEmptyStringSchema(),
  pid: positiveIntSchema().nullable(),
  host: z.string().nullable(),
  logger: loggerSchema(),
  timers: objectWithSchema<FleetTimers>(
    ['setTimeout', 'clearTimeout'],
    'must have setTimeout and clearTimeout',
  ),
  now: functionSchema<() => Date>(),
  stopTimeoutMs: positiveIntSchema(),
});

function say(logger: Logger, level: 'info' | 'warn', message: string): void {
  try {
    logger[level](`${FLEET_TAG} ${message}`);
  } catch {
    // A throwing logger must not turn a registry failure into a transition failure.
  }
}

/** Resolves `p`, or `undefined` after `ms`. */
function bounded<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]);
}

/**
 * Creates the registry of one agent. Call `start` once its status server is up (the row
 * shows its URL), `stop` on the way out (before the pool closes). Pass it as the status
 * app's `fleet` option to serve `GET /api/fleet` and the `/fleet` page.
 *
 * @example
 * const fleet = createFleetRegistry({ opstate, db: pool, workspaceId: 'acme', agentId: 'a1' });
 * await fleet.start({ url: status.url });
 * (await fleet.list()).agents.map((a) => `${a.agent_id} ${a.presence} ${a.primary_state}`);
 * await fleet.stop();
 */
export function createFleetRegistry(options: FleetRegistryOptions): FleetRegistry {
  const given = options as Partial<FleetRegistryOptions> | null;
  const holder = given?.opstate;
  const o = parseOptions(schema, options, {
    workspaceId: 'default',
    agentId: holder?.chain?.agentId ?? 'default',
    instanceId:
      holder?.chain?.instanceId ?? `${hostname()}-${process.pid}-${Date.now().toString(36)}`,
    heartbeatMs: DEFAULT_HEARTBEAT_MS,
    version: packageVersion(),
    pid: process.pid,
    host: hostname(),
    logger: holder?.logger ?? console,
    timers: defaultTimers,
    now: () => new Date(),
    stopTimeoutMs: 5000,
  });
  const who = `agent ${quote(o.agentId)} of workspace ${quote(o.workspaceId)}`;
  const startedAt = o.now();
  const stats: FleetRegistryStats = { writes: 0, failures: 0, conflicts: 0, lastError: undefined };
  let url = o.url ?? null;
  let state: OperationalState = o.opstate.current;
  let last: TransitionRecord | undefined = o.opstate.history(1)[0];
  let started = false;
  let closed = false;
  let timer: unknown;
  let unsubscribe: (() => void) | undefined;
  let failing = false;
  let heldBy: string | undefined;

  const row = (): FleetRow => ({
    workspaceId: o.workspaceId,
    agentId: o.agentId,
    instanceId: o.instanceId,
    version: o.version,
    pid: o.pid,
    host: o.host,
    url,
    startedAt,
    heartbeatMs: o.heartbeatMs,
    primaryState: state.primaryState,
    claimPermission: state.claimPermission,
    degradationReasons: state.degradationReasons,
    last: last
      ? {
          seq: last.seq,
          event: last.event,
          fromState: last.from_state,
          trigger: last.trigger,
          at: last.timestamp,
        }
      : null,
  });

  async function writeOnce(db: SqlSession): Promise<void> {
    try {
      const holderOfId = await upsertFleetRow(db, row());
      if (holderOfId === null) {
        stats.writes++;
        if (failing)
          say(o.logger, 'info', `${who} registered again after ${stats.failures} failed write(s)`);
        failing = false;
        heldBy = undefined;
        return;
      }
      stats.conflicts++;
      if (heldBy !== holderOfId) {
        heldBy = holderOfId;
        say(
          o.logger,
          'warn',
          `${who} is registered by another live run (instance ${quote(holderOfId)}); this run (instance ${quote(o.instanceId)}) shows in the fleet once that one stops or is gone`,
        );
      }
    } catch (err) {
      stats.failures++;
      stats.lastError = errorText(err);
      if (failing) return;
      // No table yet: the store is migrated by the boot's event_store gate, which may not
      // have run. Not worth a line; the next heartbeat (or the boot's transition) retries.
      if ((err as { code?: string }).code === '42P01') return;
      failing = true;
      say(
        o.logger,
        'warn',
        `${who}: could not write the fleet row: ${stats.lastError}; retrying every heartbeat`,
      );
    }
  }

  // One write at a time; changes meanwhile fold into the next write (the latest state wins).
  let dirty = false;
  let running: Promise<void> | undefined;
  const kick = (): Promise<void> => {
    const db = o.db;
    if (!db || closed) return running ?? Promise.resolve();
    dirty = true;
    running ??= (async () => {
      try {
        while (dirty && !closed) {
          dirty = false;
          await writeOnce(db);
        }
      } finally {
        running = undefined;
      }
    })();
    return running;
  };

  const arm = () => {
    if (closed) return;
    timer = o.timers.setTimeout(() => {
      void kick().then(arm);
    }, o.heartbeatMs);
  };

  const localAgent = (): FleetAgent => ({
    workspace_id: o.workspaceId,
    agent_id: o.agentId,
    instance_id: o.instanceId,
    version: o.version,
    pid: o.pid,
    host: o.host,
    url,
    started_at: startedAt.toISOString(),
    last_seen: new Date().toISOString(),
    seen_ms_ago: 0,
    heartbeat_ms: o.heartbeatMs,
    presence: closed ? 'stopped' : 'live',
    stopped_at: null,
    primary_state: o.opstate.current.primaryState,
    claim_permission: o.opstate.current.claimPermission,
    degradation_reasons: o.opstate.current.degradationReasons,
    last_transition: last
      ? {
          seq: last.seq,
          event: last.event,
          from_state: last.from_state,
          to_state: last.to_state,
          trigger: last.trigger,
          at: new Date(last.timestamp).toISOString(),
        }
      : null,
    self: true,
  });

  return {
    mode: o.db ? 'postgres' : 'local',
    get stats() {
      return { ...stats };
    },
    async start(startOptions = {}) {
      if (started || closed) return;
      started = true;
      if (startOptions.url !== undefined) url = startOptions.url;
      // Synchronous and never awaited by the holder: a slow or failing database must not
      // hold up (or fail) a transition. The row catches up with the next write.
      unsubscribe = o.opstate.addListener(
        (_old, next, record) => {
          state = next;
          last = record;
          void kick();
        },
        { name: 'kora-opstate.fleet', requestsTransitions: false },
      );
      state = o.opstate.current;
      last = o.opstate.history(1)[0] ?? last;
      await kick();
      if (o.db) arm();
    },
    heartbeat: kick,
    async list(): Promise<FleetView> {
      if (o.db) return readFleetView(o.db, o.workspaceId, o);
      last = o.opstate.history(1)[0] ?? last;
      const agents = [localAgent()];
      return {
        workspace_id: o.workspaceId,
        source: 'local',
        gone_after_heartbeats: GONE_AFTER_HEARTBEATS,
        generated_at: new Date().toISOString(),
        agents,
        counts: countPresence(agents),
      };
    },
    async stop() {
      if (closed) return;
      closed = true;
      if (timer !== undefined) o.timers.clearTimeout(timer);
      unsubscribe?.();
      if (!o.db || !started) return;
      await bounded(running ?? Promise.resolve(), o.stopTimeoutMs);
      const current = o.opstate.current;
      const marked = await bounded(
        markFleetRowStopped(o.db, o, current).catch((err) => {
          say(o.logger, 'warn', `${who}: could not mark the fleet row stopped: ${errorText(err)}`);
          return true;
        }),
        o.stopTimeoutMs,
      );
      if (marked === undefined) {
        say(
          o.logger,
          'warn',
          `${who}: marking the fleet row stopped took over ${o.stopTimeoutMs} ms; it shows gone once its heartbeats are missed`,
        );
      }
    },
  };
}
