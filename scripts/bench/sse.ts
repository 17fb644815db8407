/**
 * The live stream with 100 clients (issue 12). Three status servers, each in its own
 * process (`child.ts sse`: `createOpstate` + `startStatusServer`, no sink): one followed
 * by 100 SSE clients, one by none, one by a single client; the clients run in a fourth
 * process. Each round drives 100 transitions/s for 2 s on every server in turn (rotated
 * order) and reads:
 * - the server's CPU per transition (`process.cpuUsage` over IPC, from the first
 *   transition until the clients have everything or gave up), 100 clients vs. none;
 * - each delivery's latency (the trigger carries its send time; both processes read the
 *   same clock), p99 over 100 clients vs. over 1;
 * - transitions delivered to the 100 clients vs. sent × 100, and clients dropped.
 */
import { spawnChild } from './proc.js';
import { row, type SuiteOptions } from './stats.js';
import type { BenchRow } from './types.js';

interface Report {
  delivered: number;
  dropped: number;
  open: number;
  p50: number;
  p99: number;
  max: number;
}

export async function benchSse(options: SuiteOptions = {}): Promise<BenchRow[]> {
  const rounds = options.rounds ?? 5;
  const clients = options.quick ? 10 : 100;
  const rate = 100;
  const n = options.quick ? 50 : 200;
  const children: { stop(): Promise<void> }[] = [];
  try {
    const spawn = async (mode: string) => {
      const c = await spawnChild(mode);
      children.push(c.child);
      return c;
    };
    const many = await spawn('sse');
    const none = await spawn('sse');
    const one = await spawn('sse');
    const client = (await spawn('sse-client')).child;
    const connect = async (label: string, url: string, count: number) => {
      const r = await client.ask<{ open: number }>('connect', { label, url, count }, 120_000);
      if (r.open !== count) throw new Error(`${label}: ${r.open} of ${count} clients connected`);
    };
    await connect('many', many.first.url as string, clients);
    await connect('one', one.first.url as string, 1);

    let phase = 0;
    /** One phase on `server`; its clients (if any) under `label`. */
    const drive = async (server: typeof many, label: string | undefined, count: number) => {
      const tag = `p${++phase}`;
      if (label) {
        await connect(label, server.first.url as string, count); // replaces dropped clients
        await client.ask('phase', { label, tag });
      }
      await server.child.ask('run', { tag, n, rate }, 120_000);
      let report: Report | undefined;
      if (label) {
        // Until every client has every transition, or nothing moved for 3 s.
        let last = -1;
        let still = performance.now();
        for (;;) {
          report = await client.ask<Report>('report', { label });
          if (report.delivered >= n * count || report.open === 0) break;
          if (report.delivered !== last) {
            last = report.delivered;
            still = performance.now();
          } else if (performance.now() - still > 3000) break;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      const { cpuMs } = await server.child.ask<{ cpuMs: number }>('cpu');
      return { cpuPer: cpuMs / n, report };
    };
    const samples = {
      manyCpu: [] as number[],
      noneCpu: [] as number[],
      oneCpu: [] as number[],
      manyP99: [] as number[],
      oneP99: [] as number[],
      delivered: [] as number[],
      dropped: [] as number[],
    };
    for (let r = -1; r < rounds; r++) {
      const sides = [
        async () => {
          const x = await drive(many, 'many', clients);
          if (r < 0) return;
          samples.manyCpu.push(x.cpuPer);
          samples.manyP99.push(x.report!.p99);
          samples.delivered.push(x.report!.delivered);
          samples.dropped.push(x.report!.dropped);
        },
        async () => {
          const x = await drive(none, undefined, 0);
          if (r >= 0) samples.noneCpu.push(x.cpuPer);
        },
        async () => {
          const x = await drive(one, 'one', 1);
          if (r < 0) return;
          samples.oneCpu.push(x.cpuPer);
          samples.oneP99.push(x.report!.p99);
        },
      ];
      for (let i = 0; i < sides.length; i++) await sides[(i + Math.max(r, 0)) % sides.length]!();
    }
    const note = `${rounds} rounds × ${n} transitions at ${rate}/s per server, servers and clients in their own processes, no sink`;
    const cpu = row(
      {
        group: 'sse',
        name: `server CPU per transition, ${clients} SSE clients`,
        unit: 'ms',
        baseline: 'the same server with no client',
        note: `${note}; with 1 client: ${samples.oneCpu.map((x) => x.toFixed(2)).join(', ')} ms`,
        target: '≤ 3×',
        check: (x) => x <= 3,
      },
      samples.manyCpu,
      samples.noneCpu,
    );
    const latency = row(
      {
        group: 'sse',
        name: `delivery latency p99, ${clients} clients × ${rate} transitions/s`,
        unit: 'ms',
        baseline: 'p99 with 1 client, same rate',
      },
      samples.manyP99,
      samples.oneP99,
    );
    const lat = { ...latency, target: 'p99 ≤ 50 ms', met: latency.value.median <= 50 };
    const totalDropped = samples.dropped.reduce((a, b) => a + b, 0);
    const delivery = row(
      {
        group: 'sse',
        name: `transitions delivered to ${clients} clients at ${rate}/s`,
        unit: 'deliveries',
        baseline: `sent × clients (${n} × ${clients})`,
        note: `clients dropped per round: ${samples.dropped.join(', ')}`,
      },
      samples.delivered,
      samples.delivered.map(() => n * clients),
    );
    const del = {
      ...delivery,
      target: 'all delivered, 0 dropped',
      met: totalDropped === 0 && delivery.ratio.min >= 1,
    };
    return [cpu, lat, del];
  } finally {
    for (const c of children) await c.stop();
  }
}
