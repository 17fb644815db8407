/**
 * Child process of the poller and shutdown tests: a complete agent — boot gates, the chain
 * on a Postgres sink, a ticket poller on the Postgres `tickets` table, graceful shutdown.
 *
 * Env:
 * - AGENT_URL        connection string (search_path set to the test's schema)
 * - AGENT_WORKER     worker id: lease owner, `resolved_by` and the chain's instance id
 * - AGENT_WORKSPACE  the chain's workspace (default `ws-agents`)
 * - AGENT_LEASE_MS   lease length (default 10,000)
 * - AGENT_WORK_MS    how long each ticket's work takes (default 0)
 * - AGENT_MODE       `work` (default), `hang` (the work never ends), `stdin` (the work ends
 *                    when a `finish` line arrives on stdin)
 * - AGENT_BARRIER    `1`: after boot, print `ready` and wait for a `go` line on stdin
 *
 * Every ticket's work inserts (ticket_id, worker_id) into `work_log` (the test creates it)
 * and prints `working <id>`; log lines are printed as `log <level> <text>`; on exit the
 * agent prints `final <json>` ({ state, poller, emit }).
 */
import { once } from 'node:events';
import pg from 'pg';
import { wireOperationalState } from '../../src/boot.js';
import { createClaimCoordinator } from '../../src/claims/coordinator.js';
import { createTicketPoller } from '../../src/claims/poller.js';
import { installShutdownHandlers } from '../../src/claims/shutdown.js';
import { createPostgresTicketSource } from '../../src/claims/sources/postgres.js';
import { getHolder, type Logger } from '../../src/holder.js';
import { createPostgresSink } from '../../src/sinks/postgres.js';

const env = (name: string, fallback?: string): string => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`agent: ${name} is required`);
  return v;
};
const url = env('AGENT_URL');
const worker = env('AGENT_WORKER');
const leaseMs = Number(env('AGENT_LEASE_MS', '10000'));
const workMs = Number(env('AGENT_WORK_MS', '0'));
const mode = env('AGENT_MODE', 'work');

const print = (line: string) => process.stdout.write(`${line}\n`);
const text = (args: unknown[]) =>
  args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a))).join(' ');
const logger: Logger = {
  error: (...a) => print(`log error ${text(a)}`),
  warn: (...a) => print(`log warn ${text(a)}`),
  info: (...a) => print(`log info ${text(a)}`),
};

// stdin lines drive the barrier and the `stdin` mode.
const lines: string[] = [];
let onLine: (() => void) | undefined;
let buffered = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  buffered += chunk;
  let i = buffered.indexOf('\n');
  while (i >= 0) {
    lines.push(buffered.slice(0, i));
    buffered = buffered.slice(i + 1);
    i = buffered.indexOf('\n');
  }
  onLine?.();
});
const nextLine = async (want: string) => {
  for (;;) {
    const i = lines.indexOf(want);
    if (i >= 0) {
      lines.splice(i, 1);
      return;
    }
    await new Promise<void>((resolve) => {
      onLine = resolve;
    });
  }
};

const pool = new pg.Pool({ connectionString: url, max: 4 });
pool.on('error', (err) => logger.warn(`pool: ${err.message}`));
const sink = createPostgresSink({ workspaceId: env('AGENT_WORKSPACE', 'ws-agents'), pool, logger });
const source = createPostgresTicketSource({ pool, logger });

const summary = await wireOperationalState({
  sink,
  logger,
  emit: { instanceId: worker },
  retry: { initialDelayMs: 200 },
  gates: [
    {
      id: 'event_log',
      gateClass: 'transient',
      reason: 'substrate',
      check: async () => {
        await sink.start();
        return { ok: true, detail: 'event log migrated' };
      },
    },
    {
      id: 'tickets',
      gateClass: 'transient',
      reason: 'dispatch',
      check: async () => {
        await source.start();
        return true;
      },
    },
  ],
});
const holder = getHolder()!;
if (summary.result !== 'ready') {
  print(`final ${JSON.stringify({ summary })}`);
  process.exit(3);
}

const coordinator = createClaimCoordinator({ holder, logger });
const poller = createTicketPoller({
  source,
  coordinator,
  holder,
  workerId: worker,
  leaseMs,
  heartbeatMs: Math.max(1, Math.floor(leaseMs / 4)),
  idleDelayMs: 20,
  logger,
  handle: async (ticket, { signal }) => {
    await pool.query('INSERT INTO work_log (ticket_id, worker_id) VALUES ($1, $2)', [
      ticket.id,
      worker,
    ]);
    print(`working ${ticket.id}`);
    if (mode === 'hang') {
      await once(signal, 'abort');
      throw signal.reason;
    }
    if (mode === 'stdin') await nextLine('finish');
    if (workMs > 0) await new Promise((r) => setTimeout(r, workMs));
  },
});

const emit = () => ({ state: holder.current, poller: poller.stats });
installShutdownHandlers({
  holder,
  coordinator,
  poller,
  sink,
  logger,
  claimTimeoutMs: 20_000,
  flushTimeoutMs: 10_000,
  exit: (code) => {
    print(`final ${JSON.stringify(emit())}`);
    process.exit(code);
  },
});

if (process.env.AGENT_BARRIER === '1') {
  print('ready');
  await nextLine('go');
}
poller.start();
print('polling');
