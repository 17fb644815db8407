/**
 * The panel's cockpit (SPEC §12): the status keys it reads (`agent`, `claims`, `boot`,
 * `chain_store`, `history_times`), the page drawing them alone in Chromium, and every
 * operator control end to end against a real agent (`kora-opstate start` on PGlite):
 * pause → the badge, the chain and `/readyz` change; a wrong token shows the 401; a
 * refused action shows its 409. Saves docs/panel-controls.png and docs/panel-cockpit.png
 * (refreshed with UPDATE_DOCS_SCREENSHOT=1).
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BootSummary } from '../src/boot.js';
import { createOperationalStateHolder, type TransitionRecord } from '../src/holder.js';
import { createStatusApp } from '../src/http/app.js';
import { startStatusServer } from '../src/http/node.js';
import { renderPanel } from '../src/http/panel.js';
import { type StatusPayload, validNextStates } from '../src/http/status.js';
import { PRIMARY_STATES, type PrimaryState } from '../src/vocabulary.js';
import { type AgentProcess, startTsProcess } from './support/agentProcess.js';
import { launchChromium } from './support/browser.js';
import { CLI_BIN, tempDirs } from './support/cli.js';
import { quietLogger } from './support/httpHandler.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const tempDir = tempDirs('kora-cockpit-');
/** The operator actions the panel has, by the event each sends. */
const ACTION_EVENTS = ['pause', 'resume.operator_reset', 'resume.credit_refresh', 'stop'];

const deferred = <T>() => {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
};
/** Lets the settled promises' handlers run (the cockpit reads results in `.then`). */
const settle = () => new Promise((r) => setImmediate(r));

/** A `<dl>` of the page as { term: definition } (text content). */
const dl = (page: Page, id: string) =>
  page.locator(`#${id}`).evaluate((d) => {
    const out: Record<string, string> = {};
    for (const t of Array.from(d.querySelectorAll('dt')))
      out[t.textContent!] = t.nextElementSibling!.textContent!;
    return out;
  });
/** Waits until the definition of `term` in the page's `<dl id>` matches `pattern`. */
const waitForTerm = (page: Page, id: string, term: string, pattern: RegExp) =>
  page.waitForFunction(
    ([id, term, source, flags]) => {
      for (const t of Array.from(document.getElementById(id)!.querySelectorAll('dt'))) {
        if (t.textContent === term) {
          return new RegExp(source, flags).test(t.nextElementSibling!.textContent!);
        }
      }
      return false;
    },
    [id, term, pattern.source, pattern.flags] as const,
    { timeout: 15_000 },
  );

/** Saves a screenshot under test-artifacts/, and to docs/ when asked (or missing there). */
async function screenshot(page: Page, name: string): Promise<void> {
  const dir = join(ROOT, 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  await page.screenshot({ path: file, fullPage: true });
  expect(existsSync(file)).toBe(true);
  const docs = join(ROOT, 'docs', name);
  if (process.env.UPDATE_DOCS_SCREENSHOT === '1' || !existsSync(docs)) copyFileSync(file, docs);
}

describe('the cockpit keys of the status payload', () => {
  const SEED = [
    'primary_state',
    'claim_permission',
    'degradation_reasons',
    'is_degraded',
    'transition_history',
    'valid_next_states',
  ];
  const read = async (app: ReturnType<typeof createStatusApp>) =>
    (await app.app.request('/api/operational-state')).json();

  it('are absent without their sources, each present with its own', async () => {
    const holder = createOperationalStateHolder({ logger: quietLogger() });
    const plain = createStatusApp({ holder, logger: quietLogger() });
    expect(Object.keys(await read(plain))).toEqual(SEED);
    const withBoot = createStatusApp({
      holder,
      logger: quietLogger(),
      boot: { result: 'ready', gates: [] },
    });
    expect(Object.keys(await read(withBoot))).toEqual([...SEED, 'boot']);
    const withPoller = createStatusApp({
      holder,
      logger: quietLogger(),
      poller: { stats: { completed: 2, failed: 1, abandoned: 0 } },
    });
    const body = await read(withPoller);
    expect(Object.keys(body)).toEqual([...SEED, 'claims']);
    expect(body.claims).toMatchObject({ held: null, queue_depth: null, completed: 2, failed: 1 });
    for (const a of [plain, withBoot, withPoller]) await a.close();
  });

  it('gives the agent, its uptime origin and each transition time in milliseconds', async () => {
    let now = Date.parse('2026-03-01T10:00:00.000Z');
    const holder = createOperationalStateHolder({ logger: quietLogger(), now: () => now });
    const app = createStatusApp({
      holder,
      logger: quietLogger(),
      operatorToken: 'cockpit-token',
      agent: { agentId: 'agent-7', instanceId: 'run-42', version: '9.9.9' },
      now: () => now,
    });
    now += 1234;
    await holder.transitionTo('ready', 'gates passed');
    now += 5;
    await holder.transitionTo('active', 'claim acquired');
    const body = await read(app);
    expect(body.agent).toEqual({
      agent_id: 'agent-7',
      instance_id: 'run-42',
      version: '9.9.9',
      started_at: '2026-03-01T10:00:00.000Z',
      pid: process.pid,
      operator_api: true,
    });
    // The seed's records keep their whole-second timestamps; the times are beside them.
    expect(body.transition_history.map((r: TransitionRecord) => r.timestamp)).toEqual([
      '2026-03-01T10:00:01Z',
      '2026-03-01T10:00:01Z',
    ]);
    expect(body.history_times).toEqual({
      1: '2026-03-01T10:00:01.234Z',
      2: '2026-03-01T10:00:01.239Z',
    });
    // No sink: the chain store is not there to describe.
    expect(body.chain_store).toBeUndefined();
    await app.close();
  });

  it('shows the held claim, the queue (counted at most once a second) and the poller', async () => {
    let now = 1_000_000;
    const holder = createOperationalStateHolder({ logger: quietLogger(), now: () => now });
    await holder.transitionTo('ready', 'gates passed');
    await holder.send({ type: 'claim.acquired', trigger: 'claim acquired: KR-1' });
    const coordinator = {
      held: {
        id: 'KR-1',
        critical: true,
        attempts: 2,
        lease: { owner: 'w-1', expiresAt: new Date() },
      },
    };
    let asked = 0;
    let answer = deferred<{ queued: number; claimed: number; done: number; failed: number }>();
    const queue = {
      counts: () => {
        asked++;
        return answer.promise;
      },
    };
    const app = createStatusApp({
      holder,
      logger: quietLogger(),
      coordinator,
      queue,
      poller: { stats: { completed: 7, failed: 0, abandoned: 1 } },
      now: () => now,
    });
    const first = await read(app);
    expect(asked).toBe(1);
    expect(first.claims).toEqual({
      // Committed before the app was made: the record's own (whole-second) time.
      held: {
        ticket_id: 'KR-1',
        critical: true,
        attempts: 2,
        lease_owner: 'w-1',
        since: '1970-01-01T00:16:40Z',
      },
      queue_depth: null,
      done: null,
      completed: 7,
      failed: 0,
      counted_at: null,
      queue_error: null,
    });
    answer.resolve({ queued: 5, claimed: 1, done: 9, failed: 0 });
    await settle();
    const second = await read(app);
    expect(second.claims).toMatchObject({ queue_depth: 5, done: 9 });
    expect(second.claims.counted_at).toBe(new Date(1_000_000).toISOString());
    expect(asked).toBe(1); // within the second: not asked again
    now += 1000;
    answer = deferred();
    await read(app);
    expect(asked).toBe(2);
    answer.resolve({ queued: 4, claimed: 1, done: 10, failed: 0 });
    await settle();
    expect((await read(app)).claims).toMatchObject({ queue_depth: 4, done: 10 });
    await app.close();
  });

  it('says the boot is running until its summary arrives, then lists the gates', async () => {
    const holder = createOperationalStateHolder({ logger: quietLogger() });
    const boot = deferred<BootSummary>();
    let asked = 0;
    const queue = {
      counts: async () => {
        asked++;
        return { queued: 1, claimed: 0, done: 0, failed: 0 };
      },
    };
    const app = createStatusApp({
      holder,
      logger: quietLogger(),
      boot: () => boot.promise,
      queue,
    });
    const running = await read(app);
    // The boot's gates open the queue: it is not counted before the boot finished.
    expect(asked).toBe(0);
    expect(running.claims.queue_depth).toBeNull();
    expect(running.boot).toEqual({
      finished: false,
      result: null,
      gates: [],
      failed_gate: null,
      error: null,
    });
    boot.resolve({
      result: 'paused',
      gates: [
        {
          gate_id: 'event_store',
          gate_class: 'transient',
          outcome: 'pass',
          attempts: 3,
          elapsed_ms: 4100,
          detail: 'store up',
        },
        {
          gate_id: 'schema_epoch',
          gate_class: 'invariant_pause',
          outcome: 'fail',
          attempts: 1,
          elapsed_ms: 4,
          detail: 'store epoch 5, package epoch 6',
        },
      ],
      failedGate: {
        gate_id: 'schema_epoch',
        gate_class: 'invariant_pause',
        outcome: 'fail',
        attempts: 1,
        elapsed_ms: 4,
        detail: 'store epoch 5, package epoch 6',
      },
    });
    await settle();
    const finished = await read(app);
    expect(asked).toBe(1);
    expect(finished.boot).toEqual({
      finished: true,
      result: 'paused',
      gates: [
        {
          id: 'event_store',
          class: 'transient',
          outcome: 'pass',
          attempts: 3,
          elapsed_ms: 4100,
          detail: 'store up',
        },
        {
          id: 'schema_epoch',
          class: 'invariant_pause',
          outcome: 'fail',
          attempts: 1,
          elapsed_ms: 4,
          detail: 'store epoch 5, package epoch 6',
        },
      ],
      failed_gate: 'schema_epoch',
      error: null,
    });
    await app.close();
  });

  it('describes the chain store and remembers the last verification', async () => {
    const holder = createOperationalStateHolder({ logger: quietLogger() });
    const head = { chain_seq: 12, hash: 'ab'.repeat(32) };
    let verdict: Record<string, unknown> = {
      ok: true,
      events: 12,
      checked: 12,
      head,
      keyedFrom: 1,
      gaps: [],
    };
    const sink = {
      workspaceId: 'ws-cockpit',
      head,
      keyId: 'k-1',
      stats: {
        appended: 12,
        failures: 0,
        outboxDepth: 0,
        dropped: 0,
        refused: 0,
        spool: { depth: 3 },
      },
      tail: async () => [],
      verifyChain: async () => verdict,
    };
    const app = createStatusApp({
      holder,
      sink,
      logger: quietLogger(),
      verifyCacheMs: 0,
      agent: { version: '1.0.0' },
    });
    expect((await read(app)).chain_store).toEqual({
      workspace_id: 'ws-cockpit',
      head,
      key_id: 'k-1',
      spool_depth: 3,
      last_verify: null,
    });
    expect((await app.app.request('/api/operational-state/chain/verify')).status).toBe(200);
    expect((await read(app)).chain_store.last_verify).toMatchObject({
      ok: true,
      events: 12,
      reason: null,
    });
    verdict = { ...verdict, ok: false, events: 4, eventId: 'e5', chainSeq: 5, reason: 'bad link' };
    await app.app.request('/api/operational-state/chain/verify');
    expect((await read(app)).chain_store.last_verify).toMatchObject({
      ok: false,
      events: 4,
      reason: 'bad link',
    });
    await app.close();
  });

  it('refuses bad sources, naming them', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ queue: {} }, /queue must be a ticket queue with counts\(\)/],
      [{ coordinator: 5 }, /coordinator must be a claim coordinator/],
      [{ poller: { stats: null } }, /poller must be a ticket poller/],
      [{ agent: { version: '' } }, /agent\.version must be a non-empty string, got ""/],
      [{ agent: { startedAt: 'noon' } }, /agent\.startedAt must be a Date or a time in ms/],
      [{ boot: 'ready' }, /boot must be a boot summary/],
      [{ now: 5 }, /now must be a function/],
    ];
    for (const [options, message] of bad) {
      expect(() => createStatusApp({ logger: quietLogger(), ...options })).toThrow(message);
    }
  });

  it('is what the panel page starts from', async () => {
    const holder = createOperationalStateHolder({ logger: quietLogger() });
    const app = createStatusApp({
      holder,
      logger: quietLogger(),
      agent: { version: '1.2.3' },
      boot: { result: 'ready', gates: [] },
    });
    await holder.transitionTo('ready', 'gates passed');
    const html = await (await app.app.request('/')).text();
    const embedded = /<script type="application\/json" id="panel-status">(.*?)<\/script>/s.exec(
      html,
    )![1]!;
    expect(JSON.parse(embedded)).toEqual(await read(app));
    expect(JSON.parse(embedded).agent.version).toBe('1.2.3');
    await app.close();
  });
});

/** A status of `state` with the cockpit keys (the page draws it; no server). */
function fixture(state: PrimaryState, extra: Partial<Record<string, unknown>> = {}): StatusPayload {
  return {
    primary_state: state,
    claim_permission: state === 'ready' || state === 'active' ? 'normal' : 'none',
    degradation_reasons: [],
    is_degraded: false,
    transition_history: [],
    valid_next_states: validNextStates(state),
    agent: {
      agent_id: 'agent-7',
      instance_id: 'run-42',
      version: '9.9.9',
      started_at: new Date(Date.now() - 3_723_000).toISOString(),
      pid: 4242,
      operator_api: true,
    },
    ...extra,
  } as StatusPayload;
}

describe('the cockpit drawn from a status payload (the page alone)', () => {
  let browser: Browser;
  const NONCE = 'cockpit-nonce';
  const ORIGIN = 'http://cockpit.test';

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** `renderPanel(status)` under the app's kind of CSP; nothing else answers. */
  async function show(status: StatusPayload): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const html = renderPanel(status, { nonce: NONCE });
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
  const offered = (page: Page) =>
    page
      .locator('#actions button')
      .evaluateAll((bs) => bs.map((b) => b.getAttribute('data-event')));

  it('offers, in each state, only the actions valid_next_states allows', async () => {
    for (const state of PRIMARY_STATES) {
      const page = await show(fixture(state));
      const valid = new Set(validNextStates(state).map((n) => n.event));
      expect(await offered(page), state).toEqual(ACTION_EVENTS.filter((e) => valid.has(e)));
      expect(await page.locator('#actions-none').isVisible(), state).toBe(state === 'stopped');
      await page.close();
    }
    const stopped = await show(fixture('stopped'));
    expect(await stopped.locator('#actions-none').textContent()).toBe(
      'No operator action leads out of stopped.',
    );
    await stopped.close();
  });

  it('says the operator API is off instead of offering controls', async () => {
    const status = fixture('ready');
    (status as unknown as { agent: { operator_api: boolean } }).agent.operator_api = false;
    const page = await show(status);
    expect(await page.locator('#controls-off').isVisible()).toBe(true);
    expect(await page.locator('#token-ask').isVisible()).toBe(false);
    expect(await offered(page)).toEqual([]);
    await page.close();
  });

  it('shows the agent, the held claim, the queue, the chain health and the boot gates, as text', async () => {
    const evil = '<img src=x onerror="window.pwned=1">';
    const page = await show(
      fixture('active', {
        claims: {
          held: {
            ticket_id: evil,
            critical: true,
            attempts: 2,
            lease_owner: 'w',
            since: '2026-03-01T10:00:01.234Z',
          },
          queue_depth: 17,
          done: 240,
          completed: 12,
          failed: 1,
          counted_at: '2026-03-01T10:00:02.000Z',
          queue_error: null,
        },
        chain: {
          emitted: 9,
          failures: 0,
          last_error: null,
          outbox_depth: 2,
          dropped: 0,
          refused: 1,
        },
        chain_store: {
          workspace_id: 'ws-1',
          head: { chain_seq: 31, hash: `${'c0ffee'.repeat(10)}beef` },
          key_id: 'k-1',
          spool_depth: 2,
          last_verify: { at: '2026-03-01T10:00:03.000Z', ok: false, events: 30, reason: evil },
        },
        boot: {
          finished: true,
          result: 'ready',
          gates: [
            {
              id: 'event_store',
              class: 'transient',
              outcome: 'pass',
              attempts: 3,
              elapsed_ms: 4100,
              detail: evil,
            },
            {
              id: 'schema_epoch',
              class: 'invariant_pause',
              outcome: 'pass',
              attempts: 1,
              elapsed_ms: 4,
              detail: null,
            },
          ],
          failed_gate: null,
          error: null,
        },
      }),
    );
    expect(await page.locator('#cockpit').isVisible()).toBe(true);
    const agent = await dl(page, 'agent');
    expect(agent).toMatchObject({
      'Agent id': 'agent-7',
      Instance: 'run-42',
      Version: '9.9.9',
      PID: '4242',
    });
    expect(agent.Uptime).toMatch(/^01:02:0[3-9]$/);
    expect(await dl(page, 'claims')).toEqual({
      'Held claim': `${evil} critical · attempt 2 · since 2026-03-01T10:00:01.234Z`,
      'Queue depth': '17',
      'Tickets done': '240',
      'By this agent': '12 completed · 1 failed',
    });
    const chain = await dl(page, 'chainstore');
    expect(chain).toMatchObject({
      Workspace: 'ws-1',
      Head: '#31 · c0ffeec0ffeec0ff…',
      'Last verify': `broken: ${evil} · 30 events · 2026-03-01T10:00:03.000Z`,
      'Spool depth': '2',
      Outbox: '2',
      Refused: '1',
      'Key id': 'k-1',
    });
    expect(await page.locator('#chainstore .warn').count()).toBe(2); // broken, refused
    expect(await page.locator('#boot-body tr').allInnerTexts()).toEqual([
      `event_store\ttransient\tpass\t3\t4.1 s\t${evil}`,
      'schema_epoch\tinvariant_pause\tpass\t1\t4 ms\t—',
    ]);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.evaluate(() => (window as { pwned?: number }).pwned)).toBeUndefined();
    await page.close();
  });

  it('says the boot is still running, and leaves out what it was not given', async () => {
    const page = await show(
      fixture('booting', {
        boot: { finished: false, result: null, gates: [], failed_gate: null, error: null },
      }),
    );
    expect(await page.locator('#boot-body').textContent()).toBe('boot running…');
    expect(await page.locator('#claims-card').isVisible()).toBe(false);
    expect(await page.locator('#chainstore-card').isVisible()).toBe(false);
    await page.close();
    const seed = await show({ ...fixture('ready'), agent: undefined } as StatusPayload);
    expect(await seed.locator('#cockpit').isVisible()).toBe(false);
    expect(await seed.locator('#token-ask').isVisible()).toBe(true);
    await seed.close();
  });

  it('pages and filters the history, with millisecond times where it has them', async () => {
    const records: TransitionRecord[] = [];
    const times: Record<number, string> = {};
    let state: PrimaryState = 'booting';
    for (let seq = 1; seq <= 45; seq++) {
      const to: PrimaryState = seq === 1 ? 'ready' : state === 'ready' ? 'active' : 'ready';
      records.push({
        seq,
        timestamp: `2026-03-01T10:00:${String(seq).padStart(2, '0')}Z`,
        from_state: state,
        to_state: to,
        trigger: `t${seq}`,
        event:
          seq === 1 ? 'boot.gates_passed' : to === 'active' ? 'claim.acquired' : 'claim.released',
        claim_permission: 'normal',
        degradation_reasons: [],
      });
      if (seq > 40) times[seq] = `2026-03-01T10:00:${String(seq).padStart(2, '0')}.${seq}7Z`;
      state = to;
    }
    const page = await show(fixture(state, { transition_history: records, history_times: times }));
    const seqs = async () =>
      (await page.locator('#history-body td.num').allInnerTexts()).map(Number);
    expect(await seqs()).toEqual(Array.from({ length: 20 }, (_, i) => 45 - i));
    expect(await page.locator('#page-info').textContent()).toBe('1–20 of 45');
    expect(await page.locator('#page-prev').isDisabled()).toBe(true);
    expect((await page.locator('#history-body td.time').allInnerTexts()).slice(0, 6)).toEqual([
      '2026-03-01T10:00:45.457Z',
      '2026-03-01T10:00:44.447Z',
      '2026-03-01T10:00:43.437Z',
      '2026-03-01T10:00:42.427Z',
      '2026-03-01T10:00:41.417Z',
      '2026-03-01T10:00:40Z',
    ]);
    await page.click('#page-next');
    await page.click('#page-next');
    expect(await seqs()).toEqual([5, 4, 3, 2, 1]);
    expect(await page.locator('#page-info').textContent()).toBe('41–45 of 45');
    expect(await page.locator('#page-next').isDisabled()).toBe(true);
    await page.selectOption('#filter-event', 'claim.acquired');
    expect(await seqs()).toEqual(Array.from({ length: 20 }, (_, i) => 44 - 2 * i));
    expect(await page.locator('#page-info').textContent()).toBe('1–20 of 22');
    await page.selectOption('#filter-event', '');
    await page.selectOption('#filter-state', 'booting');
    expect(await seqs()).toEqual([1]);
    await page.selectOption('#filter-event', 'stop');
    expect(await page.locator('#history-body').textContent()).toBe('no transition matches');
    await page.close();
  });
});

describe('a panel whose app has no operator token', () => {
  it('says so at the first action (the 403) and stops offering the controls', async () => {
    const holder = createOperationalStateHolder({ logger: quietLogger() });
    await holder.transitionTo('ready', 'gates passed');
    const server = await startStatusServer({ holder, logger: quietLogger() });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${server.url}/`);
      await page.fill('#token-input', 'anything');
      await page.click('#token-use');
      await page.click('#actions button[data-event="stop"]');
      await page.click('#confirm-yes');
      await page.waitForSelector('#action-result[data-status="403"]', { timeout: 15_000 });
      expect(await page.locator('#action-result').textContent()).toBe(
        'Stop: 403 Forbidden — operator transitions are disabled: no operator token is configured',
      );
      expect(await page.locator('#controls-off').isVisible()).toBe(true);
      expect(await page.locator('#actions button').count()).toBe(0);
      expect(holder.current.primaryState).toBe('ready');
    } finally {
      await browser.close();
      await server.close();
    }
  });
});

describe('every control end to end against a real agent', () => {
  const TOKEN = 'cockpit-operator-token';
  const TICKETS = 12;
  let agent: AgentProcess;
  let url: string;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    agent = startTsProcess(
      CLI_BIN,
      [
        'start',
        '--port',
        '0',
        '--operator-token',
        TOKEN,
        '--tickets',
        String(TICKETS),
        '--ticket-every-ms',
        '0',
        '--work-ms',
        '0',
      ],
      {
        KORA_DATA_DIR: tempDir(),
        DATABASE_URL: undefined,
        KORA_OPERATOR_TOKEN: undefined,
        KORA_AGENT_ID: 'cockpit-agent',
      },
    );
    const line = await agent.waitFor(/ panel +http:/);
    url = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(line)![1]!;
    // Every ticket worked: two transitions each after the boot's one.
    await agent.waitFor(`#${1 + 2 * TICKETS} active → ready`);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await agent?.stop();
  });

  const get = async (path: string) => {
    const res = await fetch(`${url}${path}`);
    return { status: res.status, body: await res.json() };
  };
  const badge = (state: string) =>
    page.waitForFunction((s) => document.getElementById('state-badge')?.textContent === s, state, {
      timeout: 15_000,
    });
  /** Waits for the action's answer and returns its text and HTTP status. */
  async function outcome(): Promise<{ status: string; text: string }> {
    await page.waitForSelector('#action-result:not(.busy)[data-status]:not([data-status="0"])', {
      timeout: 15_000,
    });
    const r = page.locator('#action-result');
    return { status: (await r.getAttribute('data-status'))!, text: (await r.textContent())! };
  }
  /** Forgets the last answer shown, so the next one is waited for. */
  const forget = () =>
    page.evaluate(() => document.getElementById('action-result')!.removeAttribute('data-status'));
  async function act(event: string, fields: Record<string, string> = {}) {
    await page.click(`#actions button[data-event="${event}"]`);
    await page.waitForSelector(`#confirm[data-event="${event}"]`);
    for (const [name, value] of Object.entries(fields)) {
      const input = page.locator(`#f-${name}`);
      if ((await input.evaluate((e) => e.tagName)) === 'SELECT') await input.selectOption(value);
      else await input.fill(value);
    }
    await forget();
    await page.click('#confirm-yes');
    return outcome();
  }
  const offered = () =>
    page
      .locator('#actions button')
      .evaluateAll((bs) => bs.map((b) => b.getAttribute('data-event')));

  it('shows who the agent is, its boot gates, its queue, its chain head and ms times', async () => {
    await page.goto(`${url}/`);
    await page.waitForSelector('#conn.live', { timeout: 15_000 });
    const status = (await get('/api/operational-state')).body;
    expect(status.agent.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(await dl(page, 'agent')).toMatchObject({
      'Agent id': 'cockpit-agent',
      Instance: status.agent.instance_id,
      Version: status.agent.version,
      Uptime: expect.stringMatching(/^\d\d:\d\d:\d\d$/),
      PID: String(agent.child.pid),
    });
    expect(await page.locator('#boot-body tr td:first-child').allInnerTexts()).toEqual([
      'event_store',
      'instance_id',
      'ticket_queue',
      'schema_epoch',
    ]);
    expect(await page.locator('#boot-body .ok').allInnerTexts()).toEqual([
      'pass',
      'pass',
      'pass',
      'pass',
    ]);
    // The queue is counted when the status is read: wait for the worked tickets to show.
    await waitForTerm(page, 'claims', 'Tickets done', new RegExp(`^${TICKETS}$`));
    expect(await dl(page, 'claims')).toMatchObject({ 'Queue depth': '0', 'Held claim': 'none' });
    expect((await dl(page, 'chainstore')).Head).toMatch(/^#\d+ · [0-9a-f]{16}…$/);
    const times = await page.locator('#history-body td.time').allInnerTexts();
    expect(times.length).toBe(20); // a page
    expect(await page.locator('#page-info').textContent()).toBe(`1–20 of ${1 + 2 * TICKETS}`);
    for (const t of times) expect(t).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('asks for the token once; a wrong one shows the 401 and is asked again', async () => {
    expect(await offered()).toEqual(['pause', 'stop']);
    await page.click('#actions button[data-event="pause"]');
    expect(await page.locator('#action-result').textContent()).toBe(
      'Pause: enter the operator token first',
    );
    await page.fill('#token-input', 'not-the-token');
    await page.click('#token-use');
    expect(await page.locator('#token-ask').isVisible()).toBe(false);
    const r = await act('pause');
    expect(r.status).toBe('401');
    expect(r.text).toBe(
      'Pause: 401 Unauthorized — missing or wrong bearer token (Authorization: Bearer <token>). Enter the token again.',
    );
    expect(await page.locator('#token-ask').isVisible()).toBe(true);
    expect((await get('/readyz')).status).toBe(200);
    expect(await page.locator('#state-badge').textContent()).toBe('ready');
  });

  it('pauses with a cause: the badge, the chain and /readyz change', async () => {
    await page.fill('#token-input', TOKEN);
    await page.press('#token-input', 'Enter');
    const r = await act('pause', {
      cause: 'stop_kora',
      trigger: 'panel test: pause for maintenance',
    });
    expect(r).toEqual({ status: '200', text: 'Pause done: the agent is now paused' });
    await badge('paused');
    const ready = await get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ ready: false, primary_state: 'paused' });
    // The chain's store is written behind the answer (the spool first): wait for it there.
    const stored = async () => (await get('/api/operational-state/chain?limit=5')).body.events;
    await expect
      .poll(async () => JSON.stringify(await stored()), { timeout: 15_000 })
      .toContain('panel test: pause for maintenance');
    const events: { chain_seq: number }[] = await stored();
    expect(JSON.stringify(events)).toContain('stop_kora');
    const head = Math.max(...events.map((e) => e.chain_seq));
    // The panel's chain head follows the stored events.
    await waitForTerm(page, 'chainstore', 'Head', new RegExp(`^#${head} · [0-9a-f]{16}…$`));
    expect(await page.locator('#history-body tr td:nth-child(4)').first().textContent()).toBe(
      'pause (stop_kora)',
    );
    expect(await offered()).toEqual(['resume.operator_reset', 'resume.credit_refresh', 'stop']);
    // The token lives in the page's memory only.
    expect(
      await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]),
    ).toEqual([0, 0, '']);
    expect(await page.content()).not.toContain(TOKEN);
  });

  it('shows the 409 of a refused action, and resumes on a credit refresh with the two figures', async () => {
    const refused = await act('resume.credit_refresh', {
      reconciledSpendUsd: '120',
      thresholdUsd: '100',
    });
    expect(refused.status).toBe('409');
    expect(refused.text).toMatch(
      /^Credit refresh: 409 Conflict — invalid state transition paused → ready .*guard not satisfied: reconciled spend < threshold/,
    );
    expect(await page.locator('#state-badge').textContent()).toBe('paused');
    expect((await get('/readyz')).status).toBe(503);
    const ok = await act('resume.credit_refresh', {
      reconciledSpendUsd: '40.5',
      thresholdUsd: '100',
    });
    expect(ok).toEqual({ status: '200', text: 'Credit refresh done: the agent is now ready' });
    await badge('ready');
    expect((await get('/readyz')).status).toBe(200);
    const record = (await get('/api/operational-state')).body.transition_history.at(-1);
    expect(record).toMatchObject({ event: 'resume.credit_refresh', to_state: 'ready' });
  });

  it('resets an operator pause (the confirmation says what it does)', async () => {
    expect((await act('pause', { cause: 'operator' })).status).toBe('200');
    await badge('paused');
    await page.click('#actions button[data-event="resume.operator_reset"]');
    expect(await page.locator('#confirm-text').textContent()).toBe(
      'Operator reset: paused → ready (operator clears via kora_control reset). Confirm?',
    );
    await screenshot(page, 'panel-controls.png');
    await page.click('#confirm-no');
    expect(await page.locator('#confirm').isVisible()).toBe(false);
    expect((await act('resume.operator_reset')).status).toBe('200');
    await badge('ready');
    expect((await get('/readyz')).status).toBe(200);
  });

  it('withdraws a confirmation the state no longer allows (another operator acted)', async () => {
    await page.click('#actions button[data-event="pause"]');
    await page.waitForSelector('#confirm[data-event="pause"]');
    const res = await fetch(`${url}/api/operational-state/transitions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ event: { type: 'pause', cause: 'operator', trigger: 'from curl' } }),
    });
    expect(res.status).toBe(200);
    await badge('paused');
    expect(await page.locator('#confirm').isVisible()).toBe(false);
    expect(await page.locator('#action-result').textContent()).toBe(
      'That action is no longer valid: the agent is paused',
    );
    // A credit refresh needs both figures before anything is sent.
    await page.click('#actions button[data-event="resume.credit_refresh"]');
    await page.fill('#f-thresholdUsd', '100');
    await page.click('#confirm-yes');
    expect(await page.locator('#action-result').textContent()).toBe(
      'Credit refresh: enter a number — Reconciled spend (USD)',
    );
    await page.click('#confirm-no');
    expect((await act('resume.operator_reset')).status).toBe('200');
    await badge('ready');
  });

  it('verifies the chain and shows the result', async () => {
    await forget();
    await page.click('#verify-now');
    const r = await outcome();
    expect(r.status).toBe('200');
    expect(r.text).toMatch(/^Chain verified: \d+ events, head #\d+$/);
    await waitForTerm(page, 'chainstore', 'Last verify', /^ok · \d+ events · /);
  });

  it('filters the live history by event and by state', async () => {
    await page.selectOption('#filter-event', 'claim.acquired');
    const events = await page.locator('#history-body tr td:nth-child(4)').allInnerTexts();
    expect(events).toEqual(Array(TICKETS).fill('claim.acquired'));
    await page.selectOption('#filter-event', '');
    await page.selectOption('#filter-state', 'paused');
    const rows = await page.locator('#history-body td.transition').allInnerTexts();
    expect(rows.length).toBe(6); // three pauses, three resumes
    for (const r of rows) expect(r).toContain('paused');
    await page.selectOption('#filter-state', '');
    await screenshot(page, 'panel-cockpit.png');
  });

  it('stops: nothing is offered any more and /livez says so', async () => {
    const r = await act('stop', { trigger: 'panel test: stop' });
    expect(r).toEqual({ status: '200', text: 'Stop done: the agent is now stopped' });
    await badge('stopped');
    expect(await offered()).toEqual([]);
    expect(await page.locator('#actions-none').textContent()).toBe(
      'No operator action leads out of stopped.',
    );
    expect((await get('/livez')).status).toBe(503);
  });
});
