/**
 * `GET /`: the live panel — one self-contained page (inline CSS and JS, no external
 * request of any kind) built from the files in `./panel/`: `panel.html` with `panel.css`,
 * `statechart.css`, the statechart SVG and the client `panel.js` inlined once per process,
 * and per request only the CSP nonce, the title and the status as JSON. The client renders
 * the state, the valid next transitions and the history from that JSON and then from every
 * message of `GET /api/operational-state/stream`: one rendering path, in the browser.
 */
import { TRANSITION_TABLE } from '../table.js';
import { type PanelFile, panelFile } from './panel/assets.js';
import { escapeHtml, scriptJson, scriptJsonText } from './panel/escape.js';
import { panelStatechartSvg } from './panel/statechart.js';
import type { StatusPayload } from './status.js';

export { escapeHtml } from './panel/escape.js';
export { renderStatechartSvg, type StatechartSvgOptions } from './panel/statechart.js';

/** Options of {@link renderPanel}. */
export interface PanelOptions {
  /** CSP nonce for the inline `<style>` and `<script>` (the handler sends a fresh one). */
  nonce?: string;
  /** The page title's prefix (default `kora-opstate`). */
  title?: string;
}

/** The client's files, in the order they run. */
const CLIENT: readonly PanelFile[] = ['cards.js', 'cockpit.js', 'panel.js'];

/** The slots `panel.html` has per request; every other `{{slot}}` is filled once. */
type RequestSlot = 'nonce' | 'title' | 'status';
const REQUEST_SLOTS: readonly string[] = ['nonce', 'title', 'status'] satisfies RequestSlot[];
/**
 * Slots that sit inside CSS, script or JSON, written there as a comment or a string so
 * `panel.html` stays valid for editors and linters: the wrapper goes with the slot.
 */
const WRAPPED: Readonly<Record<string, readonly [string, string]>> = {
  css: ['/*', '*/'],
  js: ['/*', '*/'],
  rows: ['"', '"'],
  status: ['"', '"'],
};

/**
 * `panel.html` with its per-process slots filled, cut at its per-request slots: even
 * indexes are page text, odd ones a {@link RequestSlot}. Filling by index (not by search
 * and replace) means nothing a request puts in (a hostile trigger saying `{{nonce}}`) is
 * ever read as a slot.
 */
let template: readonly string[] | undefined;

function pageTemplate(): readonly string[] {
  if (template) return template;
  const once: Record<string, () => string> = {
    css: () =>
      ['base.css', 'panel.css', 'statechart.css'].map((f) => panelFile(f as PanelFile)).join('\n'),
    // One script: the cockpit first (panel.js hands it each status it draws).
    js: () => CLIENT.map((f) => panelFile(f)).join('\n'),
    statechart: panelStatechartSvg,
    rows: () =>
      scriptJson(
        TRANSITION_TABLE.map((r) => ({ row: r.row, from: r.from, to: r.to, event: r.event })),
      ),
  };
  const parts = panelFile('panel.html').split(/\{\{(\w+)\}\}/);
  const out = [parts[0]!];
  for (let i = 1; i < parts.length; i += 2) {
    const slot = parts[i]!;
    let after = parts[i + 1]!;
    const wrap = WRAPPED[slot];
    if (wrap) {
      const before = out[out.length - 1]!;
      if (!before.endsWith(wrap[0]) || !after.startsWith(wrap[1])) {
        throw new Error(`panel.html: write {{${slot}}} as ${wrap[0]}{{${slot}}}${wrap[1]}`);
      }
      out[out.length - 1] = before.slice(0, -wrap[0].length);
      after = after.slice(wrap[1].length);
    }
    const fill = once[slot];
    if (fill) out[out.length - 1] += fill() + after;
    else if (REQUEST_SLOTS.includes(slot)) out.push(slot, after);
    else throw new Error(`panel.html has an unknown slot {{${slot}}}`);
  }
  template = out;
  return out;
}

/**
 * The panel page for `status` (a payload, or its JSON text as the app serves it): the
 * status goes in as JSON, and the page's script draws it.
 *
 * @example
 * new Response(renderPanel(statusOf(opstate), { nonce }), { headers: { 'content-type': 'text/html' } });
 */
export function renderPanel(status: StatusPayload | string, options: PanelOptions = {}): string {
  const values: Record<RequestSlot, string> = {
    nonce: escapeHtml(options.nonce ?? ''),
    title: escapeHtml(options.title ?? 'kora-opstate'),
    status: typeof status === 'string' ? scriptJsonText(status) : scriptJson(status),
  };
  return pageTemplate()
    .map((part, i) => (i % 2 === 0 ? part : values[part as RequestSlot]))
    .join('');
}
