/** The fleet as text: one line per agent, aligned columns (what `kora-opstate fleet` prints). */
import type { FleetAgent, FleetView } from './types.js';

/** `850 ms`, `4.2 s`, `3 min`, `2 h`. */
function ago(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min`;
  return `${Math.floor(ms / 3_600_000)} h`;
}

const HEAD = [
  'AGENT',
  'PRESENCE',
  'STATE',
  'CLAIM',
  'REASONS',
  'LAST TRANSITION',
  'LAST SEEN',
  'INSTANCE',
  'VERSION',
  'HOST·PID',
];

function cells(a: FleetAgent): string[] {
  const t = a.last_transition;
  return [
    a.self ? `${a.agent_id}*` : a.agent_id,
    a.presence,
    a.primary_state,
    a.claim_permission,
    a.degradation_reasons.join(',') || '-',
    t ? `#${t.seq} ${t.event} ${t.at.slice(11, 19)}Z` : '-',
    `${ago(a.seen_ms_ago)} ago`,
    a.instance_id,
    a.version,
    `${a.host ?? '-'}·${a.pid ?? '-'}`,
  ];
}

/**
 * @internal The view as a heading line and an aligned table (no trailing newline).
 *
 * @example
 * formatFleet(await fleet.list()).split('\n')[0]; // 'fleet of workspace "acme" (postgres): 3 agents — 2 live, 1 gone, 0 stopped'
 */
export function formatFleet(view: FleetView, where: string = view.source): string {
  const n = view.agents.length;
  const c = view.counts;
  const head = `fleet of workspace ${JSON.stringify(view.workspace_id)} (${where}): ${n} agent${n === 1 ? '' : 's'} — ${c.live} live, ${c.gone} gone, ${c.stopped} stopped`;
  if (n === 0) return `${head}\n  no agent has registered in this workspace`;
  const rows = [HEAD, ...view.agents.map(cells)];
  const widths = HEAD.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) =>
    r
      .map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
  const foot = `gone: no heartbeat for ${view.gone_after_heartbeats} of the agent's intervals${view.agents.some((a) => a.self) ? '; * the agent that answered' : ''}`;
  return [head, ...lines.map((l) => `  ${l}`), foot].join('\n');
}
