/**
 * The bench's server and client processes (spawned by `proc.ts`, driven over IPC), so
 * neither server shares a CPU budget with its load:
 * - `status`: the agent's status API — `createOpstate` with a keyed Postgres sink (chain
 *   stats on) and `startStatusServer`, ten transitions in its history;
 * - `bare`: a bare `node:http` server answering constant bodies (given over IPC) per path;
 * - `sse`: `createOpstate` + `startStatusServer`, driving paced transitions on request
 *   and reporting its own CPU time (`process.cpuUsage`);
 * - `sse-client`: SSE clients of such servers, reporting deliveries and latencies.
 *
 * Usage (by the bench): node --import tsx scripts/bench/child.ts <mode> [--database-url U]
 */
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createOpstate, createPostgresSink, startStatusServer } from '../../src/index.js';
import { epochMs, quantile, quiet } from './stats.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { 'database-url': { type: 'string' }, 'chain-key': { type: 'string' } },
});
const mode = positionals[0];

type Message = { cmd: string; [k: string]: unknown };
const reply = (m: object) => process.send?.(m);
const on = (handler: (m: Message) => Promise<object | undefined> | object | undefined) => {
  process.on('message', (m: Message) => {
    void (async () => {
      try {
        const out = await handler(m);
        if (out) reply({ re: m.cmd, ...out });
      } catch (err) {
        reply({ re: m.cmd, error: String((err as Error).stack ?? err) });
      }
    })();
  });
};
process.on('disconnect', () => process.exit(0));

/** Ten transitions, so the status carries a full history ring like a running agent's. */
async function warm(opstate: ReturnType<typeof createOpstate>) {
  for (let i = 0; i < 10; i++) {
    await opstate.send(i % 2 === 0 ? { type: 'claim.acquired' } : { type: 'claim.released' });
  }
}

if (mode === 'status') {
  const sink = createPostgresSink({
    workspaceId: 'bench-http',
    connectionString: values['database-url'],
    chainKey: values['chain-key'],
    logger: quiet,
  });
  await sink.start();
  const opstate = createOpstate({ initial: { primaryState: 'ready' }, sink, logger: quiet });
  await warm(opstate);
  // As `kora-opstate start` serves it (the node server's own Request/Response).
  const server = await startStatusServer({
    opstate,
    logger: quiet,
    host: '127.0.0.1',
    overrideGlobalObjects: true,
  });
  on(async (m) => {
    if (m.cmd === 'stop') {
      await server.close();
      opstate.stop();
      await sink.flush(5000);
      await sink.close();
      return { stopped: true };
    }
    return undefined;
  });
  reply({ url: server.url });
} else if (mode === 'bare') {
  on(async (m) => {
    if (m.cmd !== 'serve') return m.cmd === 'stop' ? { stopped: true } : undefined;
    const bodies = new Map(
      Object.entries(m.bodies as Record<string, { body: string; type: string }>).map(
        ([path, { body, type }]) => [path, { body: Buffer.from(body), type }],
      ),
    );
    const server = createServer((req, res) => {
      const b = bodies.get(req.url ?? '');
      if (!b) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': b.type, 'content-length': b.body.byteLength });
      res.end(b.body);
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  });
  reply({ ready: true });
} else if (mode === 'sse') {
  const opstate = createOpstate({ initial: { primaryState: 'ready' }, logger: quiet });
  await warm(opstate);
  const server = await startStatusServer({ opstate, logger: quiet, host: '127.0.0.1' });
  let cpu0 = process.cpuUsage();
  on(async (m) => {
    if (m.cmd === 'run') {
      // n transitions at `rate`/s, each trigger carrying its phase tag, index and send time.
      const { tag, n, rate } = m as unknown as { tag: string; n: number; rate: number };
      cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const pending: Promise<unknown>[] = [];
      for (let i = 1; i <= n; i++) {
        const wait = t0 + (i - 1) * (1000 / rate) - performance.now();
        if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
        pending.push(
          opstate.send({ type: 'update', trigger: `sse:${tag}:${i}:${epochMs().toFixed(2)}` }),
        );
      }
      await Promise.all(pending);
      return { sent: n, ms: performance.now() - t0 };
    }
    if (m.cmd === 'cpu') {
      const d = process.cpuUsage(cpu0);
      return { cpuMs: (d.user + d.system) / 1000 };
    }
    if (m.cmd === 'stop') {
      await server.close();
      return { stopped: true };
    }
    return undefined;
  });
  reply({ url: server.url });
} else if (mode === 'sse-client') {
  sseClient();
} else {
  throw new Error(`child.ts: unknown mode ${JSON.stringify(mode)}`);
}

/** SSE clients, grouped by label (one group per server). */
function sseClient() {
  interface Conn {
    open: boolean;
    last: number;
  }
  interface Group {
    url: string;
    conns: Set<Conn>;
    dropped: number;
    tag: string;
    delivered: number;
    latencies: number[];
  }
  const groups = new Map<string, Group>();

  const connect = (g: Group) =>
    new Promise<void>((resolve, reject) => {
      const conn: Conn = { open: true, last: 0 };
      let first = true;
      let buffer = '';
      const req = request(`${g.url}/api/operational-state/stream`, (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`stream: HTTP ${res.statusCode}`));
          res.resume();
          return;
        }
        res.setEncoding('utf8');
        g.conns.add(conn);
        res.on('data', (chunk: string) => {
          const now = epochMs();
          buffer += chunk;
          let end = buffer.indexOf('\n\n');
          while (end !== -1) {
            const message = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            end = buffer.indexOf('\n\n');
            if (!message.includes('data:')) continue;
            if (first) {
              first = false;
              resolve();
            }
            if (!g.tag) continue;
            // Every transition of the current phase this message carries for the first time.
            let top = conn.last;
            for (const m of message.matchAll(new RegExp(`sse:${g.tag}:(\\d+):([\\d.]+)`, 'g'))) {
              const i = Number(m[1]);
              if (i <= conn.last) continue;
              g.delivered++;
              g.latencies.push(now - Number(m[2]));
              if (i > top) top = i;
            }
            conn.last = top;
          }
        });
        const gone = () => {
          if (!conn.open) return;
          conn.open = false;
          g.conns.delete(conn);
          g.dropped++;
        };
        res.on('close', gone);
        res.on('error', gone);
      });
      req.on('error', (err) => {
        if (first) reject(err);
      });
      req.end();
    });

  on(async (m) => {
    const label = m.label as string;
    if (m.cmd === 'connect') {
      let g = groups.get(label);
      if (!g) {
        g = {
          url: m.url as string,
          conns: new Set(),
          dropped: 0,
          tag: '',
          delivered: 0,
          latencies: [],
        };
        groups.set(label, g);
      }
      const missing = (m.count as number) - g.conns.size;
      for (let i = 0; i < missing; i += 20) {
        await Promise.all(Array.from({ length: Math.min(20, missing - i) }, () => connect(g)));
      }
      return { open: g.conns.size };
    }
    const g = groups.get(label);
    if (!g) throw new Error(`no client group ${label}`);
    if (m.cmd === 'phase') {
      g.tag = m.tag as string;
      g.delivered = 0;
      g.dropped = 0;
      g.latencies = [];
      for (const c of g.conns) c.last = 0;
      return { open: g.conns.size };
    }
    if (m.cmd === 'report') {
      return {
        delivered: g.delivered,
        dropped: g.dropped,
        open: g.conns.size,
        p50: quantile(g.latencies, 0.5),
        p99: quantile(g.latencies, 0.99),
        max: g.latencies.length ? Math.max(...g.latencies) : Number.NaN,
      };
    }
    return undefined;
  });
  reply({ ready: true });
}
