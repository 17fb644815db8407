/**
 * The read-only routes: the panel, the status payload, its history, the probes
 * (`/livez`, `/readyz`, `/startupz`: see `../probes.ts`) and the Prometheus metrics.
 */
import type { Hono } from 'hono';
import type { StatusCore } from '../core.js';
import { htmlPage } from '../panel/assets.js';
import { renderPanel } from '../panel.js';
import { type ProbeName, probeResponse } from '../probes.js';
import { JSON_HEADERS, json, parsed } from '../respond.js';
import { parseHistoryLimit } from '../schemas.js';
import { HOLDER_NOT_INITIALIZED } from '../status.js';

function panel(core: StatusCore): Response {
  // The page starts from the payload GET /api/operational-state serves (cockpit keys too).
  return htmlPage((nonce) => renderPanel(core.statusJson(), { nonce, title: core.options.title }));
}

function history(core: StatusCore, url: string): Response {
  const limit = parsed(() => parseHistoryLimit(new URL(url).searchParams));
  if ('response' in limit) return limit.response;
  const holder = core.holder();
  if (!holder) {
    return json(200, { transition_history: [], stub: true, error: HOLDER_NOT_INITIALIZED });
  }
  return json(200, { transition_history: holder.history(limit.value) });
}

/**
 * A fixed body whose bytes come from a cache: the headers (with the length) are built
 * once per body and shared, so an unchanged answer costs no serializing, encoding or
 * header building (the node server writes a plain header object as it is).
 */
function cachedBody(base: Readonly<Record<string, string>>) {
  let last: Uint8Array | undefined;
  let headers: Record<string, string> = {};
  return (body: Uint8Array, contentType?: string): Response => {
    if (body !== last) {
      last = body;
      headers = {
        ...base,
        ...(contentType ? { 'content-type': contentType } : {}),
        'content-length': String(body.byteLength),
      };
    }
    return new Response(body as Uint8Array<ArrayBuffer>, { status: 200, headers });
  };
}

/** @internal Registers the read-only routes on `app`. */
export function statusRoutes(app: Hono, core: StatusCore): void {
  const statusAnswer = cachedBody(JSON_HEADERS);
  const metricsAnswer = cachedBody({ 'cache-control': 'no-store' });
  app.get('/', () => panel(core));
  app.get('/api/operational-state', () => statusAnswer(core.statusBody()));
  app.get('/api/operational-state/history', (c) => history(core, c.req.url));
  for (const probe of ['livez', 'readyz', 'startupz'] satisfies ProbeName[]) {
    app.get(`/${probe}`, (c) =>
      probeResponse(probe, c.req.url, core.holder(), core.options.probes),
    );
  }
  app.get('/metrics', async () => {
    core.holder(); // a holder that appeared since is counted from now on
    return metricsAnswer(await core.metrics.body(), core.metrics.contentType);
  });
}
