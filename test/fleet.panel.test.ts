/**
 * The `/fleet` page in headless Chromium: three agents registered on a real Postgres, the
 * page served by one of them follows the fleet live — a pause on another agent, then a
 * third agent whose heartbeat stops (gone) — without a reload and without a request
 * leaving the agent's origin. Saves a screenshot to test-artifacts/fleet.png (and
 * docs/fleet.png when asked: UPDATE_DOCS_SCREENSHOT=1, or when missing).
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createFleetRegistry,
  type FleetRegistry,
  type FleetTimers,
} from '../src/fleet/registry.js';
import { createOpstate, type Opstate } from '../src/holder.js';
import { type RunningStatusServer, startStatusServer } from '../src/http/node.js';
import { applyMigrations } from '../src/sinks/migrations.js';
import { launchChromium } from './support/browser.js';
import { quietLogger } from './support/httpHandler.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const WS = 'ws-fleet-panel';

/** Heartbeats the test fires itself (agent-c's: it stops when the test stops firing). */
function manualTimers(): FleetTimers & { fire(): void } {
  const waiting = new Map<number, () => void>();
  let next = 0;
  return {
    setTimeout(fn) {
      waiting.set(++next, fn);
      return next;
    },
    clearTimeout: (h) => void waiting.delete(h as number),
    fire() {
      const fns = [...waiting.values()];
      waiting.clear();
      for (const fn of fns) fn();
    },
  };
}

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
  let status: RunningStatusServer;
  let browser: Browser;
  const hand = manualTimers();
  let driving: ReturnType<typeof setInterval> | undefined;

  beforeAll(async () => {
    db = await createTestSchema('fleetpanel');
    await applyMigrations(db.pool);
    holders = ['agent-a', 'agent-b', 'agent-c'].map(() => createOpstate({ logger: quietLogger() }));
    registries = ['agent-a', 'agent-b', 'agent-c'].map((agentId, i) =>
      createFleetRegistry({
        opstate: holders[i]!,
        db: db.pool,
        workspaceId: WS,
        agentId,
        instanceId: `${agentId}-7f3c${i}`,
        heartbeatMs: 300,
        host: 'worker-1',
        logger: quietLogger(),
        ...(i === 2 ? { timers: hand } : {}),
      }),
    );
    status = await startStatusServer({
      opstate: holders[0]!,
      fleet: registries[0]!,
      title: `kora-opstate · ${WS}`,
      logger: quietLogger(),
    });
    await Promise.all(registries.map((r, i) => r.start(i === 0 ? { url: status.url } : {})));
    driving = setInterval(() => hand.fire(), 100);
    for (const h of holders) await h.send({ type: 'boot.gates_passed' });
    await holders[0]!.send({ type: 'claim.acquired', trigger: 'claim acquired: ticket KR-101' });
    browser = await launchChromium();
  });

  afterAll(async () => {
    clearInterval(driving);
    await browser?.close();
    for (const r of registries ?? []) await r.stop();
    await status?.close();
    await db?.drop();
  });

  it('shows the three agents, then follows a pause and a stopped heartbeat live; saves a screenshot', {
    timeout: 60_000,
  }, async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 620 } });
    const origin = new URL(status.url).origin;
    const outside: string[] = [];
    page.on('request', (r) => {
      if (new URL(r.url()).origin !== origin) outside.push(r.url());
    });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));

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

    // Paused elsewhere: the page follows without a reload.
    const loads = await page.evaluate(() => performance.getEntriesByType('navigation').length);
    await holders[1]!.send({
      type: 'pause',
      cause: 'operator',
      trigger: 'operator: maintenance window',
    });
    await page.waitForSelector('#fleet-body tr[data-agent="agent-b"][data-state="paused"]', {
      timeout: 10_000,
    });
    expect((await rows(page))[1]).toEqual(['agent-b', 'live', 'paused', 'operator']);

    // agent-c's heartbeat stops: gone after three of its intervals, counted as such.
    clearInterval(driving);
    driving = undefined;
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

    const dir = join(ROOT, 'test-artifacts');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'fleet.png');
    await page.screenshot({ path: file, fullPage: true });
    expect(existsSync(file)).toBe(true);
    const docs = join(ROOT, 'docs', 'fleet.png');
    if (process.env.UPDATE_DOCS_SCREENSHOT === '1' || !existsSync(docs)) copyFileSync(file, docs);
    await page.close();
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
});
