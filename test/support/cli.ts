/**
 * What the CLI suites share: the `kora-opstate` entry point, temp dirs removed after the
 * file's tests, and one short command run to its end in an explicit environment.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { childEnv } from './env.js';

/** The CLI's TypeScript entry point (run through tsx). */
export const CLI_BIN = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));

/**
 * A maker of temp dirs named `<prefix>…`, each removed after the calling file's tests.
 * Call it at a test file's top level.
 *
 * @example
 * const tempDir = tempDirs('kora-cli-');
 * const dataDir = tempDir();
 */
export function tempDirs(prefix: string): () => string {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
}

/** Runs one CLI command to its end; `env` is added to `childEnv()` (PATH, HOME). */
export function runCli(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', CLI_BIN, ...args],
      { env: childEnv(env), timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
