/**
 * The status app on Hono: `createStatusApp` (the app itself, `app.request`), the explicit
 * instance (`opstate`, its own `sink` and `chain` standing in for the options not given),
 * and a holder source asked only until it returns a holder.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  createOperationalStateHolder,
  initHolder,
  type OperationalStateHolder,
  resetHolderForTests,
} from '../src/holder.js';
import { createStatusApp, type StatusApp } from '../src/http/app.js';
import { createStatusHandler } from '../src/http/handler.js';
import { createNodeServer } from '../src/http/node.js';
import { createMemorySink } from '../src/sinks/memory.js';
import { OperationalStateInputError } from '../src/vocabulary.js';
import { quietLogger } from './support/httpHandler.js';
import { sseReader } from './support/httpSse.js';

const apps: StatusApp[] = [];
function app(options: Parameters<typeof createStatusApp>[0] = {}): StatusApp {
  const a = createStatusApp({ logger: quietLogger(), ...options });
  apps.push(a);
  return a;
}
const holderIn = (primaryState: 'booting' | 'ready' = 'ready') =>
  createOperationalStateHolder({ initial: { primaryState }, logger: quietLogger() });

afterEach(async () => {
  for (const a of apps.splice(0)) await a.close();
  resetHolderForTests();
});

describe('createStatusApp', () => {
  it('returns the Hono app: its routes answer app.request()', async () => {
    const status = app({ opstate: holderIn() });
    const res = await status.app.request('/api/operational-state');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect((await res.json()).primary_state).toBe('ready');
    expect((await status.app.request('/nope')).status).toBe(404);
    expect(status.registry.getSingleMetric('kora_operational_state')).toBeDefined();
  });

  it('counts its open streams and ends them on close()', async () => {
    const status = app({ opstate: holderIn() });
    const sse = sseReader((await status.app.request('/api/operational-state/stream')).body!);
    await sse.nextData();
    expect(status.openStreams).toBe(1);
    await status.close();
    expect(await sse.nextData()).toBeUndefined();
    expect(status.openStreams).toBe(0);
    expect((await status.app.request('/api/operational-state')).status).toBe(503);
  });

  it('serves app.fetch through a real socket', async () => {
    const status = app({ opstate: holderIn() });
    const server = createNodeServer(status.app.fetch, { logger: quietLogger() });
    const { url } = await server.listen();
    try {
      const res = await fetch(`${url}/livez`);
      expect(await res.json()).toEqual({ live: true, primary_state: 'ready' });
    } finally {
      await server.close();
    }
  });
});

describe('the instance (opstate)', () => {
  const sinkStats = { appended: 3, failures: 0, outboxDepth: 2, dropped: 0, refused: 0 };
  const chain = Object.assign(() => {}, { stats: { emitted: 3, failures: 1, lastError: 'x' } });
  /** A holder carrying `sink` and `chain` own properties (duck-typed, as createOpstate's). */
  const carrying = (sink: unknown, emitListener: unknown) => {
    const h = holderIn();
    Object.defineProperty(h, 'sink', { value: sink });
    Object.defineProperty(h, 'chain', { value: emitListener });
    return h;
  };

  it("takes the instance's own sink and chain listener when the options name none", async () => {
    const opstate = carrying({ stats: sinkStats }, chain);
    const body = await (await app({ opstate }).app.request('/api/operational-state')).json();
    expect(body.chain).toEqual({
      emitted: 3,
      failures: 1,
      last_error: 'x',
      outbox_depth: 2,
      dropped: 0,
      refused: 0,
    });
    const text = await (await app({ opstate }).app.request('/metrics')).text();
    expect(text).toContain('kora_operational_state_emitted_total 3');
    expect(text).toContain('kora_operational_state_outbox_depth 2');
  });

  it('prefers the sink and emitter the options name', async () => {
    const opstate = carrying({ stats: sinkStats }, chain);
    const sink = { stats: { ...sinkStats, outboxDepth: 9 } };
    const emitter = { stats: { emitted: 7, failures: 0 } };
    const body = await (
      await app({ opstate, sink, emitter }).app.request('/api/operational-state')
    ).json();
    expect(body.chain).toMatchObject({ emitted: 7, outbox_depth: 9 });
  });

  it('ignores sink/chain properties that are not shaped like them', async () => {
    const opstate = carrying(null, 5);
    const body = await (await app({ opstate }).app.request('/api/operational-state')).json();
    expect(body.chain).toBeUndefined();
  });

  it('reads a sink the instance connects after the app was made', async () => {
    const opstate = holderIn();
    const status = app({ opstate });
    const before = await (await status.app.request('/api/operational-state')).json();
    expect(before.chain).toBeUndefined();
    expect(await (await status.app.request('/metrics')).text()).not.toContain('emitted_total');
    opstate.connectSink(createMemorySink());
    await opstate.send({ type: 'claim.acquired' });
    const after = await (await status.app.request('/api/operational-state')).json();
    // The memory sink keeps no outbox stats: its depth is unknown (null), not zero.
    expect(after.chain).toMatchObject({ emitted: 1, failures: 0, outbox_depth: null });
    const text = await (await status.app.request('/metrics')).text();
    expect(text).toContain('kora_operational_state_emitted_total 1');
    expect(text).not.toContain('outbox_depth');
  });

  it('takes holder as its old name; refuses two different instances and a non-instance', () => {
    const h = holderIn();
    expect(() => app({ holder: h, opstate: h })).not.toThrow();
    expect(() => createStatusApp({ opstate: h, holder: holderIn() })).toThrow(
      OperationalStateInputError,
    );
    expect(() => createStatusApp({ opstate: {} as never })).toThrow(
      'opstate must be the instance createOpstate() returns, got {}',
    );
  });
});

describe('where the holder comes from', () => {
  it('asks a holder source only until it returns a holder, then keeps that one', async () => {
    let calls = 0;
    let holder: OperationalStateHolder | undefined;
    const h = createStatusHandler({
      logger: quietLogger(),
      holder: () => {
        calls++;
        return holder;
      },
    });
    try {
      expect((await (await h(new Request('http://127.0.0.1/livez'))).json()).primary_state).toBe(
        'booting',
      );
      const before = calls;
      expect(before).toBeGreaterThan(0);
      holder = holderIn('ready');
      await h(new Request('http://127.0.0.1/api/operational-state'));
      const found = calls;
      expect(found).toBe(before + 1);
      holder = holderIn('booting'); // a later holder is not looked for
      for (const path of ['/api/operational-state', '/livez', '/readyz', '/metrics']) {
        await h(new Request(`http://127.0.0.1${path}`));
      }
      expect(calls).toBe(found);
      const body = await (await h(new Request('http://127.0.0.1/api/operational-state'))).json();
      expect(body.primary_state).toBe('ready');
    } finally {
      await h.close();
    }
  });

  it('consults getHolder() by default, and keeps the holder it found', async () => {
    const status = app();
    expect((await (await status.app.request('/api/operational-state')).json()).stub).toBe(true);
    const first = initHolder({ logger: quietLogger() });
    await first.transitionTo('ready', 'all §9.2 gates pass');
    expect((await (await status.app.request('/readyz')).json()).ready).toBe(true);
    resetHolderForTests();
    initHolder({ logger: quietLogger() }); // booting; the app stays with the first
    expect((await (await status.app.request('/readyz')).json()).ready).toBe(true);
  });

  it('never asks for a holder it was given', async () => {
    const given = holderIn();
    const status = app({ opstate: given });
    initHolder({ logger: quietLogger(), initial: { primaryState: 'paused' } });
    const body = await (await status.app.request('/api/operational-state')).json();
    expect(body.primary_state).toBe('ready');
  });
});
