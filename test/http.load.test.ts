/**
 * Load through the real socket: 20,000 GET /api/operational-state, 50 at a time on
 * loopback, while a loop moves the holder ready ⇄ active. Every response must be a
 * consistent snapshot (state, history and next states of one moment), and an SSE client
 * reading along must see every transition once, in order. Bounded in count and time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOperationalStateHolder, type OperationalStateHolder } from '../src/holder.js';
import { createStatusHandler, type StatusHandler } from '../src/http/handler.js';
import { type NodeHttpServer, serve } from '../src/http/node.js';
import type { StatusPayload } from '../src/http/status.js';
import { applyStreamMessage, type StreamMessage } from '../src/http/stream.js';
import { transitionsFrom } from '../src/table.js';
import { NO_CLAIM_STATES, PRIMARY_STATES, type PrimaryState } from '../src/vocabulary.js';
import { keepAliveClient } from './support/httpClient.js';
import { quietLogger } from './support/httpHandler.js';
import { sseReader } from './support/httpSse.js';

const REQUESTS = 20_000;
const CONCURRENCY = 50;

const NEXT_JSON = new Map<PrimaryState, string>(
  PRIMARY_STATES.map((s) => [
    s,
    JSON.stringify(
      transitionsFrom(s).map((r) => ({
        to_state: r.to,
        trigger: r.trigger,
        event: r.event,
        guard: r.guard,
        recovery_owner: r.recoveryOwner,
      })),
    ),
  ]),
);

/** Why `s` is not one consistent snapshot, or undefined when it is. */
function inconsistency(s: StatusPayload): string | undefined {
  const h = s.transition_history;
  const last = h.at(-1);
  if (last) {
    if (s.primary_state !== last.to_state)
      return `state ${s.primary_state} but last record → ${last.to_state}`;
    if (s.claim_permission !== last.claim_permission)
      return 'claim permission differs from the last record';
    if (JSON.stringify(s.degradation_reasons) !== JSON.stringify(last.degradation_reasons)) {
      return 'reasons differ from the last record';
    }
  }
  for (let i = 1; i < h.length; i++) {
    if (h[i]!.seq !== h[i - 1]!.seq + 1) return `history seq gap ${h[i - 1]!.seq} → ${h[i]!.seq}`;
  }
  if (JSON.stringify(s.valid_next_states) !== NEXT_JSON.get(s.primary_state)) {
    return `valid_next_states are not those of ${s.primary_state}`;
  }
  const noClaims = NO_CLAIM_STATES.includes(s.primary_state);
  if (noClaims !== (s.claim_permission === 'none')) {
    return `claim permission ${s.claim_permission} in ${s.primary_state}`;
  }
  if (s.is_degraded !== s.degradation_reasons.length > 0)
    return 'is_degraded disagrees with the reasons';
  if ('stub' in s || 'error' in s) return 'stub keys in a live payload';
  return undefined;
}

describe('load: concurrent status requests while transitions run', () => {
  let holder: OperationalStateHolder;
  let handler: StatusHandler;
  let server: NodeHttpServer;
  let url: string;

  beforeAll(async () => {
    holder = createOperationalStateHolder({
      initial: { primaryState: 'ready' },
      historySize: 10,
      logger: quietLogger(),
    });
    handler = createStatusHandler({ holder, logger: quietLogger() });
    server = await serve(handler, { logger: quietLogger() });
    url = server.address!.url;
    expect(server.address!.host).toBe('127.0.0.1');
  });

  afterAll(async () => {
    await handler?.close();
    await server?.close();
  });

  it(`serves ${REQUESTS} requests, ${CONCURRENCY} at a time, each one consistent`, async () => {
    let stop = false;
    let transitions = 0;
    const mover = (async () => {
      while (!stop) {
        await holder.send({
          type: holder.current.primaryState === 'ready' ? 'claim.acquired' : 'claim.released',
        });
        transitions++;
        // Yield to I/O: resolved promises alone would starve the server.
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();

    // One SSE client reads along: every transition once, in order.
    const stream = sseReader((await fetch(`${url}/api/operational-state/stream`)).body!);
    const first = await stream.nextData<StreamMessage>();
    if (first?.kind !== 'snapshot') throw new Error(`first message ${JSON.stringify(first)}`);
    let shown: StatusPayload | undefined = first.status;
    const startSeq = first.status.transition_history.at(-1)?.seq ?? 0;
    let lastSeq = startSeq;
    let streamed = 0;
    let streamError: string | undefined;
    let onMessage: (() => void) | undefined;
    const reading = (async () => {
      for (;;) {
        const m = await stream.nextData<StreamMessage>();
        if (!m) return;
        if (m.kind !== 'change') {
          streamError ??= `a ${m.kind} after ${lastSeq}: the reader fell behind`;
          continue;
        }
        if (m.record.seq !== lastSeq + 1) streamError ??= `stream seq ${lastSeq} → ${m.record.seq}`;
        lastSeq = m.record.seq;
        streamed++;
        // The status the changes make is a consistent snapshot too.
        shown = applyStreamMessage(shown, m);
        streamError ??= shown ? inconsistency(shown) : 'no status';
        onMessage?.();
      }
    })();

    const client = keepAliveClient(CONCURRENCY);
    let issued = 0;
    let errors = 0;
    const problems: string[] = [];
    const seen = new Set<PrimaryState>();
    const worker = async () => {
      while (issued < REQUESTS) {
        issued++;
        try {
          const res = await client.get(`${url}/api/operational-state`);
          if (res.status !== 200) {
            errors++;
            problems.push(`status ${res.status}`);
            continue;
          }
          const body = JSON.parse(res.body) as StatusPayload;
          seen.add(body.primary_state);
          const why = inconsistency(body);
          if (why) problems.push(why);
        } catch (err) {
          errors++;
          problems.push(String(err));
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    client.close();
    stop = true;
    await mover;
    const final = holder.history().at(-1)!.seq;
    // Let the stream catch up with the last commit (or end), then end it.
    await new Promise<void>((resolve) => {
      onMessage = () => {
        if (lastSeq >= final) resolve();
      };
      onMessage();
      void reading.finally(resolve);
    });
    await stream.cancel();
    await reading.catch(() => {});

    expect(errors).toBe(0);
    expect(problems.slice(0, 5)).toEqual([]);
    expect(issued).toBe(REQUESTS);
    expect(transitions).toBeGreaterThan(100);
    expect(seen).toEqual(new Set(['ready', 'active']));
    expect(streamError).toBeUndefined();
    expect(lastSeq).toBe(final);
    expect(streamed).toBe(final - startSeq);
  }, 60_000);
});
