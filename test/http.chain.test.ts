/**
 * The status API's read-only chain routes, `GET /api/operational-state/chain` and
 * `…/chain/verify`, against a real PGlite sink filled by a real holder through the emit
 * listener: paging by `limit`/`after_seq`, the query's 400s, verification of an intact
 * and a tampered chain, and the 404/405 answers.
 */
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOT_READY_EVENT, GENERIC_TRANSITION_EVENT, makeEmitListener } from '../src/emit.js';
import { createOperationalStateHolder, type OperationalStateHolder } from '../src/holder.js';
import { createStatusHandler, type StatusHandler } from '../src/http/handler.js';
import type { DurableChainSink } from '../src/sinks/durable.js';
import { createPgliteSink } from '../src/sinks/pglite.js';
import type { PositionedChainEvent } from '../src/sinks/sql.js';
import { quietLogger, req } from './support/httpHandler.js';

const WORKSPACE = 'ws-http-chain';
const INSTANCE = 'run-http-chain';
const CHAIN = '/api/operational-state/chain';
const VERIFY = '/api/operational-state/chain/verify';
/** What a verification computed for the request says about its age. */
const FRESH = {
  verified_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
  cached: false,
};

// One in-memory database for the file: a PGlite start costs seconds.
let db: PGlite;
let sink: DurableChainSink;
let holder: OperationalStateHolder;
let handler: StatusHandler;
/** Every stored event, read straight from the sink: what the routes must match. */
let stored: PositionedChainEvent[];

beforeAll(async () => {
  db = await PGlite.create('memory://');
  sink = createPgliteSink({ workspaceId: WORKSPACE, db, logger: quietLogger() });
  await sink.start();
  holder = createOperationalStateHolder({ logger: quietLogger() });
  holder.addListener(makeEmitListener(sink, { instanceId: INSTANCE, logger: quietLogger() }));
  // verifyCacheMs 0: every verify here recomputes (the cache has its own tests, http.hosts).
  handler = createStatusHandler({ holder, sink, logger: quietLogger(), verifyCacheMs: 0 });

  // Six events: booting → ready emits the generic event plus kora.boot.ready, then two
  // claim round trips add one generic event each.
  await holder.transitionTo('ready', 'all §9.2 gates pass');
  await holder.send({ type: 'claim.acquired' });
  await holder.send({ type: 'claim.released' });
  await holder.send({ type: 'claim.acquired' });
  await holder.send({ type: 'claim.released' });
  expect(await sink.flush(5_000)).toBe(true);
  stored = await sink.tail({ limit: 100 });
});

afterAll(async () => {
  await handler?.close();
  await sink?.close();
  // The sink never closes a `db` it was given.
  await db?.close();
});

async function getJson(path: string) {
  const res = await handler(req(path));
  return { status: res.status, headers: res.headers, body: await res.json() };
}

describe('GET /api/operational-state/chain', () => {
  it('serves the newest 20 events by default, oldest first, linked hash to hash', async () => {
    const { status, headers, body } = await getJson(CHAIN);
    expect(status).toBe(200);
    expect(headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(headers.get('cache-control')).toBe('no-store');
    expect(Object.keys(body)).toEqual(['workspace_id', 'events']);
    expect(body.workspace_id).toBe(WORKSPACE);

    const events = body.events as PositionedChainEvent[];
    // The route serves exactly what the sink holds, nothing added or dropped.
    expect(events).toEqual(stored);
    expect(events.map((e) => e.chain_seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.map((e) => e.event_type)).toEqual([
      GENERIC_TRANSITION_EVENT,
      BOOT_READY_EVENT,
      GENERIC_TRANSITION_EVENT,
      GENERIC_TRANSITION_EVENT,
      GENERIC_TRANSITION_EVENT,
      GENERIC_TRANSITION_EVENT,
    ]);
    expect(events.map((e) => [e.payload.from_primary_state, e.payload.to_primary_state])).toEqual([
      ['booting', 'ready'],
      ['booting', 'ready'],
      ['ready', 'active'],
      ['active', 'ready'],
      ['ready', 'active'],
      ['active', 'ready'],
    ]);
    expect(events[0]!.payload.trigger).toBe('all §9.2 gates pass');

    for (const e of events) {
      expect(Object.keys(e).sort()).toEqual(
        [
          'agent_id',
          'chain_seq',
          'event_id',
          'event_type',
          'instance_id',
          'occurred_at',
          'payload',
          'prev_event_hash',
          'seq',
          'this_event_hash',
          'workspace_id',
        ].sort(),
      );
      expect(e).toMatchObject({
        workspace_id: WORKSPACE,
        agent_id: 'default',
        instance_id: INSTANCE,
      });
      expect(e.occurred_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(e.this_event_hash).toMatch(/^[0-9a-f]{64}$/);
    }
    // The first event starts the chain; each later one points at its predecessor.
    expect(events[0]!.prev_event_hash).toBeNull();
    for (let i = 1; i < events.length; i++) {
      expect(events[i]!.prev_event_hash).toBe(events[i - 1]!.this_event_hash);
    }
    expect(new Set(events.map((e) => e.event_id)).size).toBe(6);
  });

  it('limit=N gives the N newest events, still oldest first', async () => {
    const two = (await getJson(`${CHAIN}?limit=2`)).body.events as PositionedChainEvent[];
    expect(two.map((e) => e.chain_seq)).toEqual([5, 6]);
    expect(two).toEqual(stored.slice(4));

    const one = (await getJson(`${CHAIN}?limit=1`)).body.events as PositionedChainEvent[];
    expect(one).toEqual([stored[5]]);

    // The largest limit is accepted and simply returns everything there is.
    expect((await getJson(`${CHAIN}?limit=1000`)).body.events).toEqual(stored);
  });

  it('after_seq keeps only later chain positions; combined with limit, the newest of those', async () => {
    const seqs = async (query: string) =>
      ((await getJson(`${CHAIN}?${query}`)).body.events as PositionedChainEvent[]).map(
        (e) => e.chain_seq,
      );
    expect(await seqs('after_seq=0')).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await seqs('after_seq=4')).toEqual([5, 6]);
    expect(await seqs('after_seq=1&limit=3')).toEqual([4, 5, 6]);
    expect(await seqs('limit=1&after_seq=2')).toEqual([6]);
    // Caught up (or past the head): an empty page, not an error.
    expect(await seqs('after_seq=6')).toEqual([]);
    expect(await seqs('after_seq=999')).toEqual([]);
    // take=oldest pages forward from the cursor instead: the next `limit` positions.
    expect(await seqs('after_seq=1&limit=3&take=oldest')).toEqual([2, 3, 4]);
    expect(await seqs('after_seq=4&limit=3&take=oldest')).toEqual([5, 6]);
    expect(await seqs('limit=2&take=newest')).toEqual([5, 6]);
  });

  it('answers HEAD with the headers and no body', async () => {
    const res = await handler(req(CHAIN, { method: 'HEAD' }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await res.text()).toBe('');
  });

  it.each([
    ['limit=0', 'limit', '"0"'],
    ['limit=1001', 'limit', '"1001"'],
    ['limit=-1', 'limit', '"-1"'],
    ['limit=abc', 'limit', '"abc"'],
    ['limit=2.5', 'limit', '"2.5"'],
    ['limit=', 'limit', '""'],
    ['after_seq=-1', 'after_seq', '"-1"'],
    ['after_seq=01', 'after_seq', '"01"'],
    ['after_seq=1e3', 'after_seq', '"1e3"'],
    ['after_seq=99999999999999999999', 'after_seq', '"99999999999999999999"'],
    ['limit=5&after_seq=x', 'after_seq', '"x"'],
    ['take=middle', 'take', '"middle"'],
  ])('?%s → 400 naming %s and quoting %s', async (query, field, quoted) => {
    const { status, body } = await getJson(`${CHAIN}?${query}`);
    expect(status).toBe(400);
    expect(body).toEqual({ error: expect.any(String), field });
    expect(body.error).toContain(`invalid ${field} ${quoted}`);
  });

  it('refuses an unknown parameter by name', async () => {
    const { status, body } = await getJson(`${CHAIN}?limit=2&offset=3`);
    expect(status).toBe(400);
    expect(body).toEqual({
      error: 'unknown query parameter "offset"; expected limit, after_seq, take',
      field: 'offset',
    });
  });

  it.each([
    ['limit=1&limit=2', 'limit', 'limit given 2 times ("1", "2"); give it once'],
    ['after_seq=3&after_seq=3', 'after_seq', 'after_seq given 2 times ("3", "3"); give it once'],
  ])('refuses a repeated parameter (?%s)', async (query, field, error) => {
    const { status, body } = await getJson(`${CHAIN}?${query}`);
    expect(status).toBe(400);
    expect(body).toEqual({ error, field });
  });
});

describe('GET /api/operational-state/chain/verify', () => {
  it('reports an intact chain with its length', async () => {
    const { status, headers, body } = await getJson(VERIFY);
    expect(status).toBe(200);
    expect(headers.get('cache-control')).toBe('no-store');
    expect(body).toEqual({ workspace_id: WORKSPACE, ...intact(6), ...FRESH });
    expect(Object.keys(body)).toEqual([
      'workspace_id',
      'ok',
      'events',
      'checked',
      'head',
      'keyed_from',
      'gaps',
      'verified_at',
      'cached',
    ]);
  });

  it('names the exact event whose payload was tampered with, and recovers once restored', async () => {
    const victim = stored[2]!;
    await db.query(`UPDATE event_log SET payload = '{"forged": true}' WHERE event_id = $1`, [
      victim.event_id,
    ]);
    try {
      const { status, body } = await getJson(VERIFY);
      expect(status).toBe(200);
      // The two events before it still verify; the tampered one is the first broken link.
      expect(body).toEqual({
        workspace_id: WORKSPACE,
        ok: false,
        events: 2,
        checked: 2,
        head: { chain_seq: 2, hash: stored[1]!.this_event_hash },
        keyed_from: null,
        gaps: [],
        event_id: victim.event_id,
        chain_seq: 3,
        reason: expect.stringMatching(/^this_event_hash mismatch/),
        ...FRESH,
      });
      // The chain route is a plain read: it shows the stored (forged) payload as it is.
      const [forged] = (await getJson(`${CHAIN}?after_seq=2`)).body.events;
      expect(forged).toEqual({ ...victim, payload: { forged: true } });
    } finally {
      await db.query('UPDATE event_log SET payload = $2::jsonb WHERE event_id = $1', [
        victim.event_id,
        JSON.stringify(victim.payload),
      ]);
    }
    expect((await getJson(VERIFY)).body).toEqual({
      workspace_id: WORKSPACE,
      ...intact(6),
      ...FRESH,
    });
  });

  it('verifies incrementally from ?from=SEQ:HASH and checks each ?expect_head=SEQ:HASH', async () => {
    const at = (i: number) => `${stored[i]!.chain_seq}:${stored[i]!.this_event_hash}`;
    const { body } = await getJson(`${VERIFY}?from=${at(3)}&expect_head=${at(1)}`);
    expect(body).toEqual({ workspace_id: WORKSPACE, ...intact(6), checked: 2, ...FRESH });
    const gone = `6:${'0'.repeat(64)}`;
    const truncated = await getJson(`${VERIFY}?expect_head=${gone}`);
    expect(truncated.body).toMatchObject({
      ok: false,
      events: 6,
      chain_seq: 6,
      event_id: stored[5]!.event_id,
      reason: expect.stringMatching(/^chain no longer extends the verified head #6 /),
    });
    for (const [query, field, error] of [
      ['from=1:2', 'from', 'invalid from "1:2": expected SEQ:HASH'],
      ['expect_head=x', 'expect_head', 'invalid expect_head "x": expected SEQ:HASH'],
      [`from=${at(1)}&from=${at(2)}`, 'from', 'from given 2 times'],
      ['full=1', 'full', 'unknown query parameter "full"; expected from, expect_head'],
    ] as const) {
      const res = await getJson(`${VERIFY}?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body, query).toEqual({ error: expect.stringContaining(error), field });
    }
  });
});

/** The verify route's body for an intact, unkeyed chain of `n` events. */
function intact(n: number) {
  return {
    ok: true,
    events: n,
    checked: n,
    head: { chain_seq: n, hash: stored[n - 1]!.this_event_hash },
    keyed_from: null,
    gaps: [],
  };
}

describe('without a chain store', () => {
  // No sink at all, and a sink that only has counters (no tail/verifyChain).
  const cases: [string, Parameters<typeof createStatusHandler>[0]][] = [
    ['no sink', {}],
    [
      'a stats-only sink',
      { sink: { stats: { appended: 0, failures: 0, outboxDepth: 0, dropped: 0 } } },
    ],
  ];

  it.each(cases)('%s: both routes answer 404 with an error', async (_name, options) => {
    const h = createStatusHandler({ holder, logger: quietLogger(), ...options });
    try {
      for (const path of [CHAIN, `${CHAIN}?limit=2`, VERIFY]) {
        const res = await h(req(path));
        expect(res.status, path).toBe(404);
        expect(await res.json(), path).toEqual({
          error: 'no chain store is configured (pass a durable sink as `sink`)',
        });
      }
    } finally {
      await h.close();
    }
  });
});

describe('methods', () => {
  it.each([CHAIN, VERIFY])('POST %s → 405 with Allow: GET, HEAD', async (path) => {
    const res = await handler(req(path, { method: 'POST', body: '{}' }));
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    expect((await res.json()).error).toBe(
      `method "POST" not allowed on ${path}; allowed: GET, HEAD`,
    );
  });
});
