/**
 * Starts a child process — a TypeScript entry point (`test/support/agent.ts`, the CLI's
 * `bin.ts`) through tsx, or any command (`npm start`) — and follows its stdout lines.
 * Every child gets an explicit environment (`childEnv`: no inherited `DATABASE_URL` or
 * `KORA_*`); a child still running when the test process exits is killed (SIGKILL), so a
 * timed-out test leaves nothing behind. Tests still stop theirs in `finally` (`stop()`).
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { childEnv } from './env.js';

const script = fileURLToPath(new URL('./agent.ts', import.meta.url));

/** Children not yet exited: killed if this process exits first. */
const live = new Set<AgentProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

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
  /** Sends `signal` to the child, or to its whole process group when started with `group`. */
  kill(signal: NodeJS.Signals): void;
  /** SIGKILL (the group too) unless it has exited; resolves once it has. For `finally`. */
  stop(): Promise<void>;
}

export interface ProcessOptions {
  /** Added to `childEnv()` (PATH and HOME); `undefined` leaves a variable out. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /**
   * Its own process group (detached), as a shell starts a foreground job: `kill` then
   * signals the group, the way a terminal's Ctrl-C reaches npm, the shell and the agent.
   */
  group?: boolean;
}

/** The test agent (`test/support/agent.ts`), configured by `env`. */
export function startAgent(env: Record<string, string>): AgentProcess {
  return startTsProcess(script, [], env);
}

/** Any TypeScript entry point with arguments; the child's env is `childEnv(env)`. */
export function startTsProcess(
  entry: string,
  args: readonly string[],
  env: Record<string, string | undefined> = {},
): AgentProcess {
  return startProcess(process.execPath, ['--import', 'tsx', entry, ...args], { env });
}

/** Any command; the child's env is `childEnv(options.env)`. */
export function startProcess(
  command: string,
  args: readonly string[],
  options: ProcessOptions = {},
): AgentProcess {
  const child = spawn(command, args, {
    env: childEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(options.cwd ? { cwd: options.cwd } : {}),
    detached: options.group ?? false,
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
  const kill = (signal: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      // A group may outlive its leader (an orphaned agent): signal it either way.
      if (options.group) process.kill(-child.pid, signal);
      else if (!done) child.kill(signal);
    } catch {
      // Gone meanwhile.
    }
  };
  const proc: AgentProcess = {
    child,
    lines,
    exited,
    kill,
    async stop() {
      kill('SIGKILL');
      await exited;
    },
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
  live.add(proc);
  void exited.then(() => live.delete(proc));
  return proc;
}
