/**
 * Durable truth (SPEC §10) with real agent processes (`kora-opstate start`), the real
 * PostgreSQL service, a throwaway cluster that goes down, and PGlite:
 * - a cost pause and an operator pause survive a restart; the clearing row ends them and
 *   the next restart is ready; the shutdown's own pause is not restored;
 * - kill -9 under load, and kill -9 during an outage (with a torn spool write): every
 *   acknowledged transition is in the chain exactly once, in order, and it verifies.
 */
import { appendFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeRecord } from '../src/sinks/spool.js';
import { type AgentProcess, startTsProcess } from './support/agentProcess.js';
import { createTestSchema } from './support/postgres.js';
import { createThrowawayCluster, type ThrowawayCluster } from './support/throwawayCluster.js';

const bin = fileURLToPath(new URL('../src/cli/bin.ts', import.meta.url));
const TOKEN = 'durable-test-token';
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'kora-durable-'));
  dirs.push(d);
  return d;
}

interface Running {
  agent: AgentProcess;
  url: string;
}

/** `start` with no demo tickets (the agent stays ready), resolved once its boot line is out. */
async function startAgent(
  dataDir: string,
  env: Record<string, string | undefined> = {},
): Promise<Running> {
  const agent = startTsProcess(
    bin,
    ['start', '--port', '0', '--data-dir', dataDir, '--tickets', '0', '--ticket-every-ms', '0'],
    { KORA_OPERATOR_TOKEN: TOKEN, KORA_AGENT_ID: 'agent-7', ...env },
  );
  const line = await agent.waitFor(/ panel +http:/);
  const url = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(line)![1]!;
  await agent.waitFor(/ boot {7}/);
  return { agent, url };
}

async function post(
  url: string,
  body: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/api/operational-state/transitions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function status(url: string): Promise<Record<string, unknown>> {
  return (await (await fetch(`${url}/api/operational-state`)).json()) as Record<string, unknown>;
}

/** SIGTERM and a graceful exit 0. */
async function stopGracefully(r: Running): Promise<void> {
  r.agent.kill('SIGTERM');
  const { code } = await r.agent.exited;
  expect(code, r.agent.stderr()).toBe(0);
}

/** The restart cycle of SPEC §10 on one store. */
async function restartCycle(
  dataDir: string,
  env: Record<string, string | undefined>,
): Promise<void> {
  let run = await startAgent(dataDir, env);
  try {
    expect((await status(run.url)).primary_state).toBe('ready');
    expect((await post(run.url, { event: { type: 'pause', cause: 'cost_limit' } })).status).toBe(
      200,
    );
    await stopGracefully(run);

    // The cost pause is restored: booting → paused (row 9), no claims, /readyz 503.
    run = await startAgent(dataDir, env);
    await run.agent.waitFor(/restored the agent's cost_limit pause \(cost\)/);
    let s = await status(run.url);
    expect(s).toMatchObject({
      primary_state: 'paused',
      claim_permission: 'none',
      degradation_reasons: ['cost'],
    });
    const first = (
      s.transition_history as { from_state: string; event: string; trigger: string }[]
    )[0]!;
    expect(first).toMatchObject({ from_state: 'booting', event: 'pause' });
    expect(first.trigger).toMatch(/^restored cost_limit pause \(cost\) of /);
    expect((await fetch(`${run.url}/readyz`)).status).toBe(503);
    // A credit refresh that is not safe (spend over the threshold) leaves it paused.
    expect(
      (
        await post(run.url, {
          event: { type: 'resume.credit_refresh', reconciledSpendUsd: 120, thresholdUsd: 100 },
        })
      ).status,
    ).toBe(409);
    const refresh = await post(run.url, {
      event: { type: 'resume.credit_refresh', reconciledSpendUsd: 12, thresholdUsd: 100 },
    });
    expect(refresh.status).toBe(200);
    expect(refresh.body.primary_state).toBe('ready');
    // Now an operator pause; the shutdown that follows must not replace it.
    expect((await post(run.url, { event: { type: 'pause', cause: 'operator' } })).status).toBe(200);
    await stopGracefully(run);

    run = await startAgent(dataDir, env);
    await run.agent.waitFor(/restored the agent's operator pause \(operator\)/);
    s = await status(run.url);
    expect(s).toMatchObject({ primary_state: 'paused', degradation_reasons: ['operator'] });
    expect((await post(run.url, { event: { type: 'resume.operator_reset' } })).status).toBe(200);
    await stopGracefully(run);

    // Cleared, then a plain shutdown (a STOP-KORA pause): the next run is ready.
    run = await startAgent(dataDir, env);
    s = await status(run.url);
    expect(s).toMatchObject({
      primary_state: 'ready',
      claim_permission: 'normal',
      degradation_reasons: [],
    });
    expect((await fetch(`${run.url}/readyz`)).status).toBe(200);
    // Another agent id on the same chain has no pause of its own.
    await stopGracefully(run);
  } finally {
    await run.agent.stop();
  }
}

describe('a pause survives a restart', () => {
  it('on the embedded PGlite store', async () => {
    await restartCycle(await tempDir(), {});
  }, 240_000);

  it('on Postgres, and another agent of the workspace is not paused by it', async () => {
    const db = await createTestSchema('durable');
    try {
      const dataDir = await tempDir();
      await restartCycle(dataDir, { DATABASE_URL: db.url });
      // agent-7 left a cost pause earlier in this chain; agent-8 boots ready.
      const run = await startAgent(dataDir, { DATABASE_URL: db.url, KORA_AGENT_ID: 'agent-8' });
      try {
        expect((await status(run.url)).primary_state).toBe('ready');
        await stopGracefully(run);
      } finally {
        await run.agent.stop();
      }
    } finally {
      await db.drop();
    }
  }, 240_000);
});

interface Row {
  instance_id: string;
  seq: string;
  chain_seq: string;
  event_type: string;
  trigger: string | null;
}

async function chainRows(url: string, workspace = 'default'): Promise<Row[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT instance_id, seq, chain_seq, event_type, payload->>'trigger' AS trigger
         FROM event_log WHERE workspace_id = $1 ORDER BY chain_seq`,
      [workspace],
    );
    return rows as Row[];
  } finally {
    await client.end();
  }
}

/** Polls the chain until `done` holds (the drain is asynchronous); the last rows otherwise. */
async function waitForChain(
  url: string,
  done: (rows: Row[]) => boolean,
  ms = 60_000,
): Promise<Row[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const rows = await chainRows(url);
    if (done(rows) || Date.now() > deadline) return rows;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function verify(dataDir: string, url: string): Promise<{ code: number; out: string }> {
  const agent = startTsProcess(bin, ['verify-chain', '--data-dir', dataDir, '--full'], {
    DATABASE_URL: url,
  });
  try {
    const { code } = await agent.exited;
    return { code: code ?? -1, out: agent.lines.join('\n') + agent.stderr() };
  } finally {
    await agent.stop();
  }
}

/** Every acknowledged trigger once, in commit order, in the killed instance's events. */
function expectAcknowledged(rows: Row[], instance: string, acked: Set<string>): void {
  const mine = rows.filter(
    (r) => r.instance_id === instance && r.event_type === 'kora.operational_state.transitioned',
  );
  const triggers = mine.map((r) => r.trigger ?? '');
  for (const t of acked)
    expect(
      triggers.filter((x) => x === t),
      t,
    ).toHaveLength(1);
  // Commit order is seq order, and the chain keeps it.
  const seqs = rows.filter((r) => r.instance_id === instance).map((r) => Number(r.seq));
  expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  expect(new Set(seqs).size).toBe(seqs.length);
}

describe('kill -9 loses no acknowledged transition', () => {
  it('while Postgres is up, under ~200 transitions/s', async () => {
    const db = await createTestSchema('kill');
    const dataDir = await tempDir();
    let run: Running | undefined;
    try {
      run = await startAgent(dataDir, { DATABASE_URL: db.url });
      const instance = /instance "([^"]+)"/.exec(
        run.agent.lines.find((l) => l.includes(' store '))!,
      )![1]!;
      const acked = new Set<string>();
      let n = 0;
      let killed = false;
      // 20 clients, each sending its next transition as soon as the last one answered.
      const client = async () => {
        while (!killed) {
          const trigger = `load ${++n}`;
          try {
            const r = await post(run!.url, { event: { type: 'update', trigger } });
            if (r.status === 200) acked.add(trigger);
          } catch {
            return; // the agent is gone
          }
        }
      };
      const clients = Array.from({ length: 20 }, client);
      // Kill it in the middle of the load, once a fair number was acknowledged.
      while (acked.size < 400) await new Promise((r) => setTimeout(r, 10));
      killed = true;
      run.agent.kill('SIGKILL');
      await run.agent.exited;
      await Promise.all(clients);
      expect(acked.size).toBeGreaterThanOrEqual(400);

      run = await startAgent(dataDir, { DATABASE_URL: db.url });
      const rows = await waitForChain(db.url, (rs) => {
        const have = new Set(rs.filter((r) => r.instance_id === instance).map((r) => r.trigger));
        return [...acked].every((t) => have.has(t));
      });
      expectAcknowledged(rows, instance, acked);
      await stopGracefully(run);
      const v = await verify(dataDir, db.url);
      expect(v.code, v.out).toBe(0);
      expect(v.out).toMatch(/chain ok/);
    } finally {
      await run?.agent.stop();
      await db.drop();
    }
  }, 240_000);

  it('during an outage, with a torn spool write at the crash: all acknowledged stored once the server is back', async () => {
    let cluster: ThrowawayCluster | undefined;
    let run: Running | undefined;
    const dataDir = await tempDir();
    try {
      cluster = await createThrowawayCluster();
      const url = cluster.url;
      run = await startAgent(dataDir, { DATABASE_URL: url });
      const instance = /instance "([^"]+)"/.exec(
        run.agent.lines.find((l) => l.includes(' store '))!,
      )![1]!;
      await cluster.stop();
      const acked = new Set<string>();
      for (let i = 1; i <= 20; i++) {
        const trigger = `outage ${i}`;
        const r = await post(run.url, { event: { type: 'update', trigger } }).catch((err) => {
          throw new Error(`${err}: ${run!.agent.stderr()}`);
        });
        expect(r.status).toBe(200);
        acked.add(trigger);
      }
      run.agent.kill('SIGKILL');
      await run.agent.exited;

      // What a kill in the middle of a write leaves: half a record at the spool's end.
      const spool = join(dataDir, 'spool', 'default', 'agent-7');
      const segments = (await readdir(spool)).filter((n) => n.endsWith('.spool')).sort();
      expect(segments.length).toBeGreaterThan(0);
      const torn = encodeRecord([
        {
          event_type: 'kora.operational_state.transitioned',
          payload: { trigger: 'never acknowledged' },
          workspace_id: 'default',
          agent_id: 'agent-7',
          instance_id: instance,
          seq: 999,
          occurred_at: new Date().toISOString(),
        },
      ]);
      await appendFile(join(spool, segments.at(-1)!), torn.subarray(0, torn.length - 7));

      await cluster.start();
      run = await startAgent(dataDir, { DATABASE_URL: url });
      expect(run.agent.stderr()).toMatch(/torn write\).*never acknowledged, dropped/);
      const rows = await waitForChain(url, (rs) => {
        const have = new Set(rs.filter((r) => r.instance_id === instance).map((r) => r.trigger));
        return [...acked].every((t) => have.has(t));
      });
      expectAcknowledged(rows, instance, acked);
      expect(rows.some((r) => r.trigger === 'never acknowledged')).toBe(false);
      // In the order they were acknowledged (one client, one at a time).
      const order = rows.filter((r) => r.trigger?.startsWith('outage ')).map((r) => r.trigger);
      expect(order).toEqual([...acked]);
      await stopGracefully(run);
      const v = await verify(dataDir, url);
      expect(v.code, v.out).toBe(0);
    } finally {
      await run?.agent.stop();
      await cluster?.destroy();
    }
  }, 240_000);
});

describe('a reused instance id', () => {
  it('is refused at start, naming the id (exit 1), and the earlier run’s events stay as they were', async () => {
    const db = await createTestSchema('reuse');
    const dataDir = await tempDir();
    let run: Running | undefined;
    try {
      run = await startAgent(dataDir, { DATABASE_URL: db.url, KORA_AGENT_ID: 'agent-9' });
      await stopGracefully(run);
      // Same data dir is fine; the instance id passed explicitly is the earlier run's.
      const earlier = /instance "([^"]+)"/.exec(
        run.agent.lines.find((l) => l.includes(' store '))!,
      )![1]!;
      const before = await chainRows(db.url);
      const again = startTsProcess(
        bin,
        ['start', '--port', '0', '--data-dir', dataDir, '--tickets', '0', '--instance-id', earlier],
        { DATABASE_URL: db.url, KORA_AGENT_ID: 'agent-9', KORA_OPERATOR_TOKEN: TOKEN },
      );
      try {
        const { code } = await again.exited;
        expect(code).toBe(1);
        const said = again.lines.join('\n') + again.stderr();
        expect(said).toContain(
          `instance id "${earlier}" already has ${before.length} event(s) in the chain`,
        );
      } finally {
        await again.stop();
      }
      const after = await chainRows(db.url);
      // None of the earlier run's events was touched or shadowed.
      expect(after.slice(0, before.length)).toEqual(before);
      expect(after.filter((r) => r.instance_id === earlier)).toHaveLength(before.length);
    } finally {
      await run?.agent.stop();
      await db.drop();
    }
  }, 120_000);
});
