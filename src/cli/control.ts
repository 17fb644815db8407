/** `kora-opstate control`: a fleet control command through Postgres (SPEC §12). */
import { resolve } from 'node:path';
import { resolveChainKey } from '../chainKey.js';
import {
  CONTROL_ACTIONS,
  type ControlAction,
  type ControlArgs,
  DEFAULT_COMMAND_TTL_MS,
  issueCommand,
  liveAgents,
  type ReadOutcome,
  waitForOutcomes,
} from '../fleet/control.js';
import { errorText } from '../logger.js';
import { applyMigrations } from '../sinks/migrations.js';
import { OperationalStateInputError, type PauseCause, quote } from '../vocabulary.js';
import { type Command, type CommandValues, intFlag, UsageError } from './command.js';
import {
  openPool,
  resolveDataDir,
  resolveStore,
  resolveWorkspace,
  STORE_OPTIONS,
  STORE_USAGE,
} from './store.js';
import { cliLogger } from './storeFault.js';

function usd(values: CommandValues, flag: string): number | undefined {
  const text = values[flag] as string | undefined;
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new UsageError(`invalid --${flag} ${quote(text)}: expected an amount in USD (≥ 0)`);
  }
  return n;
}

function argsOf(action: ControlAction, values: CommandValues): ControlArgs {
  const spend = usd(values, 'spend');
  const threshold = usd(values, 'threshold');
  if (action === 'credit-refresh' && (spend === undefined || threshold === undefined)) {
    throw new UsageError('credit-refresh needs --spend and --threshold (the reconciled figures)');
  }
  return {
    ...(values.cause !== undefined ? { cause: values.cause as PauseCause } : {}),
    ...(values.trigger !== undefined ? { trigger: values.trigger as string } : {}),
    ...(spend !== undefined ? { reconciled_spend_usd: spend } : {}),
    ...(threshold !== undefined ? { threshold_usd: threshold } : {}),
  };
}

function outcomeLine(o: ReadOutcome, width: number): string {
  const what =
    o.outcome === 'applied' ? `${o.from_state} → ${o.to_state}` : (o.reason ?? o.outcome);
  const forged = o.verified ? '' : '  (NOT signed with the chain key: not an agent’s answer)';
  return `  ${o.agent_id.padEnd(width)}  ${o.outcome.padEnd(7)}  ${what}${forged}\n`;
}

/** @internal */
export const controlCommand: Command = {
  name: 'control',
  summary: 'pause, reset, credit-refresh or stop one agent or all, through Postgres',
  usage: `${CONTROL_ACTIONS.join('|')} (--agent ID | --all) [options]

Writes a control command in Postgres, signed with the chain key. Agents receive it
(LISTEN kora_control, polling as fallback), apply it through their state table once,
and record the outcome (applied, or refused with the reason) on an outcome row and in
their chain. An agent that is down applies it when it comes back, until --ttl-ms; after
that it records it as expired. Waits --wait-ms for the answers: the agent named, or with
--all the live agents of the fleet registry.
Exit 0 when every answer awaited is "applied", 1 when one is refused or expired, 3 when an
agent did not answer in time (the command stays pending until it expires).

Options:
  --agent ID           the agent (its --agent-id)
  --all                every agent of the workspace
  --cause C            pause: stop_kora, cost_limit, operator (default) or substrate
  --trigger T          text for the transition's trigger (after "kora_control #<id> <action>:")
  --spend USD          credit-refresh: the reconciled spend
  --threshold USD      credit-refresh: the threshold the spend must stay under
  --ttl-ms N           how long an agent that is down may still apply it (default ${DEFAULT_COMMAND_TTL_MS})
  --wait-ms N          how long to wait for the answers (default 10000; 0: do not wait)
  --chain-key-file F   the chain key (default: env KORA_CHAIN_KEY, else <data-dir>/chain.key)
  --json               print the command and its outcomes as JSON
${STORE_USAGE}
  -h, --help           this help`,
  options: {
    ...STORE_OPTIONS,
    agent: { type: 'string' },
    all: { type: 'boolean' },
    cause: { type: 'string' },
    trigger: { type: 'string' },
    spend: { type: 'string' },
    threshold: { type: 'string' },
    'ttl-ms': { type: 'string' },
    'wait-ms': { type: 'string' },
    'chain-key-file': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(values, positionals, io) {
    const [action, extra] = positionals;
    if (action === undefined) {
      throw new UsageError(`which command? one of ${CONTROL_ACTIONS.join(', ')}`);
    }
    if (!CONTROL_ACTIONS.includes(action as ControlAction)) {
      throw new UsageError(
        `unknown control command ${quote(action)}; expected one of ${CONTROL_ACTIONS.join(', ')}`,
      );
    }
    if (extra !== undefined) throw new UsageError(`unexpected argument ${quote(extra)}`);
    const agent = values.agent as string | undefined;
    if ((agent === undefined) === !values.all) {
      throw new UsageError('name the agent (--agent ID) or pass --all, one of the two');
    }
    const args = argsOf(action as ControlAction, values);
    const ttlMs = intFlag('ttl-ms', values['ttl-ms'] ?? DEFAULT_COMMAND_TTL_MS, 1, 2 ** 31 - 1);
    const waitMs = intFlag('wait-ms', values['wait-ms'] ?? 10_000, 0, 3_600_000);
    const store = resolveStore(values, io);
    if (store.kind !== 'postgres') {
      throw new UsageError(
        'fleet control needs Postgres: pass --database-url or set DATABASE_URL (an embedded store runs one agent; use its operator API)',
      );
    }
    const workspace = resolveWorkspace(values, io);
    const keyFile = values['chain-key-file'] as string | undefined;
    const key = await resolveChainKey({
      env: io.env,
      ...(keyFile !== undefined ? { keyFile: resolve(io.cwd, keyFile) } : {}),
      dataDir: resolveDataDir(values, io),
    });
    if (key.warning) io.stderr(`kora-opstate control: warning: ${key.warning}\n`);
    if (key.key === undefined) {
      throw new Error(
        `no chain key found (looked at: ${key.looked.join(', ')}); agents refuse a command not signed with theirs: set KORA_CHAIN_KEY or pass --chain-key-file`,
      );
    }
    const pool = openPool(store.url, cliLogger(io.env), 2);
    try {
      await applyMigrations(pool);
      let command: Awaited<ReturnType<typeof issueCommand>>;
      try {
        command = await issueCommand(pool, {
          workspaceId: workspace,
          action: action as ControlAction,
          target: agent ?? null,
          args,
          chainKey: key.key,
          issuedBy: `kora-opstate control (pid ${process.pid})`,
          ttlMs,
        });
      } catch (err) {
        if (err instanceof OperationalStateInputError) throw new UsageError(errorText(err));
        throw err;
      }
      const awaited = agent !== undefined ? [agent] : await liveAgents(pool, workspace);
      const outcomes =
        waitMs === 0
          ? []
          : await waitForOutcomes(pool, command.command_id, key.key, {
              agents: awaited,
              timeoutMs: waitMs,
            });
      const answered = new Set(outcomes.map((o) => o.agent_id));
      const pending = awaited.filter((a) => !answered.has(a));
      const failed = outcomes.some((o) => o.outcome !== 'applied' || !o.verified);
      const code = failed ? 1 : pending.length > 0 && waitMs > 0 ? 3 : 0;
      if (values.json) {
        io.stdout(`${JSON.stringify({ command, outcomes, pending })}\n`);
        return code;
      }
      const to = agent !== undefined ? `agent ${quote(agent)}` : 'every agent';
      io.stdout(
        `command #${command.command_id} ${action} → ${to} of workspace ${quote(workspace)} (expires ${command.expires_at.toISOString()})\n`,
      );
      const width = Math.max(5, ...[...answered, ...pending].map((a) => a.length));
      for (const o of outcomes) io.stdout(outcomeLine(o, width));
      for (const a of pending) {
        io.stdout(
          `  ${a.padEnd(width)}  pending  no answer within ${waitMs} ms: it applies the command when it comes back, until it expires\n`,
        );
      }
      if (agent === undefined && awaited.length === 0 && waitMs > 0) {
        io.stdout(`  (no live agent in the fleet registry: showing the answers of ${waitMs} ms)\n`);
      }
      return code;
    } finally {
      await pool.end();
    }
  },
};
