// The cockpit's cards (inlined first; cockpit.js calls them): the agent, its claim and
// queue, its chain store and its boot gates, drawn from the status keys `agent`,
// `claims`, `chain_store` (with `chain`) and `boot`. textContent only, as the rest.
// biome-ignore lint/correctness/noUnusedVariables: cockpit.js, inlined after this file, calls it.
const CockpitCards = (() => {
  const $ = (id) => document.getElementById(id);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  const dash = (v) => (v === null || v === undefined ? '\u2014' : String(v));

  /** A `<dl>` from [term, value, class?] rows. */
  function list(id, rows) {
    $(id).replaceChildren(
      ...rows.flatMap(([term, value, cls]) => {
        const dd = el('dd', cls || '');
        dd.append(value instanceof Node ? value : dash(value));
        return [el('dt', '', term), dd];
      }),
    );
  }
  const ms = (n) => (n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${n} ms`);
  function uptime(started) {
    let t = Math.max(0, Math.floor((Date.now() - Date.parse(started)) / 1000));
    const d = Math.floor(t / 86400);
    t %= 86400;
    const pad = (n) => String(n).padStart(2, '0');
    return `${d ? `${d}d ` : ''}${pad(Math.floor(t / 3600))}:${pad(Math.floor((t % 3600) / 60))}:${pad(t % 60)}`;
  }

  function agent(a) {
    $('agent-card').hidden = !a;
    if (!a) return;
    const up = el('span', '', uptime(a.started_at));
    up.id = 'uptime';
    list('agent', [
      ['Agent id', a.agent_id],
      ['Instance', a.instance_id],
      ['Version', a.version],
      ['Uptime', up],
      ['Started', a.started_at],
      ['PID', a.pid],
    ]);
  }

  function claims(c) {
    $('claims-card').hidden = !c;
    if (!c) return;
    let held = el('span', 'muted', 'none');
    if (c.held) {
      held = el('span', '', c.held.ticket_id);
      if (c.held.critical) held.append(' ', el('span', 'chip', 'critical'));
      if (c.held.attempts > 1)
        held.append(el('span', 'muted', ` \u00b7 attempt ${c.held.attempts}`));
      if (c.held.since) held.append(el('span', 'muted', ` \u00b7 since ${c.held.since}`));
    }
    list('claims', [
      ['Held claim', held],
      ['Queue depth', c.queue_depth],
      ['Tickets done', c.done],
      ['By this agent', `${dash(c.completed)} completed \u00b7 ${dash(c.failed)} failed`],
      ...(c.queue_error ? [['Queue error', c.queue_error, 'warn']] : []),
    ]);
  }

  function chainStore(k, chain) {
    $('chainstore-card').hidden = !k;
    if (!k) return;
    const head = k.head ? el('span', '', `#${k.head.chain_seq} \u00b7 `) : null;
    if (head) {
      const hash = el('code', '', `${k.head.hash.slice(0, 16)}\u2026`);
      hash.title = k.head.hash;
      head.append(hash);
    }
    const v = k.last_verify;
    const verify = v
      ? el(
          'span',
          v.ok ? 'ok' : 'warn',
          `${v.ok ? 'ok' : `broken: ${dash(v.reason)}`} \u00b7 ${v.events} events \u00b7 ${v.at}`,
        )
      : el('span', 'muted', 'not verified since the start');
    list('chainstore', [
      ['Workspace', k.workspace_id],
      ['Head', head || el('span', 'muted', 'no event stored yet')],
      ['Last verify', verify],
      ['Spool depth', k.spool_depth],
      ['Outbox', chain ? chain.outbox_depth : null],
      ['Refused', chain ? chain.refused : null, chain?.refused ? 'warn' : ''],
      ['Key id', k.key_id],
    ]);
  }

  function boot(b) {
    $('boot-card').hidden = !b;
    if (!b) return;
    const rows = b.gates.map((g) =>
      [
        el('code', '', g.id),
        g.class,
        el('span', g.outcome === 'pass' ? 'ok' : 'warn', g.outcome),
        g.attempts,
        ms(g.elapsed_ms),
        dash(g.detail),
      ].map((v) => {
        const td = el('td');
        td.append(v instanceof Node ? v : String(v));
        return td;
      }),
    );
    if (rows.length === 0) {
      const td = el(
        'td',
        'muted',
        b.finished ? `no gates (${dash(b.result)})` : 'boot running\u2026',
      );
      td.colSpan = 6;
      rows.push([td]);
    }
    $('boot-body').replaceChildren(
      ...rows.map((cells) => {
        const tr = el('tr');
        tr.append(...cells);
        return tr;
      }),
    );
  }

  return {
    render(s) {
      agent(s.agent);
      claims(s.claims);
      chainStore(s.chain_store, s.chain);
      boot(s.boot);
    },
    /** Moves the uptime on (between statuses: it is the clock, not the status, that moves). */
    tick(a) {
      const up = $('uptime');
      if (up) up.textContent = uptime(a.started_at);
    },
  };
})();
