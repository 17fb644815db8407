/**
 * Packaging: `npm pack` → a tarball that installs into an empty folder and works there
 * from plain JavaScript (ESM), from TypeScript (types resolve), and as `npx kora-opstate`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'kora-pack-'));
const app = join(work, 'app');
const run = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, npm_config_loglevel: 'error' },
  });

describe('npm pack → install into an empty folder', () => {
  beforeAll(() => {
    // `prepare` builds dist/ as part of the pack.
    run('npm', ['pack', '--pack-destination', work], root);
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
    if (!tarball) throw new Error(`npm pack left no tarball in ${work}`);
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'app', private: true, type: 'module' }),
    );
    run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work, tarball)],
      app,
    );
  }, 240_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('works from plain JavaScript (ESM), the embedded PGlite chain included', () => {
    writeFileSync(
      join(app, 'main.mjs'),
      `import { createOperationalStateHolder, createPgliteSink, makeEmitListener, TRANSITION_TABLE } from '@kora/opstate';
const sink = createPgliteSink({ workspaceId: 'ws-pack', dataDir: 'memory://' });
await sink.start();
const h = createOperationalStateHolder();
h.addListener(makeEmitListener(sink));
await h.transitionTo('ready', 'all §9.2 gates pass');
const chain = await sink.verifyChain();
await sink.close();
console.log(JSON.stringify({ state: h.current.primaryState, rows: TRANSITION_TABLE.length, chain }));
`,
    );
    expect(JSON.parse(run(process.execPath, ['main.mjs'], app))).toEqual({
      state: 'ready',
      rows: 15,
      // The generic event and kora.boot.ready, hash-chained in the installed package's SQL.
      chain: { ok: true, events: 2 },
    });
  });

  it('works from TypeScript: the types resolve and are checked', () => {
    writeFileSync(
      join(app, 'main.ts'),
      `import { createOperationalStateHolder, type OperationalState, type PrimaryState } from '@kora/opstate';
const h = createOperationalStateHolder({ historySize: 5 });
const s: OperationalState = h.current;
const p: PrimaryState = s.primaryState;
export const ok: string = p;
`,
    );
    writeFileSync(
      join(app, 'bad.ts'),
      `import { createOperationalStateHolder } from '@kora/opstate';
await createOperationalStateHolder().transitionTo('degraded', 'x');
`,
    );
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const flags = [
      '--noEmit',
      '--strict',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
      '--skipLibCheck',
    ];
    expect(() => run(process.execPath, [tsc, ...flags, 'main.ts'], app)).not.toThrow();
    // The types are real: a state outside the vocabulary does not compile (tsc reports on stdout).
    let failure: { status?: number; stdout?: string } | undefined;
    try {
      run(process.execPath, [tsc, ...flags, 'bad.ts'], app);
    } catch (err) {
      failure = err as { status?: number; stdout?: string };
    }
    expect(failure?.status).toBe(2);
    expect(failure?.stdout).toMatch(/bad\.ts.*'"degraded"' is not assignable to .*'PrimaryState'/);
  });

  it('runs as `npx kora-opstate table`', () => {
    const out = run('npx', ['--no-install', 'kora-opstate', 'table'], app);
    expect(out).toContain('monthly credit refresh confirmed');
    expect(out.trim().split('\n')).toHaveLength(17);
  });
});
