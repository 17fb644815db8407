/**
 * The CLI's server path through real sockets: `startStatusServer` with
 * `overrideGlobalObjects: true` (what `kora-opstate start` runs; it swaps the process's
 * global Request/Response, so this file runs alone in its worker). 100 SSE clients, one
 * socket each, see every change in order with the same bytes; the cached status body
 * follows each transition; the streams end cleanly when the server closes.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createOperationalStateHolder, type OperationalStateHolder } from '../src/holder.js';
import { type RunningStatusServer, startStatusServer } from '../src/http/node.js';
import { statusOf } from '../src/http/status.js';
import { applyStreamMessage, type StreamMessage } from '../src/http/stream.js';
import { quietLogger } from './support/httpHandler.js';
import { type SseBlock, sseReader } from './support/httpSse.js';

const CLIENTS = 100;
const wire = (holder: OperationalStateHolder) => JSON.parse(JSON.stringify(statusOf(holder)));

describe('startStatusServer with overrideGlobalObjects, over real sockets', () => {
  let holder: OperationalStateHolder;
  let status: RunningStatusServer;
  const stats = { emitted: 0, failures: 0 };

  beforeAll(async () => {
    holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      logger: quietLogger(),
    });
    status = await startStatusServer({
      holder,
      logger: quietLogger(),
      emitter: { stats },
      overrideGlobalObjects: true,
    });
  });
  afterAll(async () => {
    await status?.close();
  });

  const move = async (n: number) => {
    for (let i = 0; i < n; i++) {
      await holder.send({
        type: holder.current.primaryState === 'ready' ? 'claim.acquired' : 'claim.released',
      });
    }
  };

  it('serves the cached status body, changed by each transition and by the chain counters', async () => {
    const get = async () => {
      const res = await fetch(`${status.url}/api/operational-state`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
      const text = await res.text();
      expect(Number(res.headers.get('content-length'))).toBe(Buffer.byteLength(text));
      return JSON.parse(text);
    };
    expect(await get()).toEqual({ ...wire(holder), chain: expect.any(Object) });
    await move(1);
    const after = await get();
    expect(after.primary_state).toBe('active');
    expect(after).toEqual({ ...wire(holder), chain: expect.any(Object) });
    stats.emitted = 5;
    expect((await get()).chain.emitted).toBe(5);
    const metrics = await (await fetch(`${status.url}/metrics`)).text();
    expect(metrics).toContain('kora_operational_state{state="active"} 1');
    await move(1);
    expect(await (await fetch(`${status.url}/metrics`)).text()).toContain(
      'kora_operational_state{state="ready"} 1',
    );
  });

  it(`gives ${CLIENTS} clients, one socket each, every change in order with the same bytes`, async () => {
    const streams = await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const res = await fetch(`${status.url}/api/operational-state/stream`);
        expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
        const sse = sseReader(res.body!);
        const first = await sse.nextData<StreamMessage>();
        if (first?.kind !== 'snapshot') throw new Error('no snapshot first');
        return { sse, first };
      }),
    );
    expect(status.handler.openStreams).toBe(CLIENTS);
    const start = holder.history(1)[0]?.seq ?? 0;
    for (const s of streams)
      expect(s.first.status).toEqual({ ...wire(holder), chain: expect.any(Object) });
    const N = 25;
    const received = streams.map(async ({ sse }) => {
      const blocks: SseBlock[] = [];
      while (blocks.length < N) {
        const b = await sse.next();
        if (!b) throw new Error('stream ended');
        if (b.data !== undefined) blocks.push(b);
      }
      return blocks;
    });
    await move(N);
    const all = await Promise.all(received);
    for (const blocks of all) {
      expect(blocks.map((b) => b.id)).toEqual(
        Array.from({ length: N }, (_, i) => String(start + i + 1)),
      );
      expect(blocks.map((b) => b.data)).toEqual(all[0]!.map((b) => b.data));
    }
    let shown = streams[0]!.first.status;
    for (const b of all[0]!) shown = applyStreamMessage(shown, JSON.parse(b.data!))!;
    expect(shown).toEqual(await (await fetch(`${status.url}/api/operational-state`)).json());
    await Promise.all(streams.map((s) => s.sse.cancel()));
    await vi.waitFor(() => expect(status.handler.openStreams).toBe(0)); // the server saw them go
  });

  it('ends open streams cleanly when it closes', async () => {
    const sse = sseReader((await fetch(`${status.url}/api/operational-state/stream`)).body!);
    expect((await sse.nextData<StreamMessage>())?.kind).toBe('snapshot');
    await status.close();
    expect(await sse.nextData()).toBeUndefined();
    expect(status.handler.openStreams).toBe(0);
  });
});
