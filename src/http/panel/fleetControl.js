// The fleet page's controls, inlined before fleet.js (which calls them): when the view
// says `control.available` (agents on Postgres, the chain key), a command to one agent or
// to every agent goes through POST api/fleet/commands, as `kora-opstate control` does;
// the page then follows its outcomes (GET api/fleet/commands/:id) until every agent
// awaited answered: applied, refused (with the table's 409 reason), expired, or still
// pending. The operator token is asked once and kept in this closure only: never in
// storage, a cookie or the URL. Every action is confirmed first.
// biome-ignore lint/correctness/noUnusedVariables: fleet.js, inlined after this file, calls it.
const FleetControl = (() => {
  const $ = (id) => document.getElementById(id);
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
  let onDone = () => {}; // a command's answers are in: fleet.js reads the fleet at once
  const FOLLOW_MS = 400; // between reads of a command's outcomes
  const FOLLOW_FOR_MS = 30_000; // then the agents not heard from stay "pending"
  const ACTIONS = [
    {
      action: 'pause',
      label: 'Pause',
      fields: [
        ['cause', 'Cause', 'select', ['operator', 'stop_kora', 'cost_limit', 'substrate']],
        ['trigger', 'Why', 'text', 'operator pause from the fleet page'],
      ],
    },
    {
      action: 'reset',
      label: 'Reset',
      fields: [['trigger', 'Why', 'text', 'operator reset from the fleet page']],
    },
    {
      action: 'credit-refresh',
      label: 'Credit refresh',
      fields: [
        ['reconciled_spend_usd', 'Reconciled spend (USD)', 'number', ''],
        ['threshold_usd', 'Threshold (USD)', 'number', ''],
        ['trigger', 'Why', 'text', 'credit refresh from the fleet page'],
      ],
    },
    {
      action: 'stop',
      label: 'Stop',
      danger: true,
      fields: [['trigger', 'Why', 'text', 'operator stop from the fleet page']],
    },
  ];
  let token = null; // this tab's memory only
  let control = { available: false, operator_api: false }; // from the last view
  let apiOff = false; // a 403 said so
  let asking = null; // { a, agent } awaiting confirmation (agent null: every agent)
  let following = 0; // the command whose outcomes are shown
  const cells = new Map(); // agent id -> its control cell, kept across redraws

  function result(kind, text, status) {
    const r = $('action-result');
    r.hidden = false;
    r.className = `result ${kind}`;
    r.textContent = text;
    r.setAttribute('data-status', String(status));
  }
  function tokenView() {
    const off = apiOff || !control.operator_api;
    $('controls-off').hidden = !off;
    $('token-ask').hidden = off || token !== null;
    $('token-held').hidden = off || token === null;
    $('all').hidden = off;
  }
  const usable = () => control.available && control.operator_api && !apiOff;

  function buttons(agent) {
    return ACTIONS.map((a) => {
      const b = el('button', a.danger ? 'danger' : '', a.label);
      b.type = 'button';
      b.setAttribute('data-action', a.action);
      b.onclick = () => ask(a, agent);
      return b;
    });
  }
  /** An agent's control cell; the same node across redraws, so a click is never lost. */
  function controlCell(a) {
    if (!usable() || a.presence === 'stopped') return td('muted', '');
    let c = cells.get(a.agent_id);
    if (!c) {
      const box = el('div', 'ctl-buttons');
      box.append(...buttons(a.agent_id));
      c = td('ctl', box);
      cells.set(a.agent_id, c);
    }
    return c;
  }

  function ask(a, agent) {
    if (!token) {
      result('err', `${a.label}: enter the operator token first`, 0);
      $('token-input').focus();
      return;
    }
    asking = { a, agent };
    const who = agent === null ? 'every agent of the workspace' : `agent \u201c${agent}\u201d`;
    $('confirm-text').textContent =
      `${a.label} \u2192 ${who}. Each agent applies it through its own state table (a transition the table does not allow is refused, with its reason). Confirm?`;
    const fields = $('confirm-fields');
    fields.replaceChildren();
    for (const [name, label, kind, init] of a.fields) {
      const l = el('label', '', `${label} `);
      let input;
      if (kind === 'select') {
        input = el('select');
        for (const v of init) {
          const o = el('option', '', v);
          o.value = v;
          input.append(o);
        }
      } else {
        input = el('input');
        input.type = kind;
        if (kind === 'number') input.step = 'any';
        input.value = init;
      }
      input.id = `f-${name}`;
      l.append(input);
      fields.append(l);
    }
    $('confirm-yes').textContent = `Confirm ${a.label.toLowerCase()}`;
    $('confirm-yes').className = a.danger ? 'danger' : 'primary';
    $('confirm').hidden = false;
    $('confirm').setAttribute('data-action', a.action);
    $('confirm').setAttribute('data-target', agent === null ? '*' : agent);
  }
  function close() {
    asking = null;
    $('confirm').hidden = true;
    $('confirm').removeAttribute('data-action');
    $('confirm').removeAttribute('data-target');
  }

  async function send(method, path, body) {
    const headers = { authorization: `Bearer ${token}`, accept: 'application/json' };
    if (body) headers['content-type'] = 'application/json';
    const res = await fetch(path, {
      method,
      headers,
      cache: 'no-store',
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    let data = {};
    try {
      data = await res.json();
    } catch {
      // No JSON body: the status says it.
    }
    return { res, data };
  }

  function refused(what, res, data) {
    let text = `${what}: ${res.status} ${res.statusText} \u2014 ${dash(data.error)}`;
    if (res.status === 401) {
      text += '. Enter the token again.';
      token = null;
    }
    if (res.status === 403 || res.status === 501) {
      apiOff = res.status === 403;
      if (res.status === 501) control = { ...control, available: false };
      cells.clear();
    }
    tokenView();
    result('err', text, res.status);
  }

  async function confirm() {
    const pending = asking;
    if (!pending) return;
    const { a, agent } = pending;
    const body = { action: a.action, ...(agent === null ? { all: true } : { agent }) };
    for (const [name, label, kind] of a.fields) {
      const v = $(`f-${name}`).value.trim();
      if (kind === 'number') {
        if (v === '' || !Number.isFinite(Number(v))) {
          result('err', `${a.label}: enter a number \u2014 ${label}`, 0);
          return;
        }
        body[name] = Number(v);
      } else if (v !== '') body[name] = v;
    }
    close();
    // The previous command's answers go: what shows from now on is this one's.
    following = 0;
    $('outcomes').replaceChildren();
    $('outcomes').hidden = true;
    const what = `${a.label} \u2192 ${agent === null ? 'every agent' : agent}`;
    result('busy', `${what}\u2026`, 0);
    try {
      const { res, data } = await send('POST', 'api/fleet/commands', body);
      if (!res.ok) return refused(what, res, data);
      const id = data.command.command_id;
      following = id;
      result('busy', `Command #${id} ${what}: waiting for the answers\u2026`, res.status);
      drawOutcomes({ outcomes: [], pending: data.awaiting, expired: false }, false);
      void follow(id, what, Date.now());
    } catch (err) {
      result('err', `${what}: the request failed (${err.message})`, 0);
    }
  }

  /** One line per agent: applied, refused (the table's reason), expired, or pending. */
  function drawOutcomes(c, done) {
    const list = $('outcomes');
    const items = c.outcomes.map((o) => {
      const li = el('li', `outcome-${o.outcome}`);
      li.setAttribute('data-agent', o.agent_id);
      li.setAttribute('data-outcome', o.verified === false ? 'unverified' : o.outcome);
      li.append(el('strong', '', o.agent_id), el('span', 'kind', o.outcome));
      if (o.from_state) li.append(el('span', '', `${o.from_state} \u2192 ${dash(o.to_state)}`));
      if (o.reason) li.append(el('span', 'reason', o.reason));
      if (o.verified === false)
        li.append(
          el('span', 'reason', 'does not verify with the chain key: not an agent\u2019s answer'),
        );
      return li;
    });
    for (const agent of c.pending) {
      const kind = c.expired ? 'expired' : 'pending';
      const li = el('li', `outcome-${kind}`);
      li.setAttribute('data-agent', agent);
      li.setAttribute('data-outcome', kind);
      li.append(el('strong', '', agent), el('span', 'kind', kind));
      const why = c.expired
        ? 'no answer before the command expired'
        : done
          ? `no answer yet: it applies the command when it comes back, until ${c.command.expires_at.replace('T', ' ')}`
          : 'waiting\u2026';
      li.append(el('span', 'reason', why));
      items.push(li);
    }
    list.replaceChildren(...items);
    list.hidden = items.length === 0;
  }

  async function follow(id, what, since) {
    for (;;) {
      if (following !== id) return;
      let c;
      try {
        const { res, data } = await send('GET', `api/fleet/commands/${id}`);
        if (!res.ok) return refused(what, res, data);
        c = data;
      } catch (err) {
        result('err', `${what}: its outcomes could not be read (${err.message})`, 0);
        return;
      }
      if (following !== id) return;
      const done = c.pending.length === 0 || c.expired || Date.now() - since > FOLLOW_FOR_MS;
      drawOutcomes(c, done);
      if (done) {
        const count = (k) => c.outcomes.filter((o) => o.outcome === k).length;
        const applied = count('applied');
        const bad = c.outcomes.length - applied + c.pending.length;
        const parts = [`${applied} applied`];
        if (count('refused')) parts.push(`${count('refused')} refused`);
        if (count('expired') || (c.expired && c.pending.length))
          parts.push(`${count('expired') + (c.expired ? c.pending.length : 0)} expired`);
        if (c.pending.length && !c.expired) parts.push(`${c.pending.length} pending`);
        result(
          bad === 0 && applied > 0 ? 'ok' : 'err',
          `Command #${id} ${what}: ${parts.join(', ')}`,
          200,
        );
        onDone();
        return;
      }
      await new Promise((r) => setTimeout(r, FOLLOW_MS));
    }
  }

  /** The controls for the view's `control` (absent on an older agent: none). */
  function controlView(view) {
    control = view.control || { available: false, operator_api: false };
    $('control').hidden = !control.available;
    $('control-none').hidden = control.available || view.source !== 'local';
    $('th-control').hidden = !usable();
    tokenView();
    if (!usable()) {
      close();
      cells.clear();
    }
  }

  function startControls(done) {
    onDone = done;
    $('all-actions').append(...buttons(null));
    const use = () => {
      const v = $('token-input').value.trim();
      if (!v) return;
      token = v;
      $('token-input').value = '';
      tokenView();
      result('ok', 'Token kept in this tab until it closes or reloads.', 0);
    };
    $('token-use').onclick = use;
    $('token-input').onkeydown = (e) => {
      if (e.key === 'Enter') use();
    };
    $('token-forget').onclick = () => {
      token = null;
      tokenView();
    };
    $('confirm-yes').onclick = () => void confirm();
    $('confirm-no').onclick = close;
  }

  return {
    /** Whether the rows get a control cell. */
    usable,
    /** An agent's control cell (the same node across redraws). */
    cell: controlCell,
    /** Shows or hides the controls for a view of the fleet. */
    view: controlView,
    /** Wires the controls; `done` runs once a command's answers are in. */
    start: startControls,
  };
})();
