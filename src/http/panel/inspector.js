// The offline inspector's client: the timeline of the actor's steps (GET api/inspector),
// the statechart lit at the selected step (the state's node, and the arrow the step took)
// and that step's event and context. It follows the SSE stream: every message (a
// `snapshot` on connect, a `change` per transition) fetches the steps after the newest it
// has (`?after=`), one fetch at a time. Builds DOM with textContent only (never innerHTML):
// nothing from the steps is parsed as markup.
(() => {
  const $ = (id) => document.getElementById(id);
  /** Steps by number, oldest first; capped at the server's capacity. */
  let steps = [];
  let capacity = 500;
  let selected; // the selected step's `i`
  let fetching = false;
  let again = false;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  const time = (ms) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
  const transition = (s) => (s.from ? `${s.from} → ${s.state}` : `(initial) ${s.state}`);

  /** Lights `step`'s state and the arrow it took, the classes the SVG already carries. */
  function statechart(step) {
    for (const n of document.querySelectorAll('.statechart .node')) {
      n.classList.toggle('current', !!step && n.getAttribute('data-state') === step.state);
    }
    for (const e of document.querySelectorAll('.statechart .edge[data-from]')) {
      const took =
        !!step &&
        e.getAttribute('data-from') === step.from &&
        e.getAttribute('data-to') === step.state &&
        (e.getAttribute('data-events') || '').split(' ').includes(step.event.type);
      e.classList.toggle('taken', took);
    }
    const svg = document.querySelector('svg.statechart');
    if (svg && step) {
      svg.setAttribute(
        'aria-label',
        `Operational statechart (R4.1 §9.1) at step ${step.i}, state ${step.state}`,
      );
    }
  }

  function detail() {
    const step = steps.find((s) => s.i === selected);
    document.body.setAttribute('data-selected', step ? String(step.i) : '');
    $('sel-i').textContent = step ? `#${step.i}` : '';
    $('sel-origin').textContent = step ? `of ${steps.at(-1).i}` : '';
    $('sel-event').textContent = step ? step.event.type : '';
    $('sel-transition').textContent = step ? transition(step) : '';
    $('sel-trigger').textContent = step ? (step.event.trigger ?? '') : '';
    $('sel-time').textContent = step ? time(step.at_ms) : '';
    $('sel-value').textContent = step ? JSON.stringify(step.value) : '';
    $('sel-event-json').textContent = step ? JSON.stringify(step.event, null, 2) : '';
    $('sel-context').textContent = step ? JSON.stringify(step.context, null, 2) : '';
    const note = $('sel-note');
    const rebuilt = step?.origin === 'history';
    note.hidden = !rebuilt;
    note.textContent = rebuilt
      ? 'Committed before this view followed the actor: the context is what the transition record carries, and the state value was not recorded.'
      : '';
    statechart(step);
    for (const li of $('steps').children) {
      li.classList.toggle('selected', li.getAttribute('data-i') === String(selected));
    }
  }

  function select(i, scroll) {
    if (!steps.some((s) => s.i === i)) return;
    selected = i;
    // Picking an older step stops following; picking the newest follows again.
    $('follow').checked = i === steps.at(-1).i;
    detail();
    if (scroll) $('steps').querySelector(`li[data-i="${i}"]`)?.scrollIntoView({ block: 'nearest' });
  }

  function item(step) {
    const li = el('li', `state-${step.state}${step.origin === 'history' ? ' history' : ''}`);
    li.setAttribute('data-i', String(step.i));
    li.setAttribute('data-state', step.state);
    li.setAttribute('data-event', step.event.type);
    const b = el('button');
    b.type = 'button';
    b.append(el('span', 'n', step.i), el('span', 'ev', step.event.type));
    b.append(el('span', 'sub', `${transition(step)} · ${time(step.at_ms).slice(11)}`));
    b.addEventListener('click', () => select(step.i, false));
    li.append(b);
    return li;
  }

  function add(view) {
    capacity = view.capacity;
    const list = $('steps');
    const last = steps.at(-1)?.i ?? 0;
    const fresh = view.steps.filter((s) => s.i > last);
    for (const s of fresh) list.append(item(s));
    steps = steps.concat(fresh);
    while (steps.length > capacity) {
      steps.shift();
      list.firstElementChild?.remove();
    }
    const dropped = steps.length ? steps[0].i - 1 : 0;
    $('dropped').hidden = dropped === 0;
    $('dropped').textContent =
      `${dropped} older step${dropped === 1 ? '' : 's'} fell off (the newest ${capacity} are kept).`;
    $('count').textContent = `(${steps.length})`;
    $('empty').hidden = steps.length > 0;
    if (fresh.length) {
      document.body.setAttribute(
        'data-updates',
        String(Number(document.body.getAttribute('data-updates')) + 1),
      );
    }
    if (steps.length && ($('follow').checked || !steps.some((s) => s.i === selected))) {
      select(steps.at(-1).i, true);
    } else {
      detail();
    }
  }

  async function load() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    try {
      do {
        again = false;
        const after = steps.at(-1)?.i ?? 0;
        const res = await fetch(`api/inspector?after=${after}`, { cache: 'no-store' });
        if (!res.ok) throw new Error(`GET api/inspector: ${res.status}`);
        add(await res.json());
      } while (again);
    } catch (err) {
      connected(false, `steps not loaded: ${err.message}`);
    } finally {
      fetching = false;
    }
  }

  const conn = $('conn');
  function connected(ok, text) {
    conn.className = `conn ${ok ? 'live' : 'down'}`;
    conn.textContent = text;
  }

  $('step-prev').addEventListener('click', () => step(-1));
  $('step-next').addEventListener('click', () => step(1));
  $('follow').addEventListener('change', () => {
    if ($('follow').checked && steps.length) select(steps.at(-1).i, true);
  });
  function step(by) {
    const at = steps.findIndex((s) => s.i === selected);
    const next = steps[Math.min(steps.length - 1, Math.max(0, at + by))];
    if (next) select(next.i, true);
  }
  document.addEventListener('keydown', (e) => {
    if (e.target instanceof HTMLInputElement) return;
    if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') step(-1);
    else if (e.key === 'ArrowRight' || e.key === 'ArrowDown') step(1);
    else return;
    e.preventDefault();
  });

  load();
  if (!window.EventSource) {
    connected(false, 'no live updates (EventSource unsupported)');
    return;
  }
  const source = new EventSource('api/operational-state/stream');
  source.onopen = () => connected(true, 'live');
  source.onerror = () => connected(false, 'reconnecting\u2026');
  // Any message means the actor may have moved: fetch what is new.
  source.onmessage = () => load();
})();
