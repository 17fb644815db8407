/**
 * The `kora-opstate` command line: `start`, `table`, `diagram`, `verify-chain`, `events`.
 * Argument parsing is `node:util` `parseArgs` (strict): a bad flag is exit code 2.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type CliIo, UsageError } from './io.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

/** @internal One sub-command. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Usage text after the command name, and option lines. */
  readonly usage: string;
  readonly options: Options;
  run(values: Values, positionals: string[], io: CliIo): Promise<number>;
}

const commands = new Map<string, () => Promise<Command>>([
  ['start', async () => (await import('./start.js')).startCommand],
  ['table', async () => (await import('./table.js')).tableCommand],
  ['diagram', async () => (await import('./table.js')).diagramCommand],
  ['verify-chain', async () => (await import('./chain.js')).verifyChainCommand],
  ['events', async () => (await import('./chain.js')).eventsCommand],
]);

const SUMMARIES: Record<string, string> = {
  start: 'run the demo agent: boot gates, ticket poller, chain events, HTTP API and panel',
  table: 'print the §9.1 transition table',
  diagram: 'print the statechart (Mermaid, or SVG with --format svg)',
  'verify-chain': "recompute a workspace's hash chain; exit 1 and name the first broken link",
  events: 'print the newest chain events (--follow to keep printing)',
};

function topHelp(): string {
  const width = Math.max(...[...commands.keys()].map((c) => c.length));
  return [
    'Usage: kora-opstate <command> [options]',
    '',
    'Commands:',
    ...[...commands.keys()].map((c) => `  ${c.padEnd(width)}  ${SUMMARIES[c]}`),
    '',
    "Run `kora-opstate <command> --help` for a command's options.",
    '',
  ].join('\n');
}

function commandHelp(cmd: Command): string {
  return `Usage: kora-opstate ${cmd.name} ${cmd.usage}\n`;
}

/**
 * Runs the CLI; resolves to the exit code (0 ok, 1 failure, 2 usage).
 *
 * @example
 * process.exitCode = await runCli(process.argv.slice(2));
 */
export async function runCli(argv: readonly string[], io: Partial<CliIo> = {}): Promise<number> {
  const cli: CliIo = {
    stdout: io.stdout ?? ((t) => process.stdout.write(t)),
    stderr: io.stderr ?? ((t) => process.stderr.write(t)),
    env: io.env ?? process.env,
    cwd: io.cwd ?? process.cwd(),
  };
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? cli.stderr : cli.stdout)(topHelp());
    return name === undefined ? 2 : 0;
  }
  const load = commands.get(name);
  if (!load) {
    cli.stderr(`kora-opstate: unknown command ${JSON.stringify(name)}\n\n${topHelp()}`);
    return 2;
  }
  const cmd = await load();
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...rest],
      options: { ...cmd.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    }) as { values: Values; positionals: string[] };
  } catch (err) {
    cli.stderr(`kora-opstate ${name}: ${(err as Error).message}\n\n${commandHelp(cmd)}`);
    return 2;
  }
  if (parsed.values.help) {
    cli.stdout(commandHelp(cmd));
    return 0;
  }
  try {
    return await cmd.run(parsed.values, parsed.positionals, cli);
  } catch (err) {
    if (err instanceof UsageError) {
      cli.stderr(`kora-opstate ${name}: ${err.message}\n\n${commandHelp(cmd)}`);
      return 2;
    }
    // A message for people; the stack only when asked for (KORA_DEBUG=1).
    const text = err instanceof Error ? (cli.env.KORA_DEBUG ? err.stack : err.message) : err;
    cli.stderr(`kora-opstate ${name}: ${String(text)}\n`);
    return 1;
  }
}
