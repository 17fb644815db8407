/**
 * The offline inspector (SPEC §12): `GET /api/inspector`, the served actor's recent steps
 * (see `../inspectorLog.ts`), and `GET /inspector`, a page that shows them as a timeline,
 * lights the statechart at the selected step and shows that step's event and context.
 * Nothing on the page leaves this server: it needs no internet, unlike the hosted Stately
 * inspector that `--inspect` bridges to. The page follows the SSE stream and fetches the
 * new steps (`?after=`) on each of its messages.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';
import { errorText } from '../../logger.js';
import { OperationalStateInputError, quote } from '../../vocabulary.js';
import type { StatusCore } from '../core.js';
import { panelFile } from '../panel/assets.js';
import { escapeHtml } from '../panel/escape.js';
import { panelStatechartSvg } from '../panel/statechart.js';
import { badInput, json, textResponse } from '../respond.js';

/** The page's files, next to the panel's (`npm run build` copies `src/http/panel/*`). */
const FILES = ['inspector.html', 'inspector.css', 'inspector.js'] as const;
type InspectorFile = (typeof FILES)[number];
const files = new Map<InspectorFile, string>();

function file(name: InspectorFile): string {
  let text = files.get(name);
  if (text === undefined) {
    const url = new URL(`../panel/${name}`, import.meta.url);
    try {
      text = readFileSync(url, 'utf8');
    } catch (err) {
      throw new Error(
        `the inspector page's file ${JSON.stringify(name)} is missing at ${fileURLToPath(url)} (npm run build copies src/http/panel/): ${errorText(err)}`,
      );
    }
    // Inlined into <style>/<script>: a closing tag would end the element early.
    if (name !== 'inspector.html' && /<\/(script|style)/i.test(text)) {
      throw new Error(
        `the inspector page's file ${JSON.stringify(name)} contains </script> or </style>`,
      );
    }
    files.set(name, text);
  }
  return text;
}

/**
 * `inspector.html` cut at its per-request slots (`nonce`, `title`): even indexes are page
 * text. The CSS, the script and the statechart go in once; a request's values are placed
 * by index, so nothing a request carries is ever read as a slot.
 */
let template: string[] | undefined;
function pageParts(): string[] {
  if (template) return template;
  const parts = file('inspector.html')
    .replace('/*{{css}}*/', () => `${panelFile('statechart.css')}\n${file('inspector.css')}`)
    .replace('/*{{js}}*/', () => file('inspector.js'))
    .replace('{{statechart}}', () => panelStatechartSvg())
    .split(/\{\{(nonce|title)\}\}/);
  if (/\{\{\w+\}\}/.test(parts.filter((_, i) => i % 2 === 0).join(''))) {
    throw new Error('inspector.html has an unknown {{slot}}');
  }
  template = parts;
  return parts;
}

function page(core: StatusCore): Response {
  const nonce = randomBytes(16).toString('base64');
  const values: Record<string, string> = {
    nonce: escapeHtml(nonce),
    title: escapeHtml(core.options.title),
  };
  const html = pageParts()
    .map((part, i) => (i % 2 === 0 ? part : values[part]))
    .join('');
  return textResponse(200, html, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'content-security-policy':
      `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; ` +
      "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  });
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
