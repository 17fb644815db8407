/**
 * The embedded store's lock (src/cli/lock.ts) between real processes: two takers released
 * together by a barrier (exactly one wins, every time), owner-checked update/release, a
 * stale lock of a kill -9'd process taken over (also by two racing takers), and two real
 * `kora-opstate start` processes on one directory.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { acquireStoreLock, readStoreLock } from '../src/cli/store.js';
import { tempDirs } from './support/cli.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const taker = fileURLToPath(new URL('./support/lockTaker.ts', import.meta.url));
const bin = fileURLToPath(new URL('../src/cli/bin.ts', import.meta.url));
const LOCK = 'agent.lock.json';

const tempDir = tempDirs('kora-lock-');

/** A child process with an explicit environment (no DATABASE_URL, no KORA_*). */
interface Child {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly pid: number;
  readonly lines: string[];
  /** The first line (past or future) starting with `prefix`; rejects if the child exits first. */
  line(prefix: string): Promise<string>;
  send(line: string): void;
  readonly exited: Promise<number | null>;
  stderr(): string;
}

function child(entry: string, args: string[] = []): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', entry, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir() },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let partial = '';
  let err = '';
  let done = false;
  const waiters = new Set<() => void>();
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (chunk: string) => {
    partial += chunk;
    let i = partial.indexOf('\n');
    while (i >= 0) {
      lines.push(partial.slice(0, i));
      partial = partial.slice(i + 1);
      i = partial.indexOf('\n');
    }
    for (const w of waiters) w();
  });
  proc.stderr.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((resolve) => {
    proc.on('close', (code) => {
      done = true;
      for (const w of waiters) w();
      resolve(code);
    });
  });
  return {
    proc,
    pid: proc.pid!,
    lines,
    exited,
    send: (line) => proc.stdin.write(`${line}\n`),
    stderr: () => err,
    line(prefix) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.find((l) => l.startsWith(prefix));
          if (found !== undefined) {
            waiters.delete(check);
            resolve(found);
          } else if (done) {
            waiters.delete(check);
            reject(
              new Error(`child exited before printing ${prefix}:\n${lines.join('\n')}\n${err}`),
            );
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
}

const kill = (c: Child) => {
  if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
};

/** Both takers get `go` at once; resolves with each one's answer. */
async function race(a: Child, b: Child, trial: number, dir: string) {
  a.send(`go ${trial} ${dir}`);
  b.send(`go ${trial} ${dir}`);
  const [ra, rb] = await Promise.all([a.line(`${trial} `), b.line(`${trial} `)]);
  return [ra.slice(`${trial} `.length), rb.slice(`${trial} `.length)] as const;
}

const lockIn = (dir: string) => JSON.parse(readFileSync(join(dir, LOCK), 'utf8'));
/** Anything the lock left in the directory besides the lock itself (guards, temp files). */
const leftovers = (dir: string) => readdirSync(dir).filter((f) => f !== LOCK);

describe('two takers at the same moment', () => {
  it('20 trials, a fresh directory each: exactly one wins, the other names its pid', async () => {
    const a = child(taker);
    const b = child(taker);
    try {
      await Promise.all([a.line('ready'), b.line('ready')]);
      for (let trial = 1; trial <= 20; trial++) {
        const dir = tempDir();
        const [ra, rb] = await race(a, b, trial, dir);
        const outcomes = [ra, rb].map((r) => r.split(' ')[0]).sort();
        expect(outcomes, `trial ${trial}: ${ra} | ${rb}`).toEqual(['lost', 'won']);
        const [winner, loserAnswer] = ra === 'won' ? [a, rb] : [b, ra];
        expect(loserAnswer).toContain(`in use by another kora-opstate start (pid ${winner.pid},`);
        expect(lockIn(dir)).toMatchObject({
          pid: winner.pid,
          token: expect.stringMatching(/^[0-9a-f]{32}$/),
        });
        winner.send(`release ${trial}`);
        await winner.line(`${trial} released`);
        expect(readdirSync(dir)).toEqual([]);
      }
    } finally {
      kill(a);
      kill(b);
    }
  }, 120_000);
});

describe('ownership', () => {
  it('names the holder pid and URL; release() and update() never touch another owner', async () => {
    const dir = tempDir();
    const mine = await acquireStoreLock(dir);
    await mine.update('http://127.0.0.1:7070');
    // A second take in this same process is refused too: the holder is alive.
    await expect(acquireStoreLock(dir)).rejects.toThrow(
      `the embedded store ${dir} is in use by another kora-opstate start (pid ${process.pid}, http://127.0.0.1:7070)`,
    );

    // The file goes (deleted by hand) and another process takes the store.
    rmSync(join(dir, LOCK));
    const other = child(taker);
    try {
      await other.line('ready');
      other.send(`go 1 ${dir}`);
      expect(await other.line('1 ')).toBe('1 won');
      const theirs = lockIn(dir);
      expect(theirs.pid).toBe(other.pid);

      await expect(mine.update('http://127.0.0.1:9999')).rejects.toThrow(
        `lost the lock on the embedded store ${dir}: it is now held by pid ${other.pid}`,
      );
      await mine.release();
      expect(lockIn(dir)).toEqual(theirs);
      expect(await readStoreLock(dir)).toEqual(theirs);

      // Its owner can still update and release it.
      other.send('update 2 http://127.0.0.1:8080');
      expect(await other.line('2 ')).toBe('2 updated');
      expect(lockIn(dir)).toEqual({ ...theirs, url: 'http://127.0.0.1:8080' });
      other.send('release 3');
      await other.line('3 released');
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      kill(other);
    }
  }, 60_000);
});

describe('a stale lock', () => {
  it('of a kill -9ed agent is ignored by readers and taken over; two takers: one wins', async () => {
    const first = tempDir();
    const gone = child(taker);
    let stale: string;
    try {
      await gone.line('ready');
      gone.send(`go 1 ${first}`);
      expect(await gone.line('1 ')).toBe('1 won');
      gone.send('update 2 http://127.0.0.1:9');
      await gone.line('2 updated');
      gone.proc.kill('SIGKILL');
      await gone.exited;
    } finally {
      kill(gone);
    }
    stale = readFileSync(join(first, LOCK), 'utf8');
    expect(JSON.parse(stale)).toMatchObject({ pid: gone.pid, url: 'http://127.0.0.1:9' });
    // Readers (events, verify-chain) open the directory themselves.
    expect(await readStoreLock(first)).toBeUndefined();

    const mine = await acquireStoreLock(first);
    expect(lockIn(first)).toMatchObject({ pid: process.pid });
    expect(leftovers(first)).toEqual([]);
    await mine.release();

    // The same stale lock, two takers at once, 10 fresh directories: never both.
    const a = child(taker);
    const b = child(taker);
    try {
      await Promise.all([a.line('ready'), b.line('ready')]);
      for (let trial = 1; trial <= 10; trial++) {
        const dir = tempDir();
        writeFileSync(join(dir, LOCK), stale);
        const [ra, rb] = await race(a, b, trial, dir);
        expect(
          [ra, rb].map((r) => r.split(' ')[0]).sort(),
          `trial ${trial}: ${ra} | ${rb}`,
        ).toEqual(['lost', 'won']);
        const winner = ra === 'won' ? a : b;
        expect(ra === 'won' ? rb : ra).toContain(`(pid ${winner.pid},`);
        expect(lockIn(dir).pid).toBe(winner.pid);
        expect(leftovers(dir)).toEqual([]);
        winner.send(`release ${trial}-r`);
        await winner.line(`${trial}-r released`);
      }
    } finally {
      kill(a);
      kill(b);
    }
  }, 120_000);

  it('left half-written by a taker that died, or behind an abandoned takeover guard, does not hold the store', async () => {
    // Created, never written (the taker died between its create and its write), a minute ago.
    const torn = tempDir();
    writeFileSync(join(torn, LOCK), '');
    const old = new Date(Date.now() - 60_000);
    await utimes(join(torn, LOCK), old, old);
    const a = await acquireStoreLock(torn);
    expect(lockIn(torn).pid).toBe(process.pid);
    await a.release();

    // A taker died while it held the takeover guard: its guard does not block the next one.
    const guarded = tempDir();
    const dead = child(taker);
    dead.proc.kill('SIGKILL');
    await dead.exited;
    writeFileSync(join(guarded, LOCK), JSON.stringify({ pid: dead.pid, token: 'a'.repeat(32) }));
    writeFileSync(
      join(guarded, `${LOCK}.takeover`),
      JSON.stringify({ pid: dead.pid, token: 'b'.repeat(32) }),
    );
    const b = await acquireStoreLock(guarded);
    expect(lockIn(guarded).pid).toBe(process.pid);
    expect(leftovers(guarded)).toEqual([]);
    await b.release();
  }, 60_000);
});

describe('two kora-opstate start on one directory', () => {
  it('one runs, the other exits 1 naming the holder pid', async () => {
    const dir = tempDir();
    const args = ['start', '--port', '0', '--data-dir', dir, '--ticket-every-ms', '0'];
    const one = child(bin, args);
    const two = child(bin, args);
    try {
      // Whichever lost exits 1; the winner prints its panel and keeps running.
      const loser = await Promise.race([one.exited.then(() => one), two.exited.then(() => two)]);
      const winner = loser === one ? two : one;
      expect(await loser.exited).toBe(1);
      expect(loser.stderr()).toContain(
        `kora-opstate start: the embedded store ${dir} is in use by another kora-opstate start (pid ${winner.pid},`,
      );
      const panel = await winner.line('[kora-opstate] panel');
      expect(panel).toMatch(/panel +http:\/\/127\.0\.0\.1:\d+\//);
      expect(winner.proc.exitCode).toBeNull();
      expect(lockIn(dir).pid).toBe(winner.pid);
    } finally {
      kill(one);
      kill(two);
    }
  }, 120_000);
});
