/**
 * The node server's fast path for the two answers pollers hammer: `GET` (and `HEAD`)
 * `/api/operational-state` and `/metrics`, and for the event stream (written to the
 * socket as it is, no web stream per client). Both bodies are cached bytes (see `core.ts`
 * and `metrics.ts`), so what costs is the WHATWG Request/Response layer around them
 * (about four fifths of the CPU of such a request, measured): this answers them from
 * `node:http` directly, with the same status, headers and bytes the app's routes give.
 * Anything else — another method or path, a query string, a Host the app does not serve,
 * a closed app — is not answered here and goes to the app, which answers it (421, 503,
 * ...) as before.
 */
import type { ServerResponse } from 'node:http';
import type { StatusCore } from './core.js';
import { JSON_HEADERS } from './respond.js';
import type { StreamHub } from './stream.js';

/** @internal One answer of the fast path: written with `writeHead` and `end`. */
export interface FastAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

/**
 * @internal The fast path of an app: the answer for `method path` with this Host header,
 * or undefined for the app to answer. A promise when the answer needs collecting.
 */
export type FastPath = (
  method: string | undefined,
  url: string | undefined,
  host: string | undefined,
) => FastAnswer | Promise<FastAnswer> | NativeAnswer | undefined;

/**
 * @internal An answer that writes the response itself (the event stream); `track` hands
 * the server its clean end for `close()` and returns the way to forget it.
 */
export type NativeAnswer = (res: ServerResponse, track: (end: () => void) => () => void) => void;

/** @internal Where a handler or an app carries its fast path (read by the node server). */
export const FAST_PATH: unique symbol = Symbol('kora.operational_state.http.fastPath');

/**
 * One header object per body, built when the body changes (the body's bytes are the
 * same object until its text changes), so an unchanged answer allocates nothing.
 */
function cachedAnswer(base: Readonly<Record<string, string>>) {
  let last: FastAnswer | undefined;
  return (body: Uint8Array, contentType?: string): FastAnswer => {
    if (last?.body !== body || (contentType && last.headers['content-type'] !== contentType)) {
      last = {
        status: 200,
        headers: {
          ...base,
          ...(contentType ? { 'content-type': contentType } : {}),
          'content-length': String(body.byteLength),
        },
        body,
      };
    }
    return last;
  };
}

const STREAM = '/api/operational-state/stream';

/** @internal The fast path over `core`: the same answers as its routes, for those two. */
export function createFastPath(core: StatusCore, hub: StreamHub): FastPath {
  const status = cachedAnswer(JSON_HEADERS);
  const metrics = cachedAnswer({ 'cache-control': 'no-store' });
  const hosts = core.options.hosts;
  return (method, url, host) => {
    if (method !== 'GET' && method !== 'HEAD') return undefined;
    if (url !== '/api/operational-state' && url !== '/metrics' && url !== STREAM) return undefined;
    if (core.closed) return undefined;
    if (hosts.active && (host === undefined || !hosts.allows(host))) return undefined;
    if (url === STREAM) {
      if (method !== 'GET') return undefined;
      return (res, track) => {
        const forget = track(hub.openNode(res));
        res.once('close', forget);
      };
    }
    if (url === '/api/operational-state') return status(core.statusBody());
    core.holder(); // a holder that appeared since is counted from now on
    return core.metrics.body().then((body) => metrics(body, core.metrics.contentType));
  };
}
