/**
 * The fleet (SPEC §12): `GET /api/fleet`, every agent of the workspace as JSON, and
 * `GET /fleet`, a page that draws it and follows it live (it polls `/api/fleet`). The
 * agents come from the app's `fleet` option (a registry on a shared Postgres); without
 * one, the fleet is the served instance alone.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';
import { createFleetRegistry } from '../../fleet/registry.js';
import {
  countPresence,
  type FleetSource,
  type FleetView,
  GONE_AFTER_HEARTBEATS,
} from '../../fleet/types.js';
import { errorText } from '../../logger.js';
import type { StatusCore } from '../core.js';
import { escapeHtml } from '../panel/escape.js';
import { HTTP_LOG_TAG, json, textResponse } from '../respond.js';

/** The page's files, next to the panel's (`npm run build` copies `src/http/panel/*`). */
const FILES = ['fleet.html', 'fleet.css', 'fleet.js'] as const;
const files = new Map<string, string>();

function file(name: (typeof FILES)[number]): string {
  let text = files.get(name);
  if (text === undefined) {
    const url = new URL(`../panel/${name}`, import.meta.url);
    try {
      text = readFileSync(url, 'utf8');
    } catch (err) {
      throw new Error(
        `the fleet page's file ${JSON.stringify(name)} is missing at ${fileURLToPath(url)} (npm run build copies src/http/panel/): ${errorText(err)}`,
      );
    }
    // Inlined into <style>/<script>: a closing tag would end the element early.
    if (name !== 'fleet.html' && /<\/(script|style)/i.test(text)) {
      throw new Error(
        `the fleet page's file ${JSON.stringify(name)} contains </script> or </style>`,
      );
    }
    files.set(name, text);
  }
  return text;
}

/**
 * `fleet.html` cut at its per-request slots (`nonce`, `title`): even indexes are page
 * text. CSS and script go in once; a request's values are placed by index, so nothing a
 * request carries is ever read as a slot.
 */
let template: string[] | undefined;
function pageParts(): string[] {
  if (template) return template;
  const parts = file('fleet.html')
    .replace('/*{{css}}*/', () => file('fleet.css'))
    .replace('/*{{js}}*/', () => file('fleet.js'))
    .split(/\{\{(nonce|title)\}\}/);
  if (/\{\{\w+\}\}/.test(parts.filter((_, i) => i % 2 === 0).join(''))) {
    throw new Error('fleet.html has an unknown {{slot}}');
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

/** The fleet of an app without a `fleet` option: its instance alone (or nobody yet). */
function localSource(core: StatusCore): FleetSource {
  let local: FleetSource | undefined;
  return {
    list(): Promise<FleetView> {
      const holder = core.holder();
      if (!holder) {
        return Promise.resolve({
          workspace_id: 'default',
          source: 'local',
          gone_after_heartbeats: GONE_AFTER_HEARTBEATS,
          generated_at: new Date().toISOString(),
          agents: [],
          counts: countPresence([]),
        });
      }
      local ??= createFleetRegistry({ opstate: holder });
      return local.list();
    },
  };
}

/** @internal Registers `GET /api/fleet` and `GET /fleet` on `app`. */
export function fleetRoutes(app: Hono, core: StatusCore): void {
  const source = core.options.fleet ?? localSource(core);
  app.get('/api/fleet', async () => {
    try {
      return json(200, await source.list());
    } catch (err) {
      core.logger.warn(`${HTTP_LOG_TAG} GET /api/fleet: ${errorText(err)}`);
      return json(503, { error: `the fleet registry could not be read: ${errorText(err)}` });
    }
  });
  app.get('/fleet', () => page(core));
}
