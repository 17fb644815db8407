/**
 * The stream and the cached bodies, in process (`new Request` on the handler): many
 * clients share each message's bytes and see every change in order; a client that stops
 * reading holds a bounded queue and gets one snapshot when it reads again; the status and
 * metrics bodies are reused until a transition (or the chain counters) change them.
 */
import { Gauge, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createOperationalStateHolder, type OperationalStateHolder } from '../src/holder.js';
import { createStatusHandler, type StatusHandler } from '../src/http/handler.js';
import { statusOf } from '../src/http/status.js';
import {
  applyStreamMessage,
  MAX_PENDING,
  type StreamMessage,
  type StreamSnapshotMessage,
} from '../src/http/stream.js';
import { quietLogger, req } from './support/httpHandler.js';
import { sseReader } from './support/httpSse.js';

const handlers: StatusHandler[] = [];
afterEach(async () => {
  for (const h of handlers.splice(0)) await h.close();
});
function handler(options: Parameters<typeof createStatusHandler>[0] = {}): StatusHandler {
  const h = createStatusHandler({ logger: quietLogger(), ...options });
  handlers.push(h);
  return h;
}
const ready = () =>
  createOperationalStateHolder({ initial: { primaryState: 'ready' }, logger: quietLogger() });
/** ready ⇄ active, `n` times. */
async function move(holder: OperationalStateHolder, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await holder.send({
      type: holder.current.primaryState === 'ready' ? 'claim.acquired' : 'claim.released',
    });
  }
}
const decoder = new TextDecoder();
/** The JSON of one chunk that is one `data:` message. */
const dataOf = (chunk: Uint8Array): StreamMessage => {
  const line = decoder
    .decode(chunk)
    .split('\n')
    .find((l) => l.startsWith('data: '));
  if (!line) throw new Error(`no data in ${JSON.stringify(decoder.decode(chunk))}`);
  return JSON.parse(line.slice(6)) as StreamMessage;
};
const wire = (holder: OperationalStateHolder) => JSON.parse(JSON.stringify(statusOf(holder)));

describe('the stream, many clients', () => {
  it('gives 100 clients every change in order, each message the same bytes for all', async () => {
    const holder = ready();
    const h = handler({ holder });
    const readers = await Promise.all(
      Array.from({ length: 100 }, async () =>
        (await h(req('/api/operational-state/stream'))).body!.getReader(),
      ),
    );
    const retry = await readers[0]!.read();
    expect(decoder.decode(retry.value)).toBe('retry: 2000\n\n');
    for (const r of readers.slice(1)) expect((await r.read()).value).toBe(retry.value);
    // The snapshot: one message, the same bytes for every client.
    const snapshots = await Promise.all(readers.map(async (r) => (await r.read()).value!));
    for (const s of snapshots) expect(s).toBe(snapshots[0]);
    const first = dataOf(snapshots[0]!) as StreamSnapshotMessage;
    expect(first).toEqual({ kind: 'snapshot', status: wire(holder) });
    expect(h.openStreams).toBe(100);

    const N = 30; // more than the history keeps (10): old records fall off
    const chunks: Uint8Array[][] = readers.map(() => []);
    const reading = readers.map(async (r, i) => {
      while (chunks[i]!.length < N) chunks[i]!.push((await r.read()).value!);
    });
    await move(holder, N);
    await Promise.all(reading);
    for (let m = 0; m < N; m++) {
      for (const c of chunks) expect(c[m]).toBe(chunks[0]![m]); // one encoding, shared
    }
    let status = first.status;
    const seqs = chunks[0]!.map((chunk) => {
      const msg = dataOf(chunk);
      if (msg.kind !== 'change') throw new Error(`a ${msg.kind} among the changes`);
      expect(decoder.decode(chunk).startsWith(`id: ${msg.record.seq}\n`)).toBe(true);
      status = applyStreamMessage(status, msg)!;
      return msg.record.seq;
    });
    expect(seqs).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(status).toEqual(wire(holder)); // the changes rebuild what a fresh read shows
    await Promise.all(readers.map((r) => r.cancel()));
    expect(h.openStreams).toBe(0);
  });

  it('a client that stops reading holds a bounded queue, then gets one fresh snapshot', async () => {
    const holder = ready();
    const h = handler({ holder });
    const stalled = sseReader((await h(req('/api/operational-state/stream'))).body!);
    const live = sseReader((await h(req('/api/operational-state/stream'))).body!);
    expect((await stalled.nextData<StreamMessage>())?.kind).toBe('snapshot');
    expect((await live.nextData<StreamMessage>())?.kind).toBe('snapshot');
    const N = MAX_PENDING * 4;
    let seen = 0;
    const following = (async () => {
      while (seen < N) {
        const m = await live.nextData<StreamMessage>();
        if (m?.kind !== 'change' || m.record.seq !== seen + 1)
          throw new Error('live client lost one');
        seen++;
      }
    })();
    await move(holder, N);
    await following; // the reading client was never coalesced
    // The stalled one resumes: what was queued for it is far less than N, then a snapshot.
    let changes = 0;
    let next = await stalled.nextData<StreamMessage>();
    while (next?.kind === 'change') {
      changes++;
      next = await stalled.nextData<StreamMessage>();
    }
    expect(changes).toBeLessThanOrEqual(MAX_PENDING + 1);
    expect(next).toEqual({ kind: 'snapshot', status: wire(holder) });
    // And from there it follows again, change by change.
    await move(holder, 1);
    expect(await stalled.nextData<StreamMessage>()).toMatchObject({
      kind: 'change',
      record: { seq: N + 1 },
    });
    expect(h.openStreams).toBe(2);
    await stalled.cancel();
    await live.cancel();
  });

  it('sends a snapshot (with the newest seq as its id) on every connect, Last-Event-ID or not', async () => {
    const holder = ready();
    await move(holder, 3);
    const h = handler({ holder });
    const sse = sseReader(
      (await h(req('/api/operational-state/stream', { headers: { 'last-event-id': '1' } }))).body!,
    );
    await sse.next(); // retry
    const block = await sse.next();
    expect(block?.id).toBe('3');
    expect(JSON.parse(block!.data!)).toEqual({ kind: 'snapshot', status: wire(holder) });
    await sse.cancel();
  });
});

describe('cached bodies', () => {
  it('GET /api/operational-state: the same bytes until a transition, never stale', async () => {
    const holder = ready();
    const stats = { emitted: 0, failures: 0 };
    const h = handler({ holder, emitter: { stats } });
    const read = async () =>
      new Uint8Array(await (await h(req('/api/operational-state'))).arrayBuffer());
    const a = await read();
    expect(await read()).toEqual(a);
    expect(JSON.parse(decoder.decode(a)).primary_state).toBe('ready');
    await move(holder, 1);
    const b = JSON.parse(decoder.decode(await read()));
    expect(b).toEqual({ ...wire(holder), chain: expect.objectContaining({ emitted: 0 }) });
    expect(b.primary_state).toBe('active');
    // The chain counters move without a transition: the next read shows them.
    stats.emitted = 2;
    const c = await h(req('/api/operational-state'));
    expect(Number(c.headers.get('content-length'))).toBeGreaterThan(0);
    expect((await c.json()).chain.emitted).toBe(2);
  });

  it('GET /metrics: collected again when what it shows moved, and every time with metrics of others', async () => {
    const holder = ready();
    const h = handler({ holder });
    const text = async () => (await h(req('/metrics'))).text();
    expect(await text()).toContain('kora_operational_state{state="ready"} 1');
    await move(holder, 1);
    const after = await text();
    expect(after).toContain('kora_operational_state{state="active"} 1');
    expect(after).toContain('kora_operational_state_transitions_total{from="ready",to="active"} 1');
    await expect(holder.transitionTo('booting', 'no such row')).rejects.toThrow();
    expect(await text()).toContain('kora_operational_state_rejected_total 1');
    expect(await text()).toContain('kora_operational_state_stream_clients 0');

    const registry = new Registry();
    let scrapes = 0;
    new Gauge({
      name: 'someone_elses',
      help: 'Not ours.',
      registers: [registry],
      collect() {
        this.set(++scrapes);
      },
    });
    const shared = handler({ holder, registry });
    await shared(req('/metrics'));
    expect(await (await shared(req('/metrics'))).text()).toContain('someone_elses 2');
  });
});
