/**
 * HTTP figures: `GET /api/operational-state` (the agent's real path: an instance with a
 * keyed Postgres sink, so the status carries chain stats) and `GET /metrics` vs. a bare
 * `node:http` server answering a constant of the same bytes. Each server runs in its own
 * process; the load comes from a third, autocannon (50 connections), so no server shares
 * a CPU budget with its client's JavaScript. Rounds pair the two servers back to back on
 * each path, the order flipping. Besides requests/s, each row notes requests per CPU
 * second of the server process (from /proc): on a shared machine that cost moves less.
 */
import { BENCH_KEY, throwawaySchema } from './chain.js';
import { autocannonLoad as load, spawnChild } from './proc.js';
import { databaseUrl, median, paired, row, type SuiteOptions } from './stats.js';
import type { BenchRow } from './types.js';

export async function benchHttp(options: SuiteOptions = {}): Promise<BenchRow[]> {
  const rounds = options.rounds ?? 5;
  const seconds = options.quick ? 1 : 3;
  const connections = 50;
  const db = await throwawaySchema(databaseUrl(options), 'bench_http');
  const children: { stop(): Promise<void> }[] = [];
  try {
    const ours = await spawnChild('status', ['--database-url', db.url, '--chain-key', BENCH_KEY]);
    children.push(ours.child);
    const ourUrl = ours.first.url as string;
    const paths = { status: '/api/operational-state', metrics: '/metrics' } as const;
    const bodies: Record<string, { body: string; type: string }> = {};
    for (const path of Object.values(paths)) {
      const res = await fetch(`${ourUrl}${path}`);
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
      bodies[path] = { body: await res.text(), type: res.headers.get('content-type') ?? '' };
    }
    const status = JSON.parse(bodies[paths.status]!.body) as Record<string, unknown>;
    if (typeof status.chain !== 'object' || status.chain === null) {
      throw new Error('the status carries no chain stats: not the agent path');
    }
    const bare = await spawnChild('bare');
    children.push(bare.child);
    const { url: bareUrl } = await bare.child.ask<{ url: string }>('serve', { bodies });
    const rows: BenchRow[] = [];
    for (const [key, path] of Object.entries(paths)) {
      const perCpu = { ours: [] as number[], bare: [] as number[] };
      const side = (url: string, pid: number, into: number[]) => async () => {
        const r = await load(`${url}${path}`, pid, seconds, connections);
        into.push(r.perCpu);
        return r.rps;
      };
      await load(`${ourUrl}${path}`, ours.child.pid, 1, connections); // warm-up
      await load(`${bareUrl}${path}`, bare.child.pid, 1, connections);
      const r = await paired(rounds, side(bareUrl, bare.child.pid, perCpu.bare), {
        ours: side(ourUrl, ours.child.pid, perCpu.ours),
      });
      const cpuRatio = median(perCpu.ours) / median(perCpu.bare);
      const bytes = Buffer.byteLength(bodies[path]!.body);
      rows.push(
        row(
          {
            group: 'http',
            name:
              key === 'status'
                ? `GET ${path} (instance with a keyed Postgres sink: chain stats on)`
                : `GET ${path}`,
            unit: 'req/s',
            baseline: `bare node:http, a constant of the same ${bytes.toLocaleString('en-US')} bytes`,
            note: `autocannon in its own process, ${connections} connections, ${rounds} rounds × ${seconds} s per side; per server CPU-second ${Math.round(median(perCpu.ours)).toLocaleString('en-US')} vs ${Math.round(median(perCpu.bare)).toLocaleString('en-US')} req (${cpuRatio.toFixed(2)}×)`,
            target: key === 'status' ? '≥ 0.8×' : '≥ 0.5×',
            check: key === 'status' ? (x) => x >= 0.8 : (x) => x >= 0.5,
          },
          r.ours.value,
          r.ours.baseline,
        ),
      );
    }
    return rows;
  } finally {
    for (const c of children) await c.stop();
    await db.drop();
  }
}
