/**
 * A thin `node:http` adapter for a fetch-style handler: IncomingMessage → Request (the
 * body streamed, never buffered here), Response → ServerResponse (streamed, so SSE works;
 * a client that goes away cancels the response body). Binds 127.0.0.1 by default.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { Logger } from '../holder.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import {
  createStatusHandler,
  HTTP_LOG_TAG,
  type StatusHandlerOptions,
  TEXT_BODIES,
} from './handler.js';
import { boundHostNames } from './hosts.js';

/** Any fetch-style handler. */
export type FetchHandler = (request: Request) => Promise<Response>;

/** Where to listen. */
export interface ListenOptions {
  /** Default `127.0.0.1` (loopback only). */
  host?: string;
  /** Default `0` (any free port). */
  port?: number;
}

/** Options of {@link createNodeServer}; all optional. */
export interface NodeServerOptions extends ListenOptions {
  /** Default `console`. */
  logger?: Logger;
  /** How long `close()` waits for open requests before cutting connections (default 2000 ms). */
  closeGraceMs?: number;
}

/** The address a server listens on. */
export interface ListeningAddress {
  /** E.g. `http://127.0.0.1:39123` (IPv6 hosts in brackets). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
}

/** A `node:http` server around a fetch-style handler. */
export interface NodeHttpServer {
  /** Starts listening; resolves with the bound address. */
  listen(options?: ListenOptions): Promise<ListeningAddress>;
  /**
   * Stops accepting, ends open streaming responses (SSE), waits up to `closeGraceMs`
   * for requests in flight, then cuts what is left. Idempotent.
   */
  close(): Promise<void>;
  /** The bound address while listening. */
  readonly address: ListeningAddress | undefined;
  /** The underlying server (for tests and advanced wiring). */
  readonly server: Server;
}

const nodeDefaults = {
  host: '127.0.0.1',
  port: 0,
  logger: console as Logger,
  closeGraceMs: 2000,
};

function checkListen(host: unknown, port: unknown): void {
  if (typeof host !== 'string' || host.length === 0) {
    throw new OperationalStateInputError(
      'host',
      host,
      `host must be a non-empty string, got ${quote(host)}`,
    );
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new OperationalStateInputError(
      'port',
      port,
      `port must be an integer 0–65535, got ${quote(port)}`,
    );
  }
}

/**
 * No `signal` on the Request: undici makes following one cost more than the rest of the
 * request together. A client that goes away cancels the response body instead.
 */
function toRequest(req: IncomingMessage, base: string): Request {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  const method = req.method ?? 'GET';
  let url: URL;
  try {
    url = new URL(req.url ?? '/', req.headers.host ? `http://${req.headers.host}` : base);
  } catch {
    url = new URL(req.url ?? '/', base);
  }
  if (method === 'GET' || method === 'HEAD') return new Request(url, { method, headers });
  return new Request(url, {
    method,
    headers,
    body: Readable.toWeb(req) as ReadableStream<Uint8Array>,
    duplex: 'half',
  } as RequestInit);
}

/** Resolves on 'drain', or false when the response closed first. */
function drained(res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => () => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = done(true);
    const onClose = done(false);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

/**
 * Creates (does not start) a `node:http` server for `handler`.
 *
 * @example
 * const server = createNodeServer(createStatusHandler());
 * const { url } = await server.listen({ port: 8787 }); // http://127.0.0.1:8787
 * await server.close();
 */
export function createNodeServer(
  handler: FetchHandler,
  options: NodeServerOptions = {},
): NodeHttpServer {
  if (typeof handler !== 'function') {
    throw new OperationalStateInputError(
      'handler',
      handler,
      `handler must be a function, got ${quote(handler)}`,
    );
  }
  const o = { ...nodeDefaults };
  for (const [k, v] of Object.entries(options ?? {})) {
    if (v !== undefined) (o as Record<string, unknown>)[k] = v;
  }
  checkListen(o.host, o.port);
  if (!Number.isInteger(o.closeGraceMs) || o.closeGraceMs < 0) {
    throw new OperationalStateInputError(
      'closeGraceMs',
      o.closeGraceMs,
      `closeGraceMs must be a non-negative integer, got ${quote(o.closeGraceMs)}`,
    );
  }
  const { logger } = o;
  /** Cancels the body of each response being streamed. */
  const streaming = new Set<() => void>();
  let address: ListeningAddress | undefined;
  let closing: Promise<void> | undefined;
  let shuttingDown = false;

  async function respond(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let request: Request;
    try {
      request = toRequest(req, address?.url ?? 'http://127.0.0.1');
    } catch (err) {
      res.writeHead(400, {
        'content-type': 'application/json; charset=utf-8',
        connection: 'close',
      });
      res.end(JSON.stringify({ error: `bad request: ${(err as Error).message}` }));
      return;
    }
    const response = await handler(request);
    const headers: Record<string, string | string[]> = {};
    let cookies = false;
    response.headers.forEach((value, key) => {
      if (key === 'set-cookie') cookies = true;
      else headers[key] = value;
    });
    if (cookies) headers['set-cookie'] = response.headers.getSetCookie();
    // A body the handler left unread (401, 413, ...) would block the kept-alive
    // connection: close it after this response instead of draining an upload.
    if (!req.complete) headers.connection = 'close';
    const body = response.body;
    if (!body || req.method === 'HEAD') {
      res.writeHead(response.status, headers);
      res.end();
      await body?.cancel().catch(() => {});
      return;
    }
    const text = response.bodyUsed ? undefined : TEXT_BODIES.get(response);
    if (text !== undefined) {
      res.writeHead(response.status, headers);
      res.end(text);
      return;
    }
    if (response.headers.has('content-length')) {
      // A body of declared size: one write, no chunked encoding.
      const bytes = new Uint8Array(await response.arrayBuffer());
      res.writeHead(response.status, headers);
      res.end(bytes);
      return;
    }
    res.writeHead(response.status, headers);
    res.flushHeaders();
    const reader = body.getReader();
    const cancel = () => {
      reader.cancel().catch(() => {});
    };
    streaming.add(cancel);
    res.once('close', cancel);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!res.write(value) && !(await drained(res))) break;
      }
      res.end();
    } catch (err) {
      logger.error(`${HTTP_LOG_TAG} streaming ${req.method} ${req.url} failed`, err);
      res.destroy();
    } finally {
      streaming.delete(cancel);
      res.off('close', cancel);
      // Shutting down: a kept-alive connection would hold server.close() for the grace period.
      if (shuttingDown) req.socket.end();
    }
  }

  const server = createServer((req, res) => {
    respond(req, res).catch((err) => {
      logger.error(`${HTTP_LOG_TAG} ${req.method} ${req.url} failed`, err);
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify({ error: 'internal error' }));
      } else {
        res.destroy();
      }
    });
  });

  return {
    get address() {
      return address;
    },
    server,
    async listen(opts: ListenOptions = {}) {
      if (address) throw new Error(`${HTTP_LOG_TAG} already listening on ${address.url}`);
      if (shuttingDown) throw new Error(`${HTTP_LOG_TAG} this server was closed; create a new one`);
      const host = opts.host ?? o.host;
      const port = opts.port ?? o.port;
      checkListen(host, port);
      server.listen(port, host);
      await Promise.race([
        once(server, 'listening'),
        once(server, 'error').then(([err]) => {
          throw err;
        }),
      ]);
      const info = server.address() as AddressInfo;
      const shown = info.family === 'IPv6' ? `[${info.address}]` : info.address;
      address = { url: `http://${shown}:${info.port}`, host: info.address, port: info.port };
      return address;
    },
    close() {
      closing ??= (async () => {
        shuttingDown = true;
        if (!server.listening) return;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const cancel of [...streaming]) cancel();
        server.closeIdleConnections();
        const timer = setTimeout(() => server.closeAllConnections(), o.closeGraceMs);
        timer.unref();
        await closed;
        clearTimeout(timer);
        address = undefined;
      })();
      return closing;
    },
  };
}

/**
 * Creates a server for `handler` and starts it.
 *
 * @example
 * const server = await serve(createStatusHandler(), { port: 8787 });
 * console.log(server.address?.url);
 */
export async function serve(
  handler: FetchHandler,
  options: NodeServerOptions = {},
): Promise<NodeHttpServer> {
  const server = createNodeServer(handler, options);
  await server.listen();
  return server;
}

/**
 * Options of {@link startStatusServer}: the handler's and the server's. A `host` that is a
 * name (not an IP address) is added to `allowedHosts`.
 */
export interface StatusServerOptions extends StatusHandlerOptions, ListenOptions {
  closeGraceMs?: number;
}

/** A running status API: its address, the handler, and one `close()` for both. */
export interface RunningStatusServer extends ListeningAddress {
  readonly handler: ReturnType<typeof createStatusHandler>;
  readonly server: NodeHttpServer;
  /** Ends the SSE streams, stops the server, removes the handler's listeners. */
  close(): Promise<void>;
}

/**
 * The status API and panel on `node:http` in one call (what `kora-opstate start` uses).
 *
 * @example
 * const status = await startStatusServer({ port: 8787, operatorToken, sink, emitter });
 * console.log(`panel: ${status.url}/`);
 * await status.close();
 */
export async function startStatusServer(
  options: StatusServerOptions = {},
): Promise<RunningStatusServer> {
  const { host, port, closeGraceMs, ...handlerOptions } = options;
  // The name it binds is a name it serves (`--host agent.internal`); IPs always are.
  const bound = boundHostNames(host);
  const handler = createStatusHandler(
    bound.length && Array.isArray(handlerOptions.allowedHosts ?? [])
      ? { ...handlerOptions, allowedHosts: [...(handlerOptions.allowedHosts ?? []), ...bound] }
      : handlerOptions,
  );
  const server = createNodeServer(handler, {
    ...(host !== undefined ? { host } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(closeGraceMs !== undefined ? { closeGraceMs } : {}),
    ...(handlerOptions.logger ? { logger: handlerOptions.logger } : {}),
  });
  let addr: ListeningAddress;
  try {
    addr = await server.listen();
  } catch (err) {
    await handler.close();
    throw err;
  }
  return {
    ...addr,
    handler,
    server,
    async close() {
      await handler.close();
      await server.close();
    },
  };
}
