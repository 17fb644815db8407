/**
 * Starts a TypeScript entry point (`test/support/agent.ts`, the CLI's `bin.ts`) as a child
 * process through tsx and follows its stdout lines.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('./agent.ts', import.meta.url));

export interface AgentProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** Every stdout line so far. */
  readonly lines: string[];
  /** Resolves with the first line (past or future) matching; rejects if the agent exits first. */
  waitFor(match: string | RegExp): Promise<string>;
  /** Writes one line to the agent's stdin. */
  send(line: string): void;
  /** Resolves once the agent has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The parsed `final` line, if printed. */
  final(): Record<string, unknown> | undefined;
  /** stderr so far (for failure messages). */
  stderr(): string;
}

/** The test agent (`test/support/agent.ts`), configured by `env`. */
export function startAgent(env: Record<string, string>): AgentProcess {
  return startTsProcess(script, [], env);
}

/** Any TypeScript entry point with arguments; `env` is added to this process's. */
export function startTsProcess(
  entry: string,
  args: readonly string[],
  env: Record<string, string | undefined> = {},
): AgentProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let err = '';
  let partial = '';
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    partial += chunk;
    let i = partial.indexOf('\n');
    while (i >= 0) {
      lines.push(partial.slice(0, i));
      partial = partial.slice(i + 1);
      i = partial.indexOf('\n');
    }
    for (const w of waiters) w();
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      done = true;
      // Lines still in the pipe arrive before 'close'.
      child.on('close', () => {
        for (const w of waiters) w();
        resolve({ code, signal });
      });
    });
  });
  const matches = (line: string, m: string | RegExp) =>
    typeof m === 'string' ? line.includes(m) : m.test(line);
  return {
    child,
    lines,
    exited,
    send: (line) => child.stdin.write(`${line}\n`),
    stderr: () => err,
    final() {
      const line = lines.find((l) => l.startsWith('final '));
      return line ? JSON.parse(line.slice('final '.length)) : undefined;
    },
    waitFor(match) {
      return new Promise<string>((resolve, reject) => {
        const check = () => {
          const line = lines.find((l) => matches(l, match));
          if (line !== undefined) {
            waiters.delete(check);
            resolve(line);
          } else if (done && child.stdout.readableEnded) {
            waiters.delete(check);
            reject(
              new Error(
                `agent exited before printing ${String(match)}:\n${lines.join('\n')}\n${err}`,
              ),
            );
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
}
