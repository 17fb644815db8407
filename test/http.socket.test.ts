/**
 * The status API through a real socket: the node:http adapter on 127.0.0.1:0, requests
 * with fetch, a streamed operator body, SSE read over the wire, a client that goes away,
 * and shutdown with streams open.
 */
import { request as httpRequest } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createOperationalStateHolder, type OperationalStateHolder } from '../src/holder.js';
import { createStatusHandler, type StatusHandler } from '../src/http/handler.js';
import {
  createNodeServer,
  type NodeHttpServer,
  type RunningStatusServer,
  serve,
  startStatusServer,
} from '../src/http/node.js';
import { MAX_OPERATOR_BODY_BYTES } from '../src/http/schemas.js';
import type { StreamMessage } from '../src/http/stream.js';
import { OperationalStateInputError } from '../src/vocabulary.js';
import { quietLogger, trackListeners } from './support/httpHandler.js';
import { sseReader } from './support/httpSse.js';

const TOKEN = 'socket-test-token';
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function running(holder?: OperationalStateHolder): Promise<{
  holder: OperationalStateHolder;
  handler: StatusHandler;
  server: NodeHttpServer;
  url: string;
}> {
  const h =
    holder ??
    createOperationalStateHolder({ initial: { primaryState: 'ready' }, logger: quietLogger() });
  const handler = createStatusHandler({ holder: h, operatorToken: TOKEN, logger: quietLogger() });
  const server = await serve(handler, { logger: quietLogger() });
  cleanups.push(async () => {
    await handler.close();
    await server.close();
  });
  return { holder: h, handler, server, url: server.address!.url };
}

/** A raw node:http request, for headers fetch would set by itself. */
function raw(
  url: string,
  options: {
    method: string;
    path: string;
    headers?: Record<string, string | number>;
    body?: string;
  },
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      `${url}${options.path}`,
      { method: options.method, headers: options.headers },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    r.on('error', reject);
    if (options.body !== undefined) r.write(options.body);
    r.end();
  });
}

describe('node adapter', () => {
  it('listens on 127.0.0.1 with a free port by default', async () => {
    const { server, url } = await running();
    expect(server.address?.host).toBe('127.0.0.1');
    expect(server.address?.port).toBeGreaterThan(0);
    expect(url).toBe(`http://127.0.0.1:${server.address!.port}`);
    expect(server.server.address()).toMatchObject({ address: '127.0.0.1', family: 'IPv4' });
  });

  it('serves the status payload with its length (no chunked encoding)', async () => {
    const { url, holder } = await running();
    const res = await fetch(`${url}/api/operational-state`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(text)));
    expect(JSON.parse(text).primary_state).toBe(holder.current.primaryState);
  });

  it('takes an operator POST over the wire: 200, 401, 409', async () => {
    const { url, holder } = await running();
    const post = (body: unknown, token = TOKEN) =>
      fetch(`${url}/api/operational-state/transitions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const ok = await post({ to: 'paused', trigger: 'operator' });
    expect(ok.status).toBe(200);
    expect((await ok.json()).primary_state).toBe('paused');
    expect(holder.current.primaryState).toBe('paused');
    const wrong = await post({ to: 'ready', trigger: 'x' }, 'nope');
    expect(wrong.status).toBe(401);
    await wrong.body?.cancel();
    const conflict = await post({ to: 'active', trigger: 'x' });
    expect(conflict.status).toBe(409);
    expect((await conflict.json()).error).toContain('paused → active');
  });

  it('answers 413 for a declared Content-Length over 16 KiB', async () => {
    const { url, holder } = await running();
    const body = JSON.stringify({
      to: 'paused',
      trigger: 'operator',
      pad: 'x'.repeat(MAX_OPERATOR_BODY_BYTES),
    });
    const res = await raw(url, {
      method: 'POST',
      path: '/api/operational-state/transitions',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-length': Buffer.byteLength(body) },
      body,
    });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error).toContain('over the 16384-byte limit');
    expect(holder.current.primaryState).toBe('ready');
  });

  it('answers 413 for a chunked body whose bytes pass 16 KiB', async () => {
    const { url, holder } = await running();
    let chunks = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (chunks++ < 6) c.enqueue(new TextEncoder().encode(' '.repeat(4096)));
        else c.close();
      },
    });
    const res = await fetch(`${url}/api/operational-state/transitions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(res.headers.get('content-length')).toBeTruthy();
    expect((await res.json()).error).toBe('body is over the 16384-byte limit');
    expect(holder.current.primaryState).toBe('ready');
  });

  it('closes the connection after refusing a body it did not read', async () => {
    const { url, holder } = await running();
    const big = 'x'.repeat(256 * 1024);
    const refused = await raw(url, {
      method: 'POST',
      path: '/api/operational-state/transitions',
      headers: { authorization: 'Bearer wrong', 'transfer-encoding': 'chunked' },
      body: big,
    });
    expect(refused.status).toBe(401);
    expect(refused.headers.connection).toBe('close');
    const small = await raw(url, {
      method: 'POST',
      path: '/api/operational-state/transitions',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ to: 'paused', trigger: 'operator' }),
    });
    expect(small.status).toBe(200);
    expect(small.headers.connection).not.toBe('close');
    expect(holder.current.primaryState).toBe('paused');
  });

  it('answers HEAD, 404 and 405 over the wire', async () => {
    const { url } = await running();
    const head = await raw(url, { method: 'HEAD', path: '/api/operational-state' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    const missing = await fetch(`${url}/nowhere`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'no route "/nowhere"' });
    const wrong = await fetch(`${url}/metrics`, { method: 'DELETE' });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('GET, HEAD');
    await wrong.body?.cancel();
  });

  it('streams SSE over the wire and cleans up when the client goes', async () => {
    const holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      logger: quietLogger(),
    });
    const listeners = trackListeners(holder, 'kora.operational_state.http.stream');
    const { url, handler } = await running(holder);
    const abort = new AbortController();
    const res = await fetch(`${url}/api/operational-state/stream`, { signal: abort.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const sse = sseReader(res.body!);
    const first = await sse.nextData<StreamMessage>();
    expect(first).toMatchObject({ kind: 'snapshot', status: { primary_state: 'ready' } });
    expect(listeners.live).toBe(1);
    await holder.send({ type: 'claim.acquired' });
    expect(await sse.nextData<StreamMessage>()).toMatchObject({
      kind: 'change',
      record: { seq: 1, from_state: 'ready', to_state: 'active' },
      state: { primary_state: 'active' },
    });
    abort.abort();
    await vi.waitFor(() => {
      expect(handler.openStreams).toBe(0);
      expect(listeners.live).toBe(0);
    });
    // Later transitions go nowhere and break nothing.
    await holder.send({ type: 'claim.released' });
    expect((await fetch(`${url}/livez`)).status).toBe(200);
  });

  it('ends open SSE streams cleanly when the server closes', async () => {
    const holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      logger: quietLogger(),
    });
    const listeners = trackListeners(holder, 'kora.operational_state.http.stream');
    const handler = createStatusHandler({ holder, logger: quietLogger() });
    const server = createNodeServer(handler, { logger: quietLogger() });
    const { url } = await server.listen();
    const sse = sseReader((await fetch(`${url}/api/operational-state/stream`)).body!);
    await sse.nextData();
    expect(listeners.live).toBe(1);
    await server.close();
    expect(await sse.nextData()).toBeUndefined(); // end of stream, not an error
    expect(listeners.live).toBe(0);
    expect(server.address).toBeUndefined();
    expect(server.server.listening).toBe(false);
    await handler.close();
    await server.close(); // idempotent
  });

  it('startStatusServer runs handler and server and closes both', async () => {
    const holder = createOperationalStateHolder({
      initial: { primaryState: 'active' },
      logger: quietLogger(),
    });
    const status: RunningStatusServer = await startStatusServer({ holder, logger: quietLogger() });
    expect(status.host).toBe('127.0.0.1');
    expect((await (await fetch(`${status.url}/readyz`)).json()).ready).toBe(true);
    const sse = sseReader((await fetch(`${status.url}/api/operational-state/stream`)).body!);
    await sse.nextData();
    await status.close();
    expect(await sse.nextData()).toBeUndefined();
    expect(status.handler.openStreams).toBe(0);
    expect((await status.handler(new Request('http://x/livez'))).status).toBe(503);
  });

  it('refuses bad listen options and a second listen', async () => {
    const handler = createStatusHandler({ logger: quietLogger() });
    cleanups.push(() => handler.close());
    expect(() => createNodeServer(handler, { port: 70000 })).toThrow(OperationalStateInputError);
    expect(() => createNodeServer(handler, { port: 70000 })).toThrow(
      'port must be an integer 0–65535, got 70000',
    );
    expect(() => createNodeServer(handler, { host: '' })).toThrow(
      'host must be a non-empty string, got ""',
    );
    expect(() => createNodeServer('nope' as never)).toThrow('handler must be a function');
    const server = createNodeServer(handler, { logger: quietLogger() });
    cleanups.push(() => server.close());
    await expect(server.listen({ port: -1 })).rejects.toThrow('got -1');
    await server.listen();
    await expect(server.listen()).rejects.toThrow('already listening');
  });

  it('rejects listen() when the port is taken', async () => {
    const { server } = await running();
    const other = createNodeServer(createStatusHandler({ logger: quietLogger() }), {
      logger: quietLogger(),
    });
    await expect(other.listen({ port: server.address!.port })).rejects.toThrow(/EADDRINUSE/);
  });
});
