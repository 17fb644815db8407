/**
 * The agent `kora-opstate start` runs: the store and its lock, the chain key and sink,
 * the boot gates, the instance, the status server, the demo ticket poller and the
 * shutdown handlers — wired in that order, torn down in reverse.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PGlite } from '@electric-sql/pglite';
import { type BootSummary, bootOpstate, type Gate } from '../boot.js';
import { resolveChainKey } from '../chainKey.js';
import { createClaimCoordinator } from '../claims/coordinator.js';
import { createTicketPoller } from '../claims/poller.js';
import { installShutdownHandlers } from '../claims/shutdown.js';
import { createPostgresTicketSource } from '../claims/sources/postgres.js';
import type { NewTicket } from '../claims/types.js';
import { agentFleet, fleetControlOption } from '../fleet/agent.js';
import { agentControl } from '../fleet/controlAgent.js';
import { packageVersion } from '../fleet/version.js';
import { createOpstate, type TransitionRecord } from '../holder.js';
import { type RunningStatusServer, startStatusServer } from '../http/node.js';
import { createLocalInspector, type LocalInspector } from '../inspect.js';
import { errorText, LOG_TAGS, type Logger, report } from '../logger.js';
import { readPersistingPause } from '../restore.js';
import { MIGRATIONS } from '../sinks/migrations.js';
import { openPglite } from '../sinks/pgliteTemplate.js';
import { yieldingPglite } from '../sinks/pgliteYield.js';
import type { SqlSession } from '../sinks/sql.js';
import { quote } from '../vocabulary.js';
import type { CliIo } from './command.js';
import {
  acquireStoreLock,
  openPool,
  openSink,
  type resolveStore,
  type StoreLock,
} from './store.js';
import { cliLogger, type StoreFault, storeFault } from './storeFault.js';

const TAG = LOG_TAGS.cli;
const KINDS = ['triage', 'review', 'summarize', 'reply'] as const;

/** @internal What `start` resolved from its flags and environment. */
export interface Settings {
  port: number;
  host: string;
  allowedHosts: string[];
  token: string | undefined;
  inspect: boolean;
  inspectPort: number;
  inspectorUrl: string | undefined;
  store: ReturnType<typeof resolveStore>;
  workspace: string;
  dataDir: string;
  chainKeyFile: string | undefined;
  agentId: string;
  instanceId: string;
  instanceIdGiven: boolean;
  tickets: number;
  ticketEveryMs: number;
  workMs: number;
  leaseMs: number;
  bootRetryMs: number;
  shutdownDelayMs: number;
}

/** One transition as one log line. */
function transitionLine(record: TransitionRecord): string {
  const reasons = record.degradation_reasons.join(',') || '-';
  return `${TAG} #${record.seq} ${record.from_state} → ${record.to_state}  ${record.event}  permission=${record.claim_permission} reasons=${reasons}  ${JSON.stringify(record.trigger)}`;
}

/** Anything still holding the event loop open (a gate check mid-flight) must not keep a stopped agent alive. */
function exitSoon(code: number): number {
  setTimeout(() => process.exit(code), 2000).unref();
  return code;
}

/** @internal Runs the agent until a signal or a failed boot; resolves with the exit code. */
export async function runAgent(s: Settings, io: CliIo): Promise<number> {
  const logger: Logger = cliLogger(io.env);
  const say = (line: string) => io.stdout(`${line}\n`);
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) {
      await fn().catch((err) => report(logger, 'warn', TAG, `cleanup: ${errorText(err)}`));
    }
    cleanups.length = 0;
  };

  // The store: PGlite serves one process per directory, so take it first.
  // The spool of this agent's chain events: in the data dir, also when the chain lives in
  // Postgres. One process per spool: in Postgres mode it has a lock of its own.
  const spoolDir = join(s.dataDir, 'spool', encodeURIComponent(s.workspace), s.agentId);
  let lock: StoreLock | undefined;
  if (s.store.kind === 'pglite') {
    lock = await acquireStoreLock(s.store.dir);
    cleanups.push(() => lock!.release());
  } else {
    const spoolLock = await acquireStoreLock(spoolDir).catch((err: Error) => {
      throw new Error(
        `agent ${quote(s.agentId)} of workspace ${quote(s.workspace)} already runs from ${s.dataDir}: ${err.message}`,
      );
    });
    cleanups.push(() => spoolLock.release());
  }
  try {
    // One session for the chain and the tickets. pg connects on first use; PGlite is
    // opened by the first boot gate (a damaged directory is a gate failure, not a crash).
    const store = s.store;
    const pool = store.kind === 'postgres' ? openPool(store.url, logger) : undefined;
    let pglite: PGlite | undefined;
    const embedded = (): PGlite => {
      if (!pglite)
        throw new Error('the embedded store is not open yet (the event_store gate opens it)');
      return pglite;
    };
    // PGlite queries settle as microtasks: without a turn of the event loop before each,
    // a loop of them (the demo queue filled, the outbox draining) starves /livez.
    const session: SqlSession = pool ?? yieldingPglite(embedded);
    // The chain key (SPEC §10): never in the database; generated on first start.
    const chainKey = await resolveChainKey({
      env: io.env,
      keyFile: s.chainKeyFile,
      dataDir: s.dataDir,
      create: true,
    });
    if (chainKey.warning) report(logger, 'warn', TAG, chainKey.warning);
    const sink = openSink(store, s.workspace, logger, pool ?? (session as unknown as PGlite), {
      spoolDir,
      chainKey: chainKey.key,
    });
    say(
      `${TAG} chain key  ${chainKey.source === 'env' ? 'KORA_CHAIN_KEY' : `${chainKey.path}${chainKey.source === 'generated' ? ' (generated)' : ''}`} (key id ${sink.keyId})`,
    );
    const runStartedAt = new Date();
    const source = createPostgresTicketSource({ db: session, queue: 'demo', logger });
    cleanups.push(async () => {
      await pool?.end();
      await pglite?.close();
    });

    let enqueued = 0;
    const demoTickets = (n: number): NewTicket[] =>
      Array.from({ length: n }, () => {
        enqueued++;
        return {
          id: `demo-${Date.now().toString(36)}-${enqueued}`,
          critical: enqueued % 4 === 0,
          payload: { title: `demo ticket ${enqueued}`, kind: KINDS[enqueued % KINDS.length] },
        };
      });

    let refusal: StoreFault | undefined;
    let storeOpen = false;
    let opened = () => {}; // the boot runs after it is set: the fleet registers then
    const gates: Gate[] = [
      {
        id: 'event_store',
        gateClass: 'transient',
        reason: 'substrate',
        timeoutMs: 60_000,
        check: async () => {
          if (store.kind === 'pglite' && !pglite) {
            // A new directory is unpacked from the package's template, not initdb-ed.
            pglite = (await openPglite(join(store.dir, 'pglite'), { logger })).db;
          }
          try {
            await sink.start();
            storeOpen = true;
            opened();
          } catch (err) {
            // Refused (password, database, permission): the same answer on every retry.
            refusal = store.kind === 'postgres' ? storeFault(err, store.url) : undefined;
            if (refusal) return { ok: false, detail: refusal.detail, retry: false };
            throw err;
          }
          return { ok: true, detail: `${store.label}, event log migrated` };
        },
      },
      {
        // Events of an earlier run under this instance id would collide with this run's:
        // refused here, never dropped later (SPEC §10).
        id: 'instance_id',
        gateClass: 'invariant',
        check: async () => {
          const { rows } = await session.query(
            'SELECT count(*)::int AS n FROM event_log WHERE instance_id = $1 AND occurred_at < $2',
            [s.instanceId, runStartedAt.toISOString()],
          );
          const n = rows[0]?.n as number;
          return n === 0
            ? { ok: true, detail: `instance ${quote(s.instanceId)} is new` }
            : {
                ok: false,
                detail: `instance id ${quote(s.instanceId)} already has ${n} event(s) in the chain; an instance id names one run — ${s.instanceIdGiven ? 'pass a new --instance-id or drop it' : 'start again'}`,
              };
        },
      },
      {
        id: 'ticket_queue',
        gateClass: 'transient',
        reason: 'dispatch',
        timeoutMs: 30_000,
        check: async () => {
          await source.start();
          await source.enqueue(demoTickets(s.tickets));
          const c = await source.counts();
          return { ok: true, detail: `queue "demo": ${c.queued} queued, ${c.done} done` };
        },
      },
      {
        id: 'schema_epoch',
        gateClass: 'invariant_pause',
        check: async () => {
          const want = MIGRATIONS.at(-1)!.version;
          const { rows } = await session.query(
            'SELECT max(version)::int AS v FROM kora_opstate_migrations',
          );
          const got = rows[0]?.v as number | null;
          return { ok: got === want, detail: `store epoch ${got}, package epoch ${want}` };
        },
      },
    ];

    let inspector: LocalInspector | undefined;
    if (s.inspect) {
      inspector = createLocalInspector({ port: s.inspectPort, logger, uiUrl: s.inspectorUrl });
      const addr = await inspector.start();
      cleanups.push(() => inspector!.stop());
      say(`${TAG} inspector  ${addr.url}  (WebSocket ${addr.wsUrl})`);
    }

    // The one instance: everything below takes it as an argument.
    const holder = createOpstate({
      sink,
      agentId: s.agentId,
      instanceId: s.instanceId,
      logger,
      historySize: 50,
      initial: { primaryState: 'booting' },
      ...(inspector ? { inspect: inspector.inspect } : {}),
    });
    holder.addListener((_old, _next, record) => say(transitionLine(record)), {
      name: 'kora-opstate.log',
      requestsTransitions: false,
    });

    const coordinator = createClaimCoordinator({ holder, logger });
    const poller = createTicketPoller({
      source,
      coordinator,
      holder,
      workerId: s.instanceId,
      leaseMs: s.leaseMs,
      idleDelayMs: 250,
      logger,
      handle: async (_ticket, { signal }) => {
        if (s.workMs > 0) await sleep(s.workMs, undefined, { signal });
      },
    });

    // The panel first, so booting and gate retries are visible too.
    let booted: Promise<BootSummary> | undefined; // the panel's boot gates, once it ran
    const fleet = agentFleet(holder, pool, s, logger, io.env);
    let status: RunningStatusServer;
    let draining = false; // set at the signal: /readyz drops before the shutdown delay
    try {
      status = await startStatusServer({
        host: s.host,
        port: s.port,
        opstate: holder,
        logger,
        title: `kora-opstate · ${s.workspace}`,
        allowedHosts: s.allowedHosts,
        fleet,
        ...fleetControlOption(pool, s, chainKey.key),
        probes: { draining: () => draining },
        ...{ agent: { version: packageVersion() }, coordinator, poller, queue: source },
        boot: () => booted,
        // The CLI owns its process: the node server's lighter Request/Response (~2× req/s).
        overrideGlobalObjects: true,
        ...(s.token ? { operatorToken: s.token } : {}),
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') {
        throw new Error(`${s.host}:${s.port} is in use; pass another --port (0 picks a free one)`);
      }
      throw err;
    }
    cleanups.push(() => status.close());
    inspector?.showLocalView(`${status.url}/inspector`);
    // The fleet registers once the store is migrated, then on each transition and heartbeat.
    opened = () => void fleet.start({ url: status.url });
    cleanups.push(() => fleet.stop());
    await lock?.update(status.url);
    say(
      `${TAG} store      ${store.label} (workspace ${quote(s.workspace)}, agent ${quote(s.agentId)}, instance ${quote(s.instanceId)})`,
    );
    say(`${TAG} panel      ${status.url}/`);
    say(
      s.token
        ? `${TAG} operator   POST ${status.url}/api/operational-state/transitions (Bearer token)`
        : `${TAG} operator   transitions over HTTP are off (pass --operator-token to enable)`,
    );

    booted = bootOpstate(holder, {
      gates,
      logger,
      retry: { initialDelayMs: s.bootRetryMs },
      restore: () => readPersistingPause(sink, s.agentId),
    });

    let feeder: ReturnType<typeof setInterval> | undefined;
    let done!: (code: number) => void;
    const finished = new Promise<number>((resolve) => {
      done = resolve;
    });
    const finish = async (code: number) => {
      if (feeder) clearInterval(feeder);
      await cleanup();
      done(code);
    };
    const uninstall = installShutdownHandlers({
      holder,
      coordinator,
      poller,
      sink,
      logger,
      claimTimeoutMs: Math.max(30_000, s.workMs * 2),
      shutdownDelayMs: s.shutdownDelayMs,
      onDrain: () => {
        draining = true;
      },
      exit: (code) => {
        // 128+n is the second signal: no waiting for anything.
        if (code >= 128) process.exit(code);
        void finish(code);
      },
    });
    cleanups.push(async () => uninstall());

    // A signal during the boot (gates still retrying) ends the run as well.
    const outcome = await Promise.race([booted, finished]);
    if (typeof outcome === 'number') return exitSoon(outcome);
    const summary = outcome;
    const gateText = summary.gates
      .map(
        (g) => `${g.gate_id} ${g.outcome}${g.attempts > 1 ? ` after ${g.attempts} attempts` : ''}`,
      )
      .join(', ');
    say(`${TAG} boot       ${summary.result} (${gateText || 'no gates'})`);
    if (summary.result === 'stopped' || summary.result === 'error') {
      const why = summary.failedGate
        ? `gate ${summary.failedGate.gate_id}: ${summary.failedGate.detail}`
        : (summary.error ?? 'unknown');
      report(logger, 'error', TAG, refusal ? refusal.line : `boot ended ${summary.result}: ${why}`);
      uninstall();
      // The boot's own events (gate retries, the failure) are worth waiting for, bounded;
      // not when the store never opened (nothing drains them). What is left, the sink's
      // close reports: how many, the last error, where they are kept.
      if (storeOpen) await sink.flush(10_000).catch(() => false);
      await sink.close();
      await finish(1);
      return exitSoon(await finished);
    }
    if (summary.result === 'paused' && summary.restored) {
      const r = summary.restored;
      say(
        `${TAG} paused     restored the agent's ${r.cause} pause (${r.reasons.join(', ')}) from ${r.instance_id}; ` +
          (r.cause === 'cost_limit'
            ? 'a credit refresh (resume.credit_refresh) resumes it'
            : 'an operator reset (resume.operator_reset) resumes it'),
      );
    } else if (summary.result === 'paused' && !summary.failedGate) {
      say(`${TAG} paused     ${summary.error ?? 'by an operator'}; an operator reset resumes it`);
    } else if (summary.result === 'paused') {
      say(
        `${TAG} paused by gate ${summary.failedGate?.gate_id}: ${summary.failedGate?.detail}; an operator reset resumes it`,
      );
    }
    poller.start();
    // Fleet control (Postgres): `kora-opstate control` commands, each applied once.
    const control = agentControl(holder, pool, store, s, chainKey.key, logger);
    if (control) cleanups.push(() => control.stop());
    await control?.start();
    if (s.ticketEveryMs > 0) {
      feeder = setInterval(() => {
        source.enqueue(demoTickets(1)).catch((err) => {
          report(logger, 'warn', TAG, `could not queue a demo ticket: ${errorText(err)}`);
        });
      }, s.ticketEveryMs);
    }
    return exitSoon(await finished);
  } catch (err) {
    await cleanup();
    throw err;
  }
}
