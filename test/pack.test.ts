/**
 * Packaging: `npm pack` → a tarball that installs into an empty folder and works there
 * from plain JavaScript (ESM and `require`), from TypeScript (types resolve and check with
 * `skipLibCheck: false`, needing no `@types/*` but Node's), as `npx kora-opstate`, and with
 * stack traces and source maps that point at files the package ships.
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainOk } from './support/chainResult.js';
import { childEnv } from './support/env.js';

const root = resolve(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'kora-pack-'));
const app = join(work, 'app');
const run = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    env: childEnv({ npm_config_loglevel: 'error' }),
    // A hung child would block this worker (the call is synchronous): killed past this.
    timeout: 180_000,
  });
/** The installed package. */
const installed = join(app, 'node_modules', '@kora', 'opstate');
/** Node's types, as any TypeScript project on Node has them (the version this repo uses). */
const nodeTypes = `@types/node@${JSON.parse(readFileSync(join(root, 'node_modules/@types/node/package.json'), 'utf8')).version}`;

// Each test starts Node processes (PGlite's WebAssembly, tsc over every declaration): the
// timeouts are for a busy machine.
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
      ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work, tarball), nodeTypes],
      app,
    );
  }, 240_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('works from plain JavaScript (ESM), the embedded PGlite chain and the status server included', () => {
    writeFileSync(
      join(app, 'main.mjs'),
      `import { createOperationalStateHolder, createPgliteSink, makeEmitListener, startStatusServer, TRANSITION_TABLE } from '@kora/opstate';
const sink = createPgliteSink({ workspaceId: 'ws-pack', dataDir: 'memory://' });
await sink.start();
const h = createOperationalStateHolder();
const emitter = makeEmitListener(sink);
h.addListener(emitter);
await h.transitionTo('ready', 'all §9.2 gates pass');
// The emit listener itself is the emitter option.
const status = await startStatusServer({ holder: h, sink, emitter });
const health = (await (await fetch(status.url + '/api/operational-state')).json()).chain;
await status.close();
const chain = await sink.verifyChain();
await sink.close();
// No process.exit: once closed, nothing holds the process.
console.log(JSON.stringify({ state: h.current.primaryState, rows: TRANSITION_TABLE.length, chain, health }));
`,
    );
    expect(JSON.parse(run(process.execPath, ['main.mjs'], app))).toEqual({
      state: 'ready',
      rows: 15,
      // The generic event and kora.boot.ready, hash-chained in the installed package's SQL.
      chain: chainOk(2),
      health: {
        emitted: 2,
        failures: 0,
        last_error: null,
        outbox_depth: 0,
        dropped: 0,
        refused: 0,
      },
    });
  }, 60_000);

  it('ships the panel files next to the built panel, and the built package serves the panel', () => {
    // The build copies them (tsc compiles only TypeScript): the HTML, the CSS, the client.
    const shipped = readdirSync(join(installed, 'dist/src/http/panel')).sort();
    for (const f of ['panel.css', 'panel.html', 'panel.js', 'statechart.css']) {
      expect(shipped).toContain(f);
    }
    // No TypeScript source in dist: a consumer's tsc would pick it over the .d.ts.
    expect(shipped.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    writeFileSync(
      join(app, 'panel.mjs'),
      `import { createOperationalStateHolder, startStatusServer } from '@kora/opstate';
const h = createOperationalStateHolder();
await h.transitionTo('ready', 'all §9.2 gates pass');
const status = await startStatusServer({ holder: h });
const res = await fetch(status.url + '/');
const html = await res.text();
await status.close();
console.log(JSON.stringify({ code: res.status, csp: res.headers.get('content-security-policy'), html }));
`,
    );
    const out = JSON.parse(run(process.execPath, ['panel.mjs'], app));
    expect(out.code).toBe(200);
    expect(out.csp).toContain("default-src 'none'");
    const file = (f: string) => readFileSync(join(installed, 'dist/src/http/panel', f), 'utf8');
    // Every file inlined whole, the status embedded, no {{slot}} left unfilled.
    for (const f of ['panel.css', 'panel.js', 'statechart.css'])
      expect(out.html).toContain(file(f));
    expect(out.html).toContain('"primary_state":"ready"');
    expect(out.html).toContain('<svg class="statechart"');
    expect(out.html).not.toMatch(/\{\{\w+\}\}/);
    // The standalone diagram (the CLI's `diagram --format svg`) carries the same styles.
    const svg = run(
      join(app, 'node_modules/.bin/kora-opstate'),
      ['diagram', '--format', 'svg'],
      app,
    );
    expect(svg).toContain(file('statechart.css'));
  }, 60_000);

  it('works from CommonJS: require() loads it (Node ≥ 20.19 loads ES modules from require)', () => {
    writeFileSync(
      join(app, 'main.cjs'),
      `const { createOperationalStateHolder, createPgliteSink, makeEmitListener } = require('@kora/opstate');
(async () => {
  const sink = createPgliteSink({ workspaceId: 'ws-cjs', dataDir: 'memory://' });
  await sink.start();
  const h = createOperationalStateHolder();
  h.addListener(makeEmitListener(sink));
  await h.transitionTo('ready', 'all §9.2 gates pass');
  const { ok, events } = await sink.verifyChain();
  await sink.close();
  console.log(JSON.stringify({ state: h.current.primaryState, ok, events }));
})();
`,
    );
    expect(JSON.parse(run(process.execPath, ['main.cjs'], app))).toEqual({
      state: 'ready',
      ok: true,
      events: 2,
    });
  }, 60_000);

  it('names files the package ships in stack traces and source maps', () => {
    writeFileSync(
      join(app, 'trace.mjs'),
      `import { createPgliteSink } from '@kora/opstate';
try { createPgliteSink({ dataDir: '' }); } catch (err) { console.log(err.stack); }
`,
    );
    const frames = (stack: string) =>
      [
        ...stack.matchAll(
          /(?:file:\/\/)?(\/[^\s()]*node_modules\/@kora\/opstate\/[^\s():]+):(\d+):\d+/g,
        ),
      ].map((m) => ({ file: m[1]!, line: Number(m[2]) }));
    // Plain: the JavaScript; with --enable-source-maps: the TypeScript it came from.
    const plain = frames(run(process.execPath, ['trace.mjs'], app));
    const mapped = frames(run(process.execPath, ['--enable-source-maps', 'trace.mjs'], app));
    const at = realpathSync(installed); // as Node names loaded modules
    expect(plain[0]?.file).toBe(join(at, 'dist/src/sinks/pglite.js'));
    expect(mapped[0]?.file).toBe(join(at, 'src/sinks/pglite.ts'));
    for (const { file, line } of [...plain, ...mapped]) {
      expect(existsSync(file), file).toBe(true);
      // The frame's line is the throw (the error is built over the next lines).
      expect(readFileSync(file, 'utf8').split('\n')[line - 1]).toContain(
        'OperationalStateInputError',
      );
    }
    // Every source a map (JavaScript or declaration) names is in the package.
    const maps = readdirSync(join(installed, 'dist'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.map'))
      .map((f) => join(installed, 'dist', f));
    expect(maps.some((m) => m.endsWith('index.d.ts.map'))).toBe(true);
    const missing = maps.flatMap((m) =>
      (JSON.parse(readFileSync(m, 'utf8')) as { sources: string[] }).sources
        .map((src) => resolve(dirname(m), src))
        .filter((src) => !existsSync(src)),
    );
    expect(missing).toEqual([]);
  }, 60_000);

  it('works from TypeScript (strict, skipLibCheck false, only @types/node): the types resolve and are checked', () => {
    writeFileSync(
      join(app, 'main.ts'),
      `import {
  createOperationalStateHolder,
  createPgliteSink,
  createPostgresSink,
  makeEmitListener,
  type OperationalState,
  type PgPoolLike,
  type PrimaryState,
  startStatusServer,
} from '@kora/opstate';
const h = createOperationalStateHolder({ historySize: 5 });
const s: OperationalState = h.current;
const p: PrimaryState = s.primaryState;
export const ok: string = p;
// The embedding surface: both sinks (no @types/pg, no PGlite types), the status server
// with the emit listener itself as its emitter.
export async function embed(pool?: PgPoolLike): Promise<void> {
  const sink = createPgliteSink({ workspaceId: 'ws', dataDir: 'memory://' });
  await sink.start();
  const emitter = makeEmitListener(sink);
  h.addListener(emitter);
  const status = await startStatusServer({ holder: h, sink, emitter });
  console.log('panel: ' + status.url);
  await status.close();
  await sink.close();
  const store = pool ? { pool } : { connectionString: 'postgres://127.0.0.1/app' };
  const pg = createPostgresSink({ workspaceId: 'ws', ...store });
  await pg.close();
}
`,
    );
    // A CommonJS TypeScript file imports it too (compiled to require()).
    writeFileSync(
      join(app, 'main.cts'),
      `import { createOperationalStateHolder, type PrimaryState } from '@kora/opstate';
export const p: PrimaryState = createOperationalStateHolder().current.primaryState;
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
      // The package's declarations and everything they reach are checked.
      '--skipLibCheck',
      'false',
    ];
    let errors: string | undefined;
    try {
      run(process.execPath, [tsc, ...flags, 'main.ts', 'main.cts'], app);
    } catch (err) {
      errors = (err as { stdout?: string }).stdout || String(err);
    }
    expect(errors).toBeUndefined();
    // The types are real: a state outside the vocabulary does not compile (tsc reports on stdout).
    let failure: { status?: number; stdout?: string } | undefined;
    try {
      run(process.execPath, [tsc, ...flags, 'bad.ts'], app);
    } catch (err) {
      failure = err as { status?: number; stdout?: string };
    }
    expect(failure?.status).toBe(2);
    expect(failure?.stdout).toMatch(/bad\.ts.*'"degraded"' is not assignable to .*'PrimaryState'/);
  }, 180_000);

  it('runs as `npx kora-opstate table`', () => {
    const out = run('npx', ['--no-install', 'kora-opstate', 'table'], app);
    expect(out).toContain('monthly credit refresh confirmed');
    expect(out.trim().split('\n')).toHaveLength(17);
  });
});
