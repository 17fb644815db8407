/**
 * The `kora-opstate` command line: `start`, `table`, `diagram`, `verify-chain`, `events`,
 * `fleet`, `control`.
 * Argument parsing is `node:util` `parseArgs` (strict): a bad flag or value is exit code 2
 * with one line naming it (the flag, or the environment variable it came from) and a
 * pointer to `--help`.
 */
import { parseArgs } from 'node:util';
import {
  type CliIo,
  type Command,
  type CommandOptions as Options,
  UsageError,
  type CommandValues as Values,
} from './command.js';

const commands = new Map<string, () => Promise<Command>>([
  ['start', async () => (await import('./start.js')).startCommand],
  ['table', async () => (await import('./table.js')).tableCommand],
  ['diagram', async () => (await import('./table.js')).diagramCommand],
  ['verify-chain', async () => (await import('./chain.js')).verifyChainCommand],
  ['events', async () => (await import('./chain.js')).eventsCommand],
  ['fleet', async () => (await import('./fleet.js')).fleetCommand],
  ['control', async () => (await import('./control.js')).controlCommand],
]);

const SUMMARIES: Record<string, string> = {
  start: 'run the demo agent: boot gates, ticket poller, chain events, HTTP API and panel',
  table: 'print the §9.1 transition table',
  diagram: 'print the statechart (Mermaid, or SVG with --format svg)',
  'verify-chain': "recompute a workspace's hash chain; exit 1 and name the first broken link",
  events: 'print the newest chain events (--follow to keep printing)',
  fleet: 'show every agent of the workspace: state, reasons, last transition, live or gone',
  control: 'pause, reset, credit-refresh or stop one agent or all, through Postgres',
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
  return `Usage: kora-opstate ${cmd.name} ${alignOptions(cmd.usage)}\n`;
}

/** An option line: two spaces, the flag(s) and argument, two or more spaces, its text. */
const OPTION_LINE = /^ {2}(-\S.*?) {2,}(\S.*)$/;
/** A continuation of an option's text: indented deeper than the flags. */
const CONTINUATION = /^ {4,}(\S.*)$/;

/**
 * @internal The usage text with every option's description starting in one column, however
 * each command (and the shared store flags) padded its lines.
 */
export function alignOptions(usage: string): string {
  const lines = usage.split('\n');
  const width = Math.max(0, ...lines.map((l) => OPTION_LINE.exec(l)?.[1]?.length ?? 0));
  let inOption = false;
  return lines
    .map((l) => {
      const option = OPTION_LINE.exec(l);
      if (option) {
        inOption = true;
        return `  ${option[1]!.padEnd(width)}  ${option[2]}`;
      }
      const more = inOption ? CONTINUATION.exec(l) : null;
      if (more) return `${' '.repeat(width + 4)}${more[1]}`;
      inOption = false;
      return l;
    })
    .join('\n');
}

/** The one-line pointer printed under a usage error (instead of the whole help). */
const hint = (name?: string) =>
  name ? `run kora-opstate ${name} --help for its options\n` : 'run kora-opstate --help\n';

/** The flags a command knows, long form, for "did you mean". */
function knownFlags(options: Options): string[] {
  return [...Object.keys(options), 'help'].map((o) => `--${o}`);
}

/** Edit distance, for suggesting the flag a typo meant. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = row[j]!;
      row[j] = next;
    }
  }
  return row[b.length]!;
}

/**
 * `parseArgs`' error as one line naming the flag — not Node's advice about positionals.
 * @internal
 */
export function parseErrorText(err: unknown, options: Options): string {
  const e = err as { code?: string; message?: string };
  const message = String(e.message ?? err);
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = /'([^']+)'/.exec(message)?.[1] ?? message;
    const name = flag.split('=')[0]!;
    const near = knownFlags(options)
      .map((f) => ({ f, d: distance(name, f) }))
      .filter(({ d }) => d <= 2)
      .sort((x, y) => x.d - y.d)[0];
    return `unknown option ${name}${near ? ` (did you mean ${near.f}?)` : ''}`;
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const flag = /--[\w-]+/.exec(message)?.[0];
    if (flag && /argument missing/.test(message)) return `${flag} needs a value`;
    if (flag && /does not take an argument/.test(message)) return `${flag} takes no value`;
  }
  // Anything else: its first sentence.
  return message.split(/\.(\s|$)/)[0]!;
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
    cli.stderr(`kora-opstate: unknown command ${JSON.stringify(name)}\n${hint()}`);
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
    cli.stderr(`kora-opstate ${name}: ${parseErrorText(err, cmd.options)}\n${hint(name)}`);
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
      cli.stderr(`kora-opstate ${name}: ${err.message}\n${hint(name)}`);
      return 2;
    }
    // A message for people; the stack only when asked for (KORA_DEBUG=1).
    const text = err instanceof Error ? (cli.env.KORA_DEBUG ? err.stack : err.message) : err;
    cli.stderr(`kora-opstate ${name}: ${String(text)}\n`);
    return 1;
  }
}
