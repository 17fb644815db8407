/**
 * The `/fleet` page in headless Chromium: three agents registered on a real Postgres (two
 * in this process with their control receivers, the third a real `kora-opstate start`
 * process). The page served by the first follows the fleet live — another agent paused
 * from the CLI (`kora-opstate control pause`), the process agent killed (gone after its
 * heartbeat window) — without a reload and without a request leaving the agent's origin.
 * Its controls issue commands to one agent and to all: confirmed, the token asked once,
 * the outcome shown (applied, refused with the 409 reason, pending), a wrong token's 401.
 * Saves a screenshot to test-artifacts/fleet.png (and docs/fleet.png when asked:
 * UPDATE_DOCS_SCREENSHOT=1, or when missing).
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlReceiver, createControlReceiver } from '../src/fleet/control.js';
import { createFleetRegistry, type FleetRegistry } from '../src/fleet/registry.js';
import { createOpstate, type Opstate } from '../src/holder.js';
import { type RunningStatusServer, startStatusServer } from '../src/http/node.js';
import { applyMigrations } from '../src/sinks/migrations.js';
import { type AgentProcess, startTsProcess } from './support/agentProcess.js';
import { launchChromium } from './support/browser.js';
import { CLI_BIN, runCli, tempDirs } from './support/cli.js';
import { quietLogger } from './support/httpHandler.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const WS = 'ws-fleet-panel';
const KEY = randomBytes(32).toString('hex');
const TOKEN = 'fleet-page-token';
const tempDir = tempDirs('kora-fleet-panel-');

/** The rows the page shows: agent, presence, state, reasons. */
const rows = (p: Page) =>
  p.evaluate(() =>
    Array.from(document.querySelectorAll('#fleet-body tr[data-agent]'), (tr) => [
      tr.getAttribute('data-agent'),
      tr.getAttribute('data-presence'),
      tr.getAttribute('data-state'),
      Array.from(tr.querySelectorAll('.chip'), (c) => c.textContent).join(','),
    ]),
  );

describe('the fleet page in headless Chromium', () => {
  let db: TestSchema;
  let holders: Opstate[];
  let registries: FleetRegistry[];
  let receivers: ControlReceiver[];
  let agentC: AgentProcess;
  let status: RunningStatusServer;
  let browser: Browser;

  beforeAll(async () => {
    db = await createTestSchema('fleetpanel');
    await applyMigrations(db.pool);
    // agent-c: a real agent process on the same Postgres, heartbeat every second.
    agentC = startTsProcess(
      CLI_BIN,
      ['start', '--port', '0', '--agent-id', 'agent-c', '--tickets', '0', '--ticket-every-ms', '0'],
      {
        DATABASE_URL: db.url,
        KORA_WORKSPACE: WS,
        KORA_CHAIN_KEY: KEY,
        KORA_DATA_DIR: tempDir(),
        KORA_FLEET_HEARTBEAT_MS: '1000',
      },
    );
    const local = ['agent-a', 'agent-b'];
    holders = local.map(() => createOpstate({ logger: quietLogger() }));
    registries = local.map((agentId, i) =>
      createFleetRegistry({
        opstate: holders[i]!,
        db: db.pool,
        workspaceId: WS,
        agentId,
        instanceId: `${agentId}-7f3c${i}`,
        heartbeatMs: 300,
        host: 'worker-1',
        logger: quietLogger(),
      }),
    );
    receivers = local.map((agentId, i) =>
      createControlReceiver({
        holder: holders[i]!,
        db: db.pool,
        connectionString: db.url,
        workspaceId: WS,
        agentId,
        instanceId: `${agentId}-7f3c${i}`,
        chainKey: KEY,
        logger: quietLogger(),
      }),
    );
    status = await startStatusServer({
      opstate: holders[0]!,
      fleet: registries[0]!,
      fleetControl: { db: db.pool, workspaceId: WS, chainKey: KEY },
      operatorToken: TOKEN,
      title: `kora-opstate · ${WS}`,
      logger: quietLogger(),
    });
    await Promise.all(registries.map((r, i) => r.start(i === 0 ? { url: status.url } : {})));
    for (const h of holders) await h.send({ type: 'boot.gates_passed' });
    await holders[0]!.send({ type: 'claim.acquired', trigger: 'claim acquired: ticket KR-101' });
    await Promise.all(receivers.map((r) => r.start()));
    await agentC.waitFor(/boot\s+ready/);
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await agentC?.stop();
    await browser?.close();
    for (const r of receivers ?? []) await r.stop();
    for (const r of registries ?? []) await r.stop();
    await status?.close();
    await db?.drop();
  });

  it('shows the three agents, then follows a pause from the CLI and a killed agent live', {
    timeout: 90_000,
  }, async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 620 } });
    const origin = new URL(status.url).origin;
    const outside: string[] = [];
    page.on('request', (r) => {
      if (new URL(r.url()).origin !== origin) outside.push(r.url());
    });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await page.goto(`${status.url}/fleet`);
      await page.waitForSelector('#conn.live', { timeout: 10_000 });
      await page.waitForFunction(
        () =>
          document.querySelectorAll(
            '#fleet-body tr[data-state="ready"], #fleet-body tr[data-state="active"]',
          ).length === 3,
        null,
        { timeout: 10_000 },
      );
      expect(await rows(page)).toEqual([
        ['agent-a', 'live', 'active', ''],
        ['agent-b', 'live', 'ready', ''],
        ['agent-c', 'live', 'ready', ''],
      ]);
      expect(await page.textContent('#workspace')).toBe(WS);
      expect(await page.textContent('#fleet-body tr[data-agent="agent-a"]')).toContain(
        '(this agent)',
      );

      // Paused from the CLI: the command reaches agent-b through Postgres, the page follows
      // without a reload.
      const loads = await page.evaluate(() => performance.getEntriesByType('navigation').length);
      const cli = await runCli(
        ['control', 'pause', '--agent', 'agent-b', '--trigger', 'maintenance window'],
        { DATABASE_URL: db.url, KORA_WORKSPACE: WS, KORA_CHAIN_KEY: KEY },
      );
      expect(cli.stderr).toBe('');
      expect(cli.code).toBe(0);
      expect(cli.stdout).toMatch(/agent-b +applied +ready → paused/);
      await page.waitForSelector('#fleet-body tr[data-agent="agent-b"][data-state="paused"]', {
        timeout: 10_000,
      });
      expect((await rows(page))[1]).toEqual(['agent-b', 'live', 'paused', 'operator']);
      expect(await page.textContent('#fleet-body tr[data-agent="agent-b"] td.transition')).toMatch(
        /kora_control #\d+ pause: maintenance window/,
      );

      // agent-c is killed: gone after three of its heartbeat intervals, counted as such.
      agentC.kill('SIGKILL');
      await agentC.exited;
      await page.waitForSelector('#fleet-body tr[data-agent="agent-c"][data-presence="gone"]', {
        timeout: 10_000,
      });
      expect(await rows(page)).toEqual([
        ['agent-a', 'live', 'active', ''],
        ['agent-b', 'live', 'paused', 'operator'],
        ['agent-c', 'gone', 'ready', ''],
      ]);
      expect(await page.textContent('#count-live')).toBe('2');
      expect(await page.textContent('#count-gone')).toBe('1');
      expect(await page.evaluate(() => performance.getEntriesByType('navigation').length)).toBe(
        loads,
      );
      expect(outside).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('controls one agent and all: the token asked once, confirmed, outcomes shown (401, 409 reason, applied, pending); saves a screenshot', {
    timeout: 60_000,
  }, async () => {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const row = (agent: string) => `#fleet-body tr[data-agent="${agent}"]`;
    /** Clicks an action (of a row, or `*`: every agent) and confirms it with `fields`. */
    const act = async (agent: string, action: string, fields: Record<string, string> = {}) => {
      const where = agent === '*' ? '#all-actions' : row(agent);
      await page.click(`${where} button[data-action="${action}"]`);
      await page.waitForSelector(
        `#confirm:not([hidden])[data-action="${action}"][data-target="${agent}"]`,
      );
      for (const [name, value] of Object.entries(fields)) {
        if (name === 'cause') await page.selectOption(`#f-${name}`, value);
        else await page.fill(`#f-${name}`, value);
      }
      await page.click('#confirm-yes');
    };
    const outcome = (agent: string, kind: string) =>
      page.waitForSelector(`#outcomes li[data-agent="${agent}"][data-outcome="${kind}"]`, {
        timeout: 15_000,
      });
    try {
      await page.goto(`${status.url}/fleet`);
      await page.waitForSelector(`${row('agent-a')} button[data-action="pause"]`);
      expect(await page.isVisible('#control')).toBe(true);
      expect(await page.isVisible('#token-ask')).toBe(true);
      // A gone agent keeps its controls (a command waits for it); every live one has them.
      expect(await page.locator('#fleet-body button[data-action="stop"]').count()).toBe(3);

      // No token yet: asked for, nothing sent.
      await page.click(`${row('agent-a')} button[data-action="pause"]`);
      expect(await page.textContent('#action-result')).toContain('enter the operator token first');
      expect(await page.isHidden('#confirm')).toBe(true);

      // A wrong token: the 401 is shown and the token asked again.
      await page.fill('#token-input', 'not-the-token');
      await page.click('#token-use');
      await act('agent-a', 'pause');
      await page.waitForSelector('#action-result[data-status="401"]');
      expect(await page.textContent('#action-result')).toContain('missing or wrong bearer token');
      expect(await page.isVisible('#token-ask')).toBe(true);

      // The token, once; a credit refresh agent-a's table refuses (it is active): the reason.
      await page.fill('#token-input', TOKEN);
      await page.press('#token-input', 'Enter');
      expect(await page.isVisible('#token-held')).toBe(true);
      await act('agent-a', 'credit-refresh', {
        reconciled_spend_usd: '12.5',
        threshold_usd: '100',
      });
      await outcome('agent-a', 'refused');
      expect(await page.textContent('#outcomes li[data-agent="agent-a"]')).toContain(
        'invalid state transition active',
      );
      await page.waitForSelector('#action-result.err');
      expect(await page.textContent('#action-result')).toMatch(
        /Command #\d+ .*0 applied, 1 refused/,
      );

      // Pause agent-a with a cause: applied, and its row follows.
      await act('agent-a', 'pause', { cause: 'cost_limit', trigger: 'budget check' });
      await outcome('agent-a', 'applied');
      expect(await page.textContent('#outcomes li[data-agent="agent-a"]')).toContain(
        'active → paused',
      );
      await page.waitForSelector(`${row('agent-a')}[data-state="paused"]`);
      expect((await rows(page))[0]).toEqual(['agent-a', 'live', 'paused', 'cost']);
      expect(holders[0]!.current.primaryState).toBe('paused');

      // Every agent: reset, then pause. The live agents answer; the gone one is not awaited.
      await act('*', 'reset');
      await page.waitForFunction(
        () =>
          /Reset → every agent: 2 applied$/.test(
            document.querySelector('#action-result.ok')?.textContent ?? '',
          ),
        null,
        { timeout: 15_000 },
      );
      expect(holders.map((h) => h.current.primaryState)).toEqual(['ready', 'ready']);
      await act('*', 'pause', { cause: 'operator', trigger: 'maintenance window' });
      await page.waitForFunction(
        () =>
          document.querySelectorAll('#outcomes li[data-outcome="applied"]').length === 2 &&
          document.querySelector('#action-result.ok') !== null,
        null,
        { timeout: 15_000 },
      );
      expect(await page.textContent('#action-result')).toMatch(
        /Command #\d+ Pause → every agent: 2 applied$/,
      );
      await page.waitForFunction(
        () => document.querySelectorAll('#fleet-body tr[data-state="paused"]').length === 2,
      );
      expect((await rows(page)).map((r) => [r[0], r[2]])).toEqual([
        ['agent-a', 'paused'],
        ['agent-b', 'paused'],
        ['agent-c', 'ready'],
      ]);
      expect(holders.map((h) => h.current.primaryState)).toEqual(['paused', 'paused']);

      const dir = join(ROOT, 'test-artifacts');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, 'fleet.png');
      await page.screenshot({ path: file, fullPage: true });
      expect(existsSync(file)).toBe(true);
      const docs = join(ROOT, 'docs', 'fleet.png');
      if (process.env.UPDATE_DOCS_SCREENSHOT === '1' || !existsSync(docs)) copyFileSync(file, docs);

      // The killed agent does not answer: pending, the command waits for it.
      await act('agent-c', 'reset');
      await outcome('agent-c', 'pending');
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('a hostile agent id or URL in the table is shown as text, never markup or a link', async () => {
    await db.pool.query(
      `INSERT INTO kora_opstate_fleet_agents (workspace_id, agent_id, instance_id, version, url,
         started_at, heartbeat_ms, primary_state, claim_permission, degradation_reasons)
       VALUES ($1, '<img src=x onerror=alert(1)>', 'evil', '0', 'javascript:alert(1)', now(), 1000,
         'ready', 'normal', '["<b>x</b>"]')`,
      [WS],
    );
    const page = await browser.newPage();
    try {
      const dialogs: string[] = [];
      page.on('dialog', (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });
      await page.goto(`${status.url}/fleet`);
      const row = '#fleet-body tr[data-agent="<img src=x onerror=alert(1)>"]';
      await page.waitForSelector(row, { timeout: 10_000 });
      expect(await page.locator(`${row} img`).count()).toBe(0);
      expect(await page.locator(`${row} a`).count()).toBe(0);
      expect(await page.locator(`${row} b`).count()).toBe(0);
      expect(await page.textContent(`${row} td:first-child`)).toBe('<img src=x onerror=alert(1)>');
      expect(dialogs).toEqual([]);
    } finally {
      await page.close();
      await db.pool.query(`DELETE FROM kora_opstate_fleet_agents WHERE instance_id = 'evil'`);
    }
  });

  it('without fleet control (an embedded store) the page offers no controls and says why', async () => {
    const opstate = createOpstate({ logger: quietLogger() });
    const alone = await startStatusServer({ opstate, operatorToken: TOKEN, logger: quietLogger() });
    const page = await browser.newPage();
    try {
      await opstate.send({ type: 'boot.gates_passed' });
      await page.goto(`${alone.url}/fleet`);
      await page.waitForSelector('#fleet-body tr[data-agent]');
      await page.waitForSelector('#control-none:not([hidden])');
      expect(await page.textContent('#control-none')).toContain(
        'needs the agents on a shared Postgres',
      );
      expect(await page.isHidden('#control')).toBe(true);
      expect(await page.isHidden('#th-control')).toBe(true);
      expect(await page.locator('#fleet-body button').count()).toBe(0);
    } finally {
      await page.close();
      await alone.close();
    }
  });
});
