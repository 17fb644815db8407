/**
 * The Stately inspector wiring: the holder's actor reports through `@statelyai/inspect`'s
 * WebSocket inspector to the local relay, and a local WebSocket receiver gets the
 * `@xstate.actor`, `@xstate.event` and `@xstate.snapshot` events of a transition. The
 * bridge page in headless Chromium: with an inspector UI that cannot be reached it says so
 * and points to the local `/inspector` view; with a self-hosted copy (`uiUrl`,
 * `--inspector-url`) the events reach it. Nothing but 127.0.0.1 is contacted.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createOperationalStateHolder } from '../src/holder.js';
import { createLocalInspector, type LocalInspector, loadStatelyInspect } from '../src/inspect.js';
import { OperationalStateInputError } from '../src/vocabulary.js';
import { startTsProcess } from './support/agentProcess.js';
import { launchChromium } from './support/browser.js';
import { CLI_BIN, runCli, tempDirs } from './support/cli.js';
import { quietLogger } from './support/httpHandler.js';

const tempDir = tempDirs('kora-inspect-');

interface Inspected {
  type: string;
  name?: string;
  sessionId: string;
  event?: { type: string; [k: string]: unknown };
  snapshot?: { value?: unknown; context?: Record<string, unknown>; status?: string };
  definition?: string;
}

const inspectors: LocalInspector[] = [];
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  for (const i of inspectors.splice(0)) await i.stop();
});

function inspector(options: Parameters<typeof createLocalInspector>[0] = {}): LocalInspector {
  const i = createLocalInspector({ logger: quietLogger(), ...options });
  inspectors.push(i);
  return i;
}

/** A local receiver: collects every message the relay passes on. */
async function receiver(url: string, origin?: string) {
  const ws = new WebSocket(url, origin ? { origin } : {});
  sockets.push(ws);
  const messages: Inspected[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data) => {
    messages.push(JSON.parse(data.toString()) as Inspected);
    for (const w of waiters.splice(0)) w();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  /** Resolves with the first message matching `pred` (already received or later). */
  const waitFor = (pred: (m: Inspected) => boolean): Promise<Inspected> =>
    new Promise((resolve) => {
      const check = () => {
        const m = messages.find(pred);
        if (m) resolve(m);
        else waiters.push(check);
      };
      check();
    });
  return { ws, messages, waitFor };
}

describe('local Stately inspector', () => {
  it('relays the actor, event and snapshot inspection events of a transition to a local receiver', async () => {
    const insp = inspector();
    // The holder exists before the relay runs: its @xstate.actor event waits for start().
    const holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      inspect: insp.inspect,
      logger: quietLogger(),
    });
    const addr = await insp.start();
    expect(addr.url).toBe(`http://127.0.0.1:${addr.port}/`);
    expect(addr.wsUrl).toBe(`ws://127.0.0.1:${addr.port}`);
    expect(insp.address).toEqual(addr);

    const rx = await receiver(addr.wsUrl);
    const actor = await rx.waitFor((m) => m.type === '@xstate.actor');
    expect(actor.name).toBe('operationalState');
    expect(actor.definition).toContain('"id":"operationalState"');

    await holder.send({ type: 'claim.acquired', trigger: 'claim acquired: KR-7' });
    const event = await rx.waitFor(
      (m) => m.type === '@xstate.event' && m.event?.type === 'claim.acquired',
    );
    expect(event.sessionId).toBe(actor.sessionId);
    expect(event.event).toMatchObject({ type: 'claim.acquired', trigger: 'claim acquired: KR-7' });
    const snapshot = await rx.waitFor(
      (m) => m.type === '@xstate.snapshot' && m.event?.type === 'claim.acquired',
    );
    expect(snapshot.sessionId).toBe(actor.sessionId);
    expect(snapshot.snapshot?.value).toEqual({ live: { unpaused: 'active' } });
    expect(snapshot.snapshot?.context).toMatchObject({
      claimPermission: 'normal',
      claimHeld: true,
    });
  });

  it('replays recent events to a receiver that attaches later, and fans out to several', async () => {
    const insp = inspector();
    const addr = await insp.start();
    const holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      inspect: insp.inspect,
      logger: quietLogger(),
    });
    const early = await receiver(addr.wsUrl);
    await holder.send({ type: 'pause', cause: 'operator' });
    await early.waitFor((m) => m.type === '@xstate.event' && m.event?.type === 'pause');
    const late = await receiver(addr.wsUrl);
    const replayed = await late.waitFor(
      (m) => m.type === '@xstate.snapshot' && m.event?.type === 'pause',
    );
    expect(replayed.snapshot?.value).toEqual({ live: 'paused' });
    await holder.send({ type: 'resume.operator_reset' });
    for (const rx of [early, late]) {
      await rx.waitFor(
        (m) => m.type === '@xstate.event' && m.event?.type === 'resume.operator_reset',
      );
    }
  });

  it('serves the bridge page, and refuses WebSocket clients from foreign web origins', async () => {
    const insp = inspector({ uiUrl: 'https://inspector.invalid/inspect' });
    const addr = await insp.start();
    const page = await fetch(addr.url);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('<iframe id="inspector" src="https://inspector.invalid/inspect"');
    // Its script runs under a per-request nonce; nothing else inline does.
    const csp = page.headers.get('content-security-policy')!;
    const nonce = /'nonce-([^']+)'/.exec(csp)![1]!;
    expect(csp).toContain("default-src 'none'; script-src 'nonce-");
    expect(html).toContain(`<script nonce="${nonce}">`);
    expect(html).toContain('"https://inspector.invalid"'); // postMessage target origin
    expect((await fetch(`${addr.url}other`)).status).toBe(404);
    await expect(receiver(addr.wsUrl, 'https://evil.example')).rejects.toThrow(/401/);
    const own = await receiver(addr.wsUrl, `http://localhost:${addr.port}`);
    expect(own.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('stops cleanly: receivers are closed and the port is released', async () => {
    const insp = inspector();
    const addr = await insp.start();
    const rx = await receiver(addr.wsUrl);
    const closed = new Promise<void>((resolve) => rx.ws.once('close', () => resolve()));
    await insp.stop();
    await closed;
    expect(insp.address).toBeUndefined();
    await expect(fetch(addr.url)).rejects.toThrow();
    await insp.stop(); // idempotent
    await expect(insp.start()).rejects.toThrow(/stopped/);
    insp.inspect({ type: '@xstate.event' } as never); // after stop: dropped, no throw
  });

  it('without @statelyai/inspect installed, loading it fails saying how to install it', async () => {
    const missing = Object.assign(
      new Error("Cannot find package '@statelyai/inspect' imported from /app/dist/src/inspect.js"),
      { code: 'ERR_MODULE_NOT_FOUND' },
    );
    await expect(loadStatelyInspect(() => Promise.reject(missing))).rejects.toThrow(
      /optional package @statelyai\/inspect, which is not installed; run `npm install @statelyai\/inspect`/,
    );
    // Any other failure is not dressed up as a missing package.
    const other = Object.assign(new Error('Cannot find module ./x'), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    await expect(loadStatelyInspect(() => Promise.reject(other))).rejects.toBe(other);
    // The whole path, without the package resolvable: test/cli.test.ts (start --inspect).
  });

  it('validates its options', () => {
    expect(() => createLocalInspector({ port: 70000 })).toThrow(OperationalStateInputError);
    expect(() => createLocalInspector({ port: 70000 })).toThrow(
      'port must be an integer 0–65535, got 70000',
    );
    expect(() => createLocalInspector({ host: '' })).toThrow('host must be a non-empty string');
    expect(() => createLocalInspector({ uiUrl: 'javascript:alert(1)' })).toThrow(
      'uiUrl must be an http(s) URL',
    );
    expect(() => createLocalInspector({ localViewUrl: 'ftp://x/inspector' })).toThrow(
      'localViewUrl must be an http(s) URL, got "ftp://x/inspector"',
    );
    expect(() => createLocalInspector({ bufferSize: -1 })).toThrow(
      'bufferSize must be a non-negative integer, got -1',
    );
  });
});

/**
 * A stand-in for a self-hosted Stately inspector: a page that, like the real UI, tells its
 * parent it is connected and then lists the inspection events posted to it.
 */
const FAKE_UI = `<!doctype html><html><body><ol id="got"></ol><script>
window.addEventListener('message', function (e) {
  if (!e.data || typeof e.data.type !== 'string') return;
  var li = document.createElement('li');
  li.textContent = e.data.type + ' ' + ((e.data.event && e.data.event.type) || '');
  document.getElementById('got').append(li);
});
parent.postMessage({ type: '@statelyai.connected' }, '*');
</script></body></html>`;

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  const url = await listen(s);
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return Number(new URL(url).port);
}

describe('the bridge page in headless Chromium', () => {
  let browser: Browser;
  let fakeUi: Server;
  let fakeUiUrl: string;
  beforeAll(async () => {
    browser = await launchChromium();
    fakeUi = createServer((req, res) => {
      if (req.url !== '/inspect') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(FAKE_UI);
    });
    fakeUiUrl = `${await listen(fakeUi)}/inspect`;
  });
  afterAll(async () => {
    await browser?.close();
    fakeUi?.closeAllConnections();
    await new Promise<void>((resolve) => (fakeUi ? fakeUi.close(() => resolve()) : resolve()));
  });

  it('says plainly when the inspector UI cannot be reached, and links to the local view', async () => {
    const uiUrl = `http://127.0.0.1:${await closedPort()}/inspect`;
    const insp = inspector({ uiUrl });
    const addr = await insp.start();
    const page = await browser.newPage();
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    try {
      // Before the status API is known, the page names the path to open.
      await page.goto(addr.url);
      await page.waitForSelector('#unreachable', { state: 'visible', timeout: 5000 });
      // biome-ignore lint/performance/useDomNodeTextContent: Playwright's locator: the text a person sees.
      const notice = await page.locator('#notice').innerText();
      expect(notice).toContain(
        `The Stately inspector at ${uiUrl} cannot be reached from this browser`,
      );
      expect(notice).toContain('open /inspector on its status API');
      expect(await page.locator('#local-view').count()).toBe(0);
      expect(await page.locator('body').getAttribute('data-inspector')).toBe('unreachable');

      insp.showLocalView('http://127.0.0.1:7070/inspector');
      await page.reload();
      await page.waitForSelector('#unreachable', { state: 'visible', timeout: 5000 });
      expect(await page.locator('#local-view').getAttribute('href')).toBe(
        'http://127.0.0.1:7070/inspector',
      );
      // biome-ignore lint/performance/useDomNodeTextContent: Playwright's locator: the text a person sees.
      expect(await page.locator('#notice').innerText()).toContain(
        "The agent's own inspector view needs no internet: http://127.0.0.1:7070/inspector",
      );
      expect(requests.every((u) => new URL(u).hostname === '127.0.0.1')).toBe(true);
    } finally {
      await page.close();
    }
    expect(() => insp.showLocalView('javascript:alert(1)')).toThrow(
      'localViewUrl must be an http(s) URL, got "javascript:alert(1)"',
    );
  });

  it('relays the events into a self-hosted inspector UI, and says nothing is wrong', async () => {
    const insp = inspector({ uiUrl: fakeUiUrl, localViewUrl: 'http://127.0.0.1:7070/inspector' });
    const holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      inspect: insp.inspect,
      logger: quietLogger(),
    });
    const addr = await insp.start();
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await page.goto(addr.url);
      await page.waitForSelector('body[data-inspector="connected"]', { timeout: 5000 });
      const ui = page.frameLocator('#inspector');
      await holder.send({ type: 'claim.acquired', trigger: 'claim acquired: KR-9' });
      await expect
        .poll(() => ui.locator('#got li').allInnerTexts(), { timeout: 5000 })
        .toEqual(expect.arrayContaining(['@xstate.actor', '@xstate.event claim.acquired']));
      expect(await page.locator('#notice').isHidden()).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  // A new embedded store's initdb alone takes seconds, more on a busy machine.
  it('kora-opstate start --inspect --inspector-url: the self-hosted UI gets the boot; the page links to the agent’s /inspector', {
    timeout: 120_000,
  }, async () => {
    const agent = startTsProcess(
      CLI_BIN,
      ['start', '--port', '0', '--tickets', '0', '--ticket-every-ms', '0', '--inspect'],
      {
        DATABASE_URL: undefined,
        KORA_OPERATOR_TOKEN: undefined,
        KORA_DATA_DIR: tempDir(),
        KORA_INSPECTOR_URL: fakeUiUrl,
      },
    );
    const page = await browser.newPage();
    try {
      const inspectorLine = await agent.waitFor(/ inspector +http:/);
      const bridge = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(inspectorLine)![1]!;
      const panel = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(await agent.waitFor(/ panel +http:/))![1]!;
      await agent.waitFor(/→ ready +boot\.gates_passed/);
      await page.goto(bridge);
      await page.waitForSelector('body[data-inspector="connected"]', { timeout: 10_000 });
      expect(await page.locator('#inspector').getAttribute('src')).toBe(fakeUiUrl);
      expect(await page.locator('#local-view').getAttribute('href')).toBe(`${panel}/inspector`);
      await expect
        .poll(() => page.frameLocator('#inspector').locator('#got li').allInnerTexts(), {
          timeout: 5000,
        })
        .toContain('@xstate.event boot.gates_passed');
      // The local view the page points to serves the same boot.
      const steps = (await (await fetch(`${panel}/api/inspector`)).json()) as {
        steps: { event: { type: string } }[];
      };
      expect(steps.steps.map((s) => s.event.type)).toContain('boot.gates_passed');
      agent.child.kill('SIGTERM');
      expect((await agent.exited).code).toBe(0);
    } finally {
      await page.close();
      await agent.stop();
    }
  });
});

describe('--inspector-url', () => {
  it.each<[string[], Record<string, string>, string]>([
    [
      ['start', '--inspect', '--inspector-url', 'ftp://x/inspect'],
      {},
      'invalid --inspector-url "ftp://x/inspect": expected an http(s) URL of a Stately inspector (e.g. http://127.0.0.1:3000/inspect)',
    ],
    [
      ['start', '--inspect'],
      { KORA_INSPECTOR_URL: 'not a url' },
      'invalid KORA_INSPECTOR_URL "not a url": expected an http(s) URL of a Stately inspector (e.g. http://127.0.0.1:3000/inspect)',
    ],
    [
      ['start', '--inspector-url', 'http://127.0.0.1:3000/inspect'],
      {},
      '--inspector-url needs --inspect (it is the page the bridge embeds)',
    ],
  ])('%j %j → exit 2 naming the bad value', async (args, env, says) => {
    const { code, stderr } = await runCli(args, { KORA_DATA_DIR: tempDir(), ...env });
    expect(code).toBe(2);
    expect(stderr.split('\n')[0]).toBe(`kora-opstate start: ${says}`);
  });
});
