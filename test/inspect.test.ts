/**
 * The Stately inspector wiring: the holder's actor reports through `@statelyai/inspect`'s
 * WebSocket inspector to the local relay, and a local WebSocket receiver gets the
 * `@xstate.actor`, `@xstate.event` and `@xstate.snapshot` events of a transition. Nothing
 * but 127.0.0.1 is contacted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createOperationalStateHolder } from '../src/holder.js';
import { createLocalInspector, type LocalInspector, loadStatelyInspect } from '../src/inspect.js';
import { OperationalStateInputError } from '../src/vocabulary.js';
import { quietLogger } from './support/httpHandler.js';

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
    expect(html).toContain('<iframe id="inspector" src="https://inspector.invalid/inspect">');
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
    expect(() => createLocalInspector({ bufferSize: -1 })).toThrow(
      'bufferSize must be a non-negative integer, got -1',
    );
  });
});
