/**
 * The status API on `node:http`, through `@hono/node-server` (the library's adapter:
 * IncomingMessage → Request, Response → ServerResponse, streamed). What this adds is the
 * lifecycle: listen on 127.0.0.1 by default, and a `close()` that ends open streams
 * (SSE) cleanly, waits a grace period for requests in flight and then cuts the rest.
 */
import { once } from 'node:events';
import {
  createServer,
  type IncomingMessage,
  type RequestListener,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import type { Logger } from '../logger.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import { FAST_PATH, type FastAnswer, type FastPath } from './fast.js';
import { createStatusHandler, type StatusHandler, type StatusHandlerOptions } from './handler.js';
import { boundHostNames } from './hosts.js';
import { HTTP_LOG_TAG, json } from './respond.js';
import { END_STREAM } from './stream.js';

/** Any fetch-style handler (a Hono app's `fetch`, `createStatusHandler()`, ...). */
export type FetchHandler = (request: Request) => Promise<Response> | Response;

/** Where to listen. */
export interface ListenOptions {
  /** Default `127.0.0.1` (loopback only). */
  host?: string;
  /** Default `0` (any free port). */
  port?: number;
}

/** @internal Options of {@link createNodeServer}; all optional. */
export interface NodeServerOptions extends ListenOptions {
  /** Default `console`. */
  logger?: Logger;
  /** How long `close()` waits for open requests before cutting connections (default 2000 ms). */
  closeGraceMs?: number;
  /**
   * Let `@hono/node-server` replace the global `Request`/`Response` with its lighter ones
   * (faster fixed bodies; process-wide). Default `false`: a library does not swap globals
   * under its host. `kora-opstate start` turns it on (it owns its process).
   */
  overrideGlobalObjects?: boolean;
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

function resolveNodeOptions(handler: unknown, options: NodeServerOptions) {
  if (typeof handler !== 'function') {
    throw new OperationalStateInputError(
      'handler',
      handler,
      `handler must be a function, got ${quote(handler)}`,
    );
  }
  const o = {
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 0,
    logger: options.logger ?? (console as Logger),
    closeGraceMs: options.closeGraceMs ?? 2000,
    overrideGlobalObjects: options.overrideGlobalObjects ?? false,
  };
  checkListen(o.host, o.port);
  if (!Number.isInteger(o.closeGraceMs) || o.closeGraceMs < 0) {
    throw new OperationalStateInputError(
      'closeGraceMs',
      o.closeGraceMs,
      `closeGraceMs must be a non-negative integer, got ${quote(o.closeGraceMs)}`,
    );
  }
  if (typeof o.overrideGlobalObjects !== 'boolean') {
    throw new OperationalStateInputError(
      'overrideGlobalObjects',
      o.overrideGlobalObjects,
      `overrideGlobalObjects must be a boolean, got ${quote(o.overrideGlobalObjects)}`,
    );
  }
  return o;
}

/**
 * A body of unknown length (a stream), with a way to end it from outside: the server's
 * `close()` ends it cleanly (the client sees the end) and cancels the handler's stream.
 */
function endable(body: ReadableStream<Uint8Array>, ends: Set<() => void>): ReadableStream {
  const reader = body.getReader();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const end = () => {
    ends.delete(end);
    reader.cancel().catch(() => {});
    try {
      controller.close();
    } catch {
      // Already closed.
    }
  };
  ends.add(end);
  return new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    async pull(c) {
      const { done, value } = await reader.read();
      if (!done) c.enqueue(value);
      else if (ends.has(end)) {
        ends.delete(end);
        c.close();
      }
    },
    cancel(reason) {
      ends.delete(end);
      return reader.cancel(reason);
    },
  });
}

/**
 * The app's cached answers straight from `node:http` (see `fast.ts`); every other request,
 * and one whose fast answer failed (nothing was written yet), goes to `listener`.
 */
function withFastPath(
  fast: FastPath,
  listener: RequestListener,
  logger: Logger,
  streaming: Set<() => void>,
): RequestListener {
  const track = (end: () => void) => {
    streaming.add(end);
    return () => void streaming.delete(end);
  };
  const write = (req: IncomingMessage, res: ServerResponse, a: FastAnswer) => {
    res.writeHead(a.status, a.headers);
    res.end(req.method === 'HEAD' ? undefined : a.body);
  };
  const fallBack = (req: IncomingMessage, res: ServerResponse, err: unknown) => {
    logger.error(
      `${HTTP_LOG_TAG} ${req.method} ${req.url}: fast path failed; answered by the app`,
      err,
    );
    void listener(req, res);
  };
  return (req, res) => {
    let answer: ReturnType<FastPath>;
    try {
      answer = fast(req.method, req.url, req.headers.host);
    } catch (err) {
      fallBack(req, res, err);
      return;
    }
    if (answer === undefined) void listener(req, res);
    else if (typeof answer === 'function') answer(res, track);
    else if (answer instanceof Promise) {
      answer.then(
        (a) => write(req, res, a),
        (err) => fallBack(req, res, err),
      );
    } else write(req, res, answer);
  };
}

/**
 * Creates (does not start) a `node:http` server for `handler` on `@hono/node-server`.
 *
 * @internal Not exported by the package: use {@link startStatusServer}, or serve
 * `createStatusApp({ opstate }).app.fetch` with a server of your own.
 *
 * @example
 * const server = createNodeServer(createStatusApp({ opstate }).app.fetch);
 * const { url } = await server.listen({ port: 8787 }); // http://127.0.0.1:8787
 * await server.close();
 */
export function createNodeServer(
  handler: FetchHandler,
  options: NodeServerOptions = {},
): NodeHttpServer {
  const o = resolveNodeOptions(handler, options ?? {});
  /** Ends each streamed response body. */
  const streaming = new Set<() => void>();
  let address: ListeningAddress | undefined;
  let closing: Promise<void> | undefined;
  let shuttingDown = false;

  async function fetch(request: Request, env: HttpBindings): Promise<Response> {
    let response: Response;
    try {
      response = await handler(request);
    } catch (err) {
      o.logger.error(`${HTTP_LOG_TAG} ${request.method} ${request.url} failed`, err);
      return json(500, { error: 'internal error' });
    }
    const { incoming, outgoing } = env;
    // A body the handler left unread (401, 413, ...) would hold the kept-alive connection:
    // close it after this answer rather than drain an upload nobody wants.
    if (!incoming.complete && incoming.method !== 'GET' && incoming.method !== 'HEAD') {
      outgoing.setHeader('connection', 'close');
    }
    // Fixed bodies (every JSON and text answer) pass untouched: reading `body` would turn
    // the adapter's lightweight Response into a stream-backed one.
    if (request.method === 'HEAD' || response.headers.has('content-length') || !response.body) {
      return response;
    }
    // Shutting down: a kept-alive connection would hold server.close() for the grace period.
    outgoing.once('finish', () => {
      if (shuttingDown) incoming.socket.end();
    });
    const end = (response.body as { [END_STREAM]?: () => void })[END_STREAM];
    if (typeof end !== 'function') return new Response(endable(response.body, streaming), response);
    // The app's own stream ends itself cleanly: served as it is.
    streaming.add(end);
    outgoing.once('close', () => streaming.delete(end));
    return response;
  }

  const listener = getRequestListener(
    fetch as (request: Request, env: unknown) => Promise<Response>,
    { overrideGlobalObjects: o.overrideGlobalObjects },
  );
  const fast = (handler as { [FAST_PATH]?: FastPath })[FAST_PATH];
  const server = createServer(fast ? withFastPath(fast, listener, o.logger, streaming) : listener);

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
        for (const end of [...streaming]) end();
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
 * @internal Not exported by the package (see {@link startStatusServer}).
 *
 * @example
 * const server = await serve(createStatusHandler({ opstate }), { port: 8787 });
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
 * Options of {@link startStatusServer}: the app's and the server's. A `host` that is a
 * name (not an IP address) is added to `allowedHosts`.
 */
export interface StatusServerOptions
  extends StatusHandlerOptions,
    ListenOptions,
    Pick<NodeServerOptions, 'closeGraceMs' | 'overrideGlobalObjects'> {}

/** A running status API: its address, the handler, and one `close()` for both. */
export interface RunningStatusServer extends ListeningAddress {
  readonly handler: StatusHandler;
  readonly server: NodeHttpServer;
  /** Ends the SSE streams, stops the server, removes the app's listeners. */
  close(): Promise<void>;
}

/**
 * The status API and panel on `node:http` in one call (what `kora-opstate start` uses).
 *
 * @example
 * const opstate = createOpstate({ sink });
 * await bootOpstate(opstate, { gates });
 * const status = await startStatusServer({ opstate, port: 0, operatorToken });
 * console.log(`panel: ${status.url}/`);
 * await status.close();
 */
export async function startStatusServer(
  options: StatusServerOptions = {},
): Promise<RunningStatusServer> {
  const { host, port, closeGraceMs, overrideGlobalObjects, ...appOptions } = options;
  // The name it binds is a name it serves (`--host agent.internal`); IPs always are.
  const bound = boundHostNames(host);
  const handler = createStatusHandler(
    bound.length && Array.isArray(appOptions.allowedHosts ?? [])
      ? { ...appOptions, allowedHosts: [...(appOptions.allowedHosts ?? []), ...bound] }
      : appOptions,
  );
  let server: NodeHttpServer;
  let addr: ListeningAddress;
  try {
    server = createNodeServer(handler, {
      ...(host !== undefined ? { host } : {}),
      ...(port !== undefined ? { port } : {}),
      ...(closeGraceMs !== undefined ? { closeGraceMs } : {}),
      ...(overrideGlobalObjects !== undefined ? { overrideGlobalObjects } : {}),
      ...(appOptions.logger ? { logger: appOptions.logger } : {}),
    });
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
