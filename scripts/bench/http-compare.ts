/**
 * Hono (`@hono/node-server` + the Hono app) against the hand-written adapter and router
 * it replaced, in one run. Each server runs in its own process over a real holder
 * (`http-server.ts`); the load comes from a third process, autocannon, on 127.0.0.1, so
 * neither server shares a CPU budget with its client's JavaScript. Besides requests/s it
 * reports requests per CPU second of each server process (from /proc): on a machine
 * shared with other work, that cost moves far less than throughput does. Rounds are
 * interleaved (each round runs every server on every path, in a rotated order), so drift
 * in the machine's load hits all alike.
 *
 * Usage:
 *   node --import tsx scripts/bench/http-compare.ts --old /tmp/http-old \
 *     [--rounds 5] [--seconds 3] [--connections 50] [--json]
 * `--old` is a copy of the older tree (with node_modules linked), e.g.
 *   mkdir -p /tmp/http-old && git archive <commit> | tar -x -C /tmp/http-old \
 *     && ln -s "$PWD/node_modules" /tmp/http-old/node_modules
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { autocannonLoad } from './proc.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');

const { values } = parseArgs({
  options: {
    old: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
    json: { type: 'boolean' },
  },
});
if (!values.old) throw new Error('--old DIR (a copy of the older tree) is required');
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
for (const [k, v] of Object.entries({ rounds, seconds, connections })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer, got ${v}`);
}

const PATHS = ['/api/operational-state', '/livez', '/metrics'] as const;
interface Server {
  readonly name: string;
  readonly url: string;
  readonly child: ChildProcess;
}

async function start(name: string, root: string, extra: string[] = []): Promise<Server> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(here, 'http-server.ts'), '--root', root, ...extra],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout! });
  const [line] = (await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(([code]) => {
      throw new Error(`${name} server exited (${code}) before listening`);
    }),
  ])) as [string];
  return { name, url: (JSON.parse(line) as { url: string }).url, child };
}

interface Figure {
  /** Requests per wall-clock second. */
  readonly rps: number;
  /** Requests per CPU second of the server process: the cost, less moved by other load. */
  readonly perCpu: number;
}

/** One autocannon run (its own process) against `server`. */
function measure(server: Server, path: string, duration: number): Promise<Figure> {
  return autocannonLoad(`${server.url}${path}`, server.child.pid!, duration, connections);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const servers: Server[] = [];
try {
  servers.push(await start('old', values.old));
  servers.push(await start('hono', repo));
  servers.push(await start('hono+globals', repo, ['--override-globals']));
  const results = new Map<string, Figure[]>();
  for (const s of servers) for (const p of PATHS) await measure(s, p, 1); // warm-up
  for (let round = 0; round < rounds; round++) {
    const order = servers.map((_, i) => servers[(i + round) % servers.length]!);
    for (const p of PATHS) {
      for (const s of order) {
        const key = `${s.name} ${p}`;
        results.set(key, [...(results.get(key) ?? []), await measure(s, p, seconds)]);
      }
    }
  }
  const rows = PATHS.flatMap((p) =>
    servers.map((s) => {
      const fs = results.get(`${s.name} ${p}`)!;
      const olds = results.get(`old ${p}`)!;
      const xs = fs.map((f) => f.rps);
      const perCpu = median(fs.map((f) => f.perCpu));
      return {
        path: p,
        server: s.name,
        min: Math.min(...xs),
        median: median(xs),
        max: Math.max(...xs),
        ratio: median(xs) / median(olds.map((f) => f.rps)),
        perCpu,
        perCpuRatio: perCpu / median(olds.map((f) => f.perCpu)),
      };
    }),
  );
  if (values.json) console.log(JSON.stringify({ rounds, seconds, connections, rows }, null, 2));
  else {
    const { cpus } = await import('node:os');
    console.log(
      `${rounds} interleaved rounds × ${seconds} s, ${connections} connections, autocannon in its own process; ${cpus().length} CPUs; node ${process.version}`,
    );
    console.log(
      'path                     server          min req/s  median req/s  max req/s  new/old   req/CPU-s  new/old',
    );
    for (const r of rows) {
      console.log(
        `${r.path.padEnd(24)} ${r.server.padEnd(15)} ${r.min.toFixed(0).padStart(9)} ${r.median.toFixed(0).padStart(13)} ${r.max.toFixed(0).padStart(10)}  ${r.ratio.toFixed(2).padStart(5)}×  ${r.perCpu.toFixed(0).padStart(9)}  ${r.perCpuRatio.toFixed(2).padStart(5)}×`,
      );
    }
  }
} finally {
  for (const s of servers) {
    s.child.kill('SIGTERM');
    await once(s.child, 'exit');
  }
}
