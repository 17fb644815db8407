import { resolve } from 'node:path';
import { DEFAULT_AGENT_ID, defaultInstanceId, parseAgentId } from '../emit.js';
import { createHostCheck } from '../http/hosts.js';
import { LOG_TAGS } from '../logger.js';
import { type OperationalStateInputError, quote } from '../vocabulary.js';
import { runAgent } from './agent.js';
import { type Command, intFlag, intSetting, UsageError } from './command.js';
import {
  resolveDataDir,
  resolveStore,
  resolveWorkspace,
  STORE_OPTIONS,
  STORE_USAGE,
} from './store.js';

const _TAG = LOG_TAGS.cli;

/** @internal */
export const startCommand: Command = {
  name: 'start',
  summary: 'run the demo agent',
  usage: `[options]

Runs an agent process: boot gates, the chain-event log, a ticket poller working demo
tickets (READY ⇄ ACTIVE), the status API and live panel. SIGTERM/SIGINT shut it down
gracefully (pause, finish the claim, stop, flush the chain); a second signal exits at once
(the same signal within 1 s of the first is the same Ctrl-C, delivered twice by npm).

Options:
  --port N                 status API and panel port (default 7070; env KORA_PORT; 0 = any free port)
  --host H                 address to bind (default 127.0.0.1; env KORA_HOST)
  --allowed-host NAME      also answer requests for this Host name, repeatable; localhost,
                           IP addresses and the --host name always are, any other is 421
                           (env KORA_ALLOWED_HOSTS, comma-separated; "*" turns the check off)
  --operator-token T       enable POST /api/operational-state/transitions with Bearer T,
                           and require it for GET …/chain/verify (env KORA_OPERATOR_TOKEN)
  --inspect                serve the Stately inspector bridge for the holder's actor
  --inspect-port N         its port (default 0 = any free port)
  --inspector-url URL      the Stately inspector UI its page embeds (default the hosted
                           https://stately.ai/inspect; env KORA_INSPECTOR_URL): a self-hosted
                           copy works offline, as does the panel's own /inspector view
${STORE_USAGE}
  --chain-key-file F       the chain key (default: env KORA_CHAIN_KEY, else <data-dir>/chain.key,
                           generated on first start with mode 0600; agents of a workspace share it)
  --agent-id ID            the agent this process runs (default "default"; env KORA_AGENT_ID):
                           a restart of the same agent restores its cost/operator/substrate pause
  --instance-id ID         this run's chain instance id (default host:pid:random; one that
                           already has events is refused)
  --tickets N              demo tickets queued at start (default 5)
  --ticket-every-ms MS     queue one more demo ticket every MS (default 4000; 0 = never)
  --work-ms MS             how long each demo ticket's work takes (default 1500)
  --lease-ms MS            ticket lease length (default 30000)
  --boot-retry-ms MS       first backoff of a transient boot gate, doubling (default 2000)
  --shutdown-delay-ms MS   on SIGTERM/SIGINT /readyz drops at once; claims stop MS later
                           (default 0; time for load balancers to see the drop)
  -h, --help               this help`,
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    'allowed-host': { type: 'string', multiple: true },
    'operator-token': { type: 'string' },
    inspect: { type: 'boolean' },
    'inspect-port': { type: 'string', default: '0' },
    'inspector-url': { type: 'string' },
    ...STORE_OPTIONS,
    'chain-key-file': { type: 'string' },
    'agent-id': { type: 'string' },
    'instance-id': { type: 'string' },
    tickets: { type: 'string', default: '5' },
    'ticket-every-ms': { type: 'string', default: '4000' },
    'work-ms': { type: 'string', default: '1500' },
    'lease-ms': { type: 'string', default: '30000' },
    'boot-retry-ms': { type: 'string', default: '2000' },
    'shutdown-delay-ms': { type: 'string', default: '0' },
  },
  async run(values, positionals, io) {
    if (positionals.length) {
      throw new UsageError(`unexpected argument ${quote(positionals[0])}`);
    }
    const port = intSetting(values, io.env, 'port', 'KORA_PORT', '7070', 0, 65_535);
    const host = (values.host as string | undefined) ?? io.env.KORA_HOST ?? '127.0.0.1';
    const token = (values['operator-token'] as string | undefined) ?? io.env.KORA_OPERATOR_TOKEN;
    if (token !== undefined && (token === '' || /\s/.test(token))) {
      const from =
        values['operator-token'] !== undefined ? '--operator-token' : 'KORA_OPERATOR_TOKEN';
      throw new UsageError(`invalid ${from}: it must be non-empty, without whitespace`);
    }
    const settings = {
      port,
      host,
      allowedHosts: parseAllowedHosts(values['allowed-host'], io.env.KORA_ALLOWED_HOSTS),
      token: token || undefined,
      inspect: Boolean(values.inspect),
      inspectPort: intFlag('inspect-port', values['inspect-port'], 0, 65_535),
      inspectorUrl: parseInspectorUrl(values, io.env.KORA_INSPECTOR_URL),
      store: resolveStore(values, io),
      workspace: resolveWorkspace(values, io),
      dataDir: resolveDataDir(values, io),
      chainKeyFile:
        values['chain-key-file'] === undefined
          ? undefined
          : resolve(io.cwd, values['chain-key-file'] as string),
      agentId: parseAgentFlag(values['agent-id'] as string | undefined, io.env.KORA_AGENT_ID),
      instanceId: (values['instance-id'] as string | undefined) ?? defaultInstanceId(),
      instanceIdGiven: values['instance-id'] !== undefined,
      tickets: intFlag('tickets', values.tickets, 0, 10_000),
      ticketEveryMs: intFlag('ticket-every-ms', values['ticket-every-ms'], 0, 3_600_000),
      workMs: intFlag('work-ms', values['work-ms'], 0, 3_600_000),
      leaseMs: intFlag('lease-ms', values['lease-ms'], 1000, 3_600_000),
      bootRetryMs: intFlag('boot-retry-ms', values['boot-retry-ms'], 1, 600_000),
      shutdownDelayMs: intFlag('shutdown-delay-ms', values['shutdown-delay-ms'], 0, 600_000),
    };
    if (settings.instanceId.trim() === '') {
      throw new UsageError(`invalid --instance-id ${quote(settings.instanceId)}: empty`);
    }
    return runAgent(settings, io);
  },
};

/** `--allowed-host` (repeatable) or else `KORA_ALLOWED_HOSTS` (comma-separated), checked here. */
function parseAllowedHosts(flags: unknown, env: string | undefined): string[] {
  const fromFlags = Array.isArray(flags) && flags.length > 0;
  const list = fromFlags
    ? (flags as string[])
    : (env ?? '')
        .split(',')
        .map((h) => h.trim())
        .filter(Boolean);
  try {
    createHostCheck(list, 'allowed-host');
  } catch (err) {
    const bad = (err as OperationalStateInputError).value;
    throw new UsageError(
      `invalid ${fromFlags ? '--allowed-host' : 'KORA_ALLOWED_HOSTS entry'} ${quote(bad)}: expected a host name (agent.example.org), .example.org for it and its subdomains, an IP address, or "*"`,
    );
  }
  return list;
}

/**
 * `--inspector-url`, else `KORA_INSPECTOR_URL`: an http(s) URL. The flag needs `--inspect`
 * (the variable is only a default, ignored without it).
 */
function parseInspectorUrl(
  values: Record<string, unknown>,
  env: string | undefined,
): string | undefined {
  const flag = values['inspector-url'] as string | undefined;
  if (flag !== undefined && !values.inspect) {
    throw new UsageError('--inspector-url needs --inspect (it is the page the bridge embeds)');
  }
  const url = flag ?? (env || undefined);
  if (url === undefined) return undefined;
  let ok = false;
  try {
    ok = ['http:', 'https:'].includes(new URL(url).protocol);
  } catch {}
  if (!ok) {
    const from = flag !== undefined ? '--inspector-url' : 'KORA_INSPECTOR_URL';
    throw new UsageError(
      `invalid ${from} ${quote(url)}: expected an http(s) URL of a Stately inspector (e.g. http://127.0.0.1:3000/inspect)`,
    );
  }
  return url;
}

/** `--agent-id`, else `KORA_AGENT_ID`: a usage error naming where the bad value came from. */
function parseAgentFlag(flag: string | undefined, env: string | undefined): string {
  const from = flag !== undefined ? '--agent-id' : env !== undefined ? 'KORA_AGENT_ID' : 'default';
  try {
    return parseAgentId(flag ?? env ?? DEFAULT_AGENT_ID, 'agent id');
  } catch (err) {
    throw new UsageError(`invalid ${from}: ${(err as Error).message}`);
  }
}
