/**
 * The live panel in headless Chromium: load `/`, read the shown state, change the state
 * through the operator API, and see the page follow over SSE without a reload — with no
 * request leaving 127.0.0.1. Saves a screenshot to test-artifacts/panel.png.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOperationalStateHolder, type OperationalStateHolder } from '../src/holder.js';
import { type RunningStatusServer, startStatusServer } from '../src/http/node.js';
import { renderPanel } from '../src/http/panel.js';
import { STUB_STATUS, type StatusPayload, validNextStates } from '../src/http/status.js';
import { TRANSITION_TABLE, transitionsFrom } from '../src/table.js';
import { launchChromium } from './support/browser.js';
import { quietLogger } from './support/httpHandler.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'panel-test-token';

/** The status JSON the server embedded in the page. */
function embeddedStatus(html: string): unknown {
  const json = /<script type="application\/json" id="panel-status">(.*?)<\/script>/s.exec(html);
  if (!json) throw new Error('no embedded status in the page');
  return JSON.parse(json[1]!);
}

/**
 * Everything the client renders from a status, as markup: two pages showing the same
 * status must agree on every byte of it (the badge's one-off flash class aside).
 */
const rendered = (p: Page) =>
  p.evaluate(() => {
    const byId = (id: string) => document.getElementById(id)!;
    const attrs = (selector: string, name: string) =>
      Array.from(document.querySelectorAll(selector), (n) => n.getAttribute(name));
    const badge = byId('state-badge');
    return {
      title: document.title,
      badge: [badge.textContent, Array.from(badge.classList).filter((c) => c !== 'changed')],
      summary: ['claim', 'reasons', 'chain-row', 'chain', 'stub-note'].map(
        (id) => byId(id).outerHTML,
      ),
      lit: attrs('.statechart .node.current', 'data-state'),
      nextEdges: attrs('.statechart .edge.next', 'data-rows'),
      chartLabel: document.querySelector('svg.statechart')!.getAttribute('aria-label'),
      nextBody: byId('next-body').innerHTML,
      historyBody: byId('history-body').innerHTML,
    };
  });

describe('the panel in headless Chromium', () => {
  let holder: OperationalStateHolder;
  let status: RunningStatusServer;
  let browser: Browser;
  let page: Page;
  const requests: string[] = [];

  beforeAll(async () => {
    holder = createOperationalStateHolder({ logger: quietLogger() });
    await holder.transitionTo('ready', 'all §9.2 gates pass');
    status = await startStatusServer({
      holder,
      operatorToken: TOKEN,
      logger: quietLogger(),
      emitter: { stats: { emitted: 2, failures: 0 } },
      sink: { stats: { appended: 2, failures: 0, outboxDepth: 0, dropped: 0 } },
    });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('request', (r) => requests.push(r.url()));
  });

  afterAll(async () => {
    await browser?.close();
    await status?.close();
  });

  const operator = async (body: unknown) => {
    const res = await fetch(`${status.url}/api/operational-state/transitions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    return res.json();
  };
  /** What a person sees (Playwright's innerText: rendered text, CSS applied). */
  // biome-ignore lint/performance/useDomNodeTextContent: Playwright's locator, not the DOM property.
  const text = (selector: string) => page.locator(selector).innerText();
  const waitForState = (state: string) =>
    page.waitForFunction((s) => document.getElementById('state-badge')?.textContent === s, state, {
      timeout: 2000,
    });

  it('shows the current state, claim permission and the lit statechart', async () => {
    await page.goto(`${status.url}/`);
    expect(await text('#state-badge')).toBe('READY'); // uppercased by CSS
    expect(await page.locator('#state-badge').textContent()).toBe('ready');
    expect(await text('#claim')).toBe('normal');
    expect(await text('#reasons')).toBe('none');
    expect(await page.locator('.statechart .node.current').getAttribute('data-state')).toBe(
      'ready',
    );
    expect(await page.title()).toBe('kora-opstate · ready');
    const nextRows = await page.locator('#next-body tr td.num').allInnerTexts();
    expect(nextRows).toEqual(
      TRANSITION_TABLE.filter((r) => r.from === 'ready').map((r) => String(r.row)),
    );
    await page.waitForSelector('#conn.live', { timeout: 5000 });
  });

  it('follows a transition sent through the API within 2 s, without a reload', async () => {
    await page.evaluate(() => {
      (window as unknown as { marker: number }).marker = 42;
    });
    const updatesBefore = Number(await page.locator('body').getAttribute('data-updates'));
    await operator({ to: 'paused', trigger: 'operator pause from the API', add_reasons: ['auth'] });
    await waitForState('paused');
    expect(await text('#claim')).toBe('none');
    expect(await page.locator('#reasons .chip').allInnerTexts()).toEqual(['auth', 'operator']);
    expect(await page.locator('.statechart .node.current').getAttribute('data-state')).toBe(
      'paused',
    );
    expect(
      await page
        .locator('.statechart .edge.next')
        .evaluateAll((els) => els.map((e) => e.getAttribute('data-from'))),
    ).toSatisfy((froms: string[]) => froms.length > 0 && froms.every((f) => f === 'paused'));
    expect(await page.locator('#next-body tr td.num').allInnerTexts()).toEqual(['10', '11', '14']);
    expect(await page.locator('#history-body tr').first().textContent()).toContain(
      'operator pause from the API',
    );
    expect(await page.title()).toBe('kora-opstate · paused');
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    expect(Number(await page.locator('body').getAttribute('data-updates'))).toBeGreaterThan(
      updatesBefore,
    );
  });

  it('shows hostile trigger text as text', async () => {
    const evil = '<img src=x onerror="window.pwned=1">';
    await operator({ event: { type: 'resume.operator_reset', trigger: evil } });
    await waitForState('ready');
    await operator({ to: 'active', trigger: 'claim acquired' });
    await waitForState('active');
    expect(await page.locator('#history-body img').count()).toBe(0);
    expect(
      await page.evaluate(() => (window as unknown as { pwned?: number }).pwned),
    ).toBeUndefined();
    expect(await page.locator('#history-body tr').nth(1).textContent()).toContain(evil);
  });

  it('renders on the client only: the server sends the status as JSON and empty tables', async () => {
    const res = await fetch(`${status.url}/`);
    const html = await res.text();
    const api = await (await fetch(`${status.url}/api/operational-state`)).json();
    expect(html).toContain('<div id="state-badge" class="badge"></div>');
    expect(html).toContain('<tbody id="next-body"></tbody>');
    expect(html).toContain('<tbody id="history-body"></tbody>');
    expect(html).not.toMatch(/class="node [^"]*current/);
    expect(embeddedStatus(html)).toEqual(api);
  });

  it('draws a live update exactly as a fresh load draws the same status', async () => {
    await operator({ to: 'paused', trigger: 'operator pause: <b>bold</b> & "quoted"' });
    await waitForState('paused');
    await operator({ event: { type: 'resume.operator_reset', trigger: 'operator reset' } });
    await waitForState('ready');
    const live = await rendered(page);
    expect(live.nextBody).toContain('<td class="num">');
    expect(live.historyBody).toContain('operator pause: &lt;b&gt;bold&lt;/b&gt; &amp; "quoted"');
    // The fresh page gets no stream: what it shows comes from the embedded status alone.
    const fresh = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    fresh.on('request', (r) => requests.push(r.url()));
    await fresh.route('**/api/operational-state/stream', (route) => route.abort());
    try {
      await fresh.goto(`${status.url}/`);
      expect(await fresh.locator('body').getAttribute('data-updates')).toBe('1');
      expect(await rendered(fresh)).toEqual(live);
    } finally {
      await fresh.close();
    }
  });

  it('draws a fresh load after more live changes than the history keeps', async () => {
    // 12 changes (the history keeps 10): the page appends each record and lets the oldest go.
    for (let i = 0; i < 6; i++) {
      await operator({ to: 'active', trigger: `claim acquired: ticket KR-${i}` });
      await operator({ to: 'ready', trigger: `claim released: ticket KR-${i}` });
    }
    await page.waitForFunction(
      () =>
        document.querySelector('#history-body tr td.trigger')?.textContent ===
        'claim released: ticket KR-5',
      null,
      { timeout: 2000 },
    );
    const live = await rendered(page);
    const fresh = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    fresh.on('request', (r) => requests.push(r.url()));
    await fresh.route('**/api/operational-state/stream', (route) => route.abort());
    try {
      await fresh.goto(`${status.url}/`);
      expect(await fresh.locator('#history-body tr').count()).toBe(10);
      expect(await rendered(fresh)).toEqual(live);
    } finally {
      await fresh.close();
    }
  });

  it('made no request that left 127.0.0.1', () => {
    expect(requests.length).toBeGreaterThan(0);
    const origin = new URL(status.url).origin;
    expect(origin.startsWith('http://127.0.0.1:')).toBe(true);
    expect(requests.filter((u) => new URL(u).origin !== origin)).toEqual([]);
    expect(requests).toContain(`${origin}/api/operational-state/stream`);
  });

  it('saves a screenshot', async () => {
    // A fresh process story for the picture: a gate retry, boot, work, a degradation.
    const shown = createOperationalStateHolder({ logger: quietLogger() });
    await shown.send({ type: 'boot.gate_retry', gate: 'dispatch', addReasons: ['dispatch'] });
    await shown.send({ type: 'boot.gates_passed', removeReasons: ['dispatch'] });
    await shown.send({ type: 'claim.acquired', trigger: 'claim acquired: ticket KR-101' });
    await shown.send({ type: 'claim.released', trigger: 'claim released: ticket KR-101' });
    await shown.transitionTo('ready', 'auth token expires in 20 min', {
      addReasons: ['token_expiring'],
    });
    const demo = await startStatusServer({
      holder: shown,
      logger: quietLogger(),
      emitter: { stats: { emitted: 7, failures: 0 } },
      sink: { stats: { appended: 7, failures: 0, outboxDepth: 0, dropped: 0 } },
    });
    try {
      const shot = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const outside: string[] = [];
      shot.on('request', (r) => {
        if (new URL(r.url()).origin !== new URL(demo.url).origin) outside.push(r.url());
      });
      await shot.goto(`${demo.url}/`);
      await shot.waitForSelector('#conn.live', { timeout: 5000 });
      await shown.send({ type: 'claim.acquired', trigger: 'claim acquired: ticket KR-102' });
      await shot.waitForFunction(
        () => document.getElementById('state-badge')?.textContent === 'active',
        null,
        { timeout: 2000 },
      );
      const dir = join(ROOT, 'test-artifacts');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, 'panel.png');
      await shot.screenshot({ path: file, fullPage: true });
      expect(existsSync(file)).toBe(true);
      expect(outside).toEqual([]);
      // The README's copy is refreshed on request (a test should not dirty the work tree).
      const docs = join(ROOT, 'docs', 'panel.png');
      if (process.env.UPDATE_DOCS_SCREENSHOT === '1' || !existsSync(docs)) copyFileSync(file, docs);
    } finally {
      await demo.close();
    }
  });
});

describe('the panel drawn from a status payload (the page alone, no server)', () => {
  let browser: Browser;
  const NONCE = 'fixture-nonce';
  const ORIGIN = 'http://panel.test';

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** `renderPanel(status)` served under the handler's kind of nonce CSP; nothing else answers. */
  async function show(status: StatusPayload, title?: string): Promise<Page> {
    const page = await browser.newPage();
    const html = renderPanel(status, { nonce: NONCE, ...(title ? { title } : {}) });
    await page.route('**/*', (route) =>
      route.request().url() === `${ORIGIN}/`
        ? route.fulfill({
            contentType: 'text/html; charset=utf-8',
            headers: {
              'content-security-policy': `default-src 'none'; script-src 'nonce-${NONCE}'; style-src 'nonce-${NONCE}'; connect-src 'self'`,
            },
            body: html,
          })
        : route.abort(),
    );
    await page.goto(`${ORIGIN}/`);
    return page;
  }
  const texts = (page: Page, selector: string) => page.locator(selector).allInnerTexts();

  it('shows the stub note before the holder exists, and no chain row when unconfigured', async () => {
    const page = await show(STUB_STATUS);
    expect(await page.locator('#state-badge').textContent()).toBe('booting');
    expect(await page.locator('#stub-note').isVisible()).toBe(true);
    expect(await page.locator('#stub-note').textContent()).toMatch(
      /^OperationalStateHolder not yet initialized/,
    );
    expect(await page.locator('#chain-row').isVisible()).toBe(false);
    expect(await page.locator('#chain').isVisible()).toBe(false);
    expect(await texts(page, '#next-body tr')).toEqual(['none']);
    expect(await texts(page, '#history-body tr')).toEqual(['no transitions yet']);
    expect(await page.locator('.statechart .node.current').getAttribute('data-state')).toBe(
      'booting',
    );
    await page.close();
  });

  it('lists the valid next transitions with their row numbers and row texts, and lights the chart', async () => {
    const status: StatusPayload = {
      primary_state: 'paused',
      claim_permission: 'none',
      degradation_reasons: ['auth'],
      is_degraded: true,
      transition_history: [],
      valid_next_states: validNextStates('paused'),
    };
    const page = await show(status);
    expect(await page.locator('#stub-note').isVisible()).toBe(false);
    const from = TRANSITION_TABLE.filter((r) => r.from === 'paused');
    expect(await texts(page, '#next-body td.num')).toEqual(from.map((r) => String(r.row)));
    expect(await texts(page, '#next-body td:nth-child(4)')).toEqual(
      transitionsFrom('paused').map((r) => r.trigger),
    );
    expect(await page.locator('.statechart .node.current').getAttribute('data-state')).toBe(
      'paused',
    );
    const next = await page
      .locator('.statechart .edge.next')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-from')));
    expect(next.length).toBeGreaterThan(0);
    expect(new Set(next)).toEqual(new Set(['paused']));
    expect(await page.title()).toBe('kora-opstate · paused');
    expect(await page.locator('body').getAttribute('data-updates')).toBe('1');
    await page.close();
  });

  it('shows everything it was given as text: the title, triggers, causes, the chain error', async () => {
    const evil = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">';
    const status: StatusPayload = {
      primary_state: 'ready',
      claim_permission: 'critical_only',
      degradation_reasons: ['auth'],
      is_degraded: true,
      transition_history: [
        {
          seq: 1,
          timestamp: '2026-01-01T00:00:00Z',
          from_state: 'booting',
          to_state: 'paused',
          trigger: `${evil} {{nonce}} {{status}}`,
          event: 'pause',
          cause: 'operator',
          claim_permission: 'none',
          degradation_reasons: ['auth', 'operator'],
        },
      ] as StatusPayload['transition_history'],
      valid_next_states: validNextStates('ready'),
      chain: {
        emitted: 3,
        failures: 1,
        last_error: evil,
        outbox_depth: 0,
        dropped: null,
        refused: null,
      },
    };
    const page = await show(status, '<b>t</b>');
    expect(await page.evaluate(() => (window as { pwned?: number }).pwned)).toBeUndefined();
    expect(await page.locator('img, b').count()).toBe(0);
    expect(await page.locator('script:not([type])').count()).toBe(1);
    expect(await page.title()).toBe('<b>t</b> · ready');
    expect(await texts(page, 'header h1')).toEqual(['<b>t</b> operational state']);
    expect(await texts(page, '#history-body td.trigger')).toEqual([`${evil} {{nonce}} {{status}}`]);
    expect(await texts(page, '#history-body tr td:nth-child(4)')).toEqual(['pause (operator)']);
    expect(await page.locator('#chain .warn').textContent()).toBe(
      'emitted 3 · failures 1 · outbox 0 · dropped —',
    );
    expect(await page.locator('#chain .muted').textContent()).toBe(`last error: ${evil}`);
    expect(await texts(page, '#reasons .chip')).toEqual(['auth']);
    await page.close();
  });
});
