/**
 * Opt-in Stately inspector wiring (`kora-opstate start --inspect`): the holder's actor
 * reports its inspection events (`@xstate.actor`, `@xstate.event`, `@xstate.snapshot`)
 * through `@statelyai/inspect`'s WebSocket inspector to a local relay, which passes them
 * to every other client — the bridge page it serves (which shows them in the Stately
 * inspector UI) or any local WebSocket client.
 *
 * The relay speaks the protocol of `@statelyai/inspect/server`'s `createInspectorServer`
 * (buffer the last events, replay them to a new client, broadcast each message to the
 * others), but binds 127.0.0.1 by default, accepts port 0, refuses WebSocket connections
 * from foreign web origins and never launches a browser. Its page (`./inspectBridge.ts`)
 * embeds the hosted inspector UI or a self-hosted copy (`uiUrl`), and says plainly when
 * that cannot be reached, pointing to the agent's local `/inspector` view.
 *
 * `@statelyai/inspect` is an optional peer dependency, loaded by `start()` only: a process
 * that never inspects neither loads it (nor its superjson) nor needs it installed.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import type { InspectionEvent, Observer } from 'xstate';

/**
 * @internal What this module uses of `@statelyai/inspect`, typed here: the optional peer's
 * own types must not be needed to compile against this package.
 */
export interface StatelyInspectModule {
  createWebSocketInspector(options: { url: string; autoStart?: boolean }): {
    readonly inspect: Partial<Observer<InspectionEvent>>;
    stop(): void;
  };
}

import { z } from 'zod';
import { bridgeCsp, bridgeHtml } from './inspectBridge.js';
import { errorText, LOG_TAGS, type Logger, report } from './logger.js';
import {
  intRangeSchema,
  loggerSchema,
  nonEmptyStringSchema,
  parseOptions,
  positiveIntSchema,
} from './options.js';

/** Options of {@link createLocalInspector}; all optional. */
export interface LocalInspectorOptions {
  /** Default `127.0.0.1`. */
  host?: string;
  /** Default `0` (a free port; see `start()`'s result). */
  port?: number;
  /**
   * The inspector UI the bridge page embeds (default `https://stately.ai/inspect`): a
   * self-hosted copy of the Stately inspector works offline.
   */
  uiUrl?: string;
  /**
   * The agent's own inspector view (the status API's `/inspector`), which the bridge page
   * points to when the UI cannot be reached; also settable later with `showLocalView`.
   */
  localViewUrl?: string;
  /** Events kept for clients that connect later (default 200). */
  bufferSize?: number;
  /** Default `console`. */
  logger?: Logger;
}

/** Where the running inspector can be reached. */
export interface LocalInspectorAddress {
  /** The bridge page: open it in a browser to see the actor in the Stately inspector. */
  readonly url: string;
  /** The WebSocket relay: any local client may attach and receive the inspection events. */
  readonly wsUrl: string;
  readonly port: number;
}

/** A local Stately inspector relay and the `inspect` callback that feeds it. */
export interface LocalInspector {
  /**
   * Pass to `createOperationalStateHolder({ inspect })` (XState's `inspect` option). Events
   * arriving before the relay runs are kept (up to `bufferSize`) and sent once it does.
   */
  readonly inspect: (event: InspectionEvent) => void;
  /** Starts the relay and connects the WebSocket inspector to it. */
  start(): Promise<LocalInspectorAddress>;
  /** Disconnects the inspector and stops the relay. Idempotent. */
  stop(): Promise<void>;
  /** The address while running. */
  readonly address: LocalInspectorAddress | undefined;
  /**
   * Sets the local inspector view the bridge page points to (known once the status API
   * listens). A URL that is not http(s) throws, naming it.
   */
  showLocalView(url: string): void;
}

const defaults = {
  host: '127.0.0.1',
  port: 0,
  uiUrl: 'https://stately.ai/inspect',
  bufferSize: 200,
  logger: console as Logger,
};

const httpUrlSchema = () =>
  z.custom<string>(
    (v) => {
      try {
        const { protocol } = new URL(v as string);
        return typeof v === 'string' && (protocol === 'https:' || protocol === 'http:');
      } catch {
        return false;
      }
    },
    { error: 'must be an http(s) URL' },
  );

const inspectorOptions = z.object({
  host: nonEmptyStringSchema(),
  port: intRangeSchema(0, 65535),
  uiUrl: httpUrlSchema(),
  localViewUrl: httpUrlSchema().optional(),
  bufferSize: positiveIntSchema(true),
  logger: loggerSchema(),
});

const LOG_TAG = LOG_TAGS.inspect;

/** The install line the error names when the optional peer is missing. */
export const INSPECT_INSTALL = 'npm install @statelyai/inspect';

/**
 * @internal Loads `@statelyai/inspect` on demand (`load` is for tests). When it is not
 * installed, the error says how to install it instead of a bare "cannot find package".
 *
 * @example
 * const { createWebSocketInspector } = await loadStatelyInspect();
 */
export async function loadStatelyInspect(
  load: () => Promise<StatelyInspectModule> = () => import('@statelyai/inspect'),
): Promise<StatelyInspectModule> {
  try {
    return await load();
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    const missing =
      (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
      errorText(err).includes('@statelyai/inspect');
    if (!missing) throw err;
    throw new Error(
      `the Stately inspector needs the optional package @statelyai/inspect, which is not installed; run \`${INSPECT_INSTALL}\``,
      { cause: err },
    );
  }
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Creates (does not start) a local Stately inspector for the holder's actor.
 *
 * @example
 * const inspector = createLocalInspector({ port: 8080 });
 * const opstate = createOpstate({ sink, inspect: inspector.inspect }); // events before start() are kept
 * const { url } = await inspector.start();
 * console.log(`Stately inspector: open ${url}`);
 * const status = await startStatusServer({ opstate });
 * inspector.showLocalView(`${status.url}/inspector`); // where its page points when offline
 * // ...
 * await inspector.stop();
 */
export function createLocalInspector(options: LocalInspectorOptions = {}): LocalInspector {
  const o = parseOptions(inspectorOptions, options, defaults);
  const { logger } = o;
  let localView = o.localViewUrl;

  let forward: ((event: InspectionEvent) => void) | undefined;
  let early: InspectionEvent[] = [];
  let state: 'new' | 'running' | 'stopped' = 'new';
  let address: LocalInspectorAddress | undefined;
  let http: Server | undefined;
  let wss: WebSocketServer | undefined;
  let inspector: ReturnType<StatelyInspectModule['createWebSocketInspector']> | undefined;
  let stopping: Promise<void> | undefined;
  /** The relay's first client: the WebSocket inspector's own connection. */
  let inspectorSocket: WebSocket | undefined;

  const inspect = (event: InspectionEvent) => {
    try {
      if (forward) forward(event);
      // Kept until the relay runs: while new, and while start() loads and listens.
      else if (state !== 'stopped') {
        early.push(event);
        if (early.length > o.bufferSize) early.shift();
      }
    } catch (err) {
      report(logger, 'error', LOG_TAG, 'inspection event dropped', err);
    }
  };

  async function start(): Promise<LocalInspectorAddress> {
    if (state !== 'new') throw new Error(`${LOG_TAG} start() called on a ${state} inspector`);
    state = 'running';
    let stately: StatelyInspectModule;
    try {
      stately = await loadStatelyInspect();
    } catch (err) {
      // Nothing started: installing the package and starting again works.
      if (state === 'running') state = 'new';
      throw err;
    }
    if (state !== 'running') throw new Error(`${LOG_TAG} start() called on a ${state} inspector`);
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '/') !== '/') {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
        return;
      }
      const nonce = randomBytes(16).toString('base64');
      res
        .writeHead(200, {
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
          'referrer-policy': 'no-referrer',
          'content-security-policy': bridgeCsp(nonce),
        })
        .end(bridgeHtml({ uiUrl: o.uiUrl, localView, nonce }));
    });
    http = server;
    server.listen(o.port, o.host);
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]) => {
        throw err;
      }),
    ]);
    const info = server.address() as AddressInfo;
    const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
    const port = info.port;
    const buffer: string[] = [];
    const relay = new WebSocketServer({
      server,
      maxPayload: 16 * 1024 * 1024,
      // Node clients send no Origin; a browser may connect only from this server's own page.
      verifyClient: ({ origin }: { origin?: string }) => {
        if (!origin) return true;
        try {
          const u = new URL(origin);
          return u.protocol === 'http:' && LOOPBACK.has(u.hostname) && Number(u.port) === port;
        } catch {
          return false;
        }
      },
    });
    wss = relay;
    relay.on('error', (err) => report(logger, 'error', LOG_TAG, 'relay error', err));
    const firstClient = new Promise<void>((resolve) =>
      relay.once('connection', (socket: WebSocket) => {
        inspectorSocket = socket;
        resolve();
      }),
    );
    relay.on('connection', (socket: WebSocket) => {
      socket.on('error', (err) => report(logger, 'warn', LOG_TAG, 'client error', err));
      for (const m of buffer) socket.send(m);
      socket.on('message', (data) => {
        const text = data.toString();
        buffer.push(text);
        if (buffer.length > o.bufferSize) buffer.shift();
        for (const client of relay.clients) {
          if (client !== socket && client.readyState === client.OPEN) client.send(text);
        }
      });
    });
    address = { url: `http://${host}:${port}/`, wsUrl: `ws://${host}:${port}`, port };
    inspector = stately.createWebSocketInspector({ url: address.wsUrl, autoStart: true });
    const observer = inspector.inspect;
    forward = (event) => observer.next?.(event);
    for (const event of early) forward(event);
    early = [];
    // Stopping a socket still connecting makes the library reconnect forever: wait for it.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const connected = await Promise.race([
      firstClient.then(() => true),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), 5000);
      }),
    ]);
    clearTimeout(timer);
    if (!connected) {
      report(logger, 'warn', LOG_TAG, `the inspector has not connected to ${address.wsUrl} yet`);
    }
    report(
      logger,
      'info',
      LOG_TAG,
      `Stately inspector bridge at ${address.url} (WebSocket ${address.wsUrl})`,
    );
    return address;
  }

  function stop(): Promise<void> {
    stopping ??= (async () => {
      const wasRunning = state === 'running';
      state = 'stopped';
      forward = undefined;
      early = [];
      if (!wasRunning) return;
      try {
        inspector?.stop();
      } catch (err) {
        report(logger, 'warn', LOG_TAG, 'stopping the inspector failed', err);
      }
      // Let the inspector's socket close cleanly (a cut one may reconnect), then cut the rest.
      const deadline = Date.now() + 500;
      while (
        inspectorSocket &&
        inspectorSocket.readyState !== inspectorSocket.CLOSED &&
        Date.now() < deadline
      ) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      for (const client of wss?.clients ?? []) client.terminate();
      await new Promise<void>((resolve) => (wss ? wss.close(() => resolve()) : resolve()));
      if (http?.listening) {
        const closed = new Promise<void>((resolve) => http?.close(() => resolve()));
        http.closeAllConnections();
        await closed;
      }
      address = undefined;
    })();
    return stopping;
  }

  return {
    inspect,
    start,
    stop,
    get address() {
      return address;
    },
    showLocalView(url: string) {
      localView = parseOptions(
        z.object({ localViewUrl: httpUrlSchema() }),
        { localViewUrl: url },
        {},
      ).localViewUrl;
    },
  };
}
