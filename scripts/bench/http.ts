/**
 * HTTP figure: `GET /api/operational-state` requests/s through the node:http adapter and
 * the status handler vs. a bare node:http server answering a constant JSON — the very
 * bytes of the same status payload, so both put the same response on the wire and the
 * ratio is the cost of the handler stack (Request/Response conversion, routing, reading
 * the holder, serializing). Same client, same run: a fixed number of keep-alive
 * connections on loopback, each sending its next request when the last one answered.
 * Rounds alternate between the servers so drift hits both alike.
 */
import { once } from 'node:events';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createOperationalStateHolder } from '../../src/holder.js';
import { startStatusServer } from '../../src/http/node.js';
import { statusOf } from '../../src/http/status.js';
import type { BenchRow } from './types.js';

const quiet = { error() {}, warn() {}, info() {}, debug() {} };

export interface BenchHttpOptions {
  /** Connections, each with one request in flight (default 50). */
  concurrency?: number;
  /** Milliseconds per measured round (default 1500; 2 rounds per server). */
  roundMs?: number;
  /** Warm-up per server before measuring (default 1000 ms). */
  warmupMs?: number;
}

function get(agent: Agent, url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const r = request(url, { agent }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`${url}: HTTP ${res.statusCode}`));
      res.resume();
      res.on('end', resolve);
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end();
  });
}

/** Requests completed in `ms` with `concurrency` keep-alive connections. */
async function load(agent: Agent, url: string, concurrency: number, ms: number) {
  const until = performance.now() + ms;
  let done = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        await get(agent, url);
        done++;
      }
    }),
  );
  return { done, ms: performance.now() - started };
}

export async function benchHttp(options: BenchHttpOptions = {}): Promise<BenchRow[]> {
  const concurrency = options.concurrency ?? 50;
  const roundMs = options.roundMs ?? 1500;
  const warmupMs = options.warmupMs ?? 1000;

  // A realistic payload: ready, with a full history ring (10 records).
  const holder = createOperationalStateHolder({
    initial: { primaryState: 'ready' },
    logger: quiet,
  });
  for (let i = 0; i < 10; i++) {
    await holder.send({ type: i % 2 === 0 ? 'claim.acquired' : 'claim.released' });
  }
  const status = await startStatusServer({ holder, logger: quiet });
  const constant = JSON.stringify(statusOf(holder));
  const bare = createServer((_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(constant),
    });
    res.end(constant);
  });
  bare.listen(0, '127.0.0.1');
  await once(bare, 'listening');
  const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/api/operational-state`;
  const ourUrl = `${status.url}/api/operational-state`;
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  try {
    await load(agent, ourUrl, concurrency, warmupMs);
    await load(agent, bareUrl, concurrency, warmupMs);
    const ours = { done: 0, ms: 0 };
    const base = { done: 0, ms: 0 };
    for (let round = 0; round < 2; round++) {
      for (const [url, acc] of [
        [ourUrl, ours],
        [bareUrl, base],
      ] as const) {
        const r = await load(agent, url, concurrency, roundMs);
        acc.done += r.done;
        acc.ms += r.ms;
      }
    }
    const value = (ours.done / ours.ms) * 1000;
    const baselineValue = (base.done / base.ms) * 1000;
    const ratio = value / baselineValue;
    return [
      {
        group: 'http',
        name: `GET /api/operational-state (node adapter + handler, ${concurrency} keep-alive connections)`,
        value,
        unit: 'req/s',
        baseline: `bare node:http, constant JSON of the same ${Buffer.byteLength(constant)} bytes`,
        baselineValue,
        ratio,
        target: '≥ 0.5×',
        met: ratio >= 0.5,
      },
    ];
  } finally {
    agent.destroy();
    await status.close();
    await new Promise<void>((resolve) => bare.close(() => resolve()));
  }
}
