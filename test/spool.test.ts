/**
 * The chain spool (SPEC §10): fsynced before the transition resolves, group commit,
 * shrink once stored, replay by the next run, torn-write recovery, explicit overflow.
 */
import { appendFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEmitListener } from '../src/emit.js';
import { createOperationalStateHolder } from '../src/holder.js';
import { createStatusHandler } from '../src/http/handler.js';
import { createPgliteSink } from '../src/sinks/pglite.js';
import { encodeRecord, Spool, SpoolOverflowError } from '../src/sinks/spool.js';
import type { ChainEvent } from '../src/sinks/types.js';
import { recordingLogger } from './support/logger.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kora-spool-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function event(seq: number, instance = 'i-1'): ChainEvent {
  return {
    event_type: 'kora.operational_state.transitioned',
    payload: { n: seq, text: 'tab\there, newline\nthere, 🐙' },
    workspace_id: 'ws',
    agent_id: 'a-1',
    instance_id: instance,
    seq,
    occurred_at: new Date(1_700_000_000_000 + seq).toISOString(),
  };
}

const segments = async (dir: string) => (await readdir(dir)).filter((n) => n.endsWith('.spool'));

describe('Spool', () => {
  it('an append resolves once the record is in a segment file; the next open replays it, in order', async () => {
    const dir = await tempDir();
    const spool = new Spool({ dir, logger: recordingLogger() });
    expect(await spool.open()).toEqual([]);
    await spool.append([event(1), event(2)]);
    await spool.append([event(3)]);
    // On disk before anything is acknowledged: a crash now loses nothing.
    const [file] = await segments(dir);
    expect((await readFile(join(dir, file!), 'utf8')).trim().split('\n')).toHaveLength(2);
    // A second spool on the same directory (the next run) gets both records back.
    const next = new Spool({ dir, logger: recordingLogger() });
    const leftover = await next.open();
    expect(leftover.map((r) => r.map((e) => e.seq))).toEqual([[1, 2], [3]]);
    expect(leftover[0]![0]).toEqual(event(1));
    expect(next.stats).toMatchObject({ depth: 3, recovered: 3, torn: 0 });
  });

  it('concurrent appends share fsyncs (group commit)', async () => {
    const dir = await tempDir();
    const spool = new Spool({ dir, logger: recordingLogger() });
    await spool.open();
    await Promise.all(Array.from({ length: 200 }, (_, i) => spool.append([event(i + 1)])));
    const { records, fsyncs, depth } = spool.stats;
    expect(records).toBe(200);
    expect(depth).toBe(200);
    // The first write goes alone; the rest queue behind it and share the next fsyncs.
    expect(fsyncs).toBeLessThan(20);
  });

  it('acknowledged records leave: a drained spool keeps no segment, and the next run replays nothing', async () => {
    const dir = await tempDir();
    const spool = new Spool({ dir, logger: recordingLogger() });
    await spool.open();
    for (let i = 1; i <= 5; i++) await spool.append([event(i)]);
    for (let i = 0; i < 3; i++) spool.ack();
    expect(spool.stats.depth).toBe(2);
    await spool.close();
    // Two records were not acknowledged: they are still there for the next run.
    const again = new Spool({ dir, logger: recordingLogger() });
    expect((await again.open()).map((r) => r[0]!.seq)).toEqual([4, 5]);
    again.ack();
    again.ack();
    await again.close();
    expect(await segments(dir)).toEqual([]);
    const third = new Spool({ dir, logger: recordingLogger() });
    expect(await third.open()).toEqual([]);
  });

  it('a torn last record (a crash mid-write) is dropped and reported; the whole records before it are kept', async () => {
    const dir = await tempDir();
    const spool = new Spool({ dir, logger: recordingLogger() });
    await spool.open();
    await spool.append([event(1)]);
    await spool.append([event(2)]);
    const [file] = await segments(dir);
    // What a kill -9 in the middle of a write leaves: a prefix of the next record.
    const torn = encodeRecord([event(3)]);
    await appendFile(join(dir, file!), torn.subarray(0, Math.floor(torn.length / 2)));
    const logger = recordingLogger();
    const next = new Spool({ dir, logger });
    const leftover = await next.open();
    expect(leftover.map((r) => r[0]!.seq)).toEqual([1, 2]);
    expect(next.stats.torn).toBe(1);
    expect(logger.find('error').join('\n')).toMatch(/torn write.*never acknowledged, dropped/);
    // New records go to a fresh segment, never after the torn bytes.
    await next.append([event(3)]);
    const after = new Spool({ dir, logger: recordingLogger() });
    expect((await after.open()).map((r) => r[0]!.seq)).toEqual([1, 2, 3]);
  });

  it('a record whose digest does not match is not replayed', async () => {
    const dir = await tempDir();
    const spool = new Spool({ dir, logger: recordingLogger() });
    await spool.open();
    await spool.append([event(1)]);
    const [file] = await segments(dir);
    const line = encodeRecord([event(2)])
      .toString('utf8')
      .replace('"n":2', '"n":9');
    await appendFile(join(dir, file!), line);
    const next = new Spool({ dir, logger: recordingLogger() });
    expect((await next.open()).map((r) => r[0]!.payload.n)).toEqual([1]);
    expect(next.stats.torn).toBe(1);
  });

  it('overflow is explicit: refused, counted, logged, and the next append writes a gap marker first', async () => {
    const dir = await tempDir();
    const logger = recordingLogger();
    const spool = new Spool({ dir, limit: 3, logger });
    await spool.open();
    await spool.append([event(1), event(2)]);
    await expect(spool.append([event(3), event(4)])).rejects.toBeInstanceOf(SpoolOverflowError);
    await expect(spool.append([event(5), event(6)])).rejects.toThrow(/spool full/);
    expect(spool.stats.overflowed).toBe(4);
    expect(logger.find('error').join('\n')).toMatch(/dropped 2 event\(s\) \(i-1 seq 3–4\)/);
    spool.ack();
    const marker = (g: {
      instance_id: string;
      from_seq: number;
      to_seq: number;
      dropped: number;
    }) => ({ ...event(g.from_seq), event_type: 'kora.chain.gap', payload: { ...g } }) as ChainEvent;
    const written = await spool.append([event(7)], marker);
    expect(written.map((r) => r.map((e) => [e.event_type, e.seq]))).toEqual([
      [['kora.chain.gap', 3]],
      [['kora.operational_state.transitioned', 7]],
    ]);
    expect(written[0]![0]!.payload).toEqual({
      instance_id: 'i-1',
      from_seq: 3,
      to_seq: 6,
      dropped: 4,
    });
  });

  it('bad options name the value', () => {
    expect(() => new Spool({ dir: '' })).toThrow(/spool.dir must be a non-empty path, got ""/);
    expect(() => new Spool({ dir: '/tmp/x', limit: 0 })).toThrow(
      /spool.limit must be a positive integer, got 0/,
    );
  });
});

describe('a durable sink with a spool', () => {
  it('transitions resolve with the store not started; the next run stores them exactly once, in order, before its own', async () => {
    const dir = await tempDir();
    const spoolDir = join(dir, 'spool');
    const dataDir = join(dir, 'pglite');
    // Run 1: the store never starts (as if the database were down), then the process ends.
    const first = createPgliteSink({
      workspaceId: 'ws',
      dataDir,
      spoolDir,
      logger: recordingLogger(),
    });
    const holder = createOperationalStateHolder({ logger: recordingLogger() });
    holder.addListener(
      makeEmitListener(first, { instanceId: 'run-1', agentId: 'a-1', logger: recordingLogger() }),
    );
    await holder.send({ type: 'boot.gates_passed' });
    await holder.send({ type: 'pause', cause: 'cost_limit' });
    expect(first.stats.outboxDepth).toBe(4); // generic + kora.boot.ready, generic + kora.paused.cost_limit
    // No close(): the process is gone.

    // Run 2: same spool; its own events come after run 1's.
    const second = createPgliteSink({
      workspaceId: 'ws',
      dataDir,
      spoolDir,
      logger: recordingLogger(),
    });
    const h2 = createOperationalStateHolder({ logger: recordingLogger() });
    h2.addListener(
      makeEmitListener(second, { instanceId: 'run-2', agentId: 'a-1', logger: recordingLogger() }),
    );
    await h2.send({ type: 'boot.gates_passed' });
    await second.start();
    expect(await second.flush(10_000)).toBe(true);
    const events = await second.tail({ limit: 100 });
    expect(events.map((e) => `${e.instance_id}/${e.seq} ${e.event_type}`)).toEqual([
      'run-1/1 kora.operational_state.transitioned',
      'run-1/2 kora.boot.ready',
      'run-1/3 kora.operational_state.transitioned',
      'run-1/4 kora.paused.cost_limit',
      'run-2/1 kora.operational_state.transitioned',
      'run-2/2 kora.boot.ready',
    ]);
    expect(events[2]!.payload).toMatchObject({
      to_primary_state: 'paused',
      pause_cause: 'cost_limit',
    });
    expect((await second.verifyChain()).ok).toBe(true);
    expect(second.stats.outboxDepth).toBe(0);
    await second.close();
    expect(await segments(spoolDir)).toEqual([]);
  });

  it('300 concurrent transitions through a holder share fsyncs', async () => {
    const dir = await tempDir();
    const sink = createPgliteSink({
      workspaceId: 'ws',
      dataDir: 'memory://',
      spoolDir: join(dir, 'spool'),
      logger: recordingLogger(),
    });
    await sink.start();
    const holder = createOperationalStateHolder({
      logger: recordingLogger(),
      initial: { primaryState: 'ready' },
    });
    holder.addListener(makeEmitListener(sink, { logger: recordingLogger() }));
    await Promise.all(
      Array.from({ length: 300 }, (_, i) => holder.send({ type: 'update', trigger: `t${i}` })),
    );
    const spool = sink.stats.spool!;
    expect(spool.records).toBe(300);
    expect(spool.fsyncs).toBeLessThan(30);
    expect(await sink.flush(20_000)).toBe(true);
    expect((await sink.tail({ limit: 1 }))[0]!.seq).toBe(300);
    await sink.close();
  });

  it('an overflow is explicit end to end: counted in the status and /metrics, a gap marker in the chain, reported by verify', async () => {
    const dir = await tempDir();
    const logger = recordingLogger();
    const sink = createPgliteSink({
      workspaceId: 'ws',
      dataDir: 'memory://',
      spoolDir: join(dir, 'spool'),
      outboxLimit: 4,
      logger,
    });
    const holder = createOperationalStateHolder({
      logger: recordingLogger(),
      initial: { primaryState: 'ready' },
    });
    const emit = makeEmitListener(sink, { instanceId: 'over', logger: recordingLogger() });
    holder.addListener(emit);
    const handler = createStatusHandler({ holder, sink, emitter: emit, logger: recordingLogger() });
    try {
      // The store is not started (unreachable): 4 fit, the next 3 overflow.
      for (let i = 1; i <= 7; i++) await holder.send({ type: 'update', trigger: `u${i}` });
      expect(holder.history().length).toBe(7); // the state machine kept moving
      expect(sink.stats).toMatchObject({ outboxDepth: 4, dropped: 3 });
      expect(emit.stats.failures).toBe(3);
      const status = (await (
        await handler(new Request('http://localhost/api/operational-state'))
      ).json()) as {
        chain: Record<string, unknown>;
      };
      expect(status.chain).toMatchObject({ outbox_depth: 4, dropped: 3 });
      const metrics = await (await handler(new Request('http://localhost/metrics'))).text();
      expect(metrics).toMatch(/outbox_dropped_total 3\b/);

      // The store comes back; the next transition carries the gap marker in front of it.
      await sink.start();
      expect(await sink.flush(10_000)).toBe(true);
      await holder.send({ type: 'update', trigger: 'u8' });
      expect(await sink.flush(10_000)).toBe(true);
      const events = await sink.tail({ limit: 20 });
      expect(events.map((e) => `${e.event_type} ${e.seq}`)).toEqual([
        'kora.operational_state.transitioned 1',
        'kora.operational_state.transitioned 2',
        'kora.operational_state.transitioned 3',
        'kora.operational_state.transitioned 4',
        'kora.chain.gap 5',
        'kora.operational_state.transitioned 8',
      ]);
      const verified = await sink.verifyChain();
      expect(verified).toMatchObject({
        ok: true,
        gaps: [{ instance_id: 'over', from_seq: 5, to_seq: 7, dropped: 3 }],
      });
    } finally {
      await handler.close();
      await sink.close();
    }
  });
});
