/**
 * Several keyed writers on one chain, linked together (migration 7, SPEC §10), on the
 * real PostgreSQL: offers that wait together are linked in one commit by one leader;
 * an offer is refused alone (a CHECK, a reused instance id) and an unsigned one never
 * linked; a leader that dies or fails holding the lock takes the lock with it; a sink
 * switches to offers under contention and back to one statement once alone.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { GENERIC_TRANSITION_EVENT } from '../src/emit.js';
import { appendByOffer, type OfferPool, offerMac } from '../src/sinks/groupLink.js';
import { ChainWriteError, createChainKey } from '../src/sinks/keyed.js';
import { prepare } from '../src/sinks/linking.js';
import { applyMigrations } from '../src/sinks/migrations.js';
import { createPostgresSink } from '../src/sinks/postgres.js';
import { CHAIN_LOCK_CLASS } from '../src/sinks/sql.js';
import type { ChainEvent } from '../src/sinks/types.js';
import { chainOk } from './support/chainResult.js';
import { childEnv } from './support/env.js';
import { recordingLogger } from './support/logger.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const KEY = 'test-chain-key-0123456789abcdefghijklmnop';
const key = createChainKey(KEY);

let db: TestSchema;
const closers: (() => Promise<unknown>)[] = [];
const children = new Set<ChildProcess>();

beforeAll(async () => {
  db = await createTestSchema('grouplink');
  await applyMigrations(db.pool);
}, 60_000);

afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  for (const close of closers.splice(0).reverse()) await close().catch(() => {});
});

afterAll(async () => {
  await db?.drop();
});

let wsCounter = 0;
const freshWorkspace = (label: string) => `ws-${label}-${++wsCounter}`;

const event = (ws: string, instance: string, seq: number, over: Partial<ChainEvent> = {}) =>
  ({
    event_type: GENERIC_TRANSITION_EVENT,
    payload: { from_primary_state: 'ready', to_primary_state: 'active', n: seq },
    workspace_id: ws,
    agent_id: 'agent-a',
    instance_id: `${ws}:${instance}`,
    seq,
    occurred_at: new Date(Date.UTC(2026, 11, 4, 21, 0, 0, seq)).toISOString(),
    ...over,
  }) satisfies ChainEvent;

/** A pool of one connection, as each writer process has its own. */
function writerPool(): pg.Pool {
  const pool = new pg.Pool({ connectionString: db.url, max: 1 });
  closers.push(() => pool.end());
  return pool;
}

function keyedSink(ws: string, pool: OfferPool | pg.Pool = writerPool()) {
  const sink = createPostgresSink({
    workspaceId: ws,
    pool: pool as pg.Pool,
    chainKey: KEY,
    logger: recordingLogger(),
  });
  closers.push(() => sink.close());
  return sink;
}

/** The chain of `ws`, verified with the key. */
async function verify(ws: string) {
  const sink = keyedSink(ws);
  await sink.start();
  return sink.verifyChain();
}

/** A connection holding the chain lock of `ws`, as a leader does. */
async function holdChainLock(ws: string) {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  closers.push(() => c.end());
  await c.query('SELECT pg_advisory_lock($1, hashtext($2))', [CHAIN_LOCK_CLASS, ws]);
  return {
    release: () => c.query('SELECT pg_advisory_unlock($1, hashtext($2))', [CHAIN_LOCK_CLASS, ws]),
  };
}

/** Sessions waiting for the chain lock of `ws` (pg_locks keeps the two keys as oids). */
async function waiters(ws: string): Promise<number> {
  const { rows } = await db.pool.query(
    `SELECT count(*)::int AS n FROM pg_locks
      WHERE locktype = 'advisory' AND NOT granted AND classid = $1::bigint::oid
        AND objid = ((hashtext($2)::bigint + 4294967296) % 4294967296)::oid AND objsubid = 2`,
    [CHAIN_LOCK_CLASS, ws],
  );
  return rows[0].n;
}

const waitForWaiters = (ws: string, n: number) =>
  vi.waitFor(
    async () => {
      expect(await waiters(ws)).toBe(n);
    },
    { timeout: 20_000, interval: 20 },
  );

async function chainRows(ws: string) {
  const { rows } = await db.pool.query(
    `SELECT chain_seq::int, instance_id, seq::int, this_event_hash, xmin::text AS tx
       FROM event_log WHERE workspace_id = $1 ORDER BY chain_seq`,
    [ws],
  );
  return rows as {
    chain_seq: number;
    instance_id: string;
    seq: number;
    this_event_hash: string;
    tx: string;
  }[];
}

async function openOffers(ws: string) {
  const { rows } = await db.pool.query(
    'SELECT offer_id, state, result FROM event_offer WHERE workspace_id = $1 ORDER BY offer_id',
    [ws],
  );
  return rows;
}

/**
 * An append through an offer, as a sink on this server makes it: its leader commits
 * asynchronously and each writer waits on the WAL barrier, no lock held (`barrier`), or,
 * for a role without the barrier, the leader commits synchronously.
 */
const offer = (pool: OfferPool, events: ChainEvent[], barrier = true) =>
  appendByOffer(pool, key, prepare(events), barrier);

describe('several keyed writers on one chain (migration 7)', () => {
  it.each([
    { commit: 'asynchronous, then the WAL barrier', barrier: true },
    { commit: 'synchronous', barrier: false },
  ])(
    'offers that wait together are linked together: one leader, one commit ($commit), each writer answered with its own head',
    async ({ barrier }) => {
      const ws = freshWorkspace('together');
      const lock = await holdChainLock(ws);
      const pools = ['a', 'b', 'c'].map(() => writerPool());
      const appends = pools.map((pool, i) => offer(pool, [event(ws, 'abc'[i]!, 1)], barrier));
      // Each offer is committed before its writer queues on the lock.
      await waitForWaiters(ws, 3);
      expect((await openOffers(ws)).map((o) => o.state)).toEqual(['offered', 'offered', 'offered']);
      await lock.release();
      const results = await Promise.all(appends);

      expect(results.map((r) => r.led).sort()).toEqual([0, 0, 3]);
      const rows = await chainRows(ws);
      expect(rows.map((r) => r.chain_seq)).toEqual([1, 2, 3]);
      expect(new Set(rows.map((r) => r.tx)).size).toBe(1); // one transaction, one commit
      results.forEach((r, i) => {
        const mine = rows.find((row) => row.instance_id === `${ws}:${'abc'[i]}`)!;
        expect(r).toMatchObject({
          stored: 1,
          head: { chain_seq: mine.chain_seq, hash: mine.this_event_hash },
        });
      });
      expect(await openOffers(ws)).toEqual([]); // each writer took its answer away
      // No lock left held: each connection went back to its pool, to be used again.
      expect(pools.map((p) => [p.totalCount, p.idleCount])).toEqual([
        [1, 1],
        [1, 1],
        [1, 1],
      ]);
      expect(await verify(ws)).toEqual(chainOk(3, { keyedFrom: 1 }));
    },
  );

  it('a retried event is left out across offers; the same pair holding another event refuses its offer, naming the position', async () => {
    const ws = freshWorkspace('pairs');
    const lock = await holdChainLock(ws);
    const first = offer(writerPool(), [event(ws, 'p', 1), event(ws, 'p', 1), event(ws, 'p', 2)]);
    await waitForWaiters(ws, 1);
    const again = offer(writerPool(), [event(ws, 'p', 2), event(ws, 'q', 1)]);
    await waitForWaiters(ws, 2);
    const other = offer(writerPool(), [event(ws, 'p', 1, { payload: { another: 'event' } })]);
    other.catch(() => {});
    await waitForWaiters(ws, 3);
    await lock.release();

    // The first in line leads (offers are linked in offer order): p/1 once, p/2 once.
    await expect(first).resolves.toMatchObject({ stored: 2, led: 3, head: { chain_seq: 2 } });
    await expect(again).resolves.toMatchObject({ stored: 1, led: 0, head: { chain_seq: 3 } });
    await expect(other).rejects.toMatchObject({
      code: '23505',
      message: expect.stringContaining(
        `seq 1 is already stored as another event (#1 of workspace "${ws}")`,
      ),
    });
    const rows = await chainRows(ws);
    expect(rows.map((r) => `${r.instance_id.split(':')[1]}/${r.seq}`)).toEqual([
      'p/1',
      'p/2',
      'q/1',
    ]);
    expect(await verify(ws)).toEqual(chainOk(3, { keyedFrom: 1 }));
  });

  it('a writer whose connection is cut while it waits for its turn rejects; the pool drops that connection and its offer is linked by the next leader', async () => {
    const ws = freshWorkspace('cut');
    const lock = await holdChainLock(ws);
    const pool = writerPool();
    const cut = offer(pool, [event(ws, 'cut', 1)]);
    cut.catch(() => {});
    await waitForWaiters(ws, 1);
    const { rows } = await db.pool.query(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1::bigint::oid`,
      [CHAIN_LOCK_CLASS],
    );
    await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    await expect(cut).rejects.toThrow(/terminat/);
    expect(pool.totalCount).toBe(0);
    await lock.release();

    await expect(offer(writerPool(), [event(ws, 'next', 1)])).resolves.toMatchObject({
      stored: 1,
      led: 2,
    });
    expect((await chainRows(ws)).map((r) => r.instance_id.split(':')[1])).toEqual(['cut', 'next']);
    expect(await verify(ws)).toEqual(chainOk(2, { keyedFrom: 1 }));
  });

  it('a leader whose connection dies between its turn and its store rejects, without an unhandled error, and frees the lock', async () => {
    const ws = freshWorkspace('died');
    const pool = writerPool();
    const dying: OfferPool = {
      async connect() {
        const client = (await pool.connect()) as pg.PoolClient & { processID: number };
        return Object.assign(Object.create(client) as typeof client, {
          query: async (text: string, params?: unknown[]) => {
            if (text.includes('kora_opstate_link_offers')) {
              // The server goes away while the leader links (no query in flight): the
              // client reports it as an 'error' event, then ends.
              const ended = new Promise((resolve) => client.once('end', resolve));
              await db.pool.query('SELECT pg_terminate_backend($1)', [client.processID]);
              await ended;
            }
            return client.query(text, params);
          },
          release: (err?: Error | boolean) => client.release(err),
        });
      },
    };
    await expect(offer(dying, [event(ws, 'died', 1)])).rejects.toThrow();
    expect(pool.totalCount).toBe(0);
    await expect(offer(writerPool(), [event(ws, 'next', 1)])).resolves.toMatchObject({
      stored: 1,
      led: 2,
    });
    expect(await verify(ws)).toEqual(chainOk(2, { keyedFrom: 1 }));
  });

  it('a writer whose offer is gone when its turn comes (a crash empties the unlogged table) offers again', async () => {
    const ws = freshWorkspace('lost');
    const lock = await holdChainLock(ws);
    const lost = offer(writerPool(), [event(ws, 'lost', 1)]);
    await waitForWaiters(ws, 1);
    await db.pool.query('DELETE FROM event_offer WHERE workspace_id = $1', [ws]);
    await lock.release();

    await expect(lost).resolves.toMatchObject({ stored: 1, led: 1, head: { chain_seq: 1 } });
    expect(await verify(ws)).toEqual(chainOk(1, { keyedFrom: 1 }));
  });

  it('the offer MAC is HMAC-SHA256 of "kora-opstate offer", the workspace and the JSON text, with the chain key: writers of other versions must agree on it', () => {
    const text = JSON.stringify(prepare([event('ws-mac', 'm', 1)]));
    expect(offerMac(key, 'ws-mac', text)).toBe(
      createHmac('sha256', KEY).update(`kora-opstate offer\nws-mac\n${text}`).digest('hex'),
    );
    expect(offerMac(key, 'ws-other', text)).not.toBe(offerMac(key, 'ws-mac', text));
  });

  it('an offer is refused alone: a CHECK of event_log, a reused instance id; a retried event is skipped', async () => {
    const ws = freshWorkspace('refusals');
    const seed = keyedSink(ws);
    await seed.start();
    await seed.append([event(ws, 'seeded', 1)]);

    const lock = await holdChainLock(ws);
    const good = offer(writerPool(), [event(ws, 'good', 1)]);
    const badType = offer(writerPool(), [
      event(ws, 'bad', 1),
      event(ws, 'bad', 2, { event_type: 'kora.not_a_type' }),
    ]);
    const reusedId = offer(writerPool(), [
      event(ws, 'seeded', 1, { payload: { another: 'event' } }),
    ]);
    const retry = offer(writerPool(), [event(ws, 'seeded', 1), event(ws, 'retry', 1)]);
    for (const p of [good, badType, reusedId, retry]) p.catch(() => {});
    await waitForWaiters(ws, 4);
    await lock.release();

    await expect(good).resolves.toMatchObject({ stored: 1 });
    const refusedType = await badType.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refusedType).toBeInstanceOf(ChainWriteError);
    expect(refusedType).toMatchObject({ code: '23514' });
    expect(String((refusedType as Error).message)).toContain('kora.not_a_type');
    await expect(reusedId).rejects.toMatchObject({
      code: '23505',
      message: expect.stringContaining(`instance id reused: instance "${ws}:seeded" seq 1`),
    });
    await expect(retry).resolves.toMatchObject({ stored: 1 });

    // Nothing of the refused offers, everything of the others, in one verified chain.
    const rows = await chainRows(ws);
    expect(rows.map((r) => `${r.instance_id.split(':')[1]}/${r.seq}`).sort()).toEqual([
      'good/1',
      'retry/1',
      'seeded/1',
    ]);
    expect(await seed.verifyChain()).toEqual(chainOk(3, { keyedFrom: 1 }));
    expect(await openOffers(ws)).toEqual([]);
  });

  it('an offer not signed with the chain key is never linked (a database writer without the key)', async () => {
    const ws = freshWorkspace('forged');
    const lock = await holdChainLock(ws);
    const forged = JSON.stringify(prepare([event(ws, 'forged', 1)]));
    const other = createChainKey('another-chain-key-987654-zyxwvutsrqponmlk');
    await db.pool.query(
      `INSERT INTO event_offer (workspace_id, events, mac) VALUES ($1, $2, 'not-a-mac'), ($1, $2, $3)`,
      [ws, forged, offerMac(other, ws, forged)],
    );
    const genuine = offer(writerPool(), [event(ws, 'genuine', 1)]);
    await waitForWaiters(ws, 1);
    await lock.release();

    await expect(genuine).resolves.toMatchObject({ stored: 1, led: 3, unsigned: 2 });
    expect((await chainRows(ws)).map((r) => r.instance_id)).toEqual([`${ws}:genuine`]);
    const left = await openOffers(ws);
    expect(left.map((o) => [o.state, o.result.code])).toEqual([
      ['refused', '28000'],
      ['refused', '28000'],
    ]);
    expect(left[0].result.message).toContain('not signed with this chain key');
    expect(await verify(ws)).toEqual(chainOk(1, { keyedFrom: 1 }));
  });

  it('a sink that refuses unsigned offers as leader says so in a warning naming the workspace and key', async () => {
    const ws = freshWorkspace('forged-sink');
    const rival = keyedSink(ws);
    await rival.start();
    await rival.append([event(ws, 'rival', 1)]);
    const forged = JSON.stringify(prepare([event(ws, 'forged', 1)]));
    await db.pool.query(
      `INSERT INTO event_offer (workspace_id, events, mac) VALUES ($1, $2, 'not-a-mac')`,
      [ws, forged],
    );
    const logger = recordingLogger();
    const sink = createPostgresSink({
      workspaceId: ws,
      pool: writerPool(),
      chainKey: KEY,
      logger,
    });
    closers.push(() => sink.close());
    await sink.start();
    // It does not know the head the rival made: its one statement misses, it offers and
    // leads the open offers, the forged one among them.
    await sink.append([event(ws, 'me', 1)]);
    expect(logger.find('warn', 'not signed with the chain key')).toEqual([
      expect.stringContaining(
        `refused 1 offer(s) in event_offer of workspace "${ws}" that are not signed with the chain key (key id ${key.keyId})`,
      ),
    ]);
    expect((await chainRows(ws)).map((r) => r.instance_id)).toEqual([`${ws}:rival`, `${ws}:me`]);
    expect(await verify(ws)).toEqual(chainOk(2, { keyedFrom: 1 }));
  });

  it('a leader killed while holding the lock takes the lock with it: the writers behind it go on', async () => {
    const ws = freshWorkspace('killed');
    const text = JSON.stringify(prepare([event(ws, 'killed', 1)]));
    // A writer process that leads, then dies by SIGKILL before it links.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import pg from 'pg';
         const c = new pg.Client({ connectionString: process.env.URL });
         await c.connect();
         const { rows } = await c.query('CALL kora_opstate_offer($1, $2, $3, true, NULL)',
           [process.env.WS, process.env.OFFER, process.env.MAC]);
         process.stdout.write(rows[0].r.state + '\\n');
         setInterval(() => {}, 1000);`,
      ],
      {
        cwd: process.cwd(),
        env: childEnv({ URL: db.url, WS: ws, OFFER: text, MAC: offerMac(key, ws, text) }),
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    children.add(child);
    const said = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out.trim());
      });
      child.once('exit', (code) => reject(new Error(`leader exited ${code} before leading`)));
    });
    expect(said).toBe('lead');

    const behind = ['x', 'y'].map((w) => offer(writerPool(), [event(ws, w, 1)]));
    await waitForWaiters(ws, 2);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;

    const results = await Promise.all(behind);
    // The next leader links every open offer — the dead writer's too: its next run finds
    // it stored (the same event) and skips it.
    expect(results.map((r) => r.led).sort()).toEqual([0, 3]);
    expect((await chainRows(ws)).map((r) => r.instance_id.split(':')[1]).sort()).toEqual([
      'killed',
      'x',
      'y',
    ]);
    expect(await verify(ws)).toEqual(chainOk(3, { keyedFrom: 1 }));
  });

  it('a leader whose store fails drops its connection, not the lock into the pool; its retry finds the events stored', async () => {
    const ws = freshWorkspace('failed');
    const pool = writerPool();
    let fail = true;
    const failing: OfferPool = {
      async connect() {
        const client = await pool.connect();
        return Object.assign(Object.create(client) as typeof client, {
          query: (text: string, params?: unknown[]) => {
            if (fail && text.includes('kora_opstate_link_offers')) {
              return Promise.reject(new Error('connection lost mid-link'));
            }
            return client.query(text, params);
          },
          release: (err?: Error | boolean) => client.release(err),
        });
      },
    };
    const mine = [event(ws, 'failing', 1)];
    await expect(offer(failing, mine)).rejects.toThrow('connection lost mid-link');
    // The connection that held the lock was destroyed, so the lock went with it.
    expect(pool.totalCount).toBe(0);

    const next = await offer(writerPool(), [event(ws, 'next', 1)]);
    expect(next).toMatchObject({ stored: 1, led: 2 }); // its own offer and the failed one
    fail = false;
    await expect(offer(failing, mine)).resolves.toEqual({
      stored: 0,
      head: undefined,
      led: 1,
      unsigned: 0,
    });
    expect(await verify(ws)).toEqual(chainOk(2, { keyedFrom: 1 }));
  });

  it('a sink switches to offers when the head moves under it, and back to one statement once alone', async () => {
    const ws = freshWorkspace('switch');
    const rival = keyedSink(ws);
    await rival.start();
    await rival.append([event(ws, 'rival', 1)]);
    const pool = writerPool();
    const statements: string[] = [];
    const counting = new Proxy(pool, {
      get(target, prop) {
        if (prop === 'query') {
          return (text: string, params?: unknown[]) => {
            const m = /kora_opstate_(append_keyed|offer)\b/.exec(text);
            if (m) statements.push(m[1]!);
            return target.query(text, params);
          };
        }
        if (prop === 'connect') {
          return async () => {
            const client = await target.connect();
            const query = client.query.bind(client);
            return Object.assign(Object.create(client) as typeof client, {
              query: (text: string, params?: unknown[]) => {
                if (/kora_opstate_offer\b/.test(text)) statements.push('offer');
                return query(text, params as never);
              },
              release: (err?: Error | boolean) => client.release(err),
            });
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const sink = keyedSink(ws, counting as unknown as pg.Pool);
    await sink.start();
    statements.length = 0;
    for (let seq = 1; seq <= 10; seq++) await sink.append([event(ws, 'me', seq)]);
    // Its first statement bets on a head it does not know (the rival moved it): it offers,
    // and keeps offering until it has led its own offer alone 8 times in a row; then one
    // statement again.
    expect(statements).toEqual([
      'append_keyed',
      ...Array<string>(8).fill('offer'),
      'append_keyed',
      'append_keyed',
    ]);
    expect(sink.stats).toMatchObject({ appended: 10, failures: 0 });
    expect(await sink.verifyChain()).toEqual(chainOk(11, { keyedFrom: 1 }));
  });
});
