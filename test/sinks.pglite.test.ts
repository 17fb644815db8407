/**
 * The PGlite sink (the embedded default): migrations, appends through a real holder,
 * chain verification, persistence across reopen, tamper detection — in a temp directory
 * removed afterwards.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BOOT_READY_EVENT,
  EVENT_VOCABULARY,
  emitStateTransition,
  GENERIC_TRANSITION_EVENT,
  makeEmitListener,
  OperationalStateEmitError,
} from '../src/emit.js';
import { createOperationalStateHolder } from '../src/holder.js';
import { applyMigrations, MIGRATIONS } from '../src/sinks/migrations.js';
import { createPgliteSink } from '../src/sinks/pglite.js';
import type { ChainEvent } from '../src/sinks/types.js';
import { makeOperationalState } from '../src/vocabulary.js';
import { chainOk } from './support/chainResult.js';
import { recordingLogger } from './support/logger.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kora-pglite-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const event = (seq: number, over: Partial<ChainEvent> = {}): ChainEvent => ({
  event_type: GENERIC_TRANSITION_EVENT,
  payload: { n: seq },
  workspace_id: 'ws',
  instance_id: 'inst',
  seq,
  occurred_at: '2026-05-21T20:55:00.123Z',
  ...over,
});

describe('migrations', () => {
  it('apply once, in one transaction, record their versions, and are a no-op the second time', async () => {
    const db = await PGlite.create();
    try {
      // A failing migration rolls back entirely, the ones before it included.
      const latest = MIGRATIONS.at(-1)!.version;
      const shipped = MIGRATIONS.map((m) => m.version);
      const bad = [
        ...MIGRATIONS,
        { version: latest + 1, name: 'broken', sql: 'CREATE TABLE x (; oops' },
      ];
      await expect(applyMigrations(db, { migrations: bad })).rejects.toThrow();
      const { rows: none } = await db.query(
        "SELECT to_regclass('event_log') AS t, to_regclass('kora_opstate_migrations') AS m",
      );
      expect(none[0]).toEqual({ t: null, m: null });

      expect(shipped.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
      expect(await applyMigrations(db)).toEqual({ applied: shipped, version: latest });
      expect(await applyMigrations(db)).toEqual({ applied: [], version: latest });
      const { rows } = await db.query<{ version: number; name: string }>(
        'SELECT version, name FROM kora_opstate_migrations ORDER BY version',
      );
      expect(rows).toEqual([
        { version: 1, name: 'event_log' },
        { version: 2, name: 'tickets' },
        { version: 3, name: 'keyed_chain' },
        { version: 4, name: 'async_commit' },
        { version: 5, name: 'fleet_agents' },
        ...MIGRATIONS.slice(5).map((m) => ({ version: m.version, name: m.name })),
      ]);
      // A later feature appends a migration: only that one runs.
      const next = [
        ...MIGRATIONS,
        { version: latest + 1, name: 'later', sql: 'CREATE TABLE later_feature (id int)' },
      ];
      expect(await applyMigrations(db, { migrations: next })).toEqual({
        applied: [latest + 1],
        version: latest + 1,
      });
      expect(await applyMigrations(db, { migrations: next })).toEqual({
        applied: [],
        version: latest + 1,
      });
    } finally {
      await db.close();
    }
  });

  it('refuse out-of-order versions before touching the database', async () => {
    const untouched = { query: () => Promise.reject(new Error('touched')) };
    await expect(
      applyMigrations(untouched, {
        migrations: [...MIGRATIONS, { version: 1, name: 'dup', sql: '' }],
      }),
    ).rejects.toThrow(/strictly increasing/);
  });
});

describe('PGlite sink', () => {
  // One in-memory database for the tests below (each its own workspace and instance ids):
  // a PGlite start costs seconds.
  let shared: PGlite;
  beforeAll(async () => {
    shared = await PGlite.create();
  });
  afterAll(async () => {
    await shared.close();
  });
  it('stores a holder’s events, verifies the chain, and persists across reopen', async () => {
    const dataDir = join(dir, 'persist');
    const sink = createPgliteSink({ workspaceId: 'ws-a', dataDir });
    await sink.start();
    await sink.start();
    const holder = createOperationalStateHolder();
    const emit = makeEmitListener(sink, { instanceId: 'run-1' });
    holder.addListener(emit);
    await holder.send({
      type: 'boot.gates_passed',
      details: {
        gates: [
          {
            gate_id: 'g1',
            gate_class: 'invariant',
            outcome: 'pass',
            attempts: 1,
            elapsed_ms: 2.5,
            detail: 'ok',
          },
        ],
      },
    });
    for (let i = 0; i < 20; i++) {
      await holder.send(
        holder.current.primaryState === 'ready'
          ? { type: 'claim.acquired' }
          : { type: 'claim.released' },
      );
    }
    expect(emit.stats).toEqual({ emitted: 22, failures: 0 });
    expect(sink.stats).toMatchObject({ appended: 22, outboxDepth: 0, failures: 0, dropped: 0 });
    expect(await sink.verifyChain()).toEqual(chainOk(22));

    const tail = await sink.tail({ limit: 3 });
    expect(tail.map((e) => e.seq)).toEqual([20, 21, 22]);
    expect(tail[0]!.prev_event_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(tail[1]!.prev_event_hash).toBe(tail[0]!.this_event_hash);
    const [first, second] = await sink.tail({ limit: 100 });
    expect(first!.prev_event_hash).toBeNull();
    expect(first!.event_type).toBe(GENERIC_TRANSITION_EVENT);
    expect(second!.event_type).toBe(BOOT_READY_EVENT);
    expect(second!.payload).toMatchObject({
      gates: [
        {
          gate_id: 'g1',
          gate_class: 'invariant',
          outcome: 'pass',
          attempts: 1,
          elapsed_ms: 2.5,
          detail: 'ok',
        },
      ],
    });
    expect((await sink.tail({ afterSeq: 20 })).map((e) => e.chain_seq)).toEqual([21, 22]);
    // newest: the last `limit` after the cursor; oldest: the next `limit` after it.
    const seqs = async (o: Parameters<typeof sink.tail>[0]) =>
      (await sink.tail(o)).map((e) => e.chain_seq);
    expect(await seqs({ afterSeq: 10, limit: 3 })).toEqual([20, 21, 22]);
    expect(await seqs({ afterSeq: 10, limit: 3, take: 'oldest' })).toEqual([11, 12, 13]);
    expect(await seqs({ afterSeq: 21, limit: 3, take: 'oldest' })).toEqual([22]);
    await expect(sink.tail({ take: 'middle' as never })).rejects.toThrow(
      'take must be "newest" or "oldest", got "middle"',
    );
    await sink.close();

    // Reopen: the chain continues from the stored head.
    const again = createPgliteSink({ workspaceId: 'ws-a', dataDir });
    await again.start();
    const holder2 = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    holder2.addListener(makeEmitListener(again, { instanceId: 'run-2' }));
    await holder2.send({ type: 'claim.acquired' });
    expect(await again.verifyChain()).toEqual(chainOk(23));
    const [last] = await again.tail({ limit: 1 });
    expect(last).toMatchObject({ instance_id: 'run-2', seq: 1, chain_seq: 23 });
    await again.close();
  });

  it('a retried append is a no-op; workspaces keep separate chains', async () => {
    const at = (seq: number, workspace_id = 'ws-retry') =>
      event(seq, { workspace_id, instance_id: `retry-${workspace_id}` });
    const a = createPgliteSink({ workspaceId: 'ws-retry', db: shared, logger: recordingLogger() });
    const b = createPgliteSink({ workspaceId: 'ws-other', db: shared });
    try {
      await a.start();
      await b.start();
      await a.append([at(1), at(2)]);
      await b.append([at(1, 'ws-other')]);
      await a.append([at(2), at(3)]);
      expect(a.stats.appended).toBe(3);
      expect(await a.verifyChain()).toEqual(chainOk(3));
      expect(await b.verifyChain()).toEqual(chainOk(1));
      expect(await a.verifyChain('ws-other')).toEqual(chainOk(1));
      await expect(a.append([at(9, 'ws-other')])).rejects.toThrow(/"ws-other"/);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('verifyChain names a tampered payload, a broken link and a removed event', async () => {
    const db = shared;
    const sink = createPgliteSink({ workspaceId: 'ws-tamper', db });
    try {
      await sink.start();
      for (let i = 1; i <= 6; i++) {
        await sink.append([event(i, { workspace_id: 'ws-tamper', instance_id: 'tamper' })]);
      }
      const ids = (await sink.tail({ limit: 10 })).map((e) => e.event_id);

      await db.query(`UPDATE event_log SET payload = '{"n": 99}' WHERE event_id = $1`, [ids[2]]);
      const tampered = await sink.verifyChain();
      expect(tampered).toMatchObject({ ok: false, events: 2, eventId: ids[2] });
      expect(tampered.ok === false && tampered.reason).toMatch(/this_event_hash mismatch/);
      await db.query(`UPDATE event_log SET payload = '{"n": 3}' WHERE event_id = $1`, [ids[2]]);
      expect(await sink.verifyChain()).toEqual(chainOk(6));

      // Tampering with the chain_seq-independent fields is caught the same way.
      await db.query(
        `UPDATE event_log SET occurred_at = occurred_at + interval '1 ms' WHERE event_id = $1`,
        [ids[1]],
      );
      expect(await sink.verifyChain()).toMatchObject({ ok: false, eventId: ids[1] });
      await db.query(
        `UPDATE event_log SET occurred_at = occurred_at - interval '1 ms' WHERE event_id = $1`,
        [ids[1]],
      );

      await db.query(`UPDATE event_log SET prev_event_hash = repeat('0', 64) WHERE event_id = $1`, [
        ids[4],
      ]);
      const unlinked = await sink.verifyChain();
      expect(unlinked).toMatchObject({ ok: false, events: 4, eventId: ids[4] });
      expect(unlinked.ok === false && unlinked.reason).toMatch(/does not link/);

      await db.query('DELETE FROM event_log WHERE event_id = $1', [ids[3]]);
      const gap = await sink.verifyChain();
      expect(gap).toMatchObject({ ok: false, eventId: ids[4] });
      expect(gap.ok === false && gap.reason).toMatch(/gap/);
    } finally {
      await sink.close();
    }
  });

  it('the CHECK holds exactly the vocabulary; an unknown type surfaces as OperationalStateEmitError', async () => {
    const logger = recordingLogger();
    const sink = createPgliteSink({ workspaceId: 'ws-check', db: shared, logger });
    try {
      await sink.start();
      let seq = 0;
      for (const t of EVENT_VOCABULARY) {
        await sink.append([
          event(++seq, { event_type: t, workspace_id: 'ws-check', instance_id: 'check' }),
        ]);
      }
      const holder = createOperationalStateHolder();
      await holder.send({ type: 'boot.gates_passed' });
      const [record] = holder.history();
      const booting = makeOperationalState({ primaryState: 'booting' });
      const err = await emitStateTransition(sink, booting, holder.current, record!, {
        logger,
        selectExtra: () => 'kora.boot.exploded',
      }).catch((e) => e);
      expect(err).toBeInstanceOf(OperationalStateEmitError);
      expect(err.eventType).toBe('kora.boot.exploded');
      expect(err.message).toContain('event_log_event_type_vocabulary');
      expect((err.cause as { code?: string }).code).toBe('23514');
      // The change's events are refused together (one append is atomic), not retried.
      expect(sink.stats).toMatchObject({ refused: 2, outboxDepth: 0 });
      expect(await sink.verifyChain()).toEqual(chainOk(4));
      expect(logger.find('error', '[kora.operational_state.emit]')).toHaveLength(1);
    } finally {
      await sink.close();
    }
  });

  it('validates its options', () => {
    expect(() => createPgliteSink({ workspaceId: '' })).toThrow(/workspaceId.*""/);
    expect(() => createPgliteSink({ dataDir: '' })).toThrow(/dataDir/);
    expect(() => createPgliteSink({ outboxLimit: 0 })).toThrow(/outboxLimit.*0/);
  });
});
