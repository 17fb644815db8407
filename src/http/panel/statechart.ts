/**
 * The §9.1 statechart as SVG, laid out by hand (positions, bends, label spots) and drawn
 * from the derived `TRANSITION_TABLE`: one arrow per (from, to) pair. Static for a given
 * table, so the panel renders it once per process and its client lights the current state.
 */
import { TRANSITION_TABLE, type TransitionRow } from '../../table.js';
import { PRIMARY_STATES, type PrimaryState } from '../../vocabulary.js';
import { panelFile } from './assets.js';
import { escapeHtml } from './escape.js';

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
  'paused>ready': { x: 416, y: 286, anchor: 'end' },
  // Below its curve, clear of the ready ⇄ paused arrows.
  'active>ready': { x: 598, y: 272, anchor: 'end' },
};
/** A label's line height (the CSS font size, 13px, plus a little). */
const LINE = 15;
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
  // Each line: the row number (dimmer) and its event; the full row texts are in <title>.
  const lines = edge.rows.map((r) => [String(r.row), r.event] as const);
  const a = LAYOUT[edge.from];
  let path: string;
  let label: { x: number; y: number };
  let anchor: 'start' | 'middle' | 'end' = 'middle';
  if (edge.from === edge.to) {
    // A self-loop over the top of the box.
    const top = a.y - NODE_H / 2;
    path = `M ${a.x - 22} ${top} C ${a.x - 60} ${top - 70}, ${a.x + 60} ${top - 70}, ${a.x + 22} ${top}`;
    label = { x: a.x, y: top - 62 - (lines.length - 1) * LINE };
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
    if (ly < -0.35) label.y -= (lines.length - 1) * LINE;
    else if (ly > 0.35) label.y += 10;
    else label.y -= ((lines.length - 1) * LINE) / 2 - 4;
  }
  const fixed = LABEL_AT[key];
  if (fixed) {
    label = { x: fixed.x, y: fixed.y };
    anchor = fixed.anchor;
  }
  const tspans = lines
    .map(
      (l, i) =>
        `<tspan x="${round(label.x)}" ${i === 0 ? `y="${round(label.y)}"` : `dy="${LINE}"`}>` +
        `<tspan class="row">${escapeHtml(l[0])}</tspan> ${escapeHtml(l[1])}</tspan>`,
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
  const style = `<style${nonce ? ` nonce="${escapeHtml(nonce)}"` : ''}>${panelFile('statechart.css')}</style>\n`;
  const svg = statechartSvg(current, style);
  return standalone ? `<?xml version="1.0" encoding="UTF-8"?>\n${svg}` : svg;
}

/**
 * @internal The panel's copy: nothing lit (its client lights the current state) and no
 * `<style>` of its own (the page inlines `statechart.css` under its per-request nonce).
 */
export function panelStatechartSvg(): string {
  return statechartSvg(undefined, '');
}

function statechartSvg(current: PrimaryState | undefined, style: string): string {
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
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="11" markerHeight="11" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#b8c4d3"/></marker>' +
    '<marker id="arrow-next" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="11" markerHeight="11" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#0f172a"/></marker>' +
    '</defs>';
  return (
    `<svg class="statechart" xmlns="http://www.w3.org/2000/svg" viewBox="${VIEW.x} ${VIEW.y} ${VIEW.w} ${VIEW.h}" ` +
    `width="${VIEW.w}" height="${VIEW.h}" role="img" aria-label="Operational statechart (R4.1 §9.1)${current ? `, current state ${current}` : ''}">\n` +
    `<title>Operational statechart (R4.1 §9.1)</title>\n${style}${defs}\n${body}\n</svg>`
  );
}
