/** Child processes of the bench: spawn `child.ts` in a mode, talk to it over IPC, stop it. */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));

export interface Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Sends `{ cmd, ...args }` and resolves with the child's reply to it. */
  ask<T = Record<string, unknown>>(cmd: string, args?: object, timeoutMs?: number): Promise<T>;
  /** Asks it to stop, then kills it if it has not exited within 5 s. */
  stop(): Promise<void>;
}

type Reply = { re?: string; error?: string; [k: string]: unknown };

/** Spawns `child.ts <mode> ...args`; resolves with it and its first message. */
export async function spawnChild(
  mode: string,
  args: string[] = [],
): Promise<{ child: Child; first: Reply }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(here, 'child.ts'), mode, ...args], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: process.env,
  });
  const exited = new Promise<never>((_, reject) => {
    proc.once('exit', (code, signal) =>
      reject(new Error(`bench child ${mode} exited (${code ?? signal})`)),
    );
  });
  exited.catch(() => {});
  const next = (re: string | undefined, timeoutMs: number) =>
    Promise.race([
      exited,
      new Promise<Reply>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`bench child ${mode}: no reply to ${re ?? 'start'}`)),
          timeoutMs,
        );
        const onMessage = (m: Reply) => {
          if (re !== undefined && m.re !== re) return;
          proc.off('message', onMessage);
          clearTimeout(timer);
          if (m.error) reject(new Error(`bench child ${mode}: ${m.error}`));
          else resolve(m);
        };
        proc.on('message', onMessage);
      }),
    ]);
  const first = await next(undefined, 60_000);
  let queue: Promise<unknown> = Promise.resolve();
  const child: Child = {
    proc,
    pid: proc.pid!,
    ask<T>(cmd: string, args: object = {}, timeoutMs = 60_000) {
      // One question at a time: replies are matched by command name.
      const p = queue.then(() => {
        const answer = next(cmd, timeoutMs);
        proc.send({ cmd, ...args });
        return answer;
      });
      queue = p.catch(() => {});
      return p as Promise<T>;
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise((resolve) => proc.once('exit', resolve));
      try {
        await Promise.race([child.ask('stop', {}, 5000), gone]);
      } catch {
        // it did not answer: killed below
      }
      proc.disconnect?.();
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    },
  };
  return { child, first };
}

/** CPU seconds process `pid` has used (user + system), from /proc (Linux, USER_HZ 100). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const run = promisify(execFile);
const autocannon = join(
  dirname(createRequire(import.meta.url).resolve('autocannon')),
  'autocannon.js',
);

/**
 * One autocannon run against `url`, in a process of its own: requests per wall-clock
 * second, and per CPU second of the server process `pid` (the cost, less moved by other
 * load on a shared machine). Any non-2xx answer or error fails the run.
 */
export async function autocannonLoad(
  url: string,
  pid: number,
  seconds: number,
  connections: number,
): Promise<{ rps: number; perCpu: number }> {
  const cpu = cpuSeconds(pid);
  const { stdout } = await run(
    process.execPath,
    [autocannon, '-j', '-c', String(connections), '-d', String(seconds), url],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  const r = JSON.parse(stdout) as {
    requests: { total: number };
    duration: number;
    non2xx: number;
    errors: number;
  };
  if (r.non2xx || r.errors) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors`);
  const used = cpuSeconds(pid) - cpu;
  return { rps: r.requests.total / r.duration, perCpu: r.requests.total / Math.max(used, 0.01) };
}
