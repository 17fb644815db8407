// The fleet page's client: draws GET /api/fleet (every agent of the workspace: presence,
// state, reasons, claim, last transition, last seen) and polls it again every
// data-poll-ms, so a pause or a stopped heartbeat shows within a poll. Builds DOM with
// textContent only (never innerHTML): nothing an agent wrote into the table is parsed as
// markup, and a link is made only from an http(s) URL.
// The controls are fleetControl.js's (inlined before this file).
(() => {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = Number(document.body.getAttribute('data-poll-ms')) || 1000;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function td(cls, ...content) {
    const c = el('td', cls);
    c.append(...content);
    return c;
  }
  const dash = (v) => (v === null || v === undefined || v === '' ? '\u2014' : String(v));

  /** `1.2 s ago`, `3 min ago`: from the database's own clock (seen_ms_ago). */
  function ago(ms) {
    if (ms < 1000) return `${ms} ms ago`;
    if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s ago`;
    if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ago`;
    return `${Math.floor(ms / 3_600_000)} h ago`;
  }
  /** An agent's panel, only from an http(s) URL (the table is written by database users). */
  function safeUrl(url) {
    try {
      const u = new URL(url);
      return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
    } catch {
      return null;
    }
  }

  function agentCell(a) {
    const url = a.url ? safeUrl(a.url) : null;
    const name = url ? el('a', '', a.agent_id) : el('strong', '', a.agent_id);
    if (url) {
      name.href = url;
      name.rel = 'noreferrer';
    }
    const cell = td('', name);
    if (a.self) cell.append(el('span', 'self', '(this agent)'));
    return cell;
  }

  function row(a) {
    const tr = el('tr', `presence-${a.presence}`);
    tr.setAttribute('data-agent', a.agent_id);
    tr.setAttribute('data-presence', a.presence);
    tr.setAttribute('data-state', a.primary_state);
    const reasons = el('span');
    if (a.degradation_reasons.length === 0) reasons.append(el('span', 'muted', 'none'));
    for (const r of a.degradation_reasons) reasons.append(el('span', 'chip', r));
    const t = a.last_transition;
    const transition = t
      ? [
          el('span', '', `#${t.seq} ${t.from_state} \u2192 ${t.to_state}`),
          el('span', 'sub mono', t.event),
          el(
            'span',
            'sub',
            `${t.at.replace('T', ' ').replace('.000Z', 'Z')}${t.trigger ? ` \u00b7 ${t.trigger}` : ''}`,
          ),
        ]
      : [el('span', 'muted', 'none yet')];
    const presence =
      a.presence === 'stopped' && a.stopped_at
        ? [el('span', 'presence', 'stopped'), el('span', 'sub', a.stopped_at.replace('T', ' '))]
        : [el('span', 'presence', a.presence)];
    tr.append(
      agentCell(a),
      td('', ...presence),
      td('', el('span', `pill state-${a.primary_state}`, a.primary_state)),
      td('', a.claim_permission),
      td('', reasons),
      td('transition', ...transition),
      td(
        '',
        el('span', 'seen', ago(a.seen_ms_ago)),
        el('span', 'sub', `heartbeat ${a.heartbeat_ms} ms`),
      ),
      td('mono', a.instance_id),
      td('', a.version),
      td('', `${dash(a.host)} \u00b7 ${dash(a.pid)}`),
    );
    if (FleetControl.usable()) tr.append(FleetControl.cell(a));
    return tr;
  }

  function render(view) {
    FleetControl.view(view);
    $('workspace').textContent = view.workspace_id;
    for (const p of ['live', 'gone', 'stopped'])
      $(`count-${p}`).textContent = String(view.counts[p]);
    $('note').textContent =
      view.source === 'local'
        ? 'An embedded store serves one process: the fleet is this agent alone. Agents sharing a Postgres show each other here.'
        : `Gone: no heartbeat for ${view.gone_after_heartbeats} of the agent's intervals. Read ${view.generated_at.replace('T', ' ')}.`;
    const body = $('fleet-body');
    if (view.agents.length === 0) {
      const cell = el('td', 'muted', 'No agent has registered in this workspace.');
      cell.colSpan = FleetControl.usable() ? 11 : 10;
      const tr = el('tr');
      tr.append(cell);
      body.replaceChildren(tr);
    } else {
      body.replaceChildren(...view.agents.map(row));
    }
    document.body.setAttribute(
      'data-updates',
      String(Number(document.body.getAttribute('data-updates')) + 1),
    );
  }

  function connection(ok, text) {
    const c = $('conn');
    c.className = `conn ${ok ? 'live' : 'down'}`;
    c.textContent = text;
  }

  let timer;
  /** Reads the fleet; `now`: at once (after a command's answers), then on the usual beat. */
  async function poll(now) {
    if (now) clearTimeout(timer);
    try {
      const res = await fetch('api/fleet', {
        cache: 'no-store',
        headers: { accept: 'application/json' },
      });
      const body = await res.json();
      if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
      render(body);
      connection(true, `live \u00b7 every ${POLL_MS / 1000} s`);
    } catch (err) {
      connection(false, `cannot read the fleet: ${err.message}`);
    } finally {
      clearTimeout(timer);
      timer = setTimeout(poll, POLL_MS);
    }
  }
  FleetControl.start(() => void poll(true));
  poll();
})();
