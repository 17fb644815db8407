/**
 * The status API (SPEC §7) as one web-standard handler, `(Request) => Promise<Response>`:
 * the status payload, history, an SSE stream, probes, Prometheus metrics, the operator's
 * transition endpoint and the live panel. Runs on anything that speaks fetch-style
 * handlers; `./node.js` adapts it to `node:http`.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Registry } from 'prom-client';
import {
  getHolder,
  InvalidStateTransitionError,
  type Logger,
  OperationalStateHolder,
} from '../holder.js';
import type { DurableEventSink } from '../sinks/types.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import { parseVerifyQuery, verifyResultJson } from './chainVerify.js';
import { createHostCheck, hostName } from './hosts.js';
import { createStatusMetrics, type StatusMetrics } from './metrics.js';
import { renderPanel } from './panel.js';
import {
  MAX_OPERATOR_BODY_BYTES,
  parseChainQuery,
  parseHistoryLimit,
  parseOperatorCommand,
} from './schemas.js';
import {
  type ChainHealth,
  chainHealth,
  type EmitterLike,
  HOLDER_NOT_INITIALIZED,
  readiness,
  type SinkLike,
  STUB_STATUS,
  statusOf,
} from './status.js';
import { openStatusStream, type StatusStream } from './stream.js';
import { createVerifyCache } from './verifyCache.js';

/** What the chain routes read: a durable sink's `tail` and `verifyChain` (structural). */
type ChainReader = Pick<DurableEventSink, 'workspaceId' | 'tail' | 'verifyChain'>;

function chainReader(sink: SinkLike | undefined): ChainReader | undefined {
  const s = sink as Partial<ChainReader> | undefined;
  return s && typeof s.tail === 'function' && typeof s.verifyChain === 'function'
    ? (s as ChainReader)
    : undefined;
}

/** The log tag of everything the HTTP layer reports. */
export const HTTP_LOG_TAG = '[kora.operational_state.http]';

/** Options of {@link createStatusHandler}; all optional. */
export interface StatusHandlerOptions {
  /** The holder, or a function returning it (or `undefined` before it exists). Default: `getHolder`. */
  holder?: OperationalStateHolder | (() => OperationalStateHolder | undefined);
  /**
   * A durable sink: its outbox depth, drops and append failures show in the status and
   * metrics; one that can also `tail()` and `verifyChain()` (the shipped Postgres and PGlite
   * sinks) is served read-only at `/api/operational-state/chain` and `…/chain/verify`.
   */
  sink?: SinkLike;
  /** The chain-event emit listener (`makeEmitListener`): its emitted/failure counts show too. */
  emitter?: EmitterLike;
  /** Enables `POST /api/operational-state/transitions` with `Authorization: Bearer <token>`. */
  operatorToken?: string;
  /** SSE heartbeat comment interval (default 15000 ms). */
  heartbeatMs?: number;
  /** prom-client registry for `/metrics` (default: a fresh one per handler). */
  registry?: Registry;
  /** Default `console`. */
  logger?: Logger;
  /** The panel's title (default `kora-opstate`). */
  title?: string;
  /**
   * Host names served besides `localhost`, `*.localhost` and IP addresses: `example.org`
   * exactly, `.example.org` for it and its subdomains. Any other `Host` gets 421 (DNS
   * rebinding protection; `/livez` and `/readyz` answer any Host). `['*']` turns the
   * check off. Default `[]`; `startStatusServer` adds the host name it binds.
   */
  allowedHosts?: readonly string[];
  /**
   * Without an `operatorToken`, `GET …/chain/verify` is answered from a result at most
   * this old (ms; default 30000; 0 = a fresh verification each time). Verifications run
   * one at a time, and requests that arrive meanwhile share the running one.
   */
  verifyCacheMs?: number;
}

/** The handler, plus what its owner needs to shut it down and observe it. */
export interface StatusHandler {
  (request: Request): Promise<Response>;
  /** The registry `/metrics` serves. */
  readonly registry: Registry;
  /** Open SSE streams. */
  readonly openStreams: number;
  /**
   * Ends every open SSE stream (cleanly: the client sees the end of the stream), removes
   * the holder listeners and this handler's metrics; later requests get 503.
   */
  close(): Promise<void>;
}

type HolderSource = () => OperationalStateHolder | undefined;

const defaults = {
  holder: getHolder as StatusHandlerOptions['holder'],
  sink: undefined as SinkLike | undefined,
  emitter: undefined as EmitterLike | undefined,
  operatorToken: undefined as string | undefined,
  heartbeatMs: 15_000,
  registry: undefined as Registry | undefined,
  logger: console as Logger,
  title: 'kora-opstate',
  allowedHosts: [] as readonly string[],
  verifyCacheMs: 30_000,
};

function invalid(field: string, value: unknown, expected: string): OperationalStateInputError {
  return new OperationalStateInputError(
    field,
    value,
    `${field} must be ${expected}, got ${quote(value)}`,
  );
}

function resolveOptions(options: StatusHandlerOptions) {
  if (options === null || typeof options !== 'object') {
    throw invalid('options', options, 'an object');
  }
  const o = { ...defaults };
  for (const [k, v] of Object.entries(options)) {
    if (v !== undefined) (o as Record<string, unknown>)[k] = v;
  }
  const h = o.holder;
  if (!(h instanceof OperationalStateHolder) && typeof h !== 'function') {
    throw invalid('holder', h, 'an OperationalStateHolder or a function returning one');
  }
  for (const field of ['sink', 'emitter'] as const) {
    const v = o[field];
    // The emit listener itself is a function with `stats`: what `makeEmitListener` returns.
    const shaped = (typeof v === 'object' || typeof v === 'function') && v !== null;
    if (v !== undefined && (!shaped || typeof v.stats !== 'object')) {
      throw invalid(field, v, 'an object (or the emit listener) with a `stats` object');
    }
  }
  const token = o.operatorToken;
  if (
    token !== undefined &&
    (typeof token !== 'string' || token.length === 0 || /\s/.test(token))
  ) {
    // Never echo a token, not even a malformed one.
    throw new OperationalStateInputError(
      'operatorToken',
      '[redacted]',
      `operatorToken must be a non-empty string without whitespace, got ${typeof token === 'string' ? `a string of length ${token.length}` : typeof token}`,
    );
  }
  if (!Number.isInteger(o.heartbeatMs) || o.heartbeatMs < 1) {
    throw invalid('heartbeatMs', o.heartbeatMs, 'a positive integer (ms)');
  }
  if (o.registry !== undefined && !(o.registry instanceof Registry)) {
    throw invalid('registry', o.registry, 'a prom-client Registry');
  }
  const log = o.logger as Partial<Logger> | null;
  if (
    log === null ||
    typeof log !== 'object' ||
    typeof log.error !== 'function' ||
    typeof log.warn !== 'function' ||
    typeof log.info !== 'function'
  ) {
    throw invalid('logger', o.logger, 'a console-compatible logger (error, warn, info)');
  }
  if (typeof o.title !== 'string') throw invalid('title', o.title, 'a string');
  const hosts = createHostCheck(o.allowedHosts);
  if (!Number.isInteger(o.verifyCacheMs) || o.verifyCacheMs < 0 || o.verifyCacheMs > 86_400_000) {
    throw invalid('verifyCacheMs', o.verifyCacheMs, 'an integer from 0 to 86400000 (ms)');
  }
  const source: HolderSource = h instanceof OperationalStateHolder ? () => h : (h as HolderSource);
  return { ...o, holder: source, registry: o.registry ?? new Registry(), hosts };
}

const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
} as const;

/**
 * @internal The text body of each fixed-size Response this module made, so the node
 * adapter can write it without reading it back through the Response's stream. (A body
 * cannot change once a Response exists; a wrapper that makes a new Response is not here.)
 */
export const TEXT_BODIES = new WeakMap<Response, string>();

function textResponse(status: number, text: string, headers: Record<string, string>): Response {
  const response = new Response(text, {
    status,
    headers: { ...headers, 'content-length': String(Buffer.byteLength(text)) },
  });
  TEXT_BODIES.set(response, text);
  return response;
}

/** 400 naming the field for input outside what the API accepts; anything else is rethrown. */
function badInput(err: unknown): Response {
  if (err instanceof OperationalStateInputError) {
    return json(400, { error: err.message, field: err.field });
  }
  throw err;
}

/** @internal A JSON response with its length, so adapters can send it in one write. */
function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return textResponse(status, JSON.stringify(body), { ...JSON_HEADERS, ...headers });
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Reads at most `max` bytes of the body; `undefined` when there are more. */
async function readCapped(request: Request, max: number): Promise<Uint8Array | undefined> {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * Probes answer any Host: Kubernetes sends the pod IP or no name at all, and they carry
 * nothing an attacker could use (state name and readiness).
 */
const PROBES: ReadonlySet<string> = new Set(['/livez', '/readyz', '/startupz']);

type Route = Partial<Record<'GET' | 'POST', (request: Request, url: URL) => Promise<Response>>>;

/**
 * Creates the status API handler.
 *
 * Routes: `GET /` (panel), `GET /api/operational-state`, `GET /api/operational-state/history?limit=N`,
 * `GET /api/operational-state/stream` (SSE), `POST /api/operational-state/transitions`
 * (operator; needs `operatorToken`), `GET /livez`, `GET /readyz`, `GET /metrics`.
 * A request for a Host it does not serve (see `allowedHosts`) is 421, except the probes.
 *
 * @example
 * const handler = createStatusHandler({ operatorToken: process.env.KORA_OPERATOR_TOKEN });
 * const res = await handler(new Request('http://localhost/api/operational-state'));
 * await res.json(); // { primary_state: 'booting', ..., stub: true, error: '...' } before initHolder()
 * await handler.close();
 */
export function createStatusHandler(options: StatusHandlerOptions = {}): StatusHandler {
  const o = resolveOptions(options);
  const { logger } = o;
  const tokenDigest = o.operatorToken === undefined ? undefined : sha256(o.operatorToken);
  const streams = new Set<StatusStream>();
  let closed = false;

  let followed: OperationalStateHolder | undefined;
  let unfollow: (() => void) | undefined;
  const metrics: StatusMetrics = createStatusMetrics(o.registry, {
    holder: () => resolveHolder(),
    ...(o.emitter ? { emitter: o.emitter } : {}),
    ...(o.sink ? { sink: o.sink } : {}),
    openStreams: () => streams.size,
  });

  /** The holder now; starts counting its transitions the first time it is seen. */
  function resolveHolder(): OperationalStateHolder | undefined {
    const h = o.holder();
    if (h !== undefined && !(h instanceof OperationalStateHolder)) {
      throw invalid('holder()', h, 'an OperationalStateHolder or undefined');
    }
    if (h !== followed && !closed) {
      unfollow?.();
      unfollow = undefined;
      followed = h;
      if (h) {
        metrics.follow(h);
        unfollow = h.addListener((_old, _next, record) => metrics.record(record), {
          name: 'kora.operational_state.http.metrics',
        });
      }
    }
    return h;
  }

  const chain = (): ChainHealth | undefined => chainHealth(o.emitter, o.sink);

  // The payload only changes on a commit, and every commit swaps `holder.current` for a
  // new frozen object: its identity keys the serialized payload. The chain counters move
  // on their own, so they are spliced in fresh each time.
  let cachedFor: OperationalStateHolder['current'] | undefined;
  let cachedJson = '';
  function statusJson(holder: OperationalStateHolder | undefined): string {
    if (!holder) return JSON.stringify(STUB_STATUS);
    const current = holder.current;
    if (current !== cachedFor) {
      cachedJson = JSON.stringify(statusOf(holder));
      cachedFor = current;
    }
    const c = chain();
    return c ? `${cachedJson.slice(0, -1)},"chain":${JSON.stringify(c)}}` : cachedJson;
  }

  function authorized(header: string | null): boolean {
    if (!tokenDigest || header === null) return false;
    const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
    if (!m) return false;
    // Equal-length digests: the comparison takes the same time whatever the guess.
    return timingSafeEqual(sha256(m[1]!), tokenDigest);
  }

  const unauthorized = () =>
    json(
      401,
      { error: 'missing or wrong bearer token (Authorization: Bearer <token>)' },
      { 'www-authenticate': 'Bearer realm="kora-opstate"' },
    );

  async function postTransition(request: Request): Promise<Response> {
    if (!tokenDigest) {
      return json(403, {
        error: 'operator transitions are disabled: no operator token is configured',
      });
    }
    if (!authorized(request.headers.get('authorization'))) return unauthorized();
    const declared = request.headers.get('content-length');
    if (declared !== null) {
      if (!/^\d+$/.test(declared)) {
        return json(400, { error: `invalid Content-Length ${quote(declared)}` });
      }
      if (Number(declared) > MAX_OPERATOR_BODY_BYTES) {
        await request.body?.cancel().catch(() => {});
        return json(
          413,
          { error: `body of ${declared} bytes is over the ${MAX_OPERATOR_BODY_BYTES}-byte limit` },
          { connection: 'close' },
        );
      }
    }
    const bytes = await readCapped(request, MAX_OPERATOR_BODY_BYTES);
    if (!bytes) {
      return json(
        413,
        { error: `body is over the ${MAX_OPERATOR_BODY_BYTES}-byte limit` },
        { connection: 'close' },
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    } catch (err) {
      return json(400, { error: `invalid JSON body: ${(err as Error).message}` });
    }
    let command: ReturnType<typeof parseOperatorCommand>;
    try {
      command = parseOperatorCommand(body);
    } catch (err) {
      return badInput(err);
    }
    const holder = resolveHolder();
    if (!holder) return json(503, { error: HOLDER_NOT_INITIALIZED });
    try {
      if (command.kind === 'event') {
        await holder.send(command.event);
      } else {
        await holder.transitionTo(command.to, command.trigger, {
          ...(command.claimPermission ? { claimPermission: command.claimPermission } : {}),
          ...(command.addReasons ? { addReasons: command.addReasons } : {}),
          ...(command.removeReasons ? { removeReasons: command.removeReasons } : {}),
        });
      }
    } catch (err) {
      if (err instanceof InvalidStateTransitionError) {
        return json(409, {
          error: err.message,
          from: err.from,
          to: err.to ?? null,
          trigger: err.trigger,
          event: err.event ?? null,
          reason: err.reason,
        });
      }
      return badInput(err);
    }
    const status = statusOf(holder, chain());
    logger.info(
      `${HTTP_LOG_TAG} operator ${command.kind === 'event' ? `event ${quote(command.event.type)}` : `transition to ${command.to}`}` +
        ` → ${status.primary_state}`,
    );
    return json(200, status);
  }

  const reader = chainReader(o.sink);
  const noChain = () =>
    json(404, { error: 'no chain store is configured (pass a durable sink as `sink`)' });

  // A verification reads the whole chain: behind the token when there is one, else served
  // from a recent result. Keyed by the query, so each distinct question has its own answer.
  const verifications = createVerifyCache<Awaited<ReturnType<ChainReader['verifyChain']>>>(
    o.verifyCacheMs,
  );
  const verifyKey = (url: URL) => {
    const params = new URLSearchParams(url.searchParams);
    params.sort();
    return params.toString();
  };

  const routes = new Map<string, Route>([
    [
      '/',
      {
        GET: async () => {
          const nonce = randomBytes(16).toString('base64');
          const html = renderPanel(statusOf(resolveHolder(), chain()), { nonce, title: o.title });
          return textResponse(200, html, {
            'content-type': 'text/html; charset=utf-8',
            'cache-control': 'no-store',
            'x-content-type-options': 'nosniff',
            'referrer-policy': 'no-referrer',
            'x-frame-options': 'DENY',
            // Everything is inline and same-origin: the page can reach nothing else.
            'content-security-policy':
              `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; ` +
              "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
          });
        },
      },
    ],
    [
      '/api/operational-state',
      { GET: async () => textResponse(200, statusJson(resolveHolder()), JSON_HEADERS) },
    ],
    [
      '/api/operational-state/history',
      {
        GET: async (_req, url) => {
          let limit: number | undefined;
          try {
            limit = parseHistoryLimit(url.searchParams);
          } catch (err) {
            return badInput(err);
          }
          const holder = resolveHolder();
          if (!holder) {
            return json(200, { transition_history: [], stub: true, error: HOLDER_NOT_INITIALIZED });
          }
          return json(200, { transition_history: holder.history(limit) });
        },
      },
    ],
    [
      '/api/operational-state/stream',
      {
        GET: async (request) => {
          const stream = openStatusStream({
            resolveHolder,
            chain,
            heartbeatMs: o.heartbeatMs,
            holderPollMs: Math.min(o.heartbeatMs, 1000),
            maxQueuedBytes: 1024 * 1024,
            logger,
            signal: request.signal,
            onClose: () => streams.delete(stream),
          });
          streams.add(stream);
          return new Response(stream.body, {
            headers: {
              'content-type': 'text/event-stream; charset=utf-8',
              'cache-control': 'no-cache, no-store',
              'x-accel-buffering': 'no',
              'x-content-type-options': 'nosniff',
            },
          });
        },
      },
    ],
    ['/api/operational-state/transitions', { POST: postTransition }],
    [
      '/api/operational-state/chain',
      {
        GET: async (_req, url) => {
          if (!reader) return noChain();
          let query: ReturnType<typeof parseChainQuery>;
          try {
            query = parseChainQuery(url.searchParams);
          } catch (err) {
            return badInput(err);
          }
          const events = await reader.tail(query);
          return json(200, { workspace_id: reader.workspaceId, events });
        },
      },
    ],
    [
      '/api/operational-state/chain/verify',
      {
        GET: async (request, url) => {
          if (!reader) return noChain();
          if (tokenDigest && !authorized(request.headers.get('authorization'))) {
            return unauthorized();
          }
          let query: ReturnType<typeof parseVerifyQuery>;
          try {
            query = parseVerifyQuery(url.searchParams);
          } catch (err) {
            return badInput(err);
          }
          const verified = await verifications.get(
            verifyKey(url),
            () => reader.verifyChain(undefined, query),
            tokenDigest !== undefined,
          );
          return json(200, {
            ...verifyResultJson(reader.workspaceId, verified.result),
            verified_at: new Date(verified.at).toISOString(),
            cached: verified.cached,
          });
        },
      },
    ],
    [
      '/livez',
      {
        GET: async () => {
          const holder = resolveHolder();
          const state = holder?.current.primaryState ?? STUB_STATUS.primary_state;
          return state === 'stopped'
            ? json(503, { live: false, primary_state: state, reason: 'primary state is stopped' })
            : json(200, { live: true, primary_state: state });
        },
      },
    ],
    [
      '/readyz',
      {
        GET: async () => {
          const holder = resolveHolder();
          const r = readiness(holder);
          const status = statusOf(holder);
          const base = {
            primary_state: status.primary_state,
            claim_permission: status.claim_permission,
          };
          return r.ready
            ? json(200, { ready: true, ...base })
            : json(503, { ready: false, ...base, reason: r.reason });
        },
      },
    ],
    [
      '/metrics',
      {
        GET: async () => {
          resolveHolder();
          return textResponse(200, await metrics.text(), {
            'content-type': metrics.contentType,
            'cache-control': 'no-store',
          });
        },
      },
    ],
  ]);

  /** 421 unless the request names a host this server serves (see {@link StatusHandlerOptions.allowedHosts}). */
  function misdirected(request: Request, url: URL): Response | undefined {
    if (!o.hosts.active || PROBES.has(url.pathname)) return undefined;
    // The Host header is what the browser sent; the URL is the fallback for handlers
    // driven without one (the node adapter builds the URL from the header too).
    const host = request.headers.get('host') ?? url.host;
    if (o.hosts.allows(host)) return undefined;
    const name = hostName(host);
    return json(421, {
      error:
        `this server does not serve the host ${quote(host)} (it answers localhost, IP addresses and the names it was told to serve; this refuses DNS rebinding). ` +
        `If you reach it by that name on purpose, allow it: kora-opstate start --allowed-host ${name ?? '<name>'} (env KORA_ALLOWED_HOSTS), or the allowedHosts option`,
    });
  }

  async function handle(request: Request): Promise<Response> {
    try {
      const url = new URL(request.url);
      const refused = misdirected(request, url);
      if (refused) return refused;
      if (closed) return json(503, { error: 'status handler is closed' });
      const route = routes.get(url.pathname);
      if (!route) return json(404, { error: `no route ${quote(url.pathname)}` });
      const head = request.method === 'HEAD' && route.GET !== undefined;
      const fn = route[(head ? 'GET' : request.method) as keyof Route];
      if (!fn) {
        const allow = route.GET ? 'GET, HEAD' : 'POST';
        return json(
          405,
          {
            error: `method ${quote(request.method)} not allowed on ${url.pathname}; allowed: ${allow}`,
          },
          { allow },
        );
      }
      const response = await fn(request, url);
      if (!head) return response;
      await response.body?.cancel().catch(() => {});
      return new Response(null, { status: response.status, headers: response.headers });
    } catch (err) {
      logger.error(`${HTTP_LOG_TAG} ${request.method} ${request.url} failed`, err);
      return json(500, { error: 'internal error' });
    }
  }

  const handler = handle as StatusHandler;
  Object.defineProperties(handler, {
    registry: { value: o.registry, enumerable: true },
    openStreams: { get: () => streams.size, enumerable: true },
    close: {
      value: async () => {
        if (closed) return;
        closed = true;
        for (const s of [...streams]) s.close();
        streams.clear();
        unfollow?.();
        unfollow = undefined;
        metrics.remove();
      },
    },
  });
  try {
    resolveHolder();
  } catch (err) {
    logger.error(`${HTTP_LOG_TAG} reading the holder failed`, err);
  }
  return handler;
}
