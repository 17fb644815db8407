/**
 * `GET /`: the live panel — one self-contained page (inline CSS and JS, no external
 * request of any kind) with the state, claim permission, degradation reasons, the
 * statechart as SVG generated from the derived §9.1 table with the current state lit,
 * the valid next transitions and the history. It renders on the server and then follows
 * `GET /api/operational-state/stream` over EventSource, so it updates without a reload.
 */
import { TRANSITION_TABLE, type TransitionRow } from '../table.js';
import { PRIMARY_STATES, type PrimaryState } from '../vocabulary.js';
import type { StatusPayload } from './status.js';

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * Escapes text for HTML/SVG element content and quoted attribute values.
 *
 * @example
 * escapeHtml('<b>"x"</b>'); // '&lt;b&gt;&quot;x&quot;&lt;/b&gt;'
 */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** JSON safe inside a `<script type="application/json">` element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

// ---------------------------------------------------------------------------------------
// The statechart

/** Where each state sits in the drawing (layout only; the arrows come from the table). */
const LAYOUT: Readonly<Record<PrimaryState, { x: number; y: number }>> = {
  booting: { x: 150, y: 300 },
  ready: { x: 440, y: 120 },
  active: { x: 690, y: 300 },
  paused: { x: 440, y: 480 },
  stopped: { x: 970, y: 300 },
};
/** Arrows that would cross a state bow around it (perpendicular offset of the curve). */
const BEND: Readonly<Record<string, number>> = {
  'booting>stopped': -470,
};
/** Hand-placed labels where the default spot would collide (text anchor point). */
const LABEL_AT: Readonly<
  Record<string, { x: number; y: number; anchor: 'start' | 'middle' | 'end' }>
> = {
  'booting>booting': { x: 150, y: 208, anchor: 'middle' },
  'booting>ready': { x: 304, y: 226, anchor: 'start' },
  'booting>paused': { x: 268, y: 350, anchor: 'start' },
  'booting>stopped': { x: 560, y: 560, anchor: 'middle' },
  'ready>paused': { x: 476, y: 296, anchor: 'start' },
  'ready>active': { x: 590, y: 186, anchor: 'start' },
  'ready>stopped': { x: 800, y: 226, anchor: 'start' },
  'paused>ready': { x: 404, y: 290, anchor: 'end' },
};
/** Two arrows between the same pair bow apart by this much. */
const PAIR_BEND = 30;
const NODE_W = 124;
const NODE_H = 46;
const VIEW = { x: 0, y: 60, w: 1080, h: 530 };

interface Edge {
  readonly from: PrimaryState;
  readonly to: PrimaryState;
  readonly rows: readonly TransitionRow[];
}

/** One arrow per (from, to) pair of the table, in table order. */
function edges(): Edge[] {
  const byPair = new Map<string, { from: PrimaryState; to: PrimaryState; rows: TransitionRow[] }>();
  for (const r of TRANSITION_TABLE) {
    const key = `${r.from}>${r.to}`;
    const e = byPair.get(key) ?? { from: r.from, to: r.to, rows: [] };
    e.rows.push(r);
    byPair.set(key, e);
  }
  return [...byPair.values()];
}

const round = (n: number) => Math.round(n * 10) / 10;

/** Where the ray from the centre of `at` towards `toward` leaves its box. */
function boxExit(
  at: { x: number; y: number },
  toward: { x: number; y: number },
): { x: number; y: number } {
  const dx = toward.x - at.x;
  const dy = toward.y - at.y;
  const t = Math.min(
    dx === 0 ? Number.POSITIVE_INFINITY : NODE_W / 2 / Math.abs(dx),
    dy === 0 ? Number.POSITIVE_INFINITY : NODE_H / 2 / Math.abs(dy),
  );
  return { x: at.x + dx * t, y: at.y + dy * t };
}

function edgeSvg(edge: Edge, reversed: boolean, current: PrimaryState | undefined): string {
  const key = `${edge.from}>${edge.to}`;
  const rowsAttr = edge.rows.map((r) => r.row).join(' ');
  const events = [...new Set(edge.rows.map((r) => r.event))].join(' ');
  const cls = `edge${current !== undefined && edge.from === current ? ' next' : ''}`;
  const title = edge.rows.map((r) => `${r.row}: ${r.trigger} (${r.event})`).join('\n');
  const lines = edge.rows.map((r) => `${r.row} ${r.event}`);
  const a = LAYOUT[edge.from];
  let path: string;
  let label: { x: number; y: number };
  let anchor: 'start' | 'middle' | 'end' = 'middle';
  if (edge.from === edge.to) {
    // A self-loop over the top of the box.
    const top = a.y - NODE_H / 2;
    path = `M ${a.x - 22} ${top} C ${a.x - 60} ${top - 70}, ${a.x + 60} ${top - 70}, ${a.x + 22} ${top}`;
    label = { x: a.x, y: top - 62 - (lines.length - 1) * 13 };
  } else {
    const b = LAYOUT[edge.to];
    const mx = (a.x + b.x) / 2;
    const my = (a.y + b.y) / 2;
    const len = Math.hypot(b.x - a.x, b.y - a.y);
    // Unit normal to the left of the direction of travel.
    const nx = (b.y - a.y) / len;
    const ny = -(b.x - a.x) / len;
    const bend = BEND[key] ?? (reversed ? PAIR_BEND : 0);
    const c = { x: mx + nx * bend, y: my + ny * bend };
    const p0 = boxExit(a, bend ? c : b);
    const p2 = boxExit(b, bend ? c : a);
    // Pull the end back a little so the arrowhead touches the box instead of entering it.
    const ex = p2.x - (bend ? c.x : a.x);
    const ey = p2.y - (bend ? c.y : a.y);
    const el = Math.hypot(ex, ey) || 1;
    const end = { x: p2.x - (ex / el) * 3, y: p2.y - (ey / el) * 3 };
    path = bend
      ? `M ${round(p0.x)} ${round(p0.y)} Q ${round(c.x)} ${round(c.y)} ${round(end.x)} ${round(end.y)}`
      : `M ${round(p0.x)} ${round(p0.y)} L ${round(end.x)} ${round(end.y)}`;
    // The label sits beside the curve's midpoint, on its outer side.
    const mid = bend
      ? { x: 0.25 * p0.x + 0.5 * c.x + 0.25 * end.x, y: 0.25 * p0.y + 0.5 * c.y + 0.25 * end.y }
      : { x: (p0.x + end.x) / 2, y: (p0.y + end.y) / 2 };
    const side = bend >= 0 ? 1 : -1;
    const off = 8;
    label = { x: mid.x + nx * off * side, y: mid.y + ny * off * side };
    const lx = nx * side;
    if (lx > 0.35) anchor = 'start';
    else if (lx < -0.35) anchor = 'end';
    const ly = ny * side;
    // Stack multi-line labels away from the curve.
    if (ly < -0.35) label.y -= (lines.length - 1) * 13;
    else if (ly > 0.35) label.y += 10;
    else label.y -= ((lines.length - 1) * 13) / 2 - 4;
  }
  const fixed = LABEL_AT[key];
  if (fixed) {
    label = { x: fixed.x, y: fixed.y };
    anchor = fixed.anchor;
  }
  const tspans = lines
    .map(
      (l, i) =>
        `<tspan x="${round(label.x)}" ${i === 0 ? `y="${round(label.y)}"` : 'dy="13"'}>${escapeHtml(l)}</tspan>`,
    )
    .join('');
  return (
    `<g class="${cls}" data-from="${edge.from}" data-to="${edge.to}" data-rows="${rowsAttr}" data-events="${escapeHtml(events)}">` +
    `<title>${escapeHtml(title)}</title>` +
    `<path d="${path}"/>` +
    `<text text-anchor="${anchor}">${tspans}</text></g>`
  );
}

function nodeSvg(state: PrimaryState, current: PrimaryState | undefined): string {
  const { x, y } = LAYOUT[state];
  const cls = `node state-${state}${state === current ? ' current' : ''}${state === 'stopped' ? ' final' : ''}`;
  const inner =
    state === 'stopped'
      ? `<rect class="inner" x="${x - NODE_W / 2 + 4}" y="${y - NODE_H / 2 + 4}" width="${NODE_W - 8}" height="${NODE_H - 8}" rx="${(NODE_H - 8) / 2}"/>`
      : '';
  return (
    `<g class="${cls}" id="node-${state}" data-state="${state}">` +
    `<rect x="${x - NODE_W / 2}" y="${y - NODE_H / 2}" width="${NODE_W}" height="${NODE_H}" rx="${NODE_H / 2}"/>` +
    inner +
    `<text x="${x}" y="${y + 6}" text-anchor="middle">${state}</text></g>`
  );
}

const SVG_STYLE = `
.statechart{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:100%;height:auto}
.statechart .node rect{fill:#f8fafc;stroke:#94a3b8;stroke-width:2}
.statechart .node rect.inner{fill:none;stroke-width:1.5}
.statechart .node text{font-size:17px;font-weight:600;fill:#334155}
.statechart .node.current rect{stroke-width:3}
.statechart .node.current text{fill:#fff}
.statechart .node.current.state-booting rect{fill:#7c3aed;stroke:#5b21b6}
.statechart .node.current.state-ready rect{fill:#15803d;stroke:#14532d}
.statechart .node.current.state-active rect{fill:#2563eb;stroke:#1e3a8a}
.statechart .node.current.state-paused rect{fill:#d97706;stroke:#92400e}
.statechart .node.current.state-stopped rect{fill:#b91c1c;stroke:#7f1d1d}
.statechart .node.current rect.inner{fill:none;stroke:#fff}
.statechart .edge path{fill:none;stroke:#cbd5e1;stroke-width:1.6;marker-end:url(#arrow)}
.statechart .edge text{font-size:11.5px;fill:#94a3b8;paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}
.statechart .edge.next path{stroke:#0f172a;stroke-width:2.2;marker-end:url(#arrow-next)}
.statechart .edge.next text{fill:#0f172a;font-weight:600}
.statechart .start{fill:#334155}
`;

/** Options of {@link renderStatechartSvg}. */
export interface StatechartSvgOptions {
  /** The state to light (and whose outgoing arrows to mark as next). */
  current?: PrimaryState;
  /** A complete SVG document (XML prolog, `xmlns`), e.g. for `kora-opstate diagram --format svg`. */
  standalone?: boolean;
  /** CSP nonce for the embedded `<style>`. */
  nonce?: string;
}

/**
 * The §9.1 statechart as SVG: one box per primary state, one arrow per (from, to) pair of
 * `TRANSITION_TABLE` labelled with its rows and events (hover shows the row texts).
 *
 * @example
 * writeFileSync('statechart.svg', renderStatechartSvg({ standalone: true, current: 'ready' }));
 */
export function renderStatechartSvg(options: StatechartSvgOptions = {}): string {
  const { current, standalone = false, nonce } = options;
  const all = edges();
  const pairs = new Set(all.map((e) => `${e.from}>${e.to}`));
  const start = LAYOUT.booting;
  const body = [
    `<circle class="start" cx="${start.x - NODE_W / 2 - 38}" cy="${start.y}" r="7"/>`,
    `<g class="edge initial"><path d="M ${start.x - NODE_W / 2 - 31} ${start.y} L ${start.x - NODE_W / 2 - 3} ${start.y}"/></g>`,
    ...all.map((e) => edgeSvg(e, pairs.has(`${e.to}>${e.from}`), current)),
    ...PRIMARY_STATES.map((s) => nodeSvg(s, current)),
  ].join('\n');
  const defs =
    '<defs>' +
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="11" markerHeight="11" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#cbd5e1"/></marker>' +
    '<marker id="arrow-next" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="11" markerHeight="11" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#0f172a"/></marker>' +
    '</defs>';
  const style = `<style${nonce ? ` nonce="${escapeHtml(nonce)}"` : ''}>${SVG_STYLE}</style>`;
  const svg =
    `<svg class="statechart" xmlns="http://www.w3.org/2000/svg" viewBox="${VIEW.x} ${VIEW.y} ${VIEW.w} ${VIEW.h}" ` +
    `width="${VIEW.w}" height="${VIEW.h}" role="img" aria-label="Operational statechart (R4.1 §9.1)${current ? `, current state ${current}` : ''}">\n` +
    `<title>Operational statechart (R4.1 §9.1)</title>\n${style}\n${defs}\n${body}\n</svg>`;
  return standalone ? `<?xml version="1.0" encoding="UTF-8"?>\n${svg}` : svg;
}

// ---------------------------------------------------------------------------------------
// The page

/** Options of {@link renderPanel}. */
export interface PanelOptions {
  /** CSP nonce for the inline `<style>` and `<script>` (the handler sends a fresh one). */
  nonce?: string;
  /** The page title's prefix (default `kora-opstate`). */
  title?: string;
}

function reasonsHtml(status: StatusPayload): string {
  if (status.degradation_reasons.length === 0) return '<span class="muted">none</span>';
  return status.degradation_reasons
    .map((r) => `<span class="chip">${escapeHtml(r)}</span>`)
    .join(' ');
}

function chainHtml(status: StatusPayload): string {
  const c = status.chain;
  if (!c) return '';
  const n = (v: number | null) => (v === null ? '—' : String(v));
  const bad = (c.failures ?? 0) > 0 || (c.dropped ?? 0) > 0;
  return (
    `<span class="${bad ? 'warn' : ''}">emitted ${n(c.emitted)} · failures ${n(c.failures)} · ` +
    `outbox ${n(c.outbox_depth)} · dropped ${n(c.dropped)}</span>` +
    (c.last_error ? ` <span class="muted">last error: ${escapeHtml(c.last_error)}</span>` : '')
  );
}

function rowNumber(from: PrimaryState, event: string): string {
  const r = TRANSITION_TABLE.find((row) => row.from === from && row.event === event);
  return r ? String(r.row) : '';
}

function nextRowsHtml(status: StatusPayload): string {
  if (status.valid_next_states.length === 0) {
    return '<tr><td colspan="6" class="muted">none</td></tr>';
  }
  return status.valid_next_states
    .map(
      (n) =>
        `<tr><td class="num">${rowNumber(status.primary_state, n.event)}</td>` +
        `<td><span class="pill state-${escapeHtml(n.to_state)}">${escapeHtml(n.to_state)}</span></td>` +
        `<td><code>${escapeHtml(n.event)}</code></td><td>${escapeHtml(n.trigger)}</td>` +
        `<td>${escapeHtml(n.guard)}</td><td>${escapeHtml(n.recovery_owner)}</td></tr>`,
    )
    .join('');
}

function historyRowsHtml(status: StatusPayload): string {
  if (status.transition_history.length === 0) {
    return '<tr><td colspan="7" class="muted">no transitions yet</td></tr>';
  }
  return [...status.transition_history]
    .reverse()
    .map(
      (r) =>
        `<tr><td class="num">${escapeHtml(r.seq)}</td><td class="time">${escapeHtml(r.timestamp)}</td>` +
        `<td class="transition"><span class="pill state-${escapeHtml(r.from_state)}">${escapeHtml(r.from_state)}</span> → ` +
        `<span class="pill state-${escapeHtml(r.to_state)}">${escapeHtml(r.to_state)}</span></td>` +
        `<td><code>${escapeHtml(r.event)}</code>${r.cause ? ` <span class="muted">(${escapeHtml(r.cause)})</span>` : ''}</td>` +
        `<td class="trigger">${escapeHtml(r.trigger)}</td><td>${escapeHtml(r.claim_permission)}</td>` +
        `<td>${r.degradation_reasons.length ? escapeHtml(r.degradation_reasons.join(', ')) : '<span class="muted">—</span>'}</td></tr>`,
    )
    .join('');
}

const PAGE_STYLE = `
:root{--booting:#7c3aed;--ready:#15803d;--active:#2563eb;--paused:#d97706;--stopped:#b91c1c;--ink:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f1f5f9}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{display:flex;align-items:center;justify-content:space-between;padding:14px 28px;background:#fff;border-bottom:1px solid var(--line)}
header h1{font-size:17px;margin:0;font-weight:650;letter-spacing:.2px}
.conn{font-size:13px;color:var(--muted)}
.conn::before{content:"";display:inline-block;width:9px;height:9px;border-radius:50%;background:#94a3b8;margin-right:6px;vertical-align:baseline}
.conn.live::before{background:#16a34a}.conn.down::before{background:#dc2626}
main{max-width:1180px;margin:0 auto;padding:22px 28px 40px;display:grid;gap:20px}
section{background:#fff;border:1px solid var(--line);border-radius:12px;padding:18px 22px}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.08em;color:var(--muted);margin:0 0 12px}
.summary{display:flex;flex-wrap:wrap;align-items:center;gap:28px}
.badge{font-size:40px;font-weight:750;color:#fff;padding:14px 34px;border-radius:16px;min-width:240px;text-align:center;text-transform:uppercase;letter-spacing:.06em;transition:background .25s}
.badge.state-booting,.pill.state-booting{background:var(--booting)}
.badge.state-ready,.pill.state-ready{background:var(--ready)}
.badge.state-active,.pill.state-active{background:var(--active)}
.badge.state-paused,.pill.state-paused{background:var(--paused)}
.badge.state-stopped,.pill.state-stopped{background:var(--stopped)}
.badge.changed{animation:flash .6s ease-out}
@keyframes flash{from{box-shadow:0 0 0 10px rgba(15,23,42,.18)}to{box-shadow:0 0 0 0 rgba(15,23,42,0)}}
dl{display:grid;grid-template-columns:auto 1fr;gap:6px 18px;margin:0;font-size:16px}
dt{color:var(--muted)}dd{margin:0;font-weight:600}
.perm-none{color:var(--stopped)}.perm-critical_only{color:var(--paused)}.perm-normal{color:var(--ready)}
.chip{display:inline-block;background:#fef3c7;color:#92400e;border:1px solid #fcd34d;border-radius:999px;padding:1px 10px;font-size:13px;margin:0 4px 2px 0}
.pill{display:inline-block;color:#fff;border-radius:6px;padding:0 8px;font-size:13px;font-weight:600}
.muted{color:var(--muted);font-weight:400}
.warn{color:var(--stopped)}
.stub{background:#fef2f2;border:1px solid #fecaca;color:#991b1b;border-radius:8px;padding:8px 12px;margin:0;width:100%}
table{width:100%;border-collapse:collapse;font-size:14px}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line);padding:6px 8px}
td{border-bottom:1px solid var(--line);padding:6px 8px;vertical-align:top}
td.num{color:var(--muted);width:3em}
td.time{white-space:nowrap;font-variant-numeric:tabular-nums}
td.transition{white-space:nowrap}
td.trigger{overflow-wrap:anywhere;max-width:32em}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.chart{overflow-x:auto}
[hidden]{display:none!important}
`;

/**
 * The client: follows the event stream and re-renders the dynamic parts. Builds DOM with
 * textContent only (never innerHTML), so nothing from the stream is parsed as markup.
 */
const CLIENT_JS = `
(function () {
  'use strict';
  var ROWS = JSON.parse(document.getElementById('panel-data').textContent).rows;
  var TITLE = document.body.getAttribute('data-title');
  var $ = function (id) { return document.getElementById(id); };
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function pill(state) { return el('span', 'pill state-' + state, state); }
  function rowOf(from, event) {
    for (var i = 0; i < ROWS.length; i++) if (ROWS[i].from === from && ROWS[i].event === event) return String(ROWS[i].row);
    return '';
  }
  function fill(tbody, rows, cols, empty) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      var tr = el('tr'); var td = el('td', 'muted', empty); td.colSpan = cols; tr.append(td); tbody.append(tr);
      return;
    }
    rows.forEach(function (cells) {
      var tr = el('tr');
      cells.forEach(function (c) { tr.append(c); });
      tbody.append(tr);
    });
  }
  function td(cls, content) {
    var c = el('td', cls);
    (Array.isArray(content) ? content : [content]).forEach(function (x) {
      c.append(typeof x === 'string' ? document.createTextNode(x) : x);
    });
    return c;
  }
  var shown = null;
  function render(s) {
    var badge = $('state-badge');
    badge.textContent = s.primary_state;
    badge.className = 'badge state-' + s.primary_state;
    if (shown !== null && shown !== s.primary_state) { void badge.offsetWidth; badge.classList.add('changed'); }
    shown = s.primary_state;
    document.title = TITLE + ' · ' + s.primary_state;
    document.body.setAttribute('data-state', s.primary_state);
    var claim = $('claim');
    claim.textContent = s.claim_permission;
    claim.className = 'perm perm-' + s.claim_permission;
    var reasons = $('reasons');
    reasons.replaceChildren();
    if (s.degradation_reasons.length === 0) reasons.append(el('span', 'muted', 'none'));
    s.degradation_reasons.forEach(function (r) { reasons.append(el('span', 'chip', r), ' '); });
    $('chain-row').hidden = !s.chain;
    $('chain').hidden = !s.chain;
    if (s.chain) {
      var c = s.chain; var n = function (v) { return v === null ? '\\u2014' : String(v); };
      var box = $('chain'); box.replaceChildren();
      box.append(el('span', (c.failures || 0) > 0 || (c.dropped || 0) > 0 ? 'warn' : '',
        'emitted ' + n(c.emitted) + ' \\u00b7 failures ' + n(c.failures) + ' \\u00b7 outbox ' + n(c.outbox_depth) + ' \\u00b7 dropped ' + n(c.dropped)));
      if (c.last_error) box.append(' ', el('span', 'muted', 'last error: ' + c.last_error));
    }
    $('stub-note').hidden = !s.stub;
    var nodes = document.querySelectorAll('.statechart .node');
    for (var i = 0; i < nodes.length; i++) nodes[i].classList.toggle('current', nodes[i].getAttribute('data-state') === s.primary_state);
    var edges = document.querySelectorAll('.statechart .edge[data-from]');
    for (var j = 0; j < edges.length; j++) edges[j].classList.toggle('next', edges[j].getAttribute('data-from') === s.primary_state);
    fill($('next-body'), s.valid_next_states.map(function (n) {
      return [td('num', rowOf(s.primary_state, n.event)), td('', pill(n.to_state)), td('', el('code', '', n.event)),
        td('', n.trigger), td('', n.guard), td('', n.recovery_owner)];
    }), 6, 'none');
    fill($('history-body'), s.transition_history.slice().reverse().map(function (r) {
      var ev = [el('code', '', r.event)];
      if (r.cause) ev.push(' ', el('span', 'muted', '(' + r.cause + ')'));
      return [td('num', String(r.seq)), td('time', r.timestamp), td('transition', [pill(r.from_state), ' \\u2192 ', pill(r.to_state)]),
        td('', ev), td('trigger', r.trigger), td('', r.claim_permission),
        td('', r.degradation_reasons.length ? r.degradation_reasons.join(', ') : el('span', 'muted', '\\u2014'))];
    }), 7, 'no transitions yet');
    document.body.setAttribute('data-updates', String(Number(document.body.getAttribute('data-updates') || '0') + 1));
  }
  var conn = $('conn');
  function connected(ok, text) { conn.className = 'conn ' + (ok ? 'live' : 'down'); conn.textContent = text; }
  if (!window.EventSource) { connected(false, 'no live updates (EventSource unsupported)'); return; }
  var source = new EventSource('api/operational-state/stream');
  source.onopen = function () { connected(true, 'live'); };
  source.onerror = function () { connected(false, 'reconnecting\\u2026'); };
  source.onmessage = function (e) {
    var msg;
    try { msg = JSON.parse(e.data); } catch (err) { return; }
    if (msg && msg.status) render(msg.status);
  };
})();
`;

/**
 * The panel page for `status` (server-rendered; the embedded script keeps it live).
 *
 * @example
 * new Response(renderPanel(statusOf(getHolder())), { headers: { 'content-type': 'text/html' } });
 */
export function renderPanel(status: StatusPayload, options: PanelOptions = {}): string {
  const nonceAttr = options.nonce ? ` nonce="${escapeHtml(options.nonce)}"` : '';
  const title = options.title ?? 'kora-opstate';
  const s = status;
  const rows = TRANSITION_TABLE.map((r) => ({ row: r.row, from: r.from, event: r.event }));
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · ${escapeHtml(s.primary_state)}</title>
<link rel="icon" href="data:,">
<style${nonceAttr}>${PAGE_STYLE}</style>
</head>
<body data-state="${escapeHtml(s.primary_state)}" data-title="${escapeHtml(title)}" data-updates="0">
<header><h1>${escapeHtml(title)} <span class="muted">operational state</span></h1><span id="conn" class="conn">connecting…</span></header>
<main>
<section class="summary" aria-label="Current state">
<div id="state-badge" class="badge state-${escapeHtml(s.primary_state)}">${escapeHtml(s.primary_state)}</div>
<dl>
<dt>Claim permission</dt><dd id="claim" class="perm perm-${escapeHtml(s.claim_permission)}">${escapeHtml(s.claim_permission)}</dd>
<dt>Degradation</dt><dd id="reasons">${reasonsHtml(s)}</dd>
<dt id="chain-row"${s.chain ? '' : ' hidden'}>Chain events</dt><dd id="chain"${s.chain ? '' : ' hidden'}>${chainHtml(s)}</dd>
</dl>
<p id="stub-note" class="stub"${s.stub ? '' : ' hidden'}>OperationalStateHolder not yet initialized — waiting for the process to create it.</p>
</section>
<section class="chart"><h2>Statechart · R4.1 §9.1</h2>
${renderStatechartSvg({ current: s.primary_state, ...(options.nonce ? { nonce: options.nonce } : {}) })}
</section>
<section><h2>Valid next transitions</h2>
<table id="next"><thead><tr><th>Row</th><th>To</th><th>Event</th><th>Trigger (row text)</th><th>Guard</th><th>Recovery owner</th></tr></thead>
<tbody id="next-body">${nextRowsHtml(s)}</tbody></table>
</section>
<section><h2>History <span class="muted">(newest first)</span></h2>
<table id="history"><thead><tr><th>#</th><th>Time (UTC)</th><th>Transition</th><th>Event</th><th>Trigger</th><th>Claim</th><th>Reasons</th></tr></thead>
<tbody id="history-body">${historyRowsHtml(s)}</tbody></table>
</section>
</main>
<script type="application/json" id="panel-data">${scriptJson({ rows })}</script>
<script${nonceAttr}>${CLIENT_JS}</script>
</body>
</html>
`;
}
