/**
 * `kora-opstate fleet`: every agent of the workspace (SPEC §12) — presence (live, gone,
 * stopped), state, reasons, claim permission, last transition, last seen — read from the
 * registry table on Postgres; on the embedded store, through the agent running on it.
 */
import { formatFleet } from '../fleet/format.js';
import { readFleetView } from '../fleet/sql.js';
import { countPresence, type FleetView, GONE_AFTER_HEARTBEATS } from '../fleet/types.js';
import { errorText, SILENT_LOGGER } from '../logger.js';
import { quote } from '../vocabulary.js';
import { type Command, intFlag, noPositionals, UsageError, untilSignal } from './command.js';
import {
  openPool,
  readStoreLock,
  resolveStore,
  resolveWorkspace,
  STORE_OPTIONS,
  STORE_USAGE,
  type StoreLocation,
} from './store.js';
import { maskUrl, storeFault } from './storeFault.js';

/** One look at the fleet, and how to release what it holds. */
interface FleetReader {
  readonly via: string;
  read(): Promise<FleetView>;
  close(): Promise<void>;
}

function postgresReader(
  store: Extract<StoreLocation, { kind: 'postgres' }>,
  workspace: string,
): FleetReader {
  const pool = openPool(store.url, SILENT_LOGGER, 1);
  return {
    via: store.label,
    async read() {
      try {
        return await readFleetView(pool, workspace);
      } catch (err) {
        throw new Error(
          storeFault(err, store.url)?.line ??
            `cannot read the fleet from ${maskUrl(store.url)}: ${errorText(err)}`,
        );
      }
    },
    close: () => pool.end(),
  };
}

/**
 * The embedded store serves one process: its fleet is the agent running on it, asked
 * through its status API (the lock file names it); none running, no agent.
 */
async function embeddedReader(
  store: Extract<StoreLocation, { kind: 'pglite' }>,
  workspace: string,
): Promise<FleetReader> {
  const lock = await readStoreLock(store.dir);
  const empty = (): FleetView => ({
    workspace_id: workspace,
    source: 'local',
    gone_after_heartbeats: GONE_AFTER_HEARTBEATS,
    generated_at: new Date().toISOString(),
    agents: [],
    counts: countPresence([]),
  });
  if (!lock?.url) {
    return {
      via: `${store.label}, no agent running`,
      read: async () => empty(),
      close: async () => {},
    };
  }
  const url = new URL('/api/fleet', lock.url);
  return {
    via: `the agent at ${lock.url}`,
    async read() {
      let res: Response;
      try {
        res = await fetch(url, { headers: { accept: 'application/json' } });
      } catch (err) {
        throw new Error(`cannot reach the agent at ${lock.url}: ${errorText(err)}`);
      }
      const body = (await res.json()) as FleetView & { error?: string };
      if (!res.ok) throw new Error(`${url}: ${res.status} ${body.error ?? ''}`);
      if (body.workspace_id !== workspace) {
        throw new UsageError(
          `the agent at ${lock.url} runs workspace ${quote(body.workspace_id)}, not ${quote(workspace)}; pass --workspace ${body.workspace_id}`,
        );
      }
      return body;
    },
    close: async () => {},
  };
}

/** @internal */
export const fleetCommand: Command = {
  name: 'fleet',
  summary: 'show every agent of the workspace',
  usage: `[options]

Shows every agent registered in the workspace: live, gone (no heartbeat for 3 of its
intervals) or stopped; its state, degradation reasons, claim permission, last transition
and when it was last seen. Agents sharing a Postgres register there; on the embedded
store the fleet is the one agent running on it.

Options:
  --json               print the fleet as JSON (with --watch: one line per look)
  -w, --watch          print it again every --interval-ms until interrupted
  --interval-ms MS     how often --watch looks (default 1000)
${STORE_USAGE}
  -h, --help           this help`,
  options: {
    ...STORE_OPTIONS,
    json: { type: 'boolean' },
    watch: { type: 'boolean', short: 'w' },
    'interval-ms': { type: 'string', default: '1000' },
  },
  async run(values, positionals, io) {
    noPositionals(positionals);
    const intervalMs = intFlag('interval-ms', values['interval-ms'], 50, 3_600_000);
    const store = resolveStore(values, io);
    const workspace = resolveWorkspace(values, io);
    const reader =
      store.kind === 'postgres'
        ? postgresReader(store, workspace)
        : await embeddedReader(store, workspace);
    const print = (view: FleetView) =>
      io.stdout(values.json ? `${JSON.stringify(view)}\n` : `${formatFleet(view, reader.via)}\n`);
    try {
      print(await reader.read());
      if (!values.watch) return 0;
      const signal = untilSignal();
      try {
        while (!(await signal.wait(intervalMs))) {
          const view = await reader.read();
          // A terminal gets the table redrawn in place; a pipe gets one block per look.
          if (!values.json && process.stdout.isTTY) io.stdout('\x1b[H\x1b[2J');
          else if (!values.json) io.stdout('\n');
          print(view);
        }
      } finally {
        signal.dispose();
      }
      return 0;
    } finally {
      await reader.close();
    }
  },
};
