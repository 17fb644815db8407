/**
 * Fleet control on a real PostgreSQL (SPEC §12, issue 13 item 4): commands written by
 * `issueCommand`, received by agents over LISTEN/NOTIFY (polling as the fallback),
 * applied through each agent's instance exactly once and in order, the outcome on an
 * outcome row and in the chain; an agent down while commands are issued; a LISTEN
 * connection dropped; rows forged, altered or replayed by a database writer without the
 * chain key.
 */
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.js';
import {
  CONTROL_REFUSED_EVENT,
  type ControlAction,
  type ControlArgs,
  type ControlOutcome,
  type ControlReceiver,
  type ControlTimers,
  controlEvent,
  controlKey,
  createControlReceiver,
  issueCommand,
  readOutcomes,
} from '../src/fleet/control.js';
import { createOperationalStateHolder, createOpstate, type Opstate } from '../src/holder.js';
import type { Logger } from '../src/logger.js';
import { createPostgresSink } from '../src/sinks/postgres.js';
import { tempDirs } from './support/cli.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const KEY = randomBytes(32).toString('hex');
const tempDir = tempDirs('kora-control-');

/** A logger that keeps lines and wakes waiters on the n-th line containing a needle. */
function waitingLogger() {
  const lines: string[] = [];
  const waiters = new Set<() => boolean>();
  const at = (...args: unknown[]) => {
    lines.push(args.map(String).join(' '));
    for (const w of waiters) if (w()) waiters.delete(w);
  };
  const count = (needle: string) => lines.filter((l) => l.includes(needle)).length;
  const logger: Logger & { lines: string[]; until(needle: string, n?: number): Promise<void> } = {
    lines,
    error: at,
    warn: at,
    info: at,
    until(needle, n = 1) {
      if (count(needle) >= n) return Promise.resolve();
      return new Promise((resolve) => {
        waiters.add(() => {
          if (count(needle) < n) return false;
          resolve();
          return true;
        });
      });
    },
  };
  return logger;
}

/** Timers fired by the test: `fire(ms)` runs the pending ones set with that delay. */
function manualTimers(): ControlTimers & { fire(ms: number): number } {
  const pending = new Map<number, { fn: () => void; ms: number }>();
  let next = 0;
  return {
    set(fn, ms) {
      pending.set(++next, { fn, ms });
      return next;
    },
    clear(h) {
      pending.delete(h as number);
    },
    fire(ms) {
      let fired = 0;
      for (const [h, t] of [...pending]) {
        if (t.ms !== ms) continue;
        pending.delete(h);
        t.fn();
        fired++;
      }
      return fired;
    },
  };
}

interface Agent {
  readonly id: string;
  holder: Opstate;
  receiver: ControlReceiver;
  readonly outcomes: ControlOutcome[];
  until(n: number): Promise<void>;
  logger: ReturnType<typeof waitingLogger>;
}

let pgSchema: TestSchema;
let pool: pg.Pool;
const receivers: ControlReceiver[] = [];

beforeAll(async () => {
  pgSchema = await createTestSchema('fleetctl');
  pool = new pg.Pool({ connectionString: pgSchema.url, max: 12 });
  // Every agent's sink listens on the one pool.
  pool.setMaxListeners(50);
});

afterAll(async () => {
  for (const r of receivers) await r.stop();
  await pool?.end();
  await pgSchema?.drop();
});

async function startAgent(
  ws: string,
  id: string,
  o: { holder?: Opstate; run?: string; timers?: ControlTimers; pollMs?: number } = {},
): Promise<Agent> {
  const logger = waitingLogger();
  const holder =
    o.holder ??
    createOpstate({
      sink: createPostgresSink({ workspaceId: ws, pool, chainKey: KEY, logger }),
      agentId: id,
      // Instance ids are unique across workspaces (the log's UNIQUE (instance_id, seq)).
      instanceId: `${ws}/${id}:${o.run ?? 'run1'}`,
      initial: { primaryState: 'ready' },
      historySize: 500,
      logger,
    });
  await (holder.sink as unknown as { start(): Promise<void> }).start();
  const outcomes: ControlOutcome[] = [];
  const waiters = new Set<() => boolean>();
  const receiver = createControlReceiver({
    holder,
    db: pool,
    connectionString: pgSchema.url,
    workspaceId: ws,
    chainKey: KEY,
    pollMs: o.pollMs ?? 60_000,
    ...(o.timers ? { timers: o.timers } : {}),
    logger,
    onOutcome: (outcome) => {
      outcomes.push(outcome);
      for (const w of waiters) if (w()) waiters.delete(w);
    },
  });
  receivers.push(receiver);
  await receiver.start();
  return {
    id,
    holder,
    receiver,
    outcomes,
    logger,
    until: (n) =>
      outcomes.length >= n
        ? Promise.resolve()
        : new Promise((resolve) => {
            waiters.add(() => {
              if (outcomes.length < n) return false;
              resolve();
              return true;
            });
          }),
  };
}

const issue = (
  ws: string,
  action: ControlAction,
  target: string | null,
  args: ControlArgs = {},
  ttlMs?: number,
) =>
  issueCommand(pool, {
    workspaceId: ws,
    action,
    target,
    args,
    chainKey: KEY,
    ...(ttlMs ? { ttlMs } : {}),
  });

/** The command ids named by the agent's applied transitions, in commit order. */
const appliedIds = (holder: Opstate) =>
  holder
    .history()
    .map((r) => /^kora_control #(\d+) /.exec(r.trigger)?.[1])
    .filter((id): id is string => id !== undefined)
    .map(Number);

async function chainOf(ws: string, agentId: string) {
  const { rows } = await pool.query(
    `SELECT event_type, payload FROM event_log WHERE workspace_id = $1 AND agent_id = $2
      ORDER BY chain_seq`,
    [ws, agentId],
  );
  return rows as { event_type: string; payload: Record<string, unknown> }[];
}

/** Resolves once the database's clock has passed `at` (a command's expiry). */
async function pastOnDatabaseClock(at: Date): Promise<void> {
  for (;;) {
    const { rows } = await pool.query('SELECT clock_timestamp() > $1::timestamptz AS past', [
      at.toISOString(),
    ]);
    if (rows[0].past) return;
  }
}

describe('fleet control', () => {
  it('3 agents, 50 commands to one and to all: each applied once, in order, outcome recorded', async () => {
    const ws = 'fleet-50';
    const agents = await Promise.all(['a1', 'a2', 'a3'].map((id) => startAgent(ws, id)));
    const ids = agents.map((a) => a.id);
    // A mix the table sometimes refuses: pause twice, reset when ready, a refresh over
    // its threshold, and a stop (final) for a3 with commands after it.
    const plan = Array.from({ length: 50 }, (_, i) => {
      const target = i % 4 === 3 ? null : ids[i % 3]!;
      if (i === 40) return { action: 'stop' as const, target: 'a3', args: {} };
      const action = (['pause', 'reset', 'pause', 'credit-refresh', 'reset'] as const)[i % 5]!;
      const args: ControlArgs =
        action === 'pause'
          ? { cause: i % 2 ? 'cost_limit' : 'operator', trigger: `plan ${i}` }
          : action === 'credit-refresh'
            ? { reconciled_spend_usd: i % 3 ? 10 : 500, threshold_usd: 100 }
            : {};
      return { action, target, args };
    });
    // Issued concurrently: ids commit in order under the issuing lock.
    const commands = (
      await Promise.all(plan.map((p) => issue(ws, p.action, p.target, p.args)))
    ).sort((a, b) => a.command_id - b.command_id);

    // What each agent should do: the same events, in id order, on an in-memory model.
    type Want = { id: number; outcome: string; to: string | null; reason: string | null };
    const expected = new Map<string, Want[]>();
    for (const a of ids) {
      const model = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
      const list: Want[] = [];
      for (const c of commands.filter((c) => c.target_agent === null || c.target_agent === a)) {
        try {
          const next = await model.send(controlEvent(c) as never);
          list.push({ id: c.command_id, outcome: 'applied', to: next.primaryState, reason: null });
        } catch (err) {
          // The 409 reason the operator API would give.
          const reason = (err as Error).message;
          list.push({ id: c.command_id, outcome: 'refused', to: null, reason });
        }
      }
      expected.set(a, list);
    }
    await Promise.all(agents.map((a) => a.until(expected.get(a.id)!.length)));

    for (const a of agents) {
      const want = expected.get(a.id)!;
      expect(want.filter((w) => w.outcome === 'applied').length).toBeGreaterThan(5);
      expect(want.filter((w) => w.outcome === 'refused').length).toBeGreaterThan(0);
      // Each handled once, in id order, with the model's outcome.
      expect(
        a.outcomes.map((o) => ({
          id: o.command_id,
          outcome: o.outcome,
          to: o.to_state,
          reason: o.reason,
        })),
      ).toEqual(want);
      // Applied through the instance exactly once each, in order.
      expect(appliedIds(a.holder)).toEqual(
        want.filter((w) => w.outcome === 'applied').map((w) => w.id),
      );
      expect(a.receiver.stats.notifications).toBeGreaterThan(0);
      expect(a.receiver.stats.polls).toBe(0);
      expect(a.holder.chain?.stats.failures).toBe(0);
      // The chain: applied transitions name their command; refusals are events of their own.
      const chain = await chainOf(ws, a.id);
      const appliedInChain = chain
        .filter((e) => e.event_type === 'kora.operational_state.transitioned')
        .map((e) => /^kora_control #(\d+) /.exec(String(e.payload.trigger ?? ''))?.[1])
        .filter((x) => x !== undefined)
        .map(Number);
      expect(appliedInChain).toEqual(appliedIds(a.holder));
      const refusedInChain = chain.filter((e) => e.event_type === CONTROL_REFUSED_EVENT);
      expect(refusedInChain.map((e) => e.payload.command_id)).toEqual(
        want.filter((w) => w.outcome === 'refused').map((w) => w.id),
      );
      for (const e of refusedInChain) expect(String(e.payload.reason)).not.toBe('');
    }
    // a3 stopped at command 40's id; what came after was refused as final.
    const stop = commands.find((c) => c.action === 'stop')!;
    const a3 = agents[2]!;
    expect(a3.holder.current.primaryState).toBe('stopped');
    const after = a3.outcomes.filter((o) => o.command_id > stop.command_id);
    expect(after.length).toBeGreaterThan(0);
    for (const o of after) expect(o.reason).toContain('stopped is final');

    // Outcome rows: one per (command, addressed agent), none for the others, all keyed.
    const { rows } = await pool.query(
      `SELECT o.command_id::int AS id, o.agent_id, c.target_agent
         FROM kora_opstate_fleet_outcomes o JOIN kora_opstate_fleet_commands c USING (command_id)
        WHERE c.workspace_id = $1`,
      [ws],
    );
    expect(rows.length).toBe([...expected.values()].reduce((n, l) => n + l.length, 0));
    for (const r of rows)
      expect(r.target_agent === null || r.target_agent === r.agent_id).toBe(true);
    const toAll = commands.find((c) => c.target_agent === null)!;
    const sample = await readOutcomes(pool, toAll.command_id, KEY);
    expect(sample.map((o) => o.agent_id)).toEqual(ids);
    expect(sample.every((o) => o.verified)).toBe(true);
    // A refusal row carries the 409 reason the operator API would give.
    const refusal = (await readOutcomes(pool, after[0]!.command_id, KEY)).find(
      (o) => o.agent_id === 'a3',
    )!;
    expect(refusal).toMatchObject({ outcome: 'refused', from_state: 'stopped' });
    expect(refusal.reason).toMatch(/^invalid state transition stopped → .*: stopped is final$/);

    const verified = await (
      agents[0]!.holder.sink as unknown as { verifyChain(): Promise<{ ok: boolean }> }
    ).verifyChain();
    expect(verified.ok).toBe(true);
  });

  it('an agent down while commands are issued: applied when it comes back, expired after its TTL, an altered row refused', async () => {
    const ws = 'fleet-down';
    const a1 = await startAgent(ws, 'a1');
    const a2 = await startAgent(ws, 'a2');
    // Both have handled commands: where they are is in their chains.
    await issue(ws, 'pause', null, { trigger: 'warm-up' });
    await issue(ws, 'reset', null);
    await Promise.all([a1.until(2), a2.until(2)]);
    await a2.receiver.stop();

    const c1 = await issue(ws, 'pause', 'a2', { trigger: 'while down' });
    const c2 = await issue(ws, 'reset', 'a2', {}, 1);
    const c3 = await issue(ws, 'pause', null, { cause: 'substrate' });
    const c4 = await issue(ws, 'reset', 'a2', { trigger: 'as issued' });
    // A database writer without the key changes what c4 says.
    await pool.query(
      `UPDATE kora_opstate_fleet_commands SET args = '{"trigger": "as altered"}' WHERE command_id = $1`,
      [c4.command_id],
    );
    await a1.until(3);
    expect(a1.outcomes[2]).toMatchObject({
      command_id: c3.command_id,
      outcome: 'applied',
      to_state: 'paused',
    });
    // c2's TTL (1 ms) has passed on the database's clock.
    await pastOnDatabaseClock(c2.expires_at);

    // a2 comes back: a new run of the same agent, on the same chain.
    const back = await startAgent(ws, 'a2', { run: 'run2' });
    expect(back.receiver.stats.cursor).toBe(c4.command_id);
    expect(back.outcomes.map((o) => [o.command_id, o.outcome, o.to_state])).toEqual([
      [c1.command_id, 'applied', 'paused'],
      [c2.command_id, 'expired', null],
      [c3.command_id, 'refused', null],
      [c4.command_id, 'refused', null],
    ]);
    expect(back.outcomes[1]!.reason).toContain("not there within the command's TTL");
    expect(back.outcomes[2]!.reason).toContain('no §9.1 row for event "pause" from paused');
    expect(back.outcomes[3]!.reason).toBe(
      `command #${c4.command_id} does not verify with the chain key (key id ${controlKey(KEY).keyId}): inserted or altered without it`,
    );
    expect(appliedIds(back.holder)).toEqual([c1.command_id]);
    expect(back.holder.current.primaryState).toBe('paused');
    // In the chain: the refusals and the expiry, each with its command's id.
    const refused = (await chainOf(ws, 'a2')).filter((e) => e.event_type === CONTROL_REFUSED_EVENT);
    expect(refused.map((e) => [e.payload.command_id, e.payload.outcome])).toEqual([
      [c2.command_id, 'expired'],
      [c3.command_id, 'refused'],
      [c4.command_id, 'refused'],
    ]);
    // And on the rows, keyed by the agent.
    const rows = await readOutcomes(pool, c4.command_id, KEY);
    expect(rows).toMatchObject([{ agent_id: 'a2', outcome: 'refused', verified: true }]);
  });

  it('an agent that never handled a command applies the unexpired ones and skips the expired silently', async () => {
    const ws = 'fleet-fresh';
    const live = await issue(ws, 'pause', null, { trigger: 'before n1 existed' });
    const stale = await issue(ws, 'reset', null, {}, 1);
    await pastOnDatabaseClock(stale.expires_at);
    const n1 = await startAgent(ws, 'n1');
    expect(n1.outcomes.map((o) => [o.command_id, o.outcome, o.to_state])).toEqual([
      [live.command_id, 'applied', 'paused'],
    ]);
    expect(n1.receiver.stats.cursor).toBe(stale.command_id);
    expect(await readOutcomes(pool, stale.command_id, KEY)).toEqual([]);
  });

  it('a row a writer inserted or copied under a new id is refused and recorded; a replay is never applied twice', async () => {
    const ws = 'fleet-forge';
    const a = await startAgent(ws, 'f1');
    const c1 = await issue(ws, 'pause', 'f1');
    await a.until(1);
    expect(a.outcomes[0]).toMatchObject({ outcome: 'applied', to_state: 'paused' });
    // A copy of c1's row (its valid MAC) under a new id, as a reset.
    const { rows: copied } = await pool.query(
      `INSERT INTO kora_opstate_fleet_commands (command_id, workspace_id, target_agent, action,
         args, issued_by, issued_at, expires_at, key_id, mac)
       SELECT nextval('kora_opstate_fleet_command_id_seq'), workspace_id, target_agent, 'reset',
              args, issued_by, issued_at, expires_at, key_id, mac
         FROM kora_opstate_fleet_commands WHERE command_id = $1
       RETURNING command_id::int AS id`,
      [c1.command_id],
    );
    await a.until(2);
    // A row made up from scratch, under a key id of its own.
    const { rows: made } = await pool.query(
      `INSERT INTO kora_opstate_fleet_commands (command_id, workspace_id, target_agent, action,
         issued_by, issued_at, expires_at, key_id, mac)
       VALUES (nextval('kora_opstate_fleet_command_id_seq'), $1, NULL, 'reset', 'intruder', now(),
               now() + interval '1 hour', 'feedfacefeedface', repeat('0', 64))
       RETURNING command_id::int AS id`,
      [ws],
    );
    await a.until(3);
    expect(a.outcomes.slice(1).map((o) => [o.command_id, o.outcome])).toEqual([
      [copied[0].id, 'refused'],
      [made[0].id, 'refused'],
    ]);
    expect(a.outcomes[1]!.reason).toContain('does not verify with the chain key');
    expect(a.outcomes[2]!.reason).toContain('signed with key id "feedfacefeedface"');
    expect(a.holder.current.primaryState).toBe('paused');
    const refused = (await chainOf(ws, 'f1')).filter((e) => e.event_type === CONTROL_REFUSED_EVENT);
    expect(refused.map((e) => e.payload.command_id)).toEqual([copied[0].id, made[0].id]);

    // Replay: the outcome rows deleted, the agent woken — nothing is applied again.
    await pool.query('DELETE FROM kora_opstate_fleet_outcomes WHERE agent_id = $1', ['f1']);
    const history = a.holder.history().length;
    await a.receiver.wake();
    expect(a.outcomes).toHaveLength(3);
    expect(a.holder.history()).toHaveLength(history);
    // Nor by a new run, which reads where it was from its chain, not from those rows.
    await a.receiver.stop();
    const again = await startAgent(ws, 'f1', { run: 'run2' });
    expect(again.receiver.stats.cursor).toBe(made[0].id);
    expect(again.outcomes).toEqual([]);
    expect(appliedIds(again.holder)).toEqual([]);
    const { rows: left } = await pool.query(
      'SELECT count(*)::int AS n FROM kora_opstate_fleet_outcomes WHERE agent_id = $1',
      ['f1'],
    );
    expect(left[0].n).toBe(0);
    const verified = await (
      a.holder.sink as unknown as { verifyChain(): Promise<{ ok: boolean }> }
    ).verifyChain();
    expect(verified.ok).toBe(true);
  });

  it('LISTEN connection dropped: polling still delivers, and LISTEN comes back', async () => {
    const ws = 'fleet-drop';
    const timers = manualTimers();
    const a = await startAgent(ws, 'd1', { timers, pollMs: 5000 });
    expect(a.receiver.stats.listening).toBe(true);
    await issue(ws, 'pause', 'd1');
    await a.until(1);
    expect(a.receiver.stats).toMatchObject({ notifications: 1, polls: 0 });

    const pid = a.receiver.stats.listenPid;
    await pool.query('SELECT pg_terminate_backend($1)', [pid]);
    await a.logger.until('connection lost');
    expect(a.receiver.stats).toMatchObject({ listening: false, listenLost: 1 });
    const c2 = await issue(ws, 'reset', 'd1');
    // No connection to notify it: the poll finds it.
    expect(timers.fire(5000)).toBe(1);
    await a.until(2);
    expect(a.outcomes[1]).toMatchObject({ command_id: c2.command_id, outcome: 'applied' });
    expect(a.receiver.stats).toMatchObject({ notifications: 1, polls: 1 });

    // The reconnect timer (1 s by default) brings LISTEN back: the next command arrives
    // by notification, with no poll.
    expect(timers.fire(1000)).toBe(1);
    await a.logger.until('LISTEN kora_control (backend pid', 2);
    expect(a.receiver.stats.listening).toBe(true);
    expect(a.receiver.stats.listenPid).not.toBe(pid);
    const c3 = await issue(ws, 'pause', 'd1');
    await a.until(3);
    expect(a.outcomes[2]).toMatchObject({ command_id: c3.command_id, outcome: 'applied' });
    expect(a.receiver.stats).toMatchObject({ notifications: 2, polls: 1 });
  });

  it('kora-opstate control: issues, waits for the answers and prints them; exit 0, 1 or 3', async () => {
    const ws = 'fleet-cli';
    const a = await startAgent(ws, 'c1');
    // c1 in the fleet registry (migration 5): what --all waits for.
    await pool.query(
      `INSERT INTO kora_opstate_fleet_agents (workspace_id, agent_id, instance_id, version,
         started_at, heartbeat_ms, primary_state, claim_permission)
       VALUES ($1, 'c1', 'c1-run', 'test', now(), 60000, 'ready', 'normal')`,
      [ws],
    );
    const env = { DATABASE_URL: pgSchema.url, KORA_CHAIN_KEY: KEY, KORA_WORKSPACE: ws };
    const cli = async (...args: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await runCli(['control', ...args], {
        stdout: (t) => {
          stdout += t;
        },
        stderr: (t) => {
          stderr += t;
        },
        env,
        cwd: tmpdir(),
      });
      return { code, stdout, stderr };
    };

    const paused = await cli('pause', '--agent', 'c1', '--cause', 'cost_limit', '--trigger', 'cli');
    expect(paused).toMatchObject({ code: 0, stderr: '' });
    expect(paused.stdout).toMatch(/^command #\d+ pause → agent "c1" of workspace "fleet-cli"/);
    expect(paused.stdout).toContain('  c1     applied  ready → paused\n');
    expect(a.holder.history().at(-1)?.trigger).toMatch(/^kora_control #\d+ pause: cli$/);

    const again = await cli('pause', '--agent', 'c1');
    expect(again.code).toBe(1);
    expect(again.stdout).toContain('refused  invalid state transition paused → ?');

    const refresh = await cli('credit-refresh', '--all', '--spend', '12.5', '--threshold', '100');
    expect(refresh.code).toBe(0);
    expect(refresh.stdout).toContain('→ every agent of workspace "fleet-cli"');
    expect(refresh.stdout).toContain('c1     applied  paused → ready');
    expect(a.holder.current.primaryState).toBe('ready');

    const ghost = await cli('stop', '--agent', 'ghost', '--wait-ms', '150', '--json');
    expect(ghost.code).toBe(3);
    const body = JSON.parse(ghost.stdout);
    expect(body).toMatchObject({ outcomes: [], pending: ['ghost'] });
    expect(body.command).toMatchObject({ action: 'stop', target_agent: 'ghost' });

    // Usage errors: exit 2, naming what is wrong.
    for (const [args, says] of [
      [['pause'], 'name the agent (--agent ID) or pass --all'],
      [['pause', '--agent', 'c1', '--all'], 'name the agent (--agent ID) or pass --all'],
      [['dance', '--all'], 'unknown control command "dance"'],
      [['credit-refresh', '--all', '--spend', '5'], 'credit-refresh needs --spend and --threshold'],
      [['credit-refresh', '--all', '--spend', 'x', '--threshold', '1'], 'invalid --spend "x"'],
      [['pause', '--all', '--cause', 'bored'], 'invalid cause "bored"'],
      [['reset', '--all', '--cause', 'operator'], 'a cause is for pause, not reset'],
    ] as const) {
      const r = await cli(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(says);
    }
    const embedded = await runCli(['control', 'pause', '--all'], {
      stdout: () => {},
      stderr: (t) => expect(t).toContain('fleet control needs Postgres'),
      env: { KORA_CHAIN_KEY: KEY },
      cwd: tmpdir(),
    });
    expect(embedded).toBe(2);
    let keyless = '';
    const noKey = await runCli(['control', 'pause', '--all'], {
      stdout: () => {},
      stderr: (t) => {
        keyless += t;
      },
      // A data dir without a key file.
      env: { DATABASE_URL: pgSchema.url, KORA_WORKSPACE: ws, KORA_DATA_DIR: tempDir() },
      cwd: tmpdir(),
    });
    expect(noKey).toBe(1);
    expect(keyless).toContain('no chain key found');
    // Nothing the refused invocations asked for reached the agent.
    expect(a.outcomes.map((o) => o.outcome)).toEqual(['applied', 'refused', 'applied']);
  });
});
