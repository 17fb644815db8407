/**
 * Agent start-up, on the real CLI: time from spawn to the first `200 /readyz` of
 * `node dist/src/cli/bin.js start` (built first if `dist` is missing), and the resident
 * set of the running agent (VmRSS from /proc, not only the V8 heap) right then.
 * - PGlite: a fresh data directory (the first start creates the database: unpacked from
 *   the template the build ships, else initdb — the note says which) vs. an existing one;
 * - Postgres (127.0.0.1:5432, db `test`): a fresh schema (migrations run) vs. an existing
 *   one (throwaway schemas, dropped afterwards);
 * - `npm start` vs. the built CLI's start, both on an existing PGlite directory.
 * Every agent is spawned with an explicit environment in its own process group, idle
 * (no demo tickets), on a free port, and stopped (SIGTERM, then SIGKILL after 10 s).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { throwawaySchema } from './chain.js';
import { databaseUrl, paired, row, rssMiB, type SuiteOptions } from './stats.js';
import type { BenchRow } from './types.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'dist', 'src', 'cli', 'bin.js');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The environment an agent gets: only what it needs (no DATABASE_URL unless asked). */
function agentEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...extra };
  for (const k of ['HOME', 'TMPDIR', 'LANG']) if (process.env[k]) env[k] = process.env[k];
  return env;
}

interface Started {
  /** Spawn to the first 200 from /readyz. */
  ms: number;
  /** VmRSS of the agent process at that moment (MiB); NaN through npm. */
  rss: number;
  /** How a new PGlite store was made, from the agent's own lines (none: it existed). */
  made: 'template' | 'initdb' | undefined;
}

/** Spawns `cmd args` (an agent on `port`), waits for /readyz, reads its RSS, stops it. */
async function startOnce(
  cmd: string,
  args: string[],
  port: number,
  env: NodeJS.ProcessEnv,
  rss: boolean,
): Promise<Started> {
  const t = performance.now();
  let output = '';
  const child: ChildProcess = spawn(cmd, args, {
    cwd: repo,
    env,
    detached: true, // its own process group: npm's children are stopped with it
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => {
    output = (output + d).slice(-4000);
  });
  child.stderr!.on('data', (d) => {
    output = (output + d).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `agent exited (${child.exitCode ?? child.signalCode}) before ready:\n${output}`,
        );
      }
      if (performance.now() - t > 60_000) throw new Error(`agent not ready in 60 s:\n${output}`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/readyz`);
        await res.arrayBuffer();
        if (res.status === 200) break;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const ms = performance.now() - t;
    const made = /unpacked from the template/.test(output)
      ? 'template'
      : /initdb/.test(output)
        ? 'initdb'
        : undefined;
    return { ms, rss: rss ? await rssMiB(child.pid!) : Number.NaN, made };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 10_000);
      await exited;
      clearTimeout(timer);
    }
  }
}

/** Flags of an idle agent on `port` with its data (and chain key, lock) in `dir`. */
const agentArgs = (port: number, dir: string) => [
  '--port',
  String(port),
  '--data-dir',
  dir,
  '--tickets',
  '0',
  '--ticket-every-ms',
  '0',
];

export async function benchStart(options: SuiteOptions = {}): Promise<BenchRow[]> {
  const rounds = options.rounds ?? 5;
  if (!existsSync(bin)) {
    process.stderr.write('bench: dist is missing; npm run build…\n');
    await promisify(execFile)('npm', ['run', 'build'], { cwd: repo });
  }
  const temp = await mkdtemp(join(tmpdir(), 'kora-bench-start-'));
  const db = await throwawaySchema(databaseUrl(options), 'bench_start');
  const fresh: { drop(): Promise<void> }[] = [];
  try {
    const port = await freePort();
    const node = (dir: string, env = agentEnv()) =>
      startOnce(process.execPath, [bin, 'start', ...agentArgs(port, dir)], port, env, true);
    const rows: BenchRow[] = [];
    const existing = join(temp, 'existing');
    await node(existing); // creates it: the existing directory of every later start
    let k = 0;
    const pglite = { fresh: [] as Started[], existing: [] as Started[] };
    const pgliteRuns = await paired(
      rounds,
      async () => {
        const s = await node(existing);
        pglite.existing.push(s);
        return s.ms;
      },
      {
        fresh: async () => {
          const dir = join(temp, `fresh-${++k}`);
          try {
            const s = await node(dir);
            pglite.fresh.push(s);
            return s.ms;
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        },
      },
    );
    // `paired` ran one warm-up pair first: its samples are the first of each list.
    pglite.fresh.shift();
    pglite.existing.shift();
    // Say how the new directories were made: the shipped template, or initdb without one.
    const template = join(repo, 'dist', 'src', 'sinks', 'pglite-template.tar.gz');
    const fromTemplate = pglite.fresh.filter((s) => s.made === 'template').length;
    const made = existsSync(template)
      ? `${fromTemplate} of ${pglite.fresh.length} made from the template (${(statSync(template).size / 1048576).toFixed(1)} MB), the rest by initdb`
      : 'no template in dist: made by initdb';
    rows.push(
      row(
        {
          group: 'start',
          name: 'PGlite first start (fresh data dir): spawn → 200 /readyz of the built CLI',
          unit: 'ms',
          baseline: 'the same with an existing data dir',
          note: `${rounds} rounds; each fresh directory removed after its run; ${made}`,
          target: '≤ 2×',
          check: (x) => x <= 2,
        },
        pgliteRuns.fresh.value,
        pgliteRuns.fresh.baseline,
      ),
      row(
        {
          group: 'start',
          name: 'RSS of the running agent at ready, PGlite, fresh data dir',
          unit: 'MiB',
          baseline: 'the same, existing data dir',
          note: 'VmRSS from /proc; printed, no target',
        },
        pglite.fresh.map((s) => s.rss),
        pglite.existing.map((s) => s.rss),
      ),
    );

    // Postgres: a fresh schema each time vs. one that has the migrations and a chain.
    const pgDir = join(temp, 'pg');
    const pgExisting = db.url;
    const pgEnv = (url: string) => agentEnv({ DATABASE_URL: url });
    await node(pgDir, pgEnv(pgExisting));
    const pg = { fresh: [] as Started[], existing: [] as Started[] };
    const pgRuns = await paired(
      rounds,
      async () => {
        const s = await node(pgDir, pgEnv(pgExisting));
        pg.existing.push(s);
        return s.ms;
      },
      {
        fresh: async () => {
          const schema = await throwawaySchema(databaseUrl(options), 'bench_start_fresh');
          fresh.push(schema);
          const s = await node(pgDir, pgEnv(schema.url));
          pg.fresh.push(s);
          return s.ms;
        },
      },
    );
    pg.fresh.shift();
    pg.existing.shift();
    rows.push(
      row(
        {
          group: 'start',
          name: 'Postgres first start (fresh schema): spawn → 200 /readyz of the built CLI',
          unit: 'ms',
          baseline: 'the same with an existing schema',
          note: `${rounds} rounds`,
        },
        pgRuns.fresh.value,
        pgRuns.fresh.baseline,
      ),
      row(
        {
          group: 'start',
          name: 'RSS of the running agent at ready, Postgres, fresh schema',
          unit: 'MiB',
          baseline: 'the same, existing schema',
          note: 'VmRSS from /proc; printed, no target',
        },
        pg.fresh.map((s) => s.rss),
        pg.existing.map((s) => s.rss),
      ),
    );

    // npm start vs. the built CLI, on the existing PGlite directory.
    const script = (
      JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      }
    ).scripts.start;
    const npmRuns = await paired(rounds, async () => (await node(existing)).ms, {
      npm: async () =>
        (
          await startOnce(
            'npm',
            ['start', '--silent', '--', ...agentArgs(port, existing)],
            port,
            agentEnv(),
            false,
          )
        ).ms,
    });
    const builtCli = !/\btsx\b/.test(script ?? '') && /dist\/src\/cli\/bin\.js/.test(script ?? '');
    const npmRow = row(
      {
        group: 'start',
        name: '`npm start`: spawn → 200 /readyz (existing PGlite dir)',
        unit: 'ms',
        baseline: '`node dist/src/cli/bin.js start`, same flags',
        note: `npm start runs \`${script}\`${builtCli ? ' (the built CLI)' : ' (NOT the built CLI)'}; the rest is npm's own start-up`,
        target: 'runs the built CLI, ≤ 1.5×',
      },
      npmRuns.npm.value,
      npmRuns.npm.baseline,
    );
    rows.push({ ...npmRow, met: builtCli && npmRow.ratio.median <= 1.5 });
    return rows;
  } finally {
    for (const f of fresh) await f.drop().catch(() => {});
    await db.drop();
    await rm(temp, { recursive: true, force: true });
  }
}
