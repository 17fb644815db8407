// The panel's client: the one place the state, the valid next transitions and the history
// are rendered. `render(status)` draws a status payload (GET /api/operational-state's
// shape); the page's first paint is render(the status embedded by the server), and every
// message of the event stream makes the next status (a `snapshot` is one; a `change` is
// the previous status with its record appended and its state fields) and renders it, so
// a live update and a fresh load cannot disagree. Builds DOM with textContent only (never innerHTML): nothing from
// the payload is parsed as markup. The cockpit (cockpit.js, inlined before this file) draws
// the controls and the agent's keys from the same status, and polls the payload for what
// moves without a transition (the queue, the chain head).
(() => {
  const $ = (id) => document.getElementById(id);
  const data = (id) => JSON.parse($(id).textContent);
  /** [{ row, from, to, event }] of the §9.1 table: the row number of a next transition. */
  const ROWS = data('panel-rows');
  const TITLE = document.body.getAttribute('data-title');

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  const pill = (state) => el('span', `pill state-${state}`, state);
  function rowOf(from, event) {
    const r = ROWS.find((x) => x.from === from && x.event === event);
    return r ? String(r.row) : '';
  }
  /** A cell from text and nodes. */
  function td(cls, content) {
    const c = el('td', cls);
    c.append(...(Array.isArray(content) ? content : [content]));
    return c;
  }
  /** Replaces a table body's rows (or one muted row saying `empty`). */
  function fill(tbody, rows, cols, empty) {
    if (rows.length === 0) {
      const cell = el('td', 'muted', empty);
      cell.colSpan = cols;
      rows = [[cell]];
    }
    tbody.replaceChildren(
      ...rows.map((cells) => {
        const tr = el('tr');
        tr.append(...cells);
        return tr;
      }),
    );
  }
  const dash = (v) => (v === null || v === undefined ? '\u2014' : String(v));

  function summary(s) {
    const claim = $('claim');
    claim.textContent = s.claim_permission;
    claim.className = `perm perm-${s.claim_permission}`;
    const reasons = $('reasons');
    reasons.replaceChildren();
    if (s.degradation_reasons.length === 0) reasons.append(el('span', 'muted', 'none'));
    for (const r of s.degradation_reasons) reasons.append(el('span', 'chip', r), ' ');
    const c = s.chain;
    $('chain-row').hidden = !c;
    $('chain').hidden = !c;
    $('chain').replaceChildren();
    if (c) {
      const bad = (c.failures || 0) > 0 || (c.dropped || 0) > 0;
      $('chain').append(
        el(
          'span',
          bad ? 'warn' : '',
          `emitted ${dash(c.emitted)} \u00b7 failures ${dash(c.failures)} \u00b7 ` +
            `outbox ${dash(c.outbox_depth)} \u00b7 dropped ${dash(c.dropped)}`,
        ),
      );
      if (c.last_error) $('chain').append(' ', el('span', 'muted', `last error: ${c.last_error}`));
    }
    $('stub-note').hidden = !s.stub;
  }

  function statechart(state) {
    for (const n of document.querySelectorAll('.statechart .node')) {
      n.classList.toggle('current', n.getAttribute('data-state') === state);
    }
    for (const e of document.querySelectorAll('.statechart .edge[data-from]')) {
      e.classList.toggle('next', e.getAttribute('data-from') === state);
    }
    const svg = document.querySelector('svg.statechart');
    if (svg) {
      svg.setAttribute('aria-label', `Operational statechart (R4.1 §9.1), current state ${state}`);
    }
  }

  function nextTransitions(s) {
    const rows = s.valid_next_states.map((n) => [
      td('num', rowOf(s.primary_state, n.event)),
      td('', pill(n.to_state)),
      td('', el('code', '', n.event)),
      td('', n.trigger),
      td('', n.guard),
      td('', n.recovery_owner),
    ]);
    fill($('next-body'), rows, 6, 'none');
  }

  // History: filtered by event and by state (either end), paged, newest first.
  const PAGE = 20;
  const view = { event: '', state: '', page: 0 };
  const times = (s) => s.history_times || {};
  function history(s) {
    const all = s.transition_history.filter(
      (r) =>
        (!view.event || r.event === view.event) &&
        (!view.state || r.from_state === view.state || r.to_state === view.state),
    );
    const pages = Math.max(1, Math.ceil(all.length / PAGE));
    view.page = Math.min(view.page, pages - 1);
    const newest = all.length - view.page * PAGE;
    const ms = times(s);
    const rows = all
      .slice(Math.max(0, newest - PAGE), newest)
      .reverse()
      .map((r) => {
        const event = [el('code', '', r.event)];
        if (r.cause) event.push(' ', el('span', 'muted', `(${r.cause})`));
        const reasons = r.degradation_reasons.length
          ? r.degradation_reasons.join(', ')
          : el('span', 'muted', '\u2014');
        return [
          td('num', String(r.seq)),
          td('time', ms[r.seq] || r.timestamp),
          td('transition', [pill(r.from_state), ' \u2192 ', pill(r.to_state)]),
          td('', event),
          td('trigger', r.trigger),
          td('', r.claim_permission),
          td('', reasons),
        ];
      });
    const filtered = view.event || view.state;
    fill($('history-body'), rows, 7, filtered ? 'no transition matches' : 'no transitions yet');
    $('page-info').textContent = all.length
      ? `${all.length - newest + 1}\u2013${all.length - newest + rows.length} of ${all.length}`
      : '';
    $('page-prev').disabled = view.page === 0;
    $('page-next').disabled = view.page >= pages - 1;
  }

  let shown = null;
  /** Draws one status payload: the page's only rendering of it. */
  function render(s) {
    const badge = $('state-badge');
    badge.textContent = s.primary_state;
    badge.className = `badge state-${s.primary_state}`;
    if (shown !== null && shown !== s.primary_state) {
      void badge.offsetWidth; // restart the flash animation
      badge.classList.add('changed');
    }
    shown = s.primary_state;
    document.title = `${TITLE} \u00b7 ${s.primary_state}`;
    document.body.setAttribute('data-state', s.primary_state);
    summary(s);
    statechart(s.primary_state);
    nextTransitions(s);
    history(s);
    Cockpit.render(s);
    const updates = Number(document.body.getAttribute('data-updates') || '0') + 1;
    document.body.setAttribute('data-updates', String(updates));
  }

  let status = data('panel-status');
  for (const [id, values] of [
    ['filter-event', [...new Set(ROWS.map((r) => r.event))].sort()],
    ['filter-state', [...new Set(ROWS.flatMap((r) => [r.from, r.to]))]],
  ]) {
    for (const v of values) {
      const o = el('option', '', v);
      o.value = v;
      $(id).append(o);
    }
  }
  const redraw = () => history(status);
  $('filter-event').onchange = (e) => {
    view.event = e.target.value;
    view.page = 0;
    redraw();
  };
  $('filter-state').onchange = (e) => {
    view.state = e.target.value;
    view.page = 0;
    redraw();
  };
  $('page-prev').onclick = () => {
    view.page = Math.max(0, view.page - 1);
    redraw();
  };
  $('page-next').onclick = () => {
    view.page++;
    redraw();
  };
  render(status);

  const newestSeq = (s) => {
    const h = s.transition_history;
    return h.length ? h[h.length - 1].seq : 0;
  };
  /** The status after a stream message (stream.ts's applyStreamMessage, in the page). */
  function apply(s, msg) {
    if (msg.kind === 'snapshot') return msg.status;
    if (msg.kind !== 'change') return s;
    const history = s.transition_history;
    if (newestSeq(s) >= msg.record.seq) return s; // already shown (the page or a snapshot had it)
    // A change carries the seed's keys: the cockpit's stay until the next read brings them.
    return Object.assign(Cockpit.keep(s), msg.state, {
      transition_history: history.concat([msg.record]).slice(-msg.history_length),
    });
  }
  /** Shows a status read by the cockpit (a poll, an action's answer) unless older than shown. */
  function show(read) {
    const next =
      newestSeq(read) >= newestSeq(status)
        ? Object.assign(Cockpit.keep(status), read)
        : Object.assign({}, status, Cockpit.keep(read));
    if (JSON.stringify(next) === JSON.stringify(status)) return;
    status = next;
    render(status);
  }
  Cockpit.start(show);

  const conn = $('conn');
  function connected(ok, text) {
    conn.className = `conn ${ok ? 'live' : 'down'}`;
    conn.textContent = text;
  }
  if (!window.EventSource) {
    connected(false, 'no live updates (EventSource unsupported)');
    return;
  }
  const source = new EventSource('api/operational-state/stream');
  source.onopen = () => connected(true, 'live');
  source.onerror = () => connected(false, 'reconnecting\u2026');
  source.onmessage = (e) => {
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch {
      return;
    }
    const next = apply(status, msg);
    if (next === status) return;
    status = next;
    render(status);
    if (msg.kind === 'change') Cockpit.refresh(); // the change's time and claim
  };
})();
