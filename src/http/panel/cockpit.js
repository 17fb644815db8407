// The panel's cockpit, inlined before panel.js (which calls it) and after cards.js: the operator controls
// and the agent's own keys of the status (`agent`, `claims`, `boot`, `chain_store`).
// `Cockpit.render(status)` is called by panel.js's render — the one rendering path — and
// offers only the actions `valid_next_states` allows. The operator token is asked once
// and kept in this closure only: never in storage, a cookie or the URL. The cockpit also
// reads the status every 2 s (and after each change), for what moves without a
// transition: the queue, the claim, the chain head, the millisecond times.
// biome-ignore lint/correctness/noUnusedVariables: panel.js, inlined after this file, calls it.
const Cockpit = (() => {
  const KEYS = ['agent', 'claims', 'boot', 'chain_store', 'history_times'];
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  const dash = (v) => (v === null || v === undefined ? '\u2014' : String(v));

  /** The operator actions; each is a domain event of the §9.1 table. */
  const ACTIONS = [
    {
      event: 'pause',
      label: 'Pause',
      fields: [
        ['cause', 'Cause', 'select', ['operator', 'stop_kora', 'cost_limit', 'substrate']],
        ['trigger', 'Why', 'text', 'operator pause from the panel'],
      ],
    },
    {
      event: 'resume.operator_reset',
      label: 'Operator reset',
      fields: [['trigger', 'Why', 'text', 'operator reset from the panel']],
    },
    {
      event: 'resume.credit_refresh',
      label: 'Credit refresh',
      fields: [
        ['reconciledSpendUsd', 'Reconciled spend (USD)', 'number', ''],
        ['thresholdUsd', 'Threshold (USD)', 'number', ''],
        ['trigger', 'Why', 'text', 'monthly credit refresh confirmed from the panel'],
      ],
    },
    {
      event: 'stop',
      label: 'Stop',
      danger: true,
      fields: [['trigger', 'Why', 'text', 'operator stop from the panel']],
    },
  ];

  let token = null; // this tab's memory only
  let apiOff = false; // a 403 said so (a status without `agent` cannot)
  let shown = null; // the status last drawn
  let asking = null; // the action awaiting confirmation
  let show = () => {};

  /** The cockpit's keys of `s` (a change message carries only the seed's). */
  function keep(s) {
    const out = {};
    for (const k of KEYS) if (s[k] !== undefined) out[k] = s[k];
    return out;
  }

  // Reading the status: one read at a time; a read asked for meanwhile runs after it.
  let reading = false;
  let again = false;
  let lastText = '';
  async function refresh() {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      const res = await fetch('api/operational-state', { cache: 'no-store' });
      const text = await res.text();
      if (res.ok && text !== lastText) {
        lastText = text;
        show(JSON.parse(text));
      }
    } catch {
      // The stream's indicator says the agent is unreachable.
    } finally {
      reading = false;
      if (again) {
        again = false;
        void refresh();
      }
    }
  }

  function result(kind, text, status) {
    const r = $('action-result');
    r.hidden = false;
    r.className = `result ${kind}`;
    r.textContent = text;
    r.setAttribute('data-status', String(status));
  }

  /** POSTs an operator request with the token; answers `{ status, body }`. */
  async function send(method, path, body) {
    const headers = { authorization: `Bearer ${token}` };
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

  /** An answer that is not a success: its status, its reason; a 401 forgets the token. */
  function refused(what, res, data) {
    // The answer's `error` names the transition and why (409: the table's reason).
    let text = `${what}: ${res.status} ${res.statusText} \u2014 ${dash(data.error)}`;
    if (res.status === 403) {
      apiOff = true;
      if (shown) controls(shown);
    }
    if (res.status === 401) {
      text += token === null ? '. Enter the operator token.' : '. Enter the token again.';
      token = null;
      tokenView();
    }
    result('err', text, res.status);
  }

  async function confirm() {
    const a = asking;
    if (!a) return;
    const event = { type: a.event };
    for (const [name, label, kind] of a.fields) {
      const v = $(`f-${name}`).value.trim();
      if (kind === 'number') {
        if (v === '' || !Number.isFinite(Number(v))) {
          result('err', `${a.label}: enter a number — ${label}`, 0);
          return;
        }
        event[name] = Number(v);
      } else if (v !== '') event[name] = v;
    }
    close();
    result('busy', `${a.label}\u2026`, 0);
    try {
      const { res, data } = await send('POST', 'api/operational-state/transitions', { event });
      if (!res.ok) return refused(a.label, res, data);
      result('ok', `${a.label} done: the agent is now ${data.primary_state}`, res.status);
      show(data);
      void refresh();
    } catch (err) {
      result('err', `${a.label}: the request failed (${err.message})`, 0);
    }
  }

  function ask(a) {
    if (!token) {
      result('err', `${a.label}: enter the operator token first`, 0);
      $('token-input').focus();
      return;
    }
    asking = a;
    const row = shown.valid_next_states.find((n) => n.event === a.event);
    $('confirm-text').textContent =
      `${a.label}: ${shown.primary_state} \u2192 ${row.to_state} (${row.trigger}` +
      `${row.guard ? `; guard: ${row.guard}` : ''}). Confirm?`;
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
    $('confirm').setAttribute('data-event', a.event);
  }
  function close() {
    asking = null;
    $('confirm').hidden = true;
    $('confirm').removeAttribute('data-event');
  }

  function tokenView() {
    $('token-ask').hidden = token !== null;
    $('token-held').hidden = token === null;
  }

  function controls(s) {
    const off = apiOff || s.agent?.operator_api === false;
    $('controls-off').hidden = !off;
    $('token-ask').hidden = off || token !== null;
    $('token-held').hidden = off || token === null;
    const valid = new Set(off || s.stub ? [] : s.valid_next_states.map((n) => n.event));
    const offered = ACTIONS.filter((a) => valid.has(a.event));
    $('actions').replaceChildren(
      ...offered.map((a) => {
        const b = el('button', a.danger ? 'danger' : '', a.label);
        b.type = 'button';
        b.setAttribute('data-event', a.event);
        b.onclick = () => ask(a);
        return b;
      }),
    );
    $('actions-none').hidden = off || offered.length > 0;
    $('actions-none').textContent = s.stub
      ? 'Nothing to act on yet: the state holder does not exist.'
      : `No operator action leads out of ${s.primary_state}.`;
    if (asking && !valid.has(asking.event)) {
      close();
      result('err', `That action is no longer valid: the agent is ${s.primary_state}`, 0);
    }
  }

  async function verifyNow() {
    result('busy', 'Verifying the chain\u2026', 0);
    try {
      const { res, data } = await send('GET', 'api/operational-state/chain/verify');
      if (!res.ok) return refused('Verify', res, data);
      result(
        data.ok ? 'ok' : 'err',
        data.ok
          ? `Chain verified: ${data.events} events, head #${data.head ? data.head.chain_seq : 0}`
          : `Chain broken at #${dash(data.chain_seq)}: ${data.reason}`,
        res.status,
      );
      void refresh();
    } catch (err) {
      result('err', `Verify: the request failed (${err.message})`, 0);
    }
  }

  return {
    keep,
    refresh,
    render(s) {
      shown = s;
      controls(s);
      const any = s.agent || s.claims || s.boot || s.chain_store;
      $('cockpit').hidden = !any;
      CockpitCards.render(s);
    },
    /** Wires the controls; `onRead` gets each status read (a poll, an action's answer). */
    start(onRead) {
      show = onRead;
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
      $('verify-now').onclick = () => void verifyNow();
      setInterval(() => {
        if (shown?.agent) CockpitCards.tick(shown.agent);
      }, 1000);
      setInterval(() => {
        if (!document.hidden) void refresh();
      }, POLL_MS);
    },
  };
})();
