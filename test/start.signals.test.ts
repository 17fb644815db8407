/**
 * One Ctrl-C on `kora-opstate start`, the way a terminal sends it: SIGINT to the whole
 * foreground process group (npm, the shell, the agent), which npm then forwards again.
 * Through `npm start`, `npx kora-opstate start` and `node dist/src/cli/bin.js start`, run
 * from a freshly built copy of the package: one graceful shutdown (pause, the claim
 * finishes, stop), the store's lock released, no "second signal".
 */
import { existsSync, mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentProcess, startProcess } from './support/agentProcess.js';
import { type BuiltPackage, buildPackageCopy } from './support/builtPackage.js';

let pkg: BuiltPackage;
/**
 * One embedded store for the whole file, used by one agent at a time: only the first
 * start pays for creating the PGlite cluster. Each test checks the lock is released.
 */
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'kora-sig-'));
  pkg = await buildPackageCopy();
}, 300_000);

afterAll(() => {
  pkg?.remove();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const FLAGS = ['--port', '0', '--ticket-every-ms', '0', '--work-ms', '300'];

/** Starts `command` in its own process group, waits for the boot line, sends one SIGINT to the group. */
async function ctrlC(
  command: string,
  args: (dataDir: string) => string[],
): Promise<{ p: AgentProcess; dataDir: string; exit: Awaited<AgentProcess['exited']> }> {
  const p = startProcess(command, args(dataDir), { cwd: pkg.dir, group: true });
  try {
    // The first PGlite start initialises its cluster: generous, this is where a process starts.
    await p.waitFor(/^\[kora-opstate\] boot +ready/);
    p.kill('SIGINT');
    return { p, dataDir, exit: await p.exited };
  } finally {
    await p.stop();
  }
}

/** What one graceful shutdown looks like in the agent's output. */
function expectOneGracefulShutdown(p: AgentProcess, dataDir: string): void {
  const out = `${p.lines.join('\n')}\n${p.stderr()}`;
  expect(out.match(/SIGINT: shutting down gracefully/g), out).toHaveLength(1);
  expect(
    p.lines.filter((l) => / → paused +pause /.test(l)),
    out,
  ).toHaveLength(1);
  expect(
    p.lines.filter((l) => /paused → stopped +stop .*STOP-KORA L5/.test(l)),
    out,
  ).toHaveLength(1);
  expect(out).toContain('shutdown (SIGINT): done, state stopped, exit 0');
  expect(out).not.toContain('second signal');
  expect(existsSync(join(dataDir, 'agent.lock.json'))).toBe(false);
}

describe('one Ctrl-C on kora-opstate start: graceful shutdown, exit 0', () => {
  it('npm start', async () => {
    const { p, dataDir, exit } = await ctrlC('npm', (dir) => [
      'start',
      '--',
      ...FLAGS,
      '--data-dir',
      dir,
    ]);
    expect(exit, p.stderr()).toEqual({ code: 0, signal: null });
    expectOneGracefulShutdown(p, dataDir);
  }, 240_000);

  it('node dist/src/cli/bin.js start', async () => {
    const { p, dataDir, exit } = await ctrlC(process.execPath, (dir) => [
      pkg.bin,
      'start',
      ...FLAGS,
      '--data-dir',
      dir,
    ]);
    expect(exit, p.stderr()).toEqual({ code: 0, signal: null });
    expectOneGracefulShutdown(p, dataDir);
  }, 240_000);

  it('npx kora-opstate start (the agent exits 0; dash as /bin/sh makes npx report SIGINT)', async () => {
    const { p, dataDir, exit } = await ctrlC('npx', (dir) => [
      '--no-install',
      'kora-opstate',
      'start',
      ...FLAGS,
      '--data-dir',
      dir,
    ]);
    expectOneGracefulShutdown(p, dataDir);
    // npx runs the bin through `sh -c`. dash, unlike bash, kills itself with the SIGINT it
    // got once its child has ended, however the child ended; npm then re-raises it. The
    // agent's own exit code is the line above ("exit 0").
    const sh = (() => {
      try {
        return basename(readlinkSync('/bin/sh'));
      } catch {
        return 'sh'; // not a link: a shell of its own
      }
    })();
    expect(exit, p.stderr()).toEqual(
      sh === 'dash' ? { code: null, signal: 'SIGINT' } : { code: 0, signal: null },
    );
  }, 240_000);

  it('kill -TERM of the npm pid (a background `npm start &`) stops the agent gracefully, exit 0', async () => {
    const p = startProcess('npm', ['start', '--', ...FLAGS, '--data-dir', dataDir], {
      cwd: pkg.dir,
      group: true,
    });
    try {
      await p.waitFor(/^\[kora-opstate\] boot +ready/);
      p.child.kill('SIGTERM'); // npm alone, as `kill -TERM $!` does
      expect(await p.exited, p.stderr()).toEqual({ code: 0, signal: null });
      const out = `${p.lines.join('\n')}\n${p.stderr()}`;
      expect(out.match(/SIGTERM: shutting down gracefully/g), out).toHaveLength(1);
      expect(out).toContain('shutdown (SIGTERM): done, state stopped, exit 0');
      expect(existsSync(join(dataDir, 'agent.lock.json'))).toBe(false);
    } finally {
      await p.stop();
    }
  }, 240_000);
});
