/**
 * The app's middleware: the Host allowlist (421), the closed gate (503), bearer auth for
 * the operator (constant-time; 401/403), the operator body limit (413) and the 405 answer.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { quote } from '../vocabulary.js';
import { type HostCheck, hostName } from './hosts.js';
import { json } from './respond.js';
import { MAX_OPERATOR_BODY_BYTES } from './schemas.js';

/**
 * Probes answer any Host: Kubernetes sends the pod IP or no name at all, and they carry
 * nothing an attacker could use (state name and readiness).
 */
const PROBES: ReadonlySet<string> = new Set(['/livez', '/readyz', '/startupz']);

/** @internal 421 unless the request names a host this app serves; the probes answer any. */
export function hostGuard(hosts: HostCheck): MiddlewareHandler {
  return async (c, next) => {
    if (!hosts.active || PROBES.has(c.req.path)) return next();
    // The Host header is what the browser sent; the URL is the fallback for requests
    // made without one (the node server builds the URL from the header too).
    const host = c.req.header('host') ?? new URL(c.req.url).host;
    if (hosts.allows(host)) return next();
    return json(421, {
      error:
        `this server does not serve the host ${quote(host)} (it answers localhost, IP addresses and the names it was told to serve; this refuses DNS rebinding). ` +
        `If you reach it by that name on purpose, allow it: kora-opstate start --allowed-host ${hostName(host) ?? '<name>'} (env KORA_ALLOWED_HOSTS), or the allowedHosts option`,
    });
  };
}

/** @internal 503 once the app was closed. */
export function closedGuard(isClosed: () => boolean): MiddlewareHandler {
  return async (_c, next) =>
    isClosed() ? json(503, { error: 'status handler is closed' }) : next();
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** @internal Bearer-token checks against one configured token (or none). */
export interface BearerCheck {
  /** Whether a token is configured. */
  readonly configured: boolean;
  /** Whether `header` (an Authorization value) carries the token. */
  authorized(header: string | undefined): boolean;
  /** The 401 answer. */
  unauthorized(): Response;
}

/**
 * @internal Not `hono/bearer-auth`: that answers a malformed header with 400 and accepts
 * only RFC 6750 token characters, where this API answers 401 to anything but the token
 * and takes any token without whitespace.
 */
export function bearerCheck(token: string | undefined): BearerCheck {
  const digest = token === undefined ? undefined : sha256(token);
  return {
    configured: digest !== undefined,
    authorized(header) {
      if (!digest || header === undefined) return false;
      const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
      // Equal-length digests: the comparison takes the same time whatever the guess.
      return m !== null && timingSafeEqual(sha256(m[1]!), digest);
    },
    unauthorized: () =>
      json(
        401,
        { error: 'missing or wrong bearer token (Authorization: Bearer <token>)' },
        { 'www-authenticate': 'Bearer realm="kora-opstate"' },
      ),
  };
}

/** @internal The operator's auth: 403 when no token is configured, 401 without the token. */
export function operatorAuth(bearer: BearerCheck): MiddlewareHandler {
  return async (c, next) => {
    if (!bearer.configured) {
      return json(403, {
        error: 'operator transitions are disabled: no operator token is configured',
      });
    }
    if (!bearer.authorized(c.req.header('authorization'))) return bearer.unauthorized();
    return next();
  };
}

/** A body refused unread: the connection cannot be reused, so it is closed after this answer. */
function tooLarge(c: Context): Response {
  c.req.raw.body?.cancel().catch(() => {});
  const declared = c.req.header('transfer-encoding') ? undefined : c.req.header('content-length');
  return json(
    413,
    {
      error:
        declared === undefined
          ? `body is over the ${MAX_OPERATOR_BODY_BYTES}-byte limit`
          : `body of ${declared} bytes is over the ${MAX_OPERATOR_BODY_BYTES}-byte limit`,
    },
    { connection: 'close' },
  );
}

/**
 * @internal At most {@link MAX_OPERATOR_BODY_BYTES}: a declared length over it is refused
 * before reading, a streamed body as soon as its bytes pass it.
 */
export function operatorBodyLimit(): MiddlewareHandler {
  const limit = bodyLimit({ maxSize: MAX_OPERATOR_BODY_BYTES, onError: tooLarge });
  return async (c, next) => {
    const declared = c.req.header('content-length');
    if (declared !== undefined && !/^\d+$/.test(declared)) {
      return json(400, { error: `invalid Content-Length ${quote(declared)}` });
    }
    const raw = c.req.raw;
    if (raw.body && (declared === undefined || c.req.header('transfer-encoding'))) {
      // bodyLimit re-wraps a streamed body as `new Request(raw, ...)`, which undici refuses
      // for @hono/node-server's lightweight Request (globals not overridden): hand it a
      // standard one. Only operator POSTs come here.
      c.req.raw = new Request(raw.url, {
        method: raw.method,
        headers: raw.headers,
        body: raw.body,
        duplex: 'half',
      } as RequestInit);
    }
    return limit(c, next);
  };
}

/** @internal 405 naming the methods the path takes. */
export function methodNotAllowed(allow: string): (c: Context) => Response {
  return (c) =>
    json(
      405,
      {
        error: `method ${quote(c.req.method)} not allowed on ${new URL(c.req.url).pathname}; allowed: ${allow}`,
      },
      { allow },
    );
}
