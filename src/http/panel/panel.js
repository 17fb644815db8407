// The panel's client: the one place the state, the valid next transitions and the history
// are rendered. `render(status)` draws a status payload (GET /api/operational-state's
// shape); the page's first paint is render(the status embedded by the server), and every
// message of the event stream makes the next status (a `snapshot` is one; a `change` is
// the previous status with its record appended and its state fields) and renders it, so
// a live update and a fresh load cannot disagree. Builds DOM with textContent only (never innerHTML): nothing from
// the payload is parsed as markup.
(() => {
  const $ = (id) => document.getElementById(id);
  const data = (id) => JSON.parse($(id).textContent);
  /** [{ row, from, event }] of the §9.1 table: the row number of a next transition. */
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

  function history(s) {
    const rows = s.transition_history
      .slice()
      .reverse()
      .map((r) => {
        const event = [el('code', '', r.event)];
        if (r.cause) event.push(' ', el('span', 'muted', `(${r.cause})`));
        const reasons = r.degradation_reasons.length
          ? r.degradation_reasons.join(', ')
          : el('span', 'muted', '\u2014');
        return [
          td('num', String(r.seq)),
          td('time', r.timestamp),
          td('transition', [pill(r.from_state), ' \u2192 ', pill(r.to_state)]),
          td('', event),
          td('trigger', r.trigger),
          td('', r.claim_permission),
          td('', reasons),
        ];
      });
    fill($('history-body'), rows, 7, 'no transitions yet');
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
    const updates = Number(document.body.getAttribute('data-updates') || '0') + 1;
    document.body.setAttribute('data-updates', String(updates));
  }

  let status = data('panel-status');
  render(status);

  /** The status after a stream message (stream.ts's applyStreamMessage, in the page). */
  function apply(s, msg) {
    if (msg.kind === 'snapshot') return msg.status;
    if (msg.kind !== 'change') return s;
    const history = s.transition_history;
    const last = history.length ? history[history.length - 1].seq : 0;
    if (last >= msg.record.seq) return s; // already shown (the page or a snapshot had it)
    return Object.assign({}, msg.state, {
      transition_history: history.concat([msg.record]).slice(-msg.history_length),
    });
  }

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
  };
})();
