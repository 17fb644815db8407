/**
 * The status API (SPEC §7) as a Hono app: the status payload, history, an SSE stream,
 * probes, Prometheus metrics, the chain, the operator's transition endpoint and the live
 * panel. Middleware: the Host allowlist (421), the closed gate (503); the operator route
 * adds bearer auth and the body limit. Runs wherever Hono runs; `./node.js` serves it on
 * `node:http` through `@hono/node-server`.
 */
import { type Context, Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { Registry } from 'prom-client';
import { quote } from '../vocabulary.js';
import { createStatusCore } from './core.js';
import { createFastPath, FAST_PATH, type FastPath } from './fast.js';
import { closedGuard, hostGuard, methodNotAllowed } from './middleware.js';
import { resolveStatusOptions, type StatusAppOptions } from './options.js';
import { HTTP_LOG_TAG, json } from './respond.js';
import { chainRoutes } from './routes/chain.js';
import { fleetRoutes } from './routes/fleet.js';
import { inspectorRoutes } from './routes/inspector.js';
import { operatorRoutes } from './routes/operator.js';
import { statusRoutes } from './routes/status.js';
import { createStreamHub, streamHandler } from './stream.js';

/** A status app: the Hono app, and what its owner needs to observe and shut it down. */
export interface StatusApp {
  /** The routes; serve `app.fetch`, or mount it with `parent.route('/', app)`. */
  readonly app: Hono;
  /** The registry `/metrics` serves. */
  readonly registry: Registry;
  /** Open SSE streams. */
  readonly openStreams: number;
  /**
   * Ends every open SSE stream (cleanly: the client sees the end of the stream), removes
   * the holder listeners and this app's metrics; later requests get 503.
   */
  close(): Promise<void>;
  /** @internal The node server's fast path for the cached answers (see `fast.ts`). */
  readonly [FAST_PATH]: FastPath;
}

/**
 * Creates the status API as a Hono app.
 *
 * Routes: `GET /` (panel), `GET /api/operational-state`, `GET /api/operational-state/history?limit=N`,
 * `GET /api/operational-state/stream` (SSE), `POST /api/operational-state/transitions`
 * (operator; needs `operatorToken`), `GET /api/operational-state/chain[/verify]` (with a
 * durable sink), `GET /livez`, `GET /readyz`, `GET /startupz` (each with `?verbose`),
 * `GET /metrics`, `GET /api/fleet` and the
 * `GET /fleet` page (the `fleet` option), `GET /api/inspector` and the offline inspector
 * page `GET /inspector`. A request for a Host it does
 * not serve (see `allowedHosts`) is 421, except the probes.
 *
 * @example
 * const opstate = createOpstate();
 * const status = createStatusApp({ opstate, operatorToken: process.env.KORA_OPERATOR_TOKEN });
 * const res = await status.app.request('/api/operational-state');
 * (await res.json()).primary_state; // 'booting'
 * await status.close();
 */
export function createStatusApp(options: StatusAppOptions = {}): StatusApp {
  const core = createStatusCore(resolveStatusOptions(options));
  const { logger } = core;
  const app = new Hono();

  app.use(
    '*',
    hostGuard(core.options.hosts),
    closedGuard(() => core.closed),
  );
  statusRoutes(app, core);
  const hub = createStreamHub(core);
  app.get('/api/operational-state/stream', streamHandler(hub));
  operatorRoutes(app, core);
  chainRoutes(app, core);
  fleetRoutes(app, core);
  inspectorRoutes(app, core);

  // A path served with other methods is 405 naming them (GET routes answer HEAD too);
  // found here rather than by a catch-all per route, which every request would match.
  const allowed = new Map<string, (c: Context) => Response>();
  for (const r of app.routes) {
    if (r.method === 'ALL') continue;
    allowed.set(r.path, methodNotAllowed(r.method === 'GET' ? 'GET, HEAD' : r.method));
  }
  app.notFound((c) => {
    const path = new URL(c.req.url).pathname;
    return allowed.get(path)?.(c) ?? json(404, { error: `no route ${quote(path)}` });
  });
  app.onError((err, c) => {
    // Hono's own middleware answers by throwing; that is an answer, not a failure.
    if (err instanceof HTTPException) return err.getResponse();
    logger.error(`${HTTP_LOG_TAG} ${c.req.method} ${c.req.url} failed`, err);
    return json(500, { error: 'internal error' });
  });

  return {
    app,
    registry: core.options.registry,
    get openStreams() {
      return core.streams.size;
    },
    async close() {
      core.close();
    },
    [FAST_PATH]: createFastPath(core, hub),
  };
}
