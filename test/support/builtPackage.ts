/**
 * A private built copy of this package for tests that run what a user runs (`npm start`,
 * `npx kora-opstate`, `node dist/...`): package.json, the sources and tsconfig files copied
 * into a temp directory, `node_modules` linked, and the build's JavaScript emitted there.
 * The repository's own `dist/` is not used: `npm pack` (pack.test.ts) rebuilds it from
 * scratch while other test files run, and it may be older than the sources.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');

export interface BuiltPackage {
  /** The package's root: `npm start` runs here. */
  readonly dir: string;
  /** `dist/src/cli/bin.js` in it. */
  readonly bin: string;
  /** Removes the copy. */
  remove(): void;
}

/**
 * Copies and builds the package (`tsc -p tsconfig.build.json --noCheck`: the JavaScript
 * the `build` script emits; type errors are `npm run typecheck`'s business).
 *
 * @example
 * const pkg = await buildPackageCopy();
 * try { spawn('npm', ['start'], { cwd: pkg.dir }); } finally { pkg.remove(); }
 */
export async function buildPackageCopy(): Promise<BuiltPackage> {
  const dir = mkdtempSync(join(tmpdir(), 'kora-built-'));
  try {
    for (const entry of [
      'package.json',
      'tsconfig.json',
      'tsconfig.build.json',
      'src',
      'machines',
      'scripts', // npm run build (npx runs it as prepare) makes the PGlite template with one
    ]) {
      cpSync(join(root, entry), join(dir, entry), { recursive: true });
    }
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
    await run(
      process.execPath,
      [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--noCheck'],
      { cwd: dir, timeout: 300_000 },
    );
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`building a copy of the package failed: ${e.stdout || e.stderr || e.message}`);
  }
  return {
    dir,
    bin: join(dir, 'dist/src/cli/bin.js'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
