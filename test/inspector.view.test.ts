/**
 * The offline inspector (SPEC §12): `GET /api/inspector` records the served actor's steps
 * (bounded, newest kept), and the `/inspector` page in headless Chromium steps through a
 * recorded boot — the timeline lists the boot's events, selecting a step lights its state
 * (and the arrow it took) in the statechart and shows its context — and follows a
 * transition sent through the API without a reload, with no request leaving the agent's
 * origin. Saves a screenshot to test-artifacts/inspector.png (and docs/inspector.png).
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootOpstate, type Gate } from '../src/boot.js';
import { createOpstate, type Opstate } from '../src/holder.js';
import { createStatusApp } from '../src/http/app.js';
import type { InspectorView } from '../src/http/inspectorLog.js';
import { type RunningStatusServer, startStatusServer } from '../src/http/node.js';
import { launchChromium } from './support/browser.js';
import { quietLogger } from './support/httpHandler.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'inspector-test-token';

async function view(app: ReturnType<typeof createStatusApp>, query = ''): Promise<InspectorView> {
  const res = await app.app.request(`/api/inspector${query}`);
  expect(res.status).toBe(200);
  return (await res.json()) as InspectorView;
}

describe('GET /api/inspector', () => {
  it('records each step: the event, the state value and the context right after it', async () => {
    const opstate = createOpstate({ initial: { primaryState: 'ready' }, logger: quietLogger() });
    const app = createStatusApp({ opstate, logger: quietLogger() });
    try {
      await opstate.send({ type: 'claim.acquired', trigger: 'claim acquired: KR-1' });
      await opstate.send({ type: 'pause', cause: 'operator', trigger: 'operator pause' });
      const v = await view(app);
      expect(v).toMatchObject({ capacity: 500, recorded: 3, dropped: 0, following: true });
      expect(v.steps.map((s) => [s.i, s.event.type, s.from, s.state, s.seq])).toEqual([
        [1, 'xstate.init', null, 'ready', null],
        [2, 'claim.acquired', 'ready', 'active', 1],
        [3, 'pause', 'active', 'paused', 2],
      ]);
      expect(v.steps[1]!.value).toEqual({ live: { unpaused: 'active' } });
      expect(v.steps[1]!.context).toMatchObject({ claimHeld: true, claimPermission: 'normal' });
      expect(v.steps[2]!.event).toEqual({
        type: 'pause',
        trigger: 'operator pause',
        cause: 'operator',
      });
      expect(v.steps[2]!.context).toMatchObject({
        claimHeld: true,
        claimPermission: 'none',
        degradationReasons: ['operator'],
      });
      // An event the machine refuses changes nothing and leaves no step.
      await expect(opstate.send({ type: 'claim.acquired' })).rejects.toThrow();
      expect((await view(app)).recorded).toBe(3);
      // `after` gives only the newer steps; `limit` the newest of them.
      expect((await view(app, '?after=2')).steps.map((s) => s.i)).toEqual([3]);
      expect((await view(app, '?limit=2')).steps.map((s) => s.i)).toEqual([2, 3]);
      await opstate.send({ type: 'stop', trigger: 'shutdown' });
      const last = (await view(app, '?after=3')).steps;
      expect(last.map((s) => [s.state, s.status])).toEqual([['stopped', 'done']]);
    } finally {
      await app.close();
    }
  });

  it('keeps the newest steps only, and counts the ones that fell off', async () => {
    const opstate = createOpstate({ initial: { primaryState: 'ready' }, logger: quietLogger() });
    const app = createStatusApp({ opstate, logger: quietLogger(), inspectorSteps: 3 });
    try {
      for (let k = 0; k < 3; k++) {
        await opstate.send({ type: 'claim.acquired' });
        await opstate.send({ type: 'claim.released' });
      }
      const v = await view(app);
      expect(v).toMatchObject({ capacity: 3, recorded: 7, dropped: 4 });
      expect(v.steps.map((s) => s.i)).toEqual([5, 6, 7]);
      expect(v.steps.map((s) => s.event.type)).toEqual([
        'claim.released',
        'claim.acquired',
        'claim.released',
      ]);
      expect((await view(app, '?after=5')).steps.map((s) => s.i)).toEqual([6, 7]);
      expect((await view(app, '?after=1')).steps.map((s) => s.i)).toEqual([5, 6, 7]);
      expect((await view(app, '?after=7')).steps).toEqual([]);
      expect((await view(app, '?after=5&limit=1')).steps.map((s) => s.i)).toEqual([7]);
      await opstate.send({ type: 'claim.acquired' });
      expect((await view(app)).steps.map((s) => [s.i, s.event.type])).toEqual([
        [6, 'claim.acquired'],
        [7, 'claim.released'],
        [8, 'claim.acquired'],
      ]);
    } finally {
      await app.close();
    }
  });

  it('takes what was committed before the app followed the instance from its history', async () => {
    const opstate = createOpstate({ logger: quietLogger() }); // booting
    await opstate.send({ type: 'boot.gates_passed', trigger: 'all gates pass' });
    let given: Opstate | undefined;
    const app = createStatusApp({ holder: () => given, logger: quietLogger() });
    try {
      expect(await view(app)).toMatchObject({ following: false, recorded: 0, steps: [] });
      given = opstate;
      const before = await view(app);
      expect(before.following).toBe(true);
      expect(before.steps.map((s) => [s.origin, s.event.type, s.state, s.value])).toEqual([
        ['history', 'boot.gates_passed', 'ready', null],
      ]);
      expect(before.steps[0]!.context).toEqual({
        primaryState: 'ready',
        claimPermission: 'normal',
        degradationReasons: [],
        claimHeld: false,
      });
      await opstate.send({ type: 'claim.acquired' });
      const after = await view(app, '?after=1');
      expect(after.steps.map((s) => [s.origin, s.event.type, s.state])).toEqual([
        ['live', 'claim.acquired', 'active'],
      ]);
      expect(after.steps[0]!.context).toMatchObject({ retries: {}, retryBudget: 4 });
    } finally {
      await app.close();
    }
  });

  it('answers 400 naming a bad query value, and validates its option', async () => {
    const app = createStatusApp({ opstate: createOpstate({ logger: quietLogger() }) });
    try {
      for (const [q, field, text] of [
        ['?after=-1', 'after', 'invalid after "-1": expected one integer from 0 to 999999999'],
        ['?limit=0', 'limit', 'invalid limit "0": expected one integer from 1 to 500'],
        ['?limit=abc', 'limit', 'invalid limit "abc"'],
        ['?after=1&after=2', 'after', 'invalid after ["1","2"]'],
      ] as const) {
        const res = await app.app.request(`/api/inspector${q}`);
        expect(res.status).toBe(400);
        const body = (await res.json()) as { error: string; field: string };
        expect(body.field).toBe(field);
        expect(body.error).toContain(text);
      }
      expect((await app.app.request('/api/inspector', { method: 'POST' })).status).toBe(405);
    } finally {
      await app.close();
    }
    expect(() => createStatusApp({ inspectorSteps: 0 })).toThrow(
      'inspectorSteps must be an integer from 1 to 10000, got 0',
    );
  });
});

describe('the inspector page in headless Chromium', () => {
  let opstate: Opstate;
  let status: RunningStatusServer;
  let browser: Browser;
  let page: Page;
  const requests: string[] = [];
  const errors: string[] = [];

  beforeAll(async () => {
    opstate = createOpstate({ initial: { primaryState: 'booting' }, logger: quietLogger() });
    // Served from the start, as `kora-opstate start` does: the boot is recorded live.
    status = await startStatusServer({
      opstate,
      operatorToken: TOKEN,
      logger: quietLogger(),
      title: 'kora-opstate · demo',
    });
    let pings = 0;
    const gates: Gate[] = [
      {
        id: 'database',
        gateClass: 'transient',
        reason: 'substrate',
        check: async () => ({ ok: ++pings > 1, detail: pings > 1 ? 'pong' : 'refused' }),
      },
      { id: 'schema', gateClass: 'invariant', check: async () => ({ ok: true, detail: 'v7' }) },
    ];
    const booted = await bootOpstate(opstate, {
      gates,
      logger: quietLogger(),
      sleep: async () => {},
    });
    expect(booted.result).toBe('ready');
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
  });

  afterAll(async () => {
    await browser?.close();
    await status?.close();
  });

  const litState = () => page.locator('.statechart .node.current').getAttribute('data-state');
  const taken = () =>
    page
      .locator('.statechart .edge.taken')
      .evaluateAll((els) =>
        els.map((e) => `${e.getAttribute('data-from')}>${e.getAttribute('data-to')}`),
      );
  const context = async () => JSON.parse((await page.locator('#sel-context').textContent())!);
  const timeline = () =>
    page.locator('#steps li').evaluateAll((els) => els.map((e) => e.getAttribute('data-event')));

  it('lists the boot as a timeline and shows the newest step lit, with its context', async () => {
    await page.goto(`${status.url}/inspector`);
    await page.waitForSelector('#conn.live', { timeout: 5000 });
    await page.waitForFunction(() => document.querySelectorAll('#steps li').length === 4, null, {
      timeout: 5000,
    });
    // The gate's retry adds its reason; its pass clears it (a same-state update); then ready.
    expect(await timeline()).toEqual([
      'xstate.init',
      'boot.gate_retry',
      'update',
      'boot.gates_passed',
    ]);
    expect(await page.title()).toBe('kora-opstate · demo · inspector');
    // Following the newest: the boot's last step, booting → ready.
    expect(await page.locator('#steps li.selected').getAttribute('data-i')).toBe('4');
    expect(await litState()).toBe('ready');
    expect(await taken()).toEqual(['booting>ready']);
    expect(await page.locator('#sel-event').textContent()).toBe('boot.gates_passed');
    expect(await page.locator('#sel-value').textContent()).toBe('{"live":{"unpaused":"ready"}}');
    expect(await context()).toMatchObject({
      primaryState: 'ready',
      claimPermission: 'normal',
      degradationReasons: [],
      retries: { database: 1 },
    });
  });

  it('selecting a step lights that step and shows that step’s context', async () => {
    await page.locator('#steps li[data-i="2"] button').click();
    expect(await litState()).toBe('booting');
    expect(await taken()).toEqual(['booting>booting']); // the gate retry's self-loop
    expect(await page.locator('#sel-event').textContent()).toBe('boot.gate_retry');
    expect(await page.locator('#sel-trigger').textContent()).toContain('"database" attempt 1/');
    expect(await context()).toMatchObject({
      primaryState: 'booting',
      claimPermission: 'none',
      degradationReasons: ['substrate'],
      retries: { database: 1 },
    });
    expect(JSON.parse((await page.locator('#sel-event-json').textContent())!)).toMatchObject({
      type: 'boot.gate_retry',
      details: { gate_id: 'database', attempt: 1 },
    });
    // Picking an older step stops following the newest.
    expect(await page.locator('#follow').isChecked()).toBe(false);
    await page.keyboard.press('ArrowLeft');
    expect(await page.locator('#steps li.selected').getAttribute('data-i')).toBe('1');
    expect(await page.locator('#sel-event').textContent()).toBe('xstate.init');
    expect(await litState()).toBe('booting');
    expect(await taken()).toEqual([]);
    expect(await context()).toMatchObject({ retries: {}, claimPermission: 'none' });
  });

  it('shows a transition sent through the API without a reload', async () => {
    await page.evaluate(() => {
      (window as unknown as { marker: number }).marker = 7;
    });
    const res = await fetch(`${status.url}/api/operational-state/transitions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: 'paused', trigger: 'operator pause from the API' }),
    });
    expect(res.status).toBe(200);
    await page.waitForFunction(() => document.querySelectorAll('#steps li').length === 5, null, {
      timeout: 5000,
    });
    expect((await timeline()).at(-1)).toBe('pause');
    // Not following: the selection stayed where the operator left it.
    expect(await page.locator('#steps li.selected').getAttribute('data-i')).toBe('1');
    await page.locator('#follow').check();
    expect(await page.locator('#steps li.selected').getAttribute('data-i')).toBe('5');
    expect(await litState()).toBe('paused');
    expect(await taken()).toEqual(['ready>paused']);
    expect(await context()).toMatchObject({
      primaryState: 'paused',
      claimPermission: 'none',
      degradationReasons: ['operator'],
    });
    // Following again: the next one is selected as it arrives.
    await opstate.send({ type: 'resume.operator_reset', trigger: 'operator reset' });
    await page.waitForFunction(
      () => document.querySelector('#steps li.selected')?.getAttribute('data-i') === '6',
      null,
      { timeout: 5000 },
    );
    expect(await litState()).toBe('ready');
    expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).toBe(7);
  });

  it('makes no request outside the agent, logs no error, and saves a screenshot', async () => {
    await opstate.send({ type: 'claim.acquired', trigger: 'claim acquired: ticket KR-101' });
    await page.waitForFunction(() => document.querySelectorAll('#steps li').length === 7, null, {
      timeout: 5000,
    });
    await page.locator('#steps li[data-i="2"] button').click();
    const origin = new URL(status.url).origin;
    expect(requests.filter((u) => new URL(u).origin !== origin)).toEqual([]);
    expect(requests).toContain(`${origin}/api/operational-state/stream`);
    expect(requests.some((u) => u.startsWith(`${origin}/api/inspector?after=`))).toBe(true);
    expect(errors).toEqual([]);
    const dir = join(ROOT, 'test-artifacts');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'inspector.png');
    await page.screenshot({ path: file, fullPage: true });
    expect(existsSync(file)).toBe(true);
    // The README's copy is refreshed on request (a test should not dirty the work tree).
    const docs = join(ROOT, 'docs', 'inspector.png');
    if (process.env.UPDATE_DOCS_SCREENSHOT === '1' || !existsSync(docs)) copyFileSync(file, docs);
  });

  it('a hostile trigger is shown as text, never markup', async () => {
    await opstate.send({
      type: 'claim.released',
      trigger: '<img src=x onerror="window.pwned=1"><b>bold</b>',
    });
    await page.locator('#follow').check();
    await page.waitForFunction(() => document.querySelectorAll('#steps li').length === 8, null, {
      timeout: 5000,
    });
    expect(await page.locator('#sel-trigger').textContent()).toBe(
      '<img src=x onerror="window.pwned=1"><b>bold</b>',
    );
    expect(await page.locator('#sel-trigger img, #sel-trigger b').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBe(
      undefined,
    );
  });
});
