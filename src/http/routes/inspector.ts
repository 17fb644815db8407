/**
 * The offline inspector (SPEC §12): `GET /api/inspector`, the served actor's recent steps
 * (see `../inspectorLog.ts`), and `GET /inspector`, a page that shows them as a timeline,
 * lights the statechart at the selected step and shows that step's event and context.
 * Nothing on the page leaves this server: it needs no internet, unlike the hosted Stately
 * inspector that `--inspect` bridges to. The page follows the SSE stream and fetches the
 * new steps (`?after=`) on each of its messages.
 */
import type { Hono } from 'hono';
import { OperationalStateInputError, quote } from '../../vocabulary.js';
import type { StatusCore } from '../core.js';
import { fillPage, htmlPage, pageParts, panelFile } from '../panel/assets.js';
import { panelStatechartSvg } from '../panel/statechart.js';
import { badInput, json } from '../respond.js';

/** The page, cut at its per-request slots once (see `pageParts`). */
let template: string[] | undefined;

function page(core: StatusCore): Response {
  template ??= pageParts('inspector.html', {
    css: () =>
      `${panelFile('base.css')}\n${panelFile('statechart.css')}\n${panelFile('inspector.css')}`,
    js: () => panelFile('inspector.js'),
    statechart: panelStatechartSvg,
  });
  const parts = template;
  return htmlPage((nonce) => fillPage(parts, { nonce, title: core.options.title }));
}

/** `?name=` once, as an integer from `min` to `max`; undefined when absent. */
function intParam(params: URLSearchParams, name: string, min: number, max: number) {
  const all = params.getAll(name);
  if (all.length === 0) return undefined;
  const raw = all[0]!;
  if (all.length > 1 || !/^\d{1,9}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    const value = all.length > 1 ? all : raw;
    throw new OperationalStateInputError(
      name,
      value,
      `invalid ${name} ${quote(value)}: expected one integer from ${min} to ${max}`,
    );
  }
  return Number(raw);
}

/** @internal Registers `GET /api/inspector` and `GET /inspector` on `app`. */
export function inspectorRoutes(app: Hono, core: StatusCore): void {
  const capacity = core.options.inspectorSteps;
  app.get('/api/inspector', (c) => {
    let after: number | undefined;
    let limit: number | undefined;
    try {
      const params = new URL(c.req.url).searchParams;
      after = intParam(params, 'after', 0, 999_999_999);
      limit = intParam(params, 'limit', 1, capacity);
    } catch (err) {
      return badInput(err);
    }
    // Before the served holder exists there is nothing to follow yet: asking looks again.
    core.holder();
    return json(200, core.inspector.view(after, limit));
  });
  app.get('/inspector', () => page(core));
}
