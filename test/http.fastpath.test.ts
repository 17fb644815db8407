/**
 * The node server's fast path (src/http/fast.ts) through real sockets: for GET and HEAD of
 * `/api/operational-state` and `/metrics` it answers what the app's own routes answer —
 * same status, headers and bytes — and it leaves everything else to the app: another
 * Host (421), a query string, a closed app (503). A metrics collection that fails is
 * answered by the app, and logged.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { Gauge, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createOperationalStateHolder, type OperationalStateHolder } from '../src/holder.js';
import { type RunningStatusServer, startStatusServer } from '../src/http/node.js';
import { recordingLogger } from './support/logger.js';

interface Raw {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request on a fresh socket, with exactly the Host header given. */
function raw(url: string, path: string, method = 'GET', host?: string): Promise<Raw> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const r = request(
      { hostname, port, path, method, agent: false, setHost: host === undefined },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) {
            // Per connection or per moment, not per answer.
            if (['date', 'connection', 'keep-alive', 'transfer-encoding'].includes(k)) continue;
            headers[k] = String(v);
          }
          resolve({ status: res.statusCode ?? 0, headers, body });
        });
        res.on('error', reject);
      },
    );
    if (host !== undefined) r.setHeader('host', host);
    r.on('error', reject);
    r.end();
  });
}

/** The app's own answer to the same request, without the server. */
async function viaApp(s: RunningStatusServer, path: string, method = 'GET'): Promise<Raw> {
  const res = await s.handler(new Request(`${s.url}${path}`, { method }));
  const headers: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    headers[k] = v;
  });
  return { status: res.status, headers, body: method === 'HEAD' ? '' : await res.text() };
}

describe('the fast path answers what the app answers', () => {
  let holder: OperationalStateHolder;
  let server: RunningStatusServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function start(extra: Parameters<typeof startStatusServer>[0] = {}) {
    holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      logger: recordingLogger(),
    });
    server = await startStatusServer({ holder, logger: recordingLogger(), ...extra });
    return server;
  }

  it('GET and HEAD of the status and /metrics: same status, headers and bytes, before and after a transition', async () => {
    const s = await start();
    for (let round = 0; round < 2; round++) {
      for (const path of ['/api/operational-state', '/metrics']) {
        for (const method of ['GET', 'HEAD']) {
          const fast = await raw(s.url, path, method);
          const app = await viaApp(s, path, method);
          expect(fast.status).toBe(200);
          expect(fast).toEqual(app);
        }
      }
      const before = (await raw(s.url, '/api/operational-state')).body;
      await holder.send({ type: 'claim.acquired' });
      const after = await raw(s.url, '/api/operational-state');
      expect(after.body).not.toBe(before);
      expect(JSON.parse(after.body).primary_state).toBe('active');
      expect((await raw(s.url, '/metrics')).body).toContain(
        'kora_operational_state{state="active"} 1',
      );
      await holder.send({ type: 'claim.released' });
    }
  });

  it('leaves a Host it does not serve, a query string and other paths to the app', async () => {
    const s = await start();
    const refused = await raw(s.url, '/api/operational-state', 'GET', 'evil.example:80');
    expect(refused.status).toBe(421);
    expect(refused.body).toContain('evil.example:80');
    const refusedMetrics = await raw(s.url, '/metrics', 'GET', 'evil.example');
    expect(refusedMetrics.status).toBe(421);
    const query = await raw(s.url, '/api/operational-state?pretty=1');
    expect(query.status).toBe(200);
    expect(query).toEqual(await viaApp(s, '/api/operational-state?pretty=1'));
    const post = await raw(s.url, '/api/operational-state', 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });

  it('a closed app: 503 from the app, not a stale cached body', async () => {
    const s = await start();
    expect((await raw(s.url, '/api/operational-state')).status).toBe(200);
    await s.handler.close();
    const closed = await raw(s.url, '/api/operational-state');
    expect(closed.status).toBe(503);
    expect(JSON.parse(closed.body)).toEqual({ error: 'status handler is closed' });
    expect((await raw(s.url, '/metrics')).status).toBe(503);
  });

  it('a metrics collection that fails is answered by the app (500) and logged, the server goes on', async () => {
    const registry = new Registry();
    let fail = true;
    new Gauge({
      name: 'flaky_gauge',
      help: 'throws on collect while told to',
      registers: [registry],
      collect() {
        if (fail) throw new Error('collector broke');
        this.set(1);
      },
    });
    const logger = recordingLogger();
    holder = createOperationalStateHolder({ initial: { primaryState: 'ready' }, logger });
    server = await startStatusServer({ holder, logger, registry });
    const broken = await raw(server.url, '/metrics');
    expect(broken.status).toBe(500);
    expect(JSON.parse(broken.body)).toEqual({ error: 'internal error' });
    expect(
      logger.find('error', 'GET /metrics: fast path failed; answered by the app'),
    ).toHaveLength(1);
    fail = false;
    const ok = await raw(server.url, '/metrics');
    expect(ok.status).toBe(200);
    expect(ok.body).toContain('flaky_gauge 1');
    expect((await raw(server.url, '/api/operational-state')).status).toBe(200);
  });
});

describe('the event stream on the fast path (written to the socket, no web stream)', () => {
  /** A server over a holder in `ready`. */
  async function readyServer() {
    const holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      logger: recordingLogger(),
    });
    const server = await startStatusServer({ holder, logger: recordingLogger() });
    const { hostname, port } = new URL(server.url);
    return { holder, server, hostname, port };
  }

  it('a client that stops reading is coalesced, not dropped: it reads on to a snapshot at the newest change', async () => {
    const { holder, server, hostname, port } = await readyServer();
    let res: import('node:http').IncomingMessage | undefined;
    try {
      const stream = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
        request({ hostname, port, path: '/api/operational-state/stream', agent: false }, resolve)
          .on('error', reject)
          .end();
      });
      res = stream;
      expect(stream.statusCode).toBe(200);
      expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      stream.setEncoding('utf8');
      let text = '';
      const seen: { kind: string; seq: number }[] = [];
      let waiter: (() => void) | undefined;
      stream.on('data', (chunk: string) => {
        text += chunk;
        let i = text.indexOf('\n\n');
        while (i >= 0) {
          const block = text.slice(0, i);
          text = text.slice(i + 2);
          const data = block.split('\n').find((l) => l.startsWith('data: '));
          if (data) {
            const m = JSON.parse(data.slice(6));
            const seq =
              m.kind === 'change' ? m.record.seq : (m.status.transition_history.at(-1)?.seq ?? 0);
            seen.push({ kind: m.kind, seq });
          }
          i = text.indexOf('\n\n');
        }
        waiter?.();
      });
      const until = (ok: () => boolean) =>
        new Promise<void>((resolve) => {
          waiter = () => {
            if (ok()) resolve();
          };
          waiter();
        });
      await until(() => seen.length >= 1); // the snapshot on connect
      stream.pause(); // stops reading: the socket's buffers fill, then the hub's queue
      const n = 20_000;
      for (let i = 0; i < n; i++) {
        await holder.send({ type: i % 2 === 0 ? 'claim.acquired' : 'claim.released' });
      }
      expect(server.handler.openStreams).toBe(1); // slow is not dropped
      stream.resume();
      await until(() => seen.at(-1)?.seq === n);
      expect(seen[0]).toEqual({ kind: 'snapshot', seq: 0 });
      // Far fewer messages than changes: what the client missed came as one snapshot.
      expect(seen.length).toBeLessThan(n);
      expect(seen.slice(1).some((m) => m.kind === 'snapshot')).toBe(true);
      // In order all the way: every message is newer than the one before.
      for (let i = 1; i < seen.length; i++) expect(seen[i]!.seq).toBeGreaterThan(seen[i - 1]!.seq);
    } finally {
      res?.destroy();
      await server.close();
    }
  }, 60_000);

  it('on the wire: HTTP/1.1 gets each message as one chunk, HTTP/1.0 the bare stream', async () => {
    const { server, hostname, port } = await readyServer();
    /** Raw bytes of the stream, read until `until` holds. */
    const raw = (version: string, until: (text: string) => boolean) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), hostname);
        let text = '';
        socket.setEncoding('latin1');
        socket.on('data', (d: string) => {
          text += d;
          if (until(text)) {
            socket.destroy();
            resolve(text);
          }
        });
        socket.on('error', reject);
        socket.write(
          `GET /api/operational-state/stream ${version}\r\nHost: ${hostname}:${port}\r\n\r\n`,
        );
      });
    try {
      const framed = await raw('HTTP/1.1', (t) =>
        /\r\n\r\n[\s\S]*"kind":"snapshot"[\s\S]*\n\n\r\n/.test(t),
      );
      const [head, body] = [
        framed.slice(0, framed.indexOf('\r\n\r\n')),
        framed.slice(framed.indexOf('\r\n\r\n') + 4),
      ];
      expect(head.toLowerCase()).toContain('transfer-encoding: chunked');
      // Chunks: <hex size>CRLF<exactly that many bytes>CRLF — the retry line, then the snapshot.
      const chunks: string[] = [];
      let rest = body;
      while (rest.length > 0) {
        const eol = rest.indexOf('\r\n');
        const size = Number.parseInt(rest.slice(0, eol), 16);
        expect(rest.slice(eol + 2 + size, eol + 4 + size)).toBe('\r\n');
        chunks.push(Buffer.from(rest.slice(eol + 2, eol + 2 + size), 'latin1').toString('utf8'));
        rest = rest.slice(eol + 4 + size);
      }
      expect(chunks[0]).toBe('retry: 2000\n\n');
      expect(chunks[1]).toMatch(/^data: \{"kind":"snapshot"/);
      const bare = await raw('HTTP/1.0', (t) => /"kind":"snapshot"[\s\S]*\n\n/.test(t));
      expect(bare.toLowerCase()).not.toContain('transfer-encoding');
      expect(bare.slice(bare.indexOf('\r\n\r\n') + 4)).toMatch(
        /^retry: 2000\n\ndata: \{"kind":"snapshot"/,
      );
    } finally {
      await server.close();
    }
  });
});
