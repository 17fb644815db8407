/**
 * The panel's static files (HTML, CSS, the client script), read from this folder once, on
 * first use. The folder is `src/http/panel/` when run from source (tsx, tests) and
 * `dist/src/http/panel/` in the built package, where `npm run build` copies them (tsc
 * copies only what it compiles).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { textResponse } from '../respond.js';
import { escapeHtml } from './escape.js';

/** The files `npm run build` must copy next to this module. */
export const PANEL_FILES = [
  'panel.html',
  'panel.css',
  'panel.js',
  'cockpit.js',
  'cards.js',
  'statechart.css',
  'base.css',
  'fleet.html',
  'fleet.css',
  'fleet.js',
  'fleetControl.js',
  'inspector.html',
  'inspector.css',
  'inspector.js',
] as const;
export type PanelFile = (typeof PANEL_FILES)[number];

const cache = new Map<PanelFile, string>();

/**
 * The text of one of the panel's files (cached for the life of the process).
 *
 * @example
 * panelFile('panel.css').includes('.badge'); // true
 */
export function panelFile(name: PanelFile): string {
  let text = cache.get(name);
  if (text === undefined) {
    const url = new URL(name, import.meta.url);
    try {
      text = readFileSync(url, 'utf8');
    } catch (err) {
      throw new Error(
        `the panel's file ${JSON.stringify(name)} is missing at ${fileURLToPath(url)} ` +
          `(a build must copy src/http/panel/ next to the compiled panel: npm run build): ${(err as Error).message}`,
      );
    }
    // The files go inline into <style>/<script>: a closing tag would end the element early.
    if (/<\/(script|style)/i.test(text) && !name.endsWith('.html')) {
      throw new Error(
        `the panel's file ${JSON.stringify(name)} contains a closing </script> or </style>`,
      );
    }
    cache.set(name, text);
  }
  return text;
}

/**
 * A page's HTML cut at its per-request slots (`{{nonce}}`, `{{title}}`): even indexes are
 * page text, odd ones slot names. `inline` fills the other slots once (`/*{{css}}*\/`,
 * `/*{{js}}*\/`, `{{statechart}}`, ...), so nothing a request carries is ever read as a slot.
 *
 * @example
 * const parts = pageParts('fleet.html', { css: () => panelFile('fleet.css') });
 */
export function pageParts(page: PanelFile, inline: Record<string, () => string>): string[] {
  let html = panelFile(page);
  for (const [slot, fill] of Object.entries(inline)) {
    html = html.replace(slot === 'css' || slot === 'js' ? `/*{{${slot}}}*/` : `{{${slot}}}`, fill);
  }
  const parts = html.split(/\{\{(nonce|title)\}\}/);
  if (/\{\{\w+\}\}/.test(parts.filter((_, i) => i % 2 === 0).join(''))) {
    throw new Error(`${page} has an unknown {{slot}}`);
  }
  return parts;
}

/**
 * The answer for a page: fresh nonce, no caching, and a CSP under which everything is
 * inline and same-origin, so the page can reach nothing else.
 *
 * @example
 * return htmlPage((nonce) => fill(parts, { nonce, title }));
 */
export function htmlPage(render: (nonce: string) => string): Response {
  const nonce = randomBytes(16).toString('base64');
  return textResponse(200, render(nonce), {
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

/** `parts` (from {@link pageParts}) with this request's escaped values in their slots. */
export function fillPage(parts: readonly string[], values: Record<string, string>): string {
  return parts.map((part, i) => (i % 2 === 0 ? part : escapeHtml(values[part] ?? ''))).join('');
}
