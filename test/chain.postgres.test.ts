/**
 * The hash-chained event log on the machine's real PostgreSQL (127.0.0.1:5432), in a
 * schema of its own: several processes sharing one workspace's chain, tamper detection,
 * the vocabulary CHECK, retried appends.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EVENT_VOCABULARY,
  emitStateTransition,
  GENERIC_TRANSITION_EVENT,
  OperationalStateEmitError,
} from '../src/emit.js';
import { createOperationalStateHolder } from '../src/holder.js';
import { applyMigrations, MIGRATIONS } from '../src/sinks/migrations.js';
import { createPostgresSink } from '../src/sinks/postgres.js';
import type { ChainEvent } from '../src/sinks/types.js';
import { makeOperationalState } from '../src/vocabulary.js';
import { chainOk } from './support/chainResult.js';
import { childEnv } from './support/env.js';
import { recordingLogger } from './support/logger.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const writer = fileURLToPath(new URL('./support/chainWriter.ts', import.meta.url));

let db: TestSchema;

beforeAll(async () => {
  db = await createTestSchema('chain');
});

afterAll(async () => {
  await db?.drop();
});

interface WriterReport {
  instanceId: string;
  flushed: boolean;
  emit: { emitted: number; failures: number };
  sink: { appended: number; failures: number; dropped: number; outboxDepth: number };
}

/** Writers still running: a failed test does not leave them behind. */
const writers = new Set<ChildProcess>();
afterAll(() => {
  for (const child of writers) child.kill('SIGKILL');
});

/** Starts a writer; `ready` resolves once it has started (and migrated). */
function startWriter(env: Record<string, string>): {
  ready: Promise<void>;
  go(): void;
  report: Promise<WriterReport>;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', writer], {
    env: childEnv(env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  writers.add(child);
  child.once('exit', () => writers.delete(child));
  let out = '';
  let err = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  child.stdout.on('data', (d) => {
    out += d;
    if (out.startsWith('ready\n')) onReady();
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  const report = new Promise<WriterReport>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`chainWriter exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!));
      } catch {
        reject(new Error(`chainWriter printed no report: ${out} ${err}`));
      }
    });
  });
  // A writer that dies before `ready` must fail the test, not hang it.
  return {
    ready: Promise.race([ready, report.then(() => {})]),
    go: () => child.stdin.end('go\n'),
    report,
  };
}

const event = (instance: string, seq: number, over: Partial<ChainEvent> = {}): ChainEvent => ({
  event_type: GENERIC_TRANSITION_EVENT,
  payload: { from_primary_state: 'ready', to_primary_state: 'active', seq },
  workspace_id: 'ws-unit',
  instance_id: instance,
  seq,
  occurred_at: new Date().toISOString(),
  ...over,
});

describe('event log on PostgreSQL', () => {
  // Unkeyed, the database links; keyed, each writer links with the key, and writers that
  // find the head moved offer their events to be linked together (migration 7).
  it.each([
    { mode: 'unkeyed', ws: 'ws-shared', key: undefined },
    { mode: 'keyed', ws: 'ws-shared-keyed', key: 'test-chain-key-0123456789abcdefghijklmnop' },
  ])(
    '4 processes × 250 transitions share one $mode chain: 1,000 events once each, seq gapless, chain ok',
    async ({ mode, ws, key }) => {
      const instances = ['w1', 'w2', 'w3', 'w4'].map((w) => `${w}-${mode}-${db.schema}`);
      // All four start (and migrate) at once, then write at once.
      const writers = instances.map((instance) =>
        startWriter({
          CHAIN_URL: db.url,
          CHAIN_WORKSPACE: ws,
          CHAIN_INSTANCE: instance,
          CHAIN_TRANSITIONS: '250',
          ...(key ? { CHAIN_KEY: key } : {}),
        }),
      );
      await Promise.all(writers.map((w) => w.ready));
      for (const w of writers) w.go();
      const reports = await Promise.all(writers.map((w) => w.report));
      for (const r of reports) {
        expect(r).toMatchObject({
          flushed: true,
          emit: { emitted: 250, failures: 0 },
          sink: { appended: 250, dropped: 0, outboxDepth: 0 },
        });
      }
      const { rows } = await db.pool.query<{ instance_id: string; seqs: string[]; n: string }>(
        `SELECT instance_id, array_agg(seq ORDER BY chain_seq)::text[] AS seqs, count(*) AS n
         FROM event_log WHERE workspace_id = $1 GROUP BY instance_id ORDER BY instance_id`,
        [ws],
      );
      expect(rows.map((r) => r.instance_id)).toEqual([...instances].sort());
      for (const r of rows) {
        // Each instance's events: seq 1..250, once each, in their commit order along the chain.
        expect(r.seqs.map(Number)).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
      }
      const { rows: chain } = await db.pool.query<{
        n: string;
        lo: string;
        hi: string;
        heads: string;
      }>(
        `SELECT count(*) AS n, min(chain_seq) AS lo, max(chain_seq) AS hi,
              count(*) FILTER (WHERE prev_event_hash IS NULL) AS heads
         FROM event_log WHERE workspace_id = $1`,
        [ws],
      );
      expect(chain[0]).toEqual({ n: '1000', lo: '1', hi: '1000', heads: '1' });
      // The processes really interleaved on the one chain.
      const { rows: switches } = await db.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM (
         SELECT instance_id, lag(instance_id) OVER (ORDER BY chain_seq) AS prev
           FROM event_log WHERE workspace_id = $1) s
        WHERE prev IS DISTINCT FROM instance_id`,
        [ws],
      );
      expect(Number(switches[0]!.n)).toBeGreaterThan(4);

      const sink = createPostgresSink({ workspaceId: ws, pool: db.pool, chainKey: key });
      await sink.start();
      try {
        expect(await sink.verifyChain()).toEqual(chainOk(1000, key ? { keyedFrom: 1 } : {}));
        const { rows: migrations } = await db.pool.query(
          'SELECT version FROM kora_opstate_migrations ORDER BY version',
        );
        // Four processes started at once, yet each migration ran once.
        expect(migrations).toEqual(MIGRATIONS.map((m) => ({ version: m.version })));
      } finally {
        await sink.close();
      }
    },
    60_000,
  );

  it('verifyChain names the event whose stored payload was tampered with', async () => {
    const sink = createPostgresSink({ workspaceId: 'ws-tamper', pool: db.pool });
    await sink.start();
    try {
      for (let i = 1; i <= 50; i++) {
        await sink.append([event('tamper', i, { workspace_id: 'ws-tamper' })]);
      }
      expect(await sink.verifyChain()).toEqual(chainOk(50));
      const { rows } = await db.pool.query<{ event_id: string }>(
        `SELECT event_id::text FROM event_log WHERE workspace_id = 'ws-tamper' AND chain_seq = 37`,
      );
      const victim = rows[0]!.event_id;
      await db.pool.query(
        `UPDATE event_log SET payload = jsonb_set(payload, '{to_primary_state}', '"stopped"') WHERE event_id = $1`,
        [victim],
      );
      const result = await sink.verifyChain();
      expect(result).toMatchObject({ ok: false, events: 36, eventId: victim });
      expect(result.ok === false && result.reason).toMatch(/this_event_hash mismatch/);
    } finally {
      await sink.close();
    }
  });

  it('an event type outside the vocabulary is refused by the CHECK and surfaces as OperationalStateEmitError', async () => {
    const logger = recordingLogger();
    const sink = createPostgresSink({ workspaceId: 'ws-check', pool: db.pool, logger });
    await sink.start();
    try {
      // Every vocabulary type is accepted.
      let seq = 0;
      for (const t of EVENT_VOCABULARY) {
        await sink.append([event('check', ++seq, { workspace_id: 'ws-check', event_type: t })]);
      }
      // A well-formed type (it passes the emitter's preflight) outside the vocabulary.
      const direct = await sink
        .append([
          event('check', ++seq, { workspace_id: 'ws-check', event_type: 'kora.boot.exploded' }),
        ])
        .catch((e) => e);
      expect(direct).toMatchObject({
        code: '23514',
        constraint: 'event_log_event_type_vocabulary',
      });
      expect(direct.message).toContain('kora.boot.exploded');

      const holder = createOperationalStateHolder();
      await holder.send({ type: 'boot.gates_passed' });
      const [record] = holder.history();
      const err = await emitStateTransition(
        sink,
        makeOperationalState({ primaryState: 'booting' }),
        holder.current,
        record!,
        { logger, selectExtra: () => 'kora.boot.exploded' },
      ).catch((e) => e);
      expect(err).toBeInstanceOf(OperationalStateEmitError);
      expect(err.eventType).toBe('kora.boot.exploded');
      expect(err.message).toMatch(/"kora\.boot\.exploded".*event_log_event_type_vocabulary/);
      expect(logger.find('error', '[kora.operational_state.emit]')).toHaveLength(1);
      expect(sink.stats).toMatchObject({ refused: 3, outboxDepth: 0, appended: 4 });
      expect(await sink.verifyChain()).toEqual(chainOk(4));
    } finally {
      await sink.close();
    }
  });

  it('a retried append of stored events is a no-op and never forks the chain', async () => {
    const sink = createPostgresSink({
      workspaceId: 'ws-retry',
      pool: db.pool,
      logger: recordingLogger(),
    });
    await sink.start();
    try {
      const batch = [1, 2, 3].map((i) => event('retry', i, { workspace_id: 'ws-retry' }));
      await sink.append(batch);
      await sink.append(batch);
      await sink.append([batch[2]!, event('retry', 4, { workspace_id: 'ws-retry' })]);
      const { rows } = await db.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM event_log WHERE workspace_id = 'ws-retry'`,
      );
      expect(rows[0]!.n).toBe('4');
      expect(sink.stats.appended).toBe(4);
      expect(await sink.verifyChain()).toEqual(chainOk(4));
    } finally {
      await sink.close();
    }
  });

  it('start() is idempotent and concurrent starts migrate once', async () => {
    const other = await createTestSchema('chainmig');
    try {
      const pools = [0, 1, 2].map(() => new pg.Pool({ connectionString: other.url, max: 1 }));
      const results = await Promise.all(pools.map((p) => applyMigrations(p)));
      await Promise.all(pools.map((p) => p.end()));
      // One of the three applied every migration; the other two found them applied.
      expect(results.map((r) => r.applied.length).sort()).toEqual([0, 0, MIGRATIONS.length]);
      const sink = createPostgresSink({ connectionString: other.url });
      await sink.start();
      await sink.start();
      expect(await sink.verifyChain()).toEqual(chainOk(0));
      await sink.close();
      // A pool the caller passed in is left open.
      const given = createPostgresSink({ pool: other.pool });
      await given.start();
      await given.close();
      await expect(other.pool.query('SELECT 1')).resolves.toBeDefined();
    } finally {
      await other.drop();
    }
  });

  it('validates its options', () => {
    expect(() => createPostgresSink({ pool: {} as pg.Pool })).toThrow(/pool/);
    expect(() => createPostgresSink({ connectionString: '', pool: undefined })).toThrow(
      /connectionString/,
    );
    expect(() => createPostgresSink({ pool: db.pool, retry: { initialMs: 0 } })).toThrow(
      /retry.initialMs.*0/,
    );
  });
});
