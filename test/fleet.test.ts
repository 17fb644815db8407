/**
 * The fleet registry (SPEC §12) on a real Postgres: agents register and heartbeat in
 * `kora_opstate_fleet_agents`; `GET /api/fleet` and `kora-opstate fleet` show every agent
 * of the workspace; one that stops heartbeating is gone after its window, one that stops
 * gracefully is stopped. A registry failure never breaks a transition.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createFleetRegistry,
  type FleetRegistry,
  type FleetTimers,
} from '../src/fleet/registry.js';
import { readFleetView } from '../src/fleet/sql.js';
import type { FleetView } from '../src/fleet/types.js';
import { createOpstate, type Opstate } from '../src/holder.js';
import { createStatusApp } from '../src/http/app.js';
import { applyMigrations } from '../src/sinks/migrations.js';
import type { SqlSession } from '../src/sinks/sql.js';
import { startTsProcess } from './support/agentProcess.js';
import { CLI_BIN, runCli, tempDirs } from './support/cli.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const tempDir = tempDirs('kora-fleet-');

let db: TestSchema;
beforeAll(async () => {
  db = await createTestSchema('fleet');
  await applyMigrations(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

/** A logger that keeps its lines. */
function keptLogger() {
  const lines: string[] = [];
  const keep = (...a: unknown[]) => void lines.push(a.map(String).join(' '));
  return { lines, logger: { error: keep, warn: keep, info: keep } };
}

/** Timers the test fires by hand: a heartbeat happens only when the test says so. */
function manualTimers(): FleetTimers & { fire(): void; pending: number } {
  const waiting = new Map<number, () => void>();
  let next = 0;
  return {
    setTimeout(fn) {
      waiting.set(++next, fn);
      return next;
    },
    clearTimeout(h) {
      waiting.delete(h as number);
    },
    fire() {
      const fns = [...waiting.values()];
      waiting.clear();
      for (const fn of fns) fn();
    },
    get pending() {
      return waiting.size;
    },
  };
}

/** Reads the fleet until `ok` holds (each read is a query: this waits on what Postgres says). */
async function fleetUntil(
  workspace: string,
  ok: (v: FleetView) => boolean,
  timeoutMs = 15_000,
): Promise<FleetView> {
  const deadline = Date.now() + timeoutMs;
  let view = await readFleetView(db.pool, workspace);
  while (!ok(view)) {
    if (Date.now() > deadline) {
      throw new Error(`fleet never matched; last: ${JSON.stringify(view.agents, null, 1)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
    view = await readFleetView(db.pool, workspace);
  }
  return view;
}

const byId = (v: FleetView) => Object.fromEntries(v.agents.map((a) => [a.agent_id, a]));

describe('fleet registry on Postgres', () => {
  it('three agents register; /api/fleet and the CLI show them; a pause shows; one that stops heartbeating is gone; a graceful stop is stopped', {
    timeout: 90_000,
  }, async () => {
    const ws = 'ws-three';
    const holders: Opstate[] = ['a', 'b', 'c'].map(() => createOpstate());
    const hand = manualTimers();
    const registries: FleetRegistry[] = ['agent-a', 'agent-b', 'agent-c'].map((agentId, i) =>
      createFleetRegistry({
        opstate: holders[i]!,
        db: db.pool,
        workspaceId: ws,
        agentId,
        instanceId: `${agentId}-run-1`,
        heartbeatMs: 300,
        url: `http://127.0.0.1:${9000 + i}`,
        // agent-c heartbeats only when the test fires its timer.
        ...(i === 2 ? { timers: hand } : {}),
      }),
    );
    const app = createStatusApp({ opstate: holders[0]!, fleet: registries[0]! });
    // The test is agent-c's heartbeat until it says stop.
    let driving: ReturnType<typeof setInterval> | undefined = setInterval(() => hand.fire(), 100);
    try {
      await Promise.all(registries.map((r) => r.start()));
      const first = await readFleetView(db.pool, ws);
      expect(first.agents.map((a) => [a.agent_id, a.presence, a.primary_state])).toEqual([
        ['agent-a', 'live', 'booting'],
        ['agent-b', 'live', 'booting'],
        ['agent-c', 'live', 'booting'],
      ]);
      expect(first.agents[0]).toMatchObject({
        instance_id: 'agent-a-run-1',
        url: 'http://127.0.0.1:9000',
        pid: process.pid,
        heartbeat_ms: 300,
        claim_permission: 'none',
        last_transition: null,
        stopped_at: null,
      });

      // Each committed transition is written (the listener does not wait for it).
      await Promise.all(holders.map((h) => h.send({ type: 'boot.gates_passed' })));
      await holders[1]!.send({ type: 'pause', cause: 'operator', trigger: 'maintenance window' });
      const paused = await fleetUntil(ws, (v) => byId(v)['agent-b']?.primary_state === 'paused');
      expect(byId(paused)['agent-b']).toMatchObject({
        presence: 'live',
        claim_permission: 'none',
        degradation_reasons: ['operator'],
        last_transition: {
          seq: 2,
          from_state: 'ready',
          to_state: 'paused',
          trigger: 'maintenance window',
        },
      });
      expect(byId(paused)['agent-b']!.last_transition!.event).toMatch(/^pause/);

      // Over HTTP: the agent that answers is marked.
      const res = await app.app.request('/api/fleet');
      expect(res.status).toBe(200);
      const api = (await res.json()) as FleetView;
      expect(api).toMatchObject({ workspace_id: ws, source: 'postgres', gone_after_heartbeats: 3 });
      expect(api.agents.map((a) => [a.agent_id, a.self ?? false])).toEqual([
        ['agent-a', true],
        ['agent-b', false],
        ['agent-c', false],
      ]);
      expect(api.counts).toEqual({ live: 3, gone: 0, stopped: 0 });

      // The CLI reads the table itself (another process).
      const cli = await runCli(['fleet', '--database-url', db.url, '--workspace', ws, '--json']);
      expect(cli.stderr).toBe('');
      expect(cli.code).toBe(0);
      const shown = JSON.parse(cli.stdout) as FleetView;
      expect(shown.agents.map((a) => [a.agent_id, a.presence, a.primary_state])).toEqual([
        ['agent-a', 'live', 'ready'],
        ['agent-b', 'live', 'paused'],
        ['agent-c', 'live', 'ready'],
      ]);

      // agent-c's heartbeat stops: gone after 3 × 300 ms of silence, while the others
      // (heartbeating on their own timers) stay live.
      clearInterval(driving);
      driving = undefined;
      await registries[2]!.heartbeat();
      const gone = await fleetUntil(ws, (v) => byId(v)['agent-c']?.presence === 'gone');
      expect(byId(gone)['agent-c']!.seen_ms_ago).toBeGreaterThanOrEqual(900);
      expect(byId(gone)['agent-a']!.presence).toBe('live');
      expect(byId(gone)['agent-b']!.presence).toBe('live');
      const text = await runCli(['fleet', '--database-url', db.url, '--workspace', ws]);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(
        /^fleet of workspace "ws-three" \(postgres [^)]+\): 3 agents — 2 live, 1 gone, 0 stopped$/m,
      );
      expect(text.stdout).toMatch(/^ {2}agent-b +live +paused +none +operator +#2 pause/m);
      expect(text.stdout).toMatch(/^ {2}agent-c +gone +ready /m);

      // A graceful stop marks the row stopped at once.
      await registries[0]!.stop();
      const stopped = await readFleetView(db.pool, ws);
      expect(byId(stopped)['agent-a']).toMatchObject({
        presence: 'stopped',
        primary_state: 'ready',
      });
      expect(byId(stopped)['agent-a']!.stopped_at).not.toBeNull();
      // agent-c's heartbeat comes back: live again.
      hand.fire();
      await registries[2]!.heartbeat();
      expect(byId(await readFleetView(db.pool, ws))['agent-c']!.presence).toBe('live');
    } finally {
      clearInterval(driving);
      await app.close();
      for (const r of registries) await r.stop();
    }
  });

  it('`fleet --watch` prints the fleet again on every look until interrupted (exit 0)', {
    timeout: 90_000,
  }, async () => {
    const ws = 'ws-watch';
    const opstate = createOpstate();
    const reg = createFleetRegistry({
      opstate,
      db: db.pool,
      workspaceId: ws,
      agentId: 'watched',
      heartbeatMs: 60_000,
    });
    await reg.start();
    const watch = startTsProcess(CLI_BIN, [
      'fleet',
      '--watch',
      '--json',
      '--interval-ms',
      '100',
      '--database-url',
      db.url,
      '--workspace',
      ws,
    ]);
    try {
      await watch.waitFor(/"agent_id":"watched".*"primary_state":"booting"/);
      await opstate.send({ type: 'boot.gates_passed' });
      await watch.waitFor(/"agent_id":"watched".*"primary_state":"ready"/);
      // Every look is one JSON line.
      for (const line of watch.lines) expect(JSON.parse(line)).toMatchObject({ workspace_id: ws });
      watch.kill('SIGTERM');
      expect((await watch.exited).code).toBe(0);
    } finally {
      await watch.stop();
      await reg.stop();
    }
  });

  it('one agent id, two live runs: the second does not overwrite the first, and takes over once it stopped', async () => {
    const ws = 'ws-dup';
    const { lines, logger } = keptLogger();
    const mk = (run: string) =>
      createFleetRegistry({
        opstate: createOpstate(),
        db: db.pool,
        workspaceId: ws,
        agentId: 'twin',
        instanceId: run,
        heartbeatMs: 60_000,
        logger,
      });
    const one = mk('run-1');
    const two = mk('run-2');
    try {
      await one.start();
      await two.start();
      expect((await readFleetView(db.pool, ws)).agents.map((a) => a.instance_id)).toEqual([
        'run-1',
      ]);
      expect(two.stats.conflicts).toBe(1);
      expect(lines.join('\n')).toMatch(
        /agent "twin" of workspace "ws-dup" is registered by another live run \(instance "run-1"\)/,
      );
      await one.stop();
      await two.heartbeat();
      const after = await readFleetView(db.pool, ws);
      expect(after.agents.map((a) => [a.instance_id, a.presence])).toEqual([['run-2', 'live']]);
    } finally {
      await one.stop();
      await two.stop();
    }
  });

  it('three `kora-opstate start` agents on one Postgres: `fleet` shows them; SIGKILL → gone, SIGTERM → stopped', {
    timeout: 90_000,
  }, async () => {
    const ws = 'ws-procs';
    const env = {
      DATABASE_URL: db.url,
      KORA_WORKSPACE: ws,
      KORA_FLEET_HEARTBEAT_MS: '300',
    };
    const agents = ['p1', 'p2', 'p3'].map((id) =>
      startTsProcess(
        CLI_BIN,
        ['start', '--port', '0', '--agent-id', id, '--tickets', '0', '--ticket-every-ms', '0'],
        { ...env, KORA_DATA_DIR: tempDir() },
      ),
    );
    try {
      await Promise.all(agents.map((a) => a.waitFor(/^\[kora-opstate\] boot +ready/)));
      const up = await fleetUntil(
        ws,
        (v) => v.counts.live === 3 && v.agents.every((a) => a.primary_state === 'ready'),
      );
      expect(up.agents.map((a) => a.agent_id)).toEqual(['p1', 'p2', 'p3']);
      for (const a of up.agents) expect(a.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      // Any of them answers for the whole fleet.
      const viaP2 = (await (await fetch(`${byId(up).p2!.url}/api/fleet`)).json()) as FleetView;
      expect(viaP2.agents.map((a) => [a.agent_id, a.self ?? false])).toEqual([
        ['p1', false],
        ['p2', true],
        ['p3', false],
      ]);

      agents[2]!.kill('SIGKILL');
      agents[0]!.kill('SIGTERM');
      expect((await agents[0]!.exited).code).toBe(0);
      const after = await fleetUntil(ws, (v) => byId(v).p3?.presence === 'gone');
      expect(after.agents.map((a) => [a.agent_id, a.presence])).toEqual([
        ['p1', 'stopped'],
        ['p2', 'live'],
        ['p3', 'gone'],
      ]);
      expect(byId(after).p1!.primary_state).toBe('stopped');
      const cli = await runCli(['fleet', '--json'], { ...env, KORA_DATA_DIR: tempDir() });
      expect(cli.code).toBe(0);
      expect((JSON.parse(cli.stdout) as FleetView).counts).toEqual({
        live: 1,
        gone: 1,
        stopped: 1,
      });
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
    }
  });
});

describe('fleet registry isolation', () => {
  it('a failing or hanging database never fails or holds up a transition; the failure is logged once', async () => {
    const { lines, logger } = keptLogger();
    const failing: SqlSession = { query: () => Promise.reject(new Error('connection refused')) };
    const hanging: SqlSession = { query: () => new Promise(() => {}) };
    const opstate = createOpstate();
    const regs = [failing, hanging].map((d, i) =>
      createFleetRegistry({
        opstate,
        db: d,
        agentId: `iso-${i}`,
        instanceId: `iso-${i}-run`,
        heartbeatMs: 60_000,
        logger,
        stopTimeoutMs: 50,
      }),
    );
    try {
      await regs[0]!.start();
      void regs[1]!.start();
      await opstate.send({ type: 'boot.gates_passed' });
      await opstate.send({ type: 'pause', cause: 'operator' });
      expect(opstate.current.primaryState).toBe('paused');
      await regs[0]!.heartbeat();
      expect(regs[0]!.stats.failures).toBeGreaterThanOrEqual(2);
      expect(opstate.stats).toMatchObject({ listenerFailures: 0 });
      // The fleet cannot be read either: /api/fleet says so (503), the agent carries on.
      const app = createStatusApp({ opstate, fleet: regs[0]!, logger });
      const res = await app.app.request('/api/fleet');
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({
        error: 'the fleet registry could not be read: connection refused',
      });
      await app.close();
      const logged = lines.filter((l) => l.includes('could not write the fleet row'));
      expect(logged).toEqual([
        '[kora.operational_state.fleet] agent "iso-0" of workspace "default": could not write the fleet row: connection refused; retrying every heartbeat',
      ]);
    } finally {
      for (const r of regs) await r.stop();
    }
  });

  it('without a database the fleet is the agent alone, and /api/fleet still answers', async () => {
    const opstate = createOpstate();
    const app = createStatusApp({ opstate });
    try {
      await opstate.send({ type: 'boot.gates_passed' });
      const res = await app.app.request('/api/fleet');
      const view = (await res.json()) as FleetView;
      expect(view).toMatchObject({ source: 'local', counts: { live: 1, gone: 0, stopped: 0 } });
      expect(view.agents).toHaveLength(1);
      expect(view.agents[0]).toMatchObject({
        agent_id: 'default',
        presence: 'live',
        primary_state: 'ready',
        self: true,
        last_transition: { seq: 1, to_state: 'ready', event: 'boot.gates_passed' },
      });
      const page = await app.app.request('/fleet');
      expect(page.status).toBe(200);
      expect(page.headers.get('content-security-policy')).toMatch(/script-src 'nonce-/);
      expect(await page.text()).not.toMatch(/\{\{\w+\}\}/);
      const post = await app.app.request('/api/fleet', { method: 'POST' });
      expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
    } finally {
      await app.close();
    }
  });

  it('on the embedded store `kora-opstate fleet` asks the agent running on it: the fleet is that agent', {
    timeout: 90_000,
  }, async () => {
    const dataDir = tempDir();
    const env = { DATABASE_URL: undefined, KORA_DATA_DIR: dataDir };
    const none = await runCli(['fleet', '--json'], env);
    expect(none.code).toBe(0);
    expect(JSON.parse(none.stdout)).toMatchObject({ source: 'local', agents: [] });
    const agent = startTsProcess(
      CLI_BIN,
      ['start', '--port', '0', '--tickets', '0', '--ticket-every-ms', '0'],
      env,
    );
    try {
      await agent.waitFor(/^\[kora-opstate\] boot +ready/);
      const cli = await runCli(['fleet', '--json'], env);
      expect(cli.code).toBe(0);
      const view = JSON.parse(cli.stdout) as FleetView;
      expect(view).toMatchObject({ workspace_id: 'default', source: 'local' });
      expect(view.agents.map((a) => [a.agent_id, a.presence, a.primary_state, a.self])).toEqual([
        ['default', 'live', 'ready', true],
      ]);
      expect(view.agents[0]!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    } finally {
      await agent.stop();
    }
  });

  it('refuses bad options naming the value', () => {
    const opstate = createOpstate();
    expect(() => createFleetRegistry({ opstate, heartbeatMs: 0 })).toThrow(
      'heartbeatMs must be a positive integer, got 0',
    );
    expect(() => createStatusApp({ opstate, fleet: {} as never })).toThrow(
      /fleet must be a fleet source/,
    );
  });
});
