/**
 * The keyed, anchored chain (SPEC §10) on the real PostgreSQL and a real PGlite: every
 * tamper class a database writer without the key can try, each detected and named (the
 * event id and its chain position) — or, where a mode cannot detect it, asserted as such
 * so the documented limit stays true. Also the migration of an unkeyed chain, reused
 * instance ids, incremental verification and gap markers.
 */
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENERIC_TRANSITION_EVENT } from '../src/emit.js';
import type { DurableChainSink, DurableSinkOptions } from '../src/sinks/durable.js';
import { createPgliteSink } from '../src/sinks/pglite.js';
import { createPostgresSink } from '../src/sinks/postgres.js';
import { STORED_ROW_HASH_SQL } from '../src/sinks/sql.js';
import type { ChainEvent, VerifyChainResult } from '../src/sinks/types.js';
import { chainOk } from './support/chainResult.js';
import { recordingLogger } from './support/logger.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const KEY = 'test-chain-key-0123456789abcdefghijklmnop';
const OTHER_KEY = 'another-chain-key-987654-zyxwvutsrqponmlk';

// biome-ignore lint/suspicious/noExplicitAny: raw rows of the tamper queries.
type Query = (text: string, params?: unknown[]) => Promise<{ rows: any[] }>;

interface Backend {
  readonly name: string;
  query: Query;
  sink(workspaceId: string, options?: DurableSinkOptions): DurableChainSink;
}

let pgSchema: TestSchema;
let pglite: PGlite;
const backends: Backend[] = [
  {
    name: 'PostgreSQL',
    query: (text, params) => pgSchema.pool.query(text, params),
    sink: (workspaceId, options = {}) =>
      createPostgresSink({
        workspaceId,
        pool: pgSchema.pool,
        logger: recordingLogger(),
        ...options,
      }),
  },
  {
    name: 'PGlite',
    query: (text, params) => pglite.query(text, params),
    sink: (workspaceId, options = {}) =>
      createPgliteSink({ workspaceId, db: pglite, logger: recordingLogger(), ...options }),
  },
];

beforeAll(async () => {
  [pgSchema, pglite] = await Promise.all([createTestSchema('keyed'), PGlite.create()]);
}, 120_000);

afterAll(async () => {
  await pglite?.close();
  await pgSchema?.drop();
});

let wsCounter = 0;
const freshWorkspace = (label: string) => `ws-${label}-${++wsCounter}`;

const event = (
  ws: string,
  instance: string,
  seq: number,
  over: Partial<ChainEvent> = {},
): ChainEvent => ({
  event_type: GENERIC_TRANSITION_EVENT,
  payload: { from_primary_state: 'ready', to_primary_state: 'active', trigger: `t${seq}`, n: seq },
  workspace_id: ws,
  agent_id: 'agent-a',
  // Instance ids are global (one run): each workspace's runs have their own.
  instance_id: `${ws}:${instance}`,
  seq,
  occurred_at: new Date(Date.UTC(2026, 4, 21, 20, 55, 0, seq)).toISOString(),
  ...over,
});

interface Row {
  event_id: string;
  chain_seq: number;
  prev_event_hash: string | null;
  this_event_hash: string;
  link_alg: string;
}

/** The workspace's rows, in chain order. */
async function rows(b: Backend, ws: string): Promise<Row[]> {
  const { rows } = await b.query(
    `SELECT event_id::text AS event_id, chain_seq::int AS chain_seq, prev_event_hash, this_event_hash, link_alg
       FROM event_log WHERE workspace_id = $1 ORDER BY chain_seq`,
    [ws],
  );
  return rows as Row[];
}

/** A keyed chain of `n` events (instance `i1`, seq 1..n); the sink stays open. */
async function keyedChain(b: Backend, ws: string, n: number, key = KEY) {
  const sink = b.sink(ws, { chainKey: key });
  await sink.start();
  for (let i = 1; i <= n; i++) await sink.append([event(ws, 'i1', i)]);
  return { sink, rows: await rows(b, ws) };
}

/** A fresh verifier (no memory of its own head) holding `key`, or no key (null). */
async function verifier(b: Backend, ws: string, key: string | null = KEY) {
  const sink = b.sink(ws, key === null ? {} : { chainKey: key });
  await sink.start();
  return sink;
}

/** Re-hashes rows `from`..`to` with the unkeyed v1 formula, relinking each; the last hash. */
async function rehashV1(
  b: Backend,
  ws: string,
  from: number,
  to = Infinity,
): Promise<string | null> {
  const all = await rows(b, ws);
  let prev = all.find((r) => r.chain_seq === from - 1)?.this_event_hash ?? null;
  for (const r of all.filter((x) => x.chain_seq >= from && x.chain_seq <= to)) {
    await b.query(
      `UPDATE event_log SET prev_event_hash = $2, link_alg = 'sha256-v1', key_id = NULL WHERE event_id = $1`,
      [r.event_id, prev],
    );
    const { rows: out } = await b.query(
      `UPDATE event_log SET this_event_hash = ${STORED_ROW_HASH_SQL} WHERE event_id = $1 RETURNING this_event_hash`,
      [r.event_id],
    );
    prev = out[0].this_event_hash;
  }
  return prev;
}

function broken(r: VerifyChainResult) {
  expect(r.ok).toBe(false);
  return r as Extract<VerifyChainResult, { ok: false }>;
}

describe.each(backends)('keyed chain on $name: tamper classes', (b) => {
  it('an intact keyed chain verifies with the key, from #1, and holds no key material', async () => {
    const ws = freshWorkspace('intact');
    const { sink } = await keyedChain(b, ws, 6);
    try {
      expect(await sink.verifyChain()).toEqual(chainOk(6, { keyedFrom: 1 }));
      const { rows: stored } = await b.query(
        `SELECT DISTINCT link_alg, key_id, agent_id FROM event_log WHERE workspace_id = $1`,
        [ws],
      );
      expect(stored).toEqual([
        { link_alg: 'hmac-sha256-v2', key_id: sink.keyId, agent_id: 'agent-a' },
      ]);
      expect(sink.keyId).toMatch(/^[0-9a-f]{16}$/);
      // The key itself is nowhere in the database.
      const { rows: leaks } = await b.query(
        `SELECT count(*)::int AS n FROM event_log WHERE event_log::text LIKE '%' || $1 || '%'`,
        [KEY.slice(0, 20)],
      );
      expect(leaks[0].n).toBe(0);
    } finally {
      await sink.close();
    }
  });

  it('a row added by a direct INSERT is named: a made-up keyed link, or an unkeyed v1 row after keyed ones', async () => {
    const ws = freshWorkspace('insert');
    const { sink, rows: before } = await keyedChain(b, ws, 5);
    const head = before.at(-1)!;
    try {
      // A forged keyed row: right position and link, but the writer has no key for the HMAC.
      const { rows: ins } = await b.query(
        `INSERT INTO event_log (event_id, workspace_id, agent_id, instance_id, seq, event_type, payload,
           occurred_at, chain_seq, prev_event_hash, this_event_hash, link_alg, key_id)
         VALUES (gen_random_uuid(), $1, 'agent-a', 'intruder', 1, 'kora.operational_state.transitioned',
           '{"to_primary_state":"stopped"}', now(), 6, $2, repeat('a', 64), 'hmac-sha256-v2', $3)
         RETURNING event_id::text AS event_id`,
        [ws, head.this_event_hash, sink.keyId],
      );
      const v = await verifier(b, ws);
      try {
        const r = broken(await v.verifyChain());
        expect(r).toMatchObject({ eventId: ins[0].event_id, chainSeq: 6, events: 5 });
        expect(r.reason).toMatch(/^keyed link mismatch/);

        // The same row as a well-formed unkeyed v1 event (hash recomputed by the formula).
        await b.query(
          `UPDATE event_log SET link_alg = 'sha256-v1', key_id = NULL WHERE event_id = $1`,
          [ins[0].event_id],
        );
        await b.query(
          `UPDATE event_log SET this_event_hash = ${STORED_ROW_HASH_SQL} WHERE event_id = $1`,
          [ins[0].event_id],
        );
        const r2 = broken(await v.verifyChain());
        expect(r2).toMatchObject({ eventId: ins[0].event_id, chainSeq: 6, keyedFrom: 1 });
        expect(r2.reason).toMatch(/^unkeyed event after the chain became keyed/);
      } finally {
        await v.close();
      }
    } finally {
      await sink.close();
    }
  });

  it('kora_opstate_append by someone else is refused on a keyed chain (nothing stored)', async () => {
    const ws = freshWorkspace('fn');
    const { sink } = await keyedChain(b, ws, 3);
    try {
      const err = await b
        .query('SELECT kora_opstate_append($1::jsonb)', [JSON.stringify([event(ws, 'other', 1)])])
        .catch((e) => e);
      expect(err).toMatchObject({ code: '23000' });
      expect(err.message).toBe(
        `chain of workspace "${ws}" is keyed (head #3); append with the chain key`,
      );
      // An unkeyed sink is refused the same way: counted as refused, not retried.
      const unkeyed = b.sink(ws);
      await unkeyed.start();
      try {
        await expect(unkeyed.append([event(ws, 'other', 1)])).rejects.toMatchObject({
          code: '23000',
        });
        expect(unkeyed.stats).toMatchObject({ refused: 1, appended: 0, outboxDepth: 0 });
      } finally {
        await unkeyed.close();
      }
      expect((await rows(b, ws)).length).toBe(3);
      expect(await sink.verifyChain()).toEqual(chainOk(3, { keyedFrom: 1 }));
    } finally {
      await sink.close();
    }
  });

  it('an altered payload is named', async () => {
    const ws = freshWorkspace('alter');
    const { sink, rows: all } = await keyedChain(b, ws, 6);
    try {
      const victim = all[3]!;
      await b.query(
        `UPDATE event_log SET payload = jsonb_set(payload, '{to_primary_state}', '"stopped"') WHERE event_id = $1`,
        [victim.event_id],
      );
      const r = broken(await sink.verifyChain());
      expect(r).toMatchObject({ eventId: victim.event_id, chainSeq: 4, events: 3, checked: 3 });
      expect(r.reason).toMatch(/^keyed link mismatch/);
      // Any covered field: the agent id too.
      await b.query(
        `UPDATE event_log SET payload = jsonb_set(payload, '{to_primary_state}', '"active"'), agent_id = 'agent-b' WHERE event_id = $1`,
        [victim.event_id],
      );
      expect(broken(await sink.verifyChain())).toMatchObject({
        eventId: victim.event_id,
        chainSeq: 4,
      });
    } finally {
      await sink.close();
    }
  });

  it('reordered rows are named, also when the writer relinks prev_event_hash to match', async () => {
    const ws = freshWorkspace('reorder');
    const { sink, rows: all } = await keyedChain(b, ws, 6);
    try {
      const [r3, r4] = [all[2]!, all[3]!];
      const swap = async () => {
        await b.query('UPDATE event_log SET chain_seq = 1000000 WHERE event_id = $1', [
          r3.event_id,
        ]);
        await b.query('UPDATE event_log SET chain_seq = 3 WHERE event_id = $1', [r4.event_id]);
        await b.query('UPDATE event_log SET chain_seq = 4 WHERE event_id = $1', [r3.event_id]);
      };
      await swap();
      const r = broken(await sink.verifyChain());
      expect(r).toMatchObject({ eventId: r4.event_id, chainSeq: 3, events: 2 });
      expect(r.reason).toMatch(/does not link/);
      // Relinked: #3 now points at #2, #4 at #3, #5 at #4 — the links hold, the HMACs do not.
      await b.query('UPDATE event_log SET prev_event_hash = $2 WHERE event_id = $1', [
        r4.event_id,
        all[1]!.this_event_hash,
      ]);
      await b.query('UPDATE event_log SET prev_event_hash = $2 WHERE event_id = $1', [
        r3.event_id,
        r4.this_event_hash,
      ]);
      await b.query('UPDATE event_log SET prev_event_hash = $2 WHERE event_id = $1', [
        all[4]!.event_id,
        r3.this_event_hash,
      ]);
      const r2 = broken(await sink.verifyChain());
      expect(r2).toMatchObject({ eventId: r4.event_id, chainSeq: 3 });
      expect(r2.reason).toMatch(/^keyed link mismatch/);
    } finally {
      await sink.close();
    }
  });

  it('a middle row edited and everything after it re-hashed with the v1 formula is named', async () => {
    const ws = freshWorkspace('rehash');
    const { sink, rows: all } = await keyedChain(b, ws, 8);
    try {
      const victim = all[4]!;
      await b.query(`UPDATE event_log SET payload = '{"forged": true}' WHERE event_id = $1`, [
        victim.event_id,
      ]);
      await rehashV1(b, ws, 5);
      const v = await verifier(b, ws);
      try {
        const r = broken(await v.verifyChain());
        expect(r).toMatchObject({ eventId: victim.event_id, chainSeq: 5, events: 4, keyedFrom: 1 });
        expect(r.reason).toMatch(/^unkeyed event after the chain became keyed/);
        // Keeping the keyed label with the v1 hash: the HMAC does not verify.
        await b.query(
          `UPDATE event_log SET link_alg = 'hmac-sha256-v2', key_id = $2 WHERE event_id = $1`,
          [victim.event_id, sink.keyId],
        );
        const r2 = broken(await v.verifyChain());
        expect(r2).toMatchObject({ eventId: victim.event_id, chainSeq: 5 });
        expect(r2.reason).toMatch(/^keyed link mismatch/);
      } finally {
        await v.close();
      }
    } finally {
      await sink.close();
    }
  });

  it('a middle row deleted is named, also when the rows after it are renumbered and relinked', async () => {
    const ws = freshWorkspace('delete');
    const { sink, rows: all } = await keyedChain(b, ws, 7);
    try {
      await b.query('DELETE FROM event_log WHERE event_id = $1', [all[3]!.event_id]);
      const r = broken(await sink.verifyChain());
      expect(r).toMatchObject({ eventId: all[4]!.event_id, chainSeq: 5, events: 3 });
      expect(r.reason).toBe('chain position gap: expected 4, found 5 (events removed)');
      // Close the hole: #5..#7 become #4..#6, #4 relinked to #3.
      for (const row of all.slice(4)) {
        await b.query('UPDATE event_log SET chain_seq = chain_seq - 1 WHERE event_id = $1', [
          row.event_id,
        ]);
      }
      await b.query('UPDATE event_log SET prev_event_hash = $2 WHERE event_id = $1', [
        all[4]!.event_id,
        all[2]!.this_event_hash,
      ]);
      const v = await verifier(b, ws);
      try {
        const r2 = broken(await v.verifyChain());
        expect(r2).toMatchObject({ eventId: all[4]!.event_id, chainSeq: 4, events: 3 });
        expect(r2.reason).toMatch(/^keyed link mismatch/);
      } finally {
        await v.close();
      }
    } finally {
      await sink.close();
    }
  });

  it('the last rows deleted: caught by the appending sink, a remembered or an expected head — not without one', async () => {
    const ws = freshWorkspace('truncate');
    const { sink, rows: all } = await keyedChain(b, ws, 8);
    try {
      const head = { chain_seq: 8, hash: all[7]!.this_event_hash };
      await b.query('DELETE FROM event_log WHERE workspace_id = $1 AND chain_seq > 6', [ws]);
      // The running sink remembers the head it appended.
      const own = broken(await sink.verifyChain());
      expect(own).toMatchObject({ eventId: null, chainSeq: 8, events: 6 });
      expect(own.reason).toBe(
        `chain no longer extends the verified head #8 (${head.hash.slice(0, 12)}…): tail truncated or rewritten (the chain now ends at #6)`,
      );
      const v = await verifier(b, ws);
      try {
        // Undetectable without an anchor: what is left is a well-formed shorter chain.
        expect(await v.verifyChain()).toEqual(chainOk(6, { keyedFrom: 1 }));
        // An expected head kept elsewhere (--expect-head), and incremental from a remembered one.
        expect(broken(await v.verifyChain(undefined, { expectHeads: [head] }))).toMatchObject({
          chainSeq: 8,
          eventId: null,
        });
        const inc = broken(await v.verifyChain(undefined, { from: head }));
        expect(inc).toMatchObject({ chainSeq: 8, eventId: null, checked: 0 });
        expect(inc.reason).toMatch(/no longer extends the verified head #8 .*now ends at #6/);
        // A head that was replaced (same position, other hash) is named by its event.
        const forgedHead = { chain_seq: 6, hash: 'f'.repeat(64) };
        const replaced = broken(await v.verifyChain(undefined, { expectHeads: [forgedHead] }));
        expect(replaced).toMatchObject({ chainSeq: 6, eventId: all[5]!.event_id });
        expect(replaced.reason).toMatch(/#6 now holds /);
      } finally {
        await v.close();
      }
    } finally {
      await sink.close();
    }
  });

  it('every row deleted: caught with an anchor; without one the workspace is just empty', async () => {
    const ws = freshWorkspace('wipe');
    const { sink, rows: all } = await keyedChain(b, ws, 4);
    try {
      const head = { chain_seq: 4, hash: all[3]!.this_event_hash };
      await b.query('DELETE FROM event_log WHERE workspace_id = $1', [ws]);
      const v = await verifier(b, ws);
      try {
        expect(await v.verifyChain()).toEqual(chainOk(0));
        const r = broken(await v.verifyChain(undefined, { from: head }));
        expect(r.reason).toMatch(/tail truncated or rewritten \(the chain is now empty\)$/);
        expect(broken(await v.verifyChain(undefined, { expectHeads: [head] }))).toMatchObject({
          chainSeq: 4,
          events: 0,
        });
      } finally {
        await v.close();
      }
      expect(broken(await sink.verifyChain())).toMatchObject({ chainSeq: 4, eventId: null });
    } finally {
      await sink.close();
    }
  });

  it('the whole chain rewritten as an unkeyed one: caught only through an anchor', async () => {
    const ws = freshWorkspace('downgrade');
    const { sink, rows: all } = await keyedChain(b, ws, 5);
    try {
      await b.query(`UPDATE event_log SET payload = '{"forged": true}' WHERE event_id = $1`, [
        all[1]!.event_id,
      ]);
      await rehashV1(b, ws, 1);
      const v = await verifier(b, ws);
      try {
        // Documented limit: a consistent unkeyed chain is what an unkeyed history looks like.
        expect(await v.verifyChain()).toEqual(chainOk(5));
        const head = { chain_seq: 5, hash: all[4]!.this_event_hash };
        const r = broken(await v.verifyChain(undefined, { expectHeads: [head] }));
        expect(r).toMatchObject({ chainSeq: 5, eventId: all[4]!.event_id });
      } finally {
        await v.close();
      }
      expect(broken(await sink.verifyChain())).toMatchObject({ chainSeq: 5 });
    } finally {
      await sink.close();
    }
  });

  it('without the key, or with another, a keyed chain fails saying so (never ok)', async () => {
    const ws = freshWorkspace('nokey');
    const { sink, rows: all } = await keyedChain(b, ws, 3);
    const none = await verifier(b, ws, null);
    const other = await verifier(b, ws, OTHER_KEY);
    try {
      const r = broken(await none.verifyChain());
      expect(r).toMatchObject({ eventId: all[0]!.event_id, chainSeq: 1, events: 0, keyedFrom: 1 });
      expect(r.reason).toBe(
        `the chain is keyed from #1 (key id ${sink.keyId}): verifying it needs the chain key`,
      );
      const r2 = broken(await other.verifyChain());
      expect(r2.reason).toBe(
        `keyed with another key (key id ${sink.keyId}, yours ${other.keyId}): another chain key, or a forged event`,
      );
      expect(other.keyId).not.toBe(sink.keyId);
    } finally {
      await Promise.all([sink.close(), none.close(), other.close()]);
    }
  });
});

describe.each(backends)('keyed chain on $name: migration, reuse, incremental, gaps', (b) => {
  it('an unkeyed chain continued by a keyed sink verifies; tampering before the switch is still named', async () => {
    const ws = freshWorkspace('migrate');
    const plain = b.sink(ws);
    await plain.start();
    for (let i = 1; i <= 5; i++) await plain.append([event(ws, 'old-run', i)]);
    await plain.close();
    const { sink } = await keyedChain(b, ws, 4);
    try {
      const all = await rows(b, ws);
      expect(all.map((r) => r.link_alg)).toEqual([
        ...Array(5).fill('sha256-v1'),
        ...Array(4).fill('hmac-sha256-v2'),
      ]);
      expect(all[5]!.prev_event_hash).toBe(all[4]!.this_event_hash);
      expect(await sink.verifyChain()).toEqual(chainOk(9, { keyedFrom: 6 }));
      // The unkeyed part verifies without the key, up to the switch.
      const keyless = await verifier(b, ws, null);
      try {
        expect(broken(await keyless.verifyChain())).toMatchObject({ chainSeq: 6, events: 5 });
      } finally {
        await keyless.close();
      }

      // Tampering before the switch: the v1 hash names the row.
      await b.query(`UPDATE event_log SET payload = '{"n": 99}' WHERE event_id = $1`, [
        all[1]!.event_id,
      ]);
      const r = broken(await sink.verifyChain());
      expect(r).toMatchObject({ eventId: all[1]!.event_id, chainSeq: 2, events: 1 });
      expect(r.reason).toMatch(/^this_event_hash mismatch/);
      // Re-hashing the unkeyed prefix to match: the first keyed event no longer links to
      // it, and relinking it breaks its keyed link (which covers prev_event_hash).
      const newTail = await rehashV1(b, ws, 2, 5);
      const unlinked = broken(await sink.verifyChain());
      expect(unlinked).toMatchObject({ eventId: all[5]!.event_id, chainSeq: 6, events: 5 });
      expect(unlinked.reason).toMatch(/does not link/);
      await b.query('UPDATE event_log SET prev_event_hash = $2 WHERE event_id = $1', [
        all[5]!.event_id,
        newTail,
      ]);
      const r2 = broken(await sink.verifyChain());
      expect(r2).toMatchObject({ eventId: all[5]!.event_id, chainSeq: 6, events: 5 });
      expect(r2.reason).toMatch(/^keyed link mismatch/);
    } finally {
      await sink.close();
    }
  });

  it('a reused instance id is refused and counted; an identical retry is a no-op (keyed and unkeyed)', async () => {
    for (const key of [KEY, undefined]) {
      const ws = freshWorkspace(key ? 'reuse-keyed' : 'reuse-plain');
      const first = b.sink(ws, key ? { chainKey: key } : {});
      await first.start();
      const batch = [event(ws, 'run-1', 1), event(ws, 'run-1', 2)];
      await first.append(batch);
      await first.append(batch); // a retry of stored events: skipped
      expect(first.stats).toMatchObject({ appended: 2, refused: 0 });
      await first.close();

      const logger = recordingLogger();
      const second = b.sink(ws, { ...(key ? { chainKey: key } : {}), logger });
      await second.start();
      try {
        // Another run under the same instance id: seq 2 is another event (another trigger).
        const err = await second
          .append([
            event(ws, 'run-1', 2, { payload: { trigger: 'another run' } }),
            event(ws, 'run-1', 3),
          ])
          .catch((e) => e);
        expect(err).toMatchObject({ code: '23505' });
        expect(err.message).toBe(
          `instance id reused: instance "${ws}:run-1" seq 2 is already stored as another event (#2 of workspace "${ws}"); an instance id must be unique per run`,
        );
        expect(second.stats).toMatchObject({ refused: 2, appended: 0, outboxDepth: 0 });
        expect(logger.find('error', 'instance id reused')).toHaveLength(1);
        expect((await rows(b, ws)).length).toBe(2);
        expect(await second.verifyChain()).toEqual(chainOk(2, { keyedFrom: key ? 1 : null }));
      } finally {
        await second.close();
      }
    }
  });

  it('incremental verification checks only the events after a verified head; gap markers are listed', async () => {
    const ws = freshWorkspace('incremental');
    const { sink } = await keyedChain(b, ws, 10);
    try {
      const first = await sink.verifyChain();
      expect(first).toEqual(chainOk(10, { keyedFrom: 1 }));
      const gap = {
        instance_id: 'i1',
        from_seq: 13,
        to_seq: 20,
        dropped: 8,
        reason: 'spool overflow: the store was unreachable too long',
      };
      await sink.append([event(ws, 'i1', 11), event(ws, 'i1', 12)]);
      await sink.append([
        event(ws, 'i1', 13, { event_type: 'kora.chain.gap', payload: gap }),
        event(ws, 'i1', 21),
      ]);
      const next = await sink.verifyChain(undefined, { from: first.head! });
      expect(next).toEqual({
        ...chainOk(14, { keyedFrom: 1, checked: 4 }),
        gaps: [{ chain_seq: 13, ...gap }],
      });
      // A later incremental run still lists the gap (before its start).
      const last = await sink.verifyChain(undefined, { from: next.head! });
      expect(last).toMatchObject({ ok: true, checked: 0, events: 14, gaps: [{ chain_seq: 13 }] });
      expect((await sink.verifyChain()).gaps).toEqual(next.gaps);
      // Options are checked.
      await expect(
        sink.verifyChain(undefined, { from: { chain_seq: 0, hash: 'x' } }),
      ).rejects.toThrow(/from must be \{ chain_seq: a positive integer, hash: 64 lowercase hex \}/);
    } finally {
      await sink.close();
    }
  });
});

describe('keyed sink options and appends', () => {
  it('a key shorter than 16 bytes is refused at creation without echoing it', () => {
    const short = 'short-secret';
    let err: unknown;
    try {
      createPostgresSink({ pool: pgSchema.pool, chainKey: short });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ field: 'chainKey' });
    expect((err as Error).message).toBe('chainKey must be at least 16 bytes, got 12');
    expect(JSON.stringify(err)).not.toContain(short);
    expect(String((err as { value: unknown }).value)).not.toContain(short);
    expect(() => createPgliteSink({ dataDir: 'memory://', chainKey: 42 as never })).toThrow(
      /chainKey must be a string or a Uint8Array, got number/,
    );
    // Bytes work as well as text.
    expect(() =>
      createPgliteSink({ dataDir: 'memory://', chainKey: new Uint8Array(16) }),
    ).not.toThrow();
  });

  it('a keyed sink refuses an occurred_at it could not link as stored (not millisecond ISO UTC)', async () => {
    const ws = freshWorkspace('time');
    const sink = backends[0]!.sink(ws, { chainKey: KEY });
    await sink.start();
    try {
      for (const bad of [
        '2026-05-21T20:55:00Z',
        '2026-05-21T20:55:00.000+00:00',
        '2026-13-01T00:00:00.000Z',
      ]) {
        await expect(sink.append([event(ws, 'i', 1, { occurred_at: bad })])).rejects.toThrow(
          `occurred_at must be a millisecond ISO-8601 UTC time (YYYY-MM-DDTHH:MM:SS.mmmZ) on a keyed chain, got "${bad}"`,
        );
      }
      expect(sink.stats).toMatchObject({ appended: 0, outboxDepth: 0 });
    } finally {
      await sink.close();
    }
  });

  it('an event type outside the vocabulary is refused by name on a keyed chain, not retried', async () => {
    const ws = freshWorkspace('check');
    const sink = backends[0]!.sink(ws, { chainKey: KEY });
    await sink.start();
    try {
      const err = await sink
        .append([event(ws, 'c', 1), event(ws, 'c', 2, { event_type: 'kora.boot.exploded' })])
        .catch((e) => e);
      expect(err).toMatchObject({ code: '23514', constraint: 'event_log_event_type_vocabulary' });
      expect(err.message).toMatch(
        new RegExp(
          `^event_log refused event type kora\\.boot\\.exploded \\(instance ${ws}:c, seq 2\\)`,
        ),
      );
      expect(sink.stats).toMatchObject({ refused: 2, appended: 0 });
      expect(await sink.verifyChain()).toEqual(chainOk(0));
    } finally {
      await sink.close();
    }
  });

  it.each(backends)(
    '$name: a writer that finds the head moved stops betting on it (PostgreSQL: offers, and keeps offering; PGlite: relinks, then appends holding the lock)',
    async (b) => {
      const ws = freshWorkspace('contended');
      const rival = b.sink(ws, { chainKey: KEY });
      await rival.start();
      let rivalSeq = 0;
      let locked = 0;
      // Before each of the sink's one-statement appends the rival appends first, so the
      // head the sink linked to is never the head any more.
      const interfere = async (text: string) => {
        if (text.includes('kora_opstate_append_keyed')) {
          await rival.append([event(ws, 'rival', ++rivalSeq)]);
        }
      };
      let sink: DurableChainSink;
      if (b.name === 'PGlite') {
        const session = {
          query: async (text: string, params?: unknown[]) => {
            await interfere(text);
            return pglite.query(text, params);
          },
          exec: (text: string) => pglite.exec(text),
          transaction: <T>(fn: (tx: never) => Promise<T>) => {
            locked++;
            return pglite.transaction((tx) => fn(tx as never));
          },
        };
        sink = createPgliteSink({ workspaceId: ws, db: session as never, chainKey: KEY });
      } else {
        const pool = pgSchema.pool;
        let started = false;
        const proxy = new Proxy(pool, {
          get(target, prop) {
            if (prop === 'query') {
              return async (text: string, params?: unknown[]) => {
                await interfere(text);
                return target.query(text, params);
              };
            }
            if (prop === 'connect') {
              return () => {
                if (started) locked++; // after start: the sink's offers
                return target.connect();
              };
            }
            const v = Reflect.get(target, prop, target);
            return typeof v === 'function' ? v.bind(target) : v;
          },
        });
        sink = createPostgresSink({ workspaceId: ws, pool: proxy, chainKey: KEY });
        await sink.start();
        started = true;
      }
      await sink.start();
      try {
        await sink.append([event(ws, 'me', 1), event(ws, 'me', 2)]);
        await sink.append([event(ws, 'me', 3)]);
        expect(locked).toBe(2);
        // PGlite: two one-statement tries per append; PostgreSQL: one, then (contended)
        // none — the second append goes straight to an offer.
        const total = b.name === 'PGlite' ? 7 : 4;
        expect(rivalSeq).toBe(total - 3);
        expect(sink.stats).toMatchObject({ appended: 3, failures: 0 });
        expect(await sink.verifyChain()).toEqual(chainOk(total, { keyedFrom: 1 }));
        expect(sink.head).toEqual({
          chain_seq: total,
          hash: (await rows(b, ws))[total - 1]!.this_event_hash,
        });
      } finally {
        await sink.close();
        await rival.close();
      }
    },
  );

  it('keyed and unkeyed-by-function appends serialize on one lock: 3 keyed writers at once, one chain', async () => {
    const ws = freshWorkspace('concurrent');
    const sinks = [1, 2, 3].map(() => backends[0]!.sink(ws, { chainKey: KEY }));
    await Promise.all(sinks.map((s) => s.start()));
    try {
      await Promise.all(
        sinks.map(async (s, w) => {
          for (let i = 1; i <= 60; i++) {
            await s.append([event(ws, `w${w}`, 2 * i - 1), event(ws, `w${w}`, 2 * i)]);
          }
        }),
      );
      const all = await rows(backends[0]!, ws);
      expect(all.map((r) => r.chain_seq)).toEqual(Array.from({ length: 360 }, (_, i) => i + 1));
      expect(await sinks[0]!.verifyChain()).toEqual(chainOk(360, { keyedFrom: 1 }));
      // Each sink knows the head after its own last append, and the chain still holds it.
      for (const s of sinks)
        expect(s.head).toMatchObject({ hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
      for (const s of sinks) expect((await s.verifyChain()).ok).toBe(true);
    } finally {
      await Promise.all(sinks.map((s) => s.close()));
    }
  });
});
