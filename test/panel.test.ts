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
import { TRANSITION_TABLE } from '../src/table.js';
import { launchChromium } from './support/browser.js';
import { quietLogger } from './support/httpHandler.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'panel-test-token';

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

  it('shows hostile trigger text as text, and renders like the server does', async () => {
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
    // The live (client-side) render equals a fresh server-side render of the same state.
    const live = {
      next: await text('#next-body'),
      history: await text('#history-body'),
      reasons: await text('#reasons'),
      claim: await text('#claim'),
    };
    await page.reload();
    expect({
      next: await text('#next-body'),
      history: await text('#history-body'),
      reasons: await text('#reasons'),
      claim: await text('#claim'),
    }).toEqual(live);
    await page.waitForSelector('#conn.live', { timeout: 5000 });
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
