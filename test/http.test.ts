/**
 * The status API handler, driven with `new Request(...)`: every route, status code and
 * bad input of SPEC §7, the stub before the holder exists, the SSE stream's messages and
 * clean-up, metrics through prom-client, options validation, and the panel's HTML/SVG.
 */
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createOperationalStateHolder,
  initHolder,
  type OperationalStateHolder,
  resetHolderForTests,
  type TransitionRecord,
} from '../src/holder.js';
import { createStatusHandler, type StatusHandler } from '../src/http/handler.js';
import { escapeHtml, renderPanel, renderStatechartSvg } from '../src/http/panel.js';
import { MAX_OPERATOR_BODY_BYTES } from '../src/http/schemas.js';
import {
  HOLDER_NOT_INITIALIZED,
  STUB_STATUS,
  type StatusPayload,
  statusOf,
} from '../src/http/status.js';
import {
  applyStreamMessage,
  type StreamMessage,
  type StreamSnapshotMessage,
} from '../src/http/stream.js';
import { TRANSITION_TABLE, transitionsFrom } from '../src/table.js';
import { OperationalStateInputError, type PrimaryState } from '../src/vocabulary.js';
import { post, quietLogger, req, trackListeners } from './support/httpHandler.js';
import { sseReader } from './support/httpSse.js';

const TOKEN = 'test-operator-token-1234';
const SEED_KEYS = [
  'primary_state',
  'claim_permission',
  'degradation_reasons',
  'is_degraded',
  'transition_history',
  'valid_next_states',
];

const handlers: StatusHandler[] = [];
function handler(options: Parameters<typeof createStatusHandler>[0] = {}): StatusHandler {
  const h = createStatusHandler({ logger: quietLogger(), ...options });
  handlers.push(h);
  return h;
}
function holderIn(state: PrimaryState = 'booting'): OperationalStateHolder {
  return createOperationalStateHolder({
    initial: { primaryState: state },
    logger: quietLogger(),
  });
}
const expectedNext = (state: PrimaryState) =>
  transitionsFrom(state).map((r) => ({
    to_state: r.to,
    trigger: r.trigger,
    event: r.event,
    guard: r.guard,
    recovery_owner: r.recoveryOwner,
  }));

afterEach(async () => {
  for (const h of handlers.splice(0)) await h.close();
  resetHolderForTests();
});

describe('GET /api/operational-state', () => {
  it('serves the stub before the holder exists (default source: getHolder)', async () => {
    resetHolderForTests();
    const res = await handler()(req('/api/operational-state'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const body = await res.json();
    expect(body).toEqual({
      primary_state: 'booting',
      claim_permission: 'none',
      degradation_reasons: [],
      is_degraded: false,
      transition_history: [],
      valid_next_states: [],
      stub: true,
      error: 'OperationalStateHolder not yet initialized',
    });
    expect(Object.keys(body)).toEqual([...SEED_KEYS, 'stub', 'error']);
  });

  it('switches from the stub to the live payload once initHolder() ran', async () => {
    const h = handler();
    expect((await (await h(req('/api/operational-state'))).json()).stub).toBe(true);
    const holder = initHolder({ logger: quietLogger() });
    await holder.transitionTo('ready', 'all §9.2 gates pass');
    const body = await (await h(req('/api/operational-state'))).json();
    expect(body.stub).toBeUndefined();
    expect(body.primary_state).toBe('ready');
  });

  it('serves exactly the seed keys live: sorted reasons, history and the derived next states', async () => {
    const holder = holderIn();
    await holder.transitionTo('ready', 'all §9.2 gates pass');
    await holder.transitionTo('ready', 'degraded', { addReasons: ['token_expiring', 'auth'] });
    const body = await (await handler({ holder })(req('/api/operational-state'))).json();
    expect(Object.keys(body)).toEqual(SEED_KEYS);
    expect(body).toEqual({
      primary_state: 'ready',
      claim_permission: 'normal',
      degradation_reasons: ['auth', 'token_expiring'],
      is_degraded: true,
      transition_history: JSON.parse(JSON.stringify(holder.history())),
      valid_next_states: expectedNext('ready'),
    });
    expect(body.transition_history.map((r: TransitionRecord) => r.seq)).toEqual([1, 2]);
  });

  it('gives valid_next_states from the table for every state, empty once stopped', () => {
    for (const state of ['booting', 'ready', 'active', 'paused', 'stopped'] as const) {
      expect(statusOf(holderIn(state)).valid_next_states).toEqual(expectedNext(state));
    }
    expect(statusOf(holderIn('stopped')).valid_next_states).toEqual([]);
  });

  it('adds the chain key (emit failures, outbox depth) only when configured, never in the stub', async () => {
    const holder = holderIn('ready');
    const emitter = { stats: { emitted: 7, failures: 2, lastError: 'sink down' } };
    const sink = { stats: { appended: 5, failures: 3, outboxDepth: 4, dropped: 1, refused: 6 } };
    const live = await (
      await handler({ holder, emitter, sink })(req('/api/operational-state'))
    ).json();
    expect(Object.keys(live)).toEqual([...SEED_KEYS, 'chain']);
    expect(live.chain).toEqual({
      emitted: 7,
      failures: 2,
      last_error: 'sink down',
      outbox_depth: 4,
      dropped: 1,
      refused: 6,
    });
    const onlySink = await (await handler({ holder, sink })(req('/api/operational-state'))).json();
    expect(onlySink.chain).toEqual({
      emitted: null,
      failures: null,
      last_error: null,
      outbox_depth: 4,
      dropped: 1,
      refused: 6,
    });
    // A sink that does not count refusals says so (null), rather than claiming none.
    const uncounted = { stats: { appended: 5, failures: 3, outboxDepth: 4, dropped: 1 } };
    const body = await (
      await handler({ holder, sink: uncounted })(req('/api/operational-state'))
    ).json();
    expect(body.chain.refused).toBeNull();
    const stub = await (
      await handler({ holder: () => undefined, emitter, sink })(req('/api/operational-state'))
    ).json();
    expect(stub.chain).toBeUndefined();
    expect(stub.stub).toBe(true);
    const plain = await (await handler({ holder })(req('/api/operational-state'))).json();
    expect(plain.chain).toBeUndefined();
  });

  it('reads the emitter stats at request time', async () => {
    const holder = holderIn('ready');
    const stats = { emitted: 0, failures: 0 } as {
      emitted: number;
      failures: number;
      lastError?: string;
    };
    const h = handler({ holder, emitter: { stats } });
    stats.failures = 5;
    stats.lastError = 'boom';
    const body = await (await h(req('/api/operational-state'))).json();
    expect(body.chain.failures).toBe(5);
    expect(body.chain.last_error).toBe('boom');
  });
});

describe('GET /api/operational-state/history', () => {
  async function filled(n: number) {
    const holder = holderIn('ready');
    for (let i = 0; i < n; i++) {
      await (i % 2 === 0
        ? holder.send({ type: 'claim.acquired' })
        : holder.send({ type: 'claim.released' }));
    }
    return { holder, h: handler({ holder }) };
  }

  it('returns the newest N records, oldest first', async () => {
    const { holder, h } = await filled(5);
    const res = await h(req('/api/operational-state/history?limit=2'));
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.transition_history.map((r: TransitionRecord) => r.seq)).toEqual([4, 5]);
    const all = await (await h(req('/api/operational-state/history'))).json();
    expect(all.transition_history).toEqual(JSON.parse(JSON.stringify(holder.history())));
    const more = await (await h(req('/api/operational-state/history?limit=50'))).json();
    expect(more.transition_history).toHaveLength(5);
  });

  it.each([
    ['0', 'invalid limit "0"'],
    ['-1', 'invalid limit "-1"'],
    ['abc', 'invalid limit "abc"'],
    ['1.5', 'invalid limit "1.5"'],
    ['', 'invalid limit ""'],
    ['10001', 'invalid limit "10001"'],
    ['1e3', 'invalid limit "1e3"'],
  ])('refuses limit=%s with 400 naming the value', async (value, message) => {
    const { h } = await filled(1);
    const res = await h(req(`/api/operational-state/history?limit=${value}`));
    expect(res.status).toBe(400);
    const body = await res.json();
    expect(body.error).toContain(message);
    expect(body.field).toBe('limit');
  });

  it('refuses a repeated limit', async () => {
    const { h } = await filled(1);
    const res = await h(req('/api/operational-state/history?limit=1&limit=2'));
    expect(res.status).toBe(400);
    expect((await res.json()).error).toContain('limit given 2 times ("1", "2")');
  });

  it('serves an empty stub history before the holder exists', async () => {
    const res = await handler({ holder: () => undefined })(req('/api/operational-state/history'));
    expect(await res.json()).toEqual({
      transition_history: [],
      stub: true,
      error: HOLDER_NOT_INITIALIZED,
    });
  });
});

describe('probes', () => {
  it.each([
    ['booting', 'none', 503, 'primary state is booting'],
    ['paused', 'none', 503, 'primary state is paused'],
    ['stopped', 'none', 503, 'primary state is stopped'],
    ['ready', 'none', 503, 'claim permission is none'],
    ['ready', 'normal', 200, undefined],
    ['ready', 'critical_only', 200, undefined],
    ['active', 'normal', 200, undefined],
  ] as const)('/readyz in %s/%s → %i', async (state, permission, code, reason) => {
    const holder = createOperationalStateHolder({
      initial: { primaryState: state, claimPermission: permission },
      logger: quietLogger(),
    });
    const res = await handler({ holder })(req('/readyz'));
    expect(res.status).toBe(code);
    const body = await res.json();
    expect(body.ready).toBe(code === 200);
    expect(body.primary_state).toBe(state);
    expect(body.claim_permission).toBe(permission);
    expect(body.reason).toBe(reason);
  });

  it('/readyz is 503 with the stub reason before the holder exists; /livez is 200', async () => {
    const h = handler({ holder: () => undefined });
    const ready = await h(req('/readyz'));
    expect(ready.status).toBe(503);
    expect((await ready.json()).reason).toBe(HOLDER_NOT_INITIALIZED);
    const live = await h(req('/livez'));
    expect(live.status).toBe(200);
    expect(await live.json()).toEqual({ live: true, primary_state: 'booting' });
  });

  it('/livez is 200 unless stopped', async () => {
    for (const state of ['booting', 'ready', 'active', 'paused'] as const) {
      expect((await handler({ holder: holderIn(state) })(req('/livez'))).status).toBe(200);
    }
    const holder = holderIn('ready');
    const h = handler({ holder });
    await holder.send({ type: 'stop', trigger: 'STOP-KORA L4' });
    const res = await h(req('/livez'));
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      live: false,
      primary_state: 'stopped',
      reason: 'primary state is stopped',
    });
  });
});

describe('POST /api/operational-state/transitions', () => {
  const path = '/api/operational-state/transitions';
  const live = (state: PrimaryState = 'ready') => {
    const holder = holderIn(state);
    return { holder, h: handler({ holder, operatorToken: TOKEN }) };
  };

  it('is 403 when no token is configured, whatever the request says', async () => {
    const holder = holderIn('ready');
    const h = handler({ holder });
    const res = await h(post(path, { to: 'paused', trigger: 'operator' }, { token: TOKEN }));
    expect(res.status).toBe(403);
    expect((await res.json()).error).toContain('no operator token is configured');
    expect(holder.current.primaryState).toBe('ready');
  });

  it.each([
    ['no Authorization header', undefined],
    ['a wrong token', { authorization: `Bearer ${TOKEN.slice(0, -1)}x` }],
    ['a shorter token', { authorization: 'Bearer abc' }],
    ['a longer token', { authorization: `Bearer ${TOKEN}${TOKEN}` }],
    ['another scheme', { authorization: `Basic ${TOKEN}` }],
    ['the bare token', { authorization: TOKEN }],
    ['an empty bearer', { authorization: 'Bearer ' }],
  ])('is 401 with %s', async (_name, headers) => {
    const { holder, h } = live();
    const res = await h(
      post(path, { to: 'paused', trigger: 'operator' }, { headers: headers ?? {} }),
    );
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('Bearer');
    expect((await res.json()).error).toContain('bearer token');
    expect(holder.current.primaryState).toBe('ready');
  });

  it('accepts the bearer scheme case-insensitively', async () => {
    const { h } = live();
    const res = await h(
      post(
        path,
        { to: 'paused', trigger: 'operator' },
        { headers: { authorization: `bearer ${TOKEN}` } },
      ),
    );
    expect(res.status).toBe(200);
  });

  it('takes the transitionTo path and answers 200 with the new status payload', async () => {
    const { holder, h } = live();
    const res = await h(
      post(
        path,
        {
          to: 'ready',
          trigger: 'auth degraded',
          claim_permission: 'critical_only',
          add_reasons: ['auth', 'cost'],
        },
        { token: TOKEN },
      ),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as StatusPayload;
    expect(Object.keys(body)).toEqual(SEED_KEYS);
    expect(body.primary_state).toBe('ready');
    expect(body.claim_permission).toBe('critical_only');
    expect(body.degradation_reasons).toEqual(['auth', 'cost']);
    expect(body.transition_history.at(-1)?.event).toBe('update');
    const removed = await h(
      post(path, { to: 'paused', trigger: 'operator', remove_reasons: ['auth'] }, { token: TOKEN }),
    );
    expect(removed.status).toBe(200);
    expect(((await removed.json()) as StatusPayload).degradation_reasons).toEqual([
      'cost',
      'operator',
    ]);
    expect(holder.current.primaryState).toBe('paused');
  });

  it('takes the send path with { event }', async () => {
    const { holder, h } = live();
    const res = await h(
      post(
        path,
        { event: { type: 'pause', cause: 'cost_limit', trigger: 'cost 100%' } },
        { token: TOKEN },
      ),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as StatusPayload;
    expect(body.primary_state).toBe('paused');
    expect(body.degradation_reasons).toEqual(['cost']);
    expect(holder.history().at(-1)).toMatchObject({ event: 'pause', cause: 'cost_limit' });
  });

  it('answers 409 with the error message for an arrow not in the table', async () => {
    const { holder, h } = live();
    const res = await h(post(path, { to: 'booting', trigger: 'reboot' }, { token: TOKEN }));
    expect(res.status).toBe(409);
    const body = await res.json();
    expect(body.error).toBe(
      'invalid state transition ready → booting (trigger "reboot"): no §9.1 row ready → booting',
    );
    expect(body).toMatchObject({ from: 'ready', to: 'booting', trigger: 'reboot', event: null });
    expect(holder.current.primaryState).toBe('ready');
  });

  it('answers 409 for a failed guard and after stopped', async () => {
    const { h } = live('paused');
    const guard = await h(
      post(
        path,
        { event: { type: 'resume.credit_refresh', reconciledSpendUsd: 120, thresholdUsd: 100 } },
        { token: TOKEN },
      ),
    );
    expect(guard.status).toBe(409);
    expect((await guard.json()).error).toContain('guard not satisfied');
    expect((await h(post(path, { event: { type: 'stop' } }, { token: TOKEN }))).status).toBe(200);
    const after = await h(post(path, { to: 'ready', trigger: 'again' }, { token: TOKEN }));
    expect(after.status).toBe(409);
    expect((await after.json()).error).toContain('stopped is final');
  });

  it.each([
    ['not JSON', '{"to": "paused",', 'invalid JSON body'],
    ['an empty body', '', 'invalid JSON body'],
    ['a JSON array', '[1,2]', 'body must be a JSON object, got [1,2]'],
    ['a JSON string', '"paused"', 'body must be a JSON object, got "paused"'],
  ])('answers 400 for %s', async (_name, raw, message) => {
    const { h } = live();
    const res = await h(post(path, raw, { token: TOKEN }));
    expect(res.status).toBe(400);
    expect((await res.json()).error).toContain(message);
  });

  it.each([
    [{ to: 'paused', trigger: 'x', force: true }, 'force', 'unknown field "force"'],
    [{ event: { type: 'pause', bogus: 1 } }, 'event.bogus', 'unknown field "bogus"'],
    [{ event: { type: 'pause' }, to: 'ready' }, 'to', 'unknown field "to"'],
    [{ to: 'bogus', trigger: 'x' }, 'to', 'invalid to "bogus"'],
    [{ to: 'paused', trigger: 'x', claim_permission: 'lots' }, 'claim_permission', '"lots"'],
    [{ to: 'paused', trigger: 'x', add_reasons: ['bored'] }, 'add_reasons.0', '"bored"'],
    [{ to: 'paused', trigger: 'x', remove_reasons: 'cost' }, 'remove_reasons', '"cost"'],
    [{ to: 'paused' }, 'trigger', 'invalid trigger'],
    [{ to: 'paused', trigger: 7 }, 'trigger', 'invalid trigger 7'],
    [{ to: 'paused', trigger: 'x'.repeat(1001) }, 'trigger', 'invalid trigger'],
    [{ event: { type: 'explode' } }, 'event.type', 'unknown event type "explode"'],
    [{ event: { type: 'pause', cause: 'bored' } }, 'event.cause', 'invalid cause "bored"'],
    [{ event: 'pause' }, 'event', 'event must be an object, got "pause"'],
    [{ event: { type: 'stop', trigger: 'y'.repeat(1001) } }, 'event.trigger', 'invalid trigger'],
  ])('answers 400 naming the field for %j', async (body, field, message) => {
    const { holder, h } = live();
    const res = await h(post(path, body, { token: TOKEN }));
    expect(res.status).toBe(400);
    const json = await res.json();
    expect(json.field).toBe(field);
    expect(json.error).toContain(message);
    expect(holder.history()).toHaveLength(0);
  });

  it('answers 413 when Content-Length says more than 16 KiB, before reading', async () => {
    const { h } = live();
    const res = await h(
      new Request(`http://127.0.0.1${path}`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${TOKEN}`,
          'content-length': String(MAX_OPERATOR_BODY_BYTES + 1),
        },
        body: 'x'.repeat(MAX_OPERATOR_BODY_BYTES + 1),
      }),
    );
    expect(res.status).toBe(413);
    expect((await res.json()).error).toContain('16384-byte limit');
  });

  it('answers 413 when the bytes read pass 16 KiB without a Content-Length', async () => {
    const { holder, h } = live();
    const chunk = new TextEncoder().encode(' '.repeat(4096));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= 8) c.close();
        else {
          sent++;
          c.enqueue(chunk);
        }
      },
    });
    const res = await h(
      new Request(`http://127.0.0.1${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}` },
        body,
        duplex: 'half',
      } as RequestInit),
    );
    expect(res.status).toBe(413);
    expect(sent).toBeLessThan(8);
    expect(holder.history()).toHaveLength(0);
  });

  it('accepts a body of exactly 16 KiB', async () => {
    const { h } = live();
    const json = JSON.stringify({ to: 'paused', trigger: 'operator' });
    const padded = json + ' '.repeat(MAX_OPERATOR_BODY_BYTES - json.length);
    expect(new TextEncoder().encode(padded).byteLength).toBe(MAX_OPERATOR_BODY_BYTES);
    expect((await h(post(path, padded, { token: TOKEN }))).status).toBe(200);
  });

  it('answers 503 before the holder exists', async () => {
    const h = handler({ holder: () => undefined, operatorToken: TOKEN });
    const res = await h(post(path, { to: 'ready', trigger: 'x' }, { token: TOKEN }));
    expect(res.status).toBe(503);
    expect((await res.json()).error).toBe(HOLDER_NOT_INITIALIZED);
  });
});

describe('routing', () => {
  const getRoutes = [
    '/',
    '/api/operational-state',
    '/api/operational-state/history',
    '/api/operational-state/stream',
    '/livez',
    '/readyz',
    '/metrics',
  ];

  it.each(getRoutes.flatMap((p) => ['POST', 'PUT', 'DELETE', 'PATCH'].map((m) => [m, p])))(
    '%s %s → 405 with Allow: GET, HEAD',
    async (method, path) => {
      const h = handler({ holder: holderIn('ready'), operatorToken: TOKEN });
      const res = await h(req(path, { method }));
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD');
      expect((await res.json()).error).toContain(`method "${method}" not allowed on ${path}`);
    },
  );

  it.each(['GET', 'HEAD', 'PUT', 'DELETE'])(
    '%s /api/operational-state/transitions → 405 with Allow: POST',
    async (method) => {
      const h = handler({ holder: holderIn('ready'), operatorToken: TOKEN });
      const res = await h(req('/api/operational-state/transitions', { method }));
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('POST');
    },
  );

  it('answers HEAD on GET routes with the headers and no body', async () => {
    const h = handler({ holder: holderIn('ready') });
    for (const path of getRoutes) {
      const res = await h(req(path, { method: 'HEAD' }));
      expect(res.status, path).toBe(200);
      expect(res.body, path).toBeNull();
    }
    expect(h.openStreams).toBe(0);
  });

  it.each(['/nope', '/api', '/api/operational-state/', '/API/operational-state', '/metrics/x'])(
    'answers 404 JSON for %s',
    async (path) => {
      const res = await handler()(req(path));
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toContain('application/json');
      expect((await res.json()).error).toBe(`no route ${JSON.stringify(path)}`);
    },
  );

  it('answers 500 JSON (and logs) when reading the holder throws', async () => {
    const logger = quietLogger();
    const h = createStatusHandler({
      logger,
      holder: () => {
        throw new Error('holder exploded');
      },
    });
    handlers.push(h);
    const res = await h(req('/api/operational-state'));
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: 'internal error' });
    expect(logger.find('error', '[kora.operational_state.http]').length).toBeGreaterThan(0);
  });

  it('answers 503 after close()', async () => {
    const h = handler({ holder: holderIn('ready') });
    await h.close();
    const res = await h(req('/api/operational-state'));
    expect(res.status).toBe(503);
  });
});

describe('GET /metrics', () => {
  const value = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  it('serves Prometheus text: state gauge, transition counters, emit failures, outbox depth', async () => {
    const holder = holderIn();
    await holder.transitionTo('ready', 'all §9.2 gates pass'); // before the handler: seeded from history
    const emitter = { stats: { emitted: 4, failures: 3 } };
    const sink = { stats: { appended: 4, failures: 6, outboxDepth: 9, dropped: 2, refused: 5 } };
    const h = handler({ holder, emitter, sink });
    for (let i = 0; i < 3; i++) {
      await holder.send({ type: 'claim.acquired' });
      await holder.send({ type: 'claim.released' });
    }
    await holder.send({ type: 'claim.acquired' });
    await holder.transitionTo('booting', 'nope').catch(() => {});
    const res = await h(req('/metrics'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(text).toContain('# TYPE kora_operational_state gauge');
    for (const s of ['booting', 'ready', 'paused', 'stopped']) {
      expect(value(text, `kora_operational_state{state="${s}"}`)).toBe(0);
    }
    expect(value(text, 'kora_operational_state{state="active"}')).toBe(1);
    expect(text).toContain('# TYPE kora_operational_state_transitions_total counter');
    expect(value(text, 'kora_operational_state_transitions_total{from="booting",to="ready"}')).toBe(
      1,
    );
    expect(value(text, 'kora_operational_state_transitions_total{from="ready",to="active"}')).toBe(
      4,
    );
    expect(value(text, 'kora_operational_state_transitions_total{from="active",to="ready"}')).toBe(
      3,
    );
    expect(value(text, 'kora_operational_state_rejected_total')).toBe(1);
    expect(value(text, 'kora_operational_state_emit_failures_total')).toBe(3);
    expect(value(text, 'kora_operational_state_emitted_total')).toBe(4);
    expect(value(text, 'kora_operational_state_outbox_depth')).toBe(9);
    expect(value(text, 'kora_operational_state_outbox_dropped_total')).toBe(2);
    expect(value(text, 'kora_operational_state_sink_failures_total')).toBe(6);
    expect(value(text, 'kora_operational_state_sink_refused_total')).toBe(5);
    expect(value(text, 'kora_operational_state_claim_permission{permission="normal"}')).toBe(1);
    expect(value(text, 'kora_operational_state_initialized')).toBe(1);
    // Reading again does not double-count anything.
    const again = await (await h(req('/metrics'))).text();
    expect(value(again, 'kora_operational_state_transitions_total{from="ready",to="active"}')).toBe(
      4,
    );
    expect(value(again, 'kora_operational_state_emit_failures_total')).toBe(3);
  });

  it('shows booting and initialized 0 before the holder exists, and no chain metrics unconfigured', async () => {
    const text = await (await handler({ holder: () => undefined })(req('/metrics'))).text();
    expect(value(text, 'kora_operational_state_initialized')).toBe(0);
    expect(value(text, 'kora_operational_state{state="booting"}')).toBe(1);
    expect(text).not.toContain('emit_failures_total');
    expect(text).not.toContain('outbox_depth');
  });

  it('counts the transitions of a holder that appears later, and degradation reasons', async () => {
    let holder: OperationalStateHolder | undefined;
    const h = handler({ holder: () => holder });
    holder = holderIn('ready');
    await (await h(req('/api/operational-state'))).json();
    await holder.transitionTo('paused', 'cost 100%');
    const text = await (await h(req('/metrics'))).text();
    expect(value(text, 'kora_operational_state_transitions_total{from="ready",to="paused"}')).toBe(
      1,
    );
    expect(value(text, 'kora_operational_state_degradation_reason{reason="cost"}')).toBe(1);
    expect(value(text, 'kora_operational_state_degradation_reason{reason="auth"}')).toBe(0);
  });

  it('uses a given registry, and close() removes its metrics so another handler can register', async () => {
    const registry = new Registry();
    const h = createStatusHandler({ holder: holderIn('ready'), registry, logger: quietLogger() });
    expect(h.registry).toBe(registry);
    expect(registry.getSingleMetric('kora_operational_state')).toBeDefined();
    expect(() => createStatusHandler({ registry, logger: quietLogger() })).toThrow(
      /already been registered/,
    );
    await h.close();
    expect(registry.getSingleMetric('kora_operational_state')).toBeUndefined();
    handlers.push(createStatusHandler({ registry, logger: quietLogger() }));
  });

  it('gives each handler a fresh registry by default', () => {
    expect(handler().registry).not.toBe(handler().registry);
  });
});

describe('GET /api/operational-state/stream (SSE)', () => {
  it('sends a snapshot first, then one change per committed transition with its record', async () => {
    const holder = holderIn('ready');
    const h = handler({ holder });
    const res = await h(req('/api/operational-state/stream'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(res.headers.get('cache-control')).toContain('no-cache');
    const sse = sseReader(res.body!);
    const retry = await sse.next();
    expect(retry?.retry).toBe(2000);
    const first = await sse.nextData<StreamSnapshotMessage>();
    expect(first).toEqual({
      kind: 'snapshot',
      status: JSON.parse(JSON.stringify(statusOf(holder))),
    });
    await holder.send({ type: 'claim.acquired' });
    await holder.transitionTo('active', 'auth flaky', { addReasons: ['auth'] });
    const a = await sse.next();
    const b = await sse.next();
    expect(a?.id).toBe('1');
    expect(b?.id).toBe('2');
    const ma = JSON.parse(a!.data!) as StreamMessage & { kind: 'change' };
    const mb = JSON.parse(b!.data!) as StreamMessage & { kind: 'change' };
    expect(ma.kind).toBe('change');
    expect(ma.record).toMatchObject({
      seq: 1,
      from_state: 'ready',
      to_state: 'active',
      event: 'claim.acquired',
    });
    // The state as of that record, even though a later commit already happened.
    expect(ma.history_length).toBe(1);
    expect(ma.state.degradation_reasons).toEqual([]);
    expect(ma.state.primary_state).toBe('active');
    expect(mb.record).toMatchObject({ seq: 2, event: 'update', degradation_reasons: ['auth'] });
    // Applied to the first snapshot, the changes give the status a fresh read gives.
    const applied = applyStreamMessage(applyStreamMessage(first!.status, ma), mb);
    expect(applied).toEqual(JSON.parse(JSON.stringify(statusOf(holder))));
    await sse.cancel();
  });

  it('sends heartbeat comments every heartbeatMs', async () => {
    const h = handler({ holder: holderIn('ready'), heartbeatMs: 20 });
    const sse = sseReader((await h(req('/api/operational-state/stream'))).body!);
    expect(await sse.nextComment()).toMatch(/^heartbeat \d{4}-\d\d-\d\dT/);
    expect(await sse.nextComment()).toMatch(/^heartbeat /);
    await sse.cancel();
  });

  it('removes the holder listener when the client cancels the body', async () => {
    const holder = holderIn('ready');
    const listeners = trackListeners(holder, 'kora.operational_state.http.stream');
    const h = handler({ holder });
    const sse = sseReader((await h(req('/api/operational-state/stream'))).body!);
    await sse.nextData();
    expect(listeners.live).toBe(1);
    expect(h.openStreams).toBe(1);
    await sse.cancel();
    expect(listeners.live).toBe(0);
    expect(h.openStreams).toBe(0);
    await holder.send({ type: 'claim.acquired' }); // nothing left to deliver to
  });

  it('removes the holder listener when the request is aborted', async () => {
    const holder = holderIn('ready');
    const listeners = trackListeners(holder, 'kora.operational_state.http.stream');
    const h = handler({ holder });
    const abort = new AbortController();
    const res = await h(req('/api/operational-state/stream', { signal: abort.signal }));
    const sse = sseReader(res.body!);
    await sse.nextData();
    expect(listeners.live).toBe(1);
    abort.abort();
    expect(listeners.live).toBe(0);
    expect(h.openStreams).toBe(0);
    expect(await sse.next()).toBeUndefined(); // the stream ended
  });

  it('ends every open stream cleanly on close()', async () => {
    const holder = holderIn('ready');
    const listeners = trackListeners(holder, 'kora.operational_state.http.stream');
    const h = handler({ holder });
    const streams = [
      sseReader((await h(req('/api/operational-state/stream'))).body!),
      sseReader((await h(req('/api/operational-state/stream'))).body!),
    ];
    for (const s of streams) await s.nextData();
    expect(h.openStreams).toBe(2);
    expect(listeners.live).toBe(1); // one holder listener serves every stream
    await h.close();
    for (const s of streams) expect(await s.nextData()).toBeUndefined();
    expect(listeners.live).toBe(0);
  });

  it('starts with the stub and follows the holder once it exists', async () => {
    let holder: OperationalStateHolder | undefined;
    const h = handler({ holder: () => holder, heartbeatMs: 10 });
    const sse = sseReader((await h(req('/api/operational-state/stream'))).body!);
    const first = await sse.nextData<StreamSnapshotMessage>();
    expect(first?.status.stub).toBe(true);
    holder = holderIn('booting');
    const second = await sse.nextData<StreamSnapshotMessage>();
    expect(second).toMatchObject({ kind: 'snapshot', status: { primary_state: 'booting' } });
    expect(second?.status.stub).toBeUndefined();
    await holder.transitionTo('ready', 'all §9.2 gates pass');
    expect(await sse.nextData<StreamMessage>()).toMatchObject({
      kind: 'change',
      record: { to_state: 'ready' },
      state: { primary_state: 'ready' },
    });
    await sse.cancel();
  });
});

describe('options', () => {
  it.each([
    [{ heartbeatMs: 0 }, 'heartbeatMs must be a positive integer (ms), got 0'],
    [{ heartbeatMs: 1.5 }, 'got 1.5'],
    [
      { holder: 'mine' },
      'holder must be an OperationalStateHolder or a function returning one, got "mine"',
    ],
    [{ registry: {} }, 'registry must be a prom-client Registry'],
    [
      { sink: { outboxDepth: 3 } },
      'sink must be an object (or the emit listener) with a `stats` object',
    ],
    [
      { emitter: 5 },
      'emitter must be an object (or the emit listener) with a `stats` object, got 5',
    ],
    [{ logger: { error() {} } }, 'logger must be a console-compatible logger'],
    [{ title: 3 }, 'title must be a string, got 3'],
  ])('refuses %j', (options, message) => {
    expect(() => createStatusHandler(options as never)).toThrow(OperationalStateInputError);
    expect(() => createStatusHandler(options as never)).toThrow(message);
  });

  it('refuses a malformed operator token without echoing it', () => {
    const secret = 'sec ret-value';
    let error: unknown;
    try {
      createStatusHandler({ operatorToken: secret });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(OperationalStateInputError);
    expect((error as Error).message).toContain(
      'operatorToken must be a non-empty string without whitespace',
    );
    expect((error as Error).message).not.toContain('ret-value');
    expect(() => createStatusHandler({ operatorToken: '' })).toThrow(/operatorToken/);
  });

  it('treats undefined options as defaults', async () => {
    const h = handler({ holder: undefined, heartbeatMs: undefined, operatorToken: undefined });
    expect((await h(req('/api/operational-state'))).status).toBe(200);
  });
});

describe('the panel (HTML)', () => {
  // The server embeds the status as JSON; the page's script renders it (and every stream
  // message) in the browser — test/panel.test.ts checks what Chromium shows.
  const embedded = (html: string, id = 'panel-status') =>
    JSON.parse(
      new RegExp(`<script type="application/json" id="${id}">(.*?)</script>`, 's').exec(html)![1]!,
    );
  const asJson = (v: unknown) => JSON.parse(JSON.stringify(v));

  it('serves a self-contained page with a nonce CSP, the status and the statechart', async () => {
    const holder = holderIn('ready');
    await holder.send({ type: 'claim.acquired' });
    const res = await handler({ holder })(req('/'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce).toBeTruthy();
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    const html = await res.text();
    expect(html).toContain(`<script nonce="${nonce}">`);
    expect(html).toContain(`<style nonce="${nonce}">`);
    expect(embedded(html)).toEqual(asJson(statusOf(holder)));
    expect(embedded(html).primary_state).toBe('active');
    // One statechart, lit by the client, not the server.
    expect(html.match(/<svg class="statechart"/g)).toHaveLength(1);
    expect(html).not.toMatch(/class="node [^"]*current/);
    // Every src/href is local or a data: URL; nothing names another host.
    for (const [, url] of html.matchAll(/\b(?:src|href)="([^"]*)"/g)) {
      expect(url).toMatch(/^(data:|\/|#|[a-z][\w/-]*$)/);
    }
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(html).toContain("new EventSource('api/operational-state/stream')");
  });

  it('sends a fresh nonce per page', async () => {
    const h = handler({ holder: holderIn('ready') });
    const a = (await h(req('/'))).headers.get('content-security-policy');
    const b = (await h(req('/'))).headers.get('content-security-policy');
    expect(a).not.toBe(b);
  });

  it('escapes everything it interpolates', async () => {
    const holder = holderIn('ready');
    const evil = '<script>alert("x")</script>&\'';
    await holder.transitionTo('ready', evil, { addReasons: ['auth'] });
    const html = await (await handler({ holder, title: '<b>t</b>' })(req('/'))).text();
    expect(html).not.toContain('<script>alert');
    expect(html).not.toContain('<b>t</b>');
    expect(html).toContain(`<title>${escapeHtml('<b>t</b>')}</title>`);
    // In the embedded JSON every `<` is \u003c: no `</script>` can end the element.
    expect(html).toContain(JSON.stringify(evil).slice(1, -1).replace(/</g, '\\u003c'));
    expect(embedded(html).transition_history.at(-1).trigger).toBe(evil);
    expect(escapeHtml(evil)).toBe('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;');
  });

  it('embeds the stub before the holder exists, and no chain when unconfigured', () => {
    const stub = embedded(renderPanel(STUB_STATUS));
    expect(stub).toEqual(asJson(STUB_STATUS));
    expect(stub.stub).toBe(true);
    const live = embedded(renderPanel(statusOf(holderIn('ready'))));
    expect(live.stub).toBeUndefined();
    expect(live.chain).toBeUndefined();
    expect(renderPanel(STUB_STATUS)).toContain(
      '<p id="stub-note" class="stub" hidden>OperationalStateHolder not yet initialized',
    );
  });

  it('gives the client the valid next transitions with their row texts, and the row numbers', () => {
    const html = renderPanel(statusOf(holderIn('paused')));
    const next = embedded(html).valid_next_states as { event: string; trigger: string }[];
    expect(next.map((n) => n.trigger)).toEqual(transitionsFrom('paused').map((r) => r.trigger));
    const rows = embedded(html, 'panel-rows') as { row: number; from: string; event: string }[];
    const numbers = next.map(
      (n) => rows.find((r) => r.from === 'paused' && r.event === n.event)?.row,
    );
    expect(numbers).toEqual(TRANSITION_TABLE.filter((r) => r.from === 'paused').map((r) => r.row));
    expect(html).toContain('<tbody id="next-body"></tbody>');
  });
});

describe('the statechart SVG', () => {
  it('draws one arrow per (from, to) pair of the derived table, covering every row once', () => {
    const svg = renderStatechartSvg();
    const edges = [
      ...svg.matchAll(
        /<g class="edge[^"]*" data-from="(\w+)" data-to="(\w+)" data-rows="([\d ]+)"/g,
      ),
    ];
    const pairs = new Set(TRANSITION_TABLE.map((r) => `${r.from}>${r.to}`));
    expect(edges.map((m) => `${m[1]}>${m[2]}`).sort()).toEqual([...pairs].sort());
    const rows = edges.flatMap((m) => m[3]!.split(' ').map(Number)).sort((a, b) => a - b);
    expect(rows).toEqual(TRANSITION_TABLE.map((r) => r.row).sort((a, b) => a - b));
    for (const m of edges) {
      for (const row of m[3]!.split(' ').map(Number)) {
        const r = TRANSITION_TABLE.find((t) => t.row === row)!;
        expect([r.from, r.to]).toEqual([m[1], m[2]]);
      }
    }
    for (const s of ['booting', 'ready', 'active', 'paused', 'stopped']) {
      expect(svg).toContain(`id="node-${s}" data-state="${s}"`);
    }
    expect(svg).not.toContain(' current"');
  });

  it('lights the current state and marks its outgoing arrows', () => {
    const svg = renderStatechartSvg({ current: 'paused' });
    expect(svg).toContain('<g class="node state-paused current" id="node-paused"');
    const next = [...svg.matchAll(/<g class="edge next" data-from="(\w+)"/g)].map((m) => m[1]);
    expect(next.length).toBeGreaterThan(0);
    expect(new Set(next)).toEqual(new Set(['paused']));
  });

  it('renders a standalone document with the XML prolog and namespace', () => {
    const svg = renderStatechartSvg({ standalone: true });
    expect(svg.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg ')).toBe(true);
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  });
});
