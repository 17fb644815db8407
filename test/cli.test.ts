/**
 * The `kora-opstate` CLI end to end, each command a child process: `start` on the embedded
 * PGlite store and on the real Postgres service, `events`, `verify-chain` (also through
 * the running agent, and after tampering), `table`, `diagram`, and bad flags (exit 2).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { toMermaid } from '../src/diagram.js';
import { createPostgresSink } from '../src/sinks/postgres.js';
import { TRANSITION_TABLE } from '../src/table.js';
import { type AgentProcess, startTsProcess } from './support/agentProcess.js';
import { CLI_BIN as bin, runCli, tempDirs } from './support/cli.js';
import { createTestSchema, type TestSchema, urlWithSchema } from './support/postgres.js';
import { createThrowawayCluster, type ThrowawayCluster } from './support/throwawayCluster.js';

const tempDir = tempDirs('kora-cli-');

/** Runs one short CLI command to its end, in a data dir of its own unless the test names one. */
const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
  runCli(args, { KORA_DATA_DIR: tempDir(), ...env });

/** `start` with fast demo settings; resolves once its panel URL is printed. */
async function startAgentCli(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ agent: AgentProcess; url: string }> {
  const agent = startTsProcess(
    bin,
    [
      'start',
      '--port',
      '0',
      '--tickets',
      '2',
      '--ticket-every-ms',
      '0',
      '--work-ms',
      '150',
      ...args,
    ],
    { DATABASE_URL: undefined, KORA_OPERATOR_TOKEN: undefined, KORA_DATA_DIR: tempDir(), ...env },
  );
  const line = await agent.waitFor(/ panel +http:/);
  const url = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(line)![1]!;
  return { agent, url };
}

const get = async (url: string) => {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

interface JsonEvent {
  event_id: string;
  event_type: string;
  chain_seq: number;
  payload: { from_primary_state: string; to_primary_state: string; trigger: string };
}
const parseEvents = (stdout: string): JsonEvent[] =>
  stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as JsonEvent);
const arrows = (events: JsonEvent[]) =>
  events
    .filter((e) => e.event_type === 'kora.operational_state.transitioned')
    .map((e) => `${e.payload.from_primary_state}→${e.payload.to_primary_state}`);

describe('kora-opstate start on the embedded PGlite store', () => {
  const dataDir = tempDir();
  let agent: AgentProcess;
  let url: string;

  beforeAll(async () => {
    ({ agent, url } = await startAgentCli(['--data-dir', dataDir, '--operator-token', 's3cret']));
  }, 120_000);

  afterAll(() => {
    if (agent.child.exitCode === null) agent.child.kill('SIGKILL');
  });

  it('boots through its gates to ready and serves /readyz 200', async () => {
    const boot = await agent.waitFor(/^\[kora-opstate\] boot +/);
    expect(boot).toMatch(
      /boot +ready \(event_store pass, instance_id pass, ticket_queue pass, schema_epoch pass\)/,
    );
    expect(agent.lines).toContainEqual(
      expect.stringMatching(/#1 booting → ready +boot\.gates_passed/),
    );
    const ready = await get(`${url}/readyz`);
    expect(ready).toEqual({
      status: 200,
      body: {
        ready: true,
        primary_state: expect.stringMatching(/^(ready|active)$/),
        claim_permission: 'normal',
      },
    });
  });

  it('works demo tickets: READY ⇄ ACTIVE, one log line per transition', async () => {
    await agent.waitFor(/→ ready +claim\.released .*demo-.*-2.*\(done\)/);
    const acquired = agent.lines.filter((l) => / ready → active +claim\.acquired/.test(l));
    const released = agent.lines.filter((l) => / active → ready +claim\.released/.test(l));
    expect(acquired).toHaveLength(2);
    expect(released).toHaveLength(2);
    const status = await get(`${url}/api/operational-state`);
    expect(status.body.primary_state).toBe('ready');
  });

  it('reads and verifies the chain through the running agent (the store is locked)', async () => {
    const events = await cli(['events', '--data-dir', dataDir, '--json', '-n', '50']);
    expect(events.stderr).toBe('');
    expect(events.code).toBe(0);
    expect(arrows(parseEvents(events.stdout))).toEqual([
      'booting→ready',
      'ready→active',
      'active→ready',
      'ready→active',
      'active→ready',
    ]);
    // This agent has an operator token: verifying through it needs the token.
    const denied = await cli(['verify-chain', '--data-dir', dataDir]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain(
      'needs its operator token to verify: pass --operator-token or set KORA_OPERATOR_TOKEN',
    );
    const verify = await cli(['verify-chain', '--data-dir', dataDir, '--operator-token', 's3cret']);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(
      /chain ok: workspace "default", 6 events \(the running agent at http/,
    );
    const byEnv = await cli(['verify-chain', '--data-dir', dataDir], {
      KORA_OPERATOR_TOKEN: 's3cret',
    });
    expect(byEnv.code).toBe(0);
  });

  it('refuses a second start on the same store, naming the agent that holds it', async () => {
    const second = await cli(['start', '--port', '0', '--data-dir', dataDir]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`in use by another kora-opstate start (pid ${agent.child.pid}`);
    // The first agent is unharmed.
    expect((await get(`${url}/livez`)).status).toBe(200);
  });

  it('follows new events live with events --follow, and ends cleanly on SIGINT', async () => {
    const follower = startTsProcess(bin, [
      'events',
      '--data-dir',
      dataDir,
      '--follow',
      '--interval-ms',
      '50',
      '-n',
      '1',
    ]);
    try {
      await follower.waitFor(/#6 /);
      const res = await fetch(`${url}/api/operational-state/transitions`, {
        method: 'POST',
        headers: { authorization: 'Bearer s3cret', 'content-type': 'application/json' },
        body: JSON.stringify({ to: 'paused', trigger: 'operator pause from the cli test' }),
      });
      expect(res.status).toBe(200);
      expect(await follower.waitFor(/#7 /)).toMatch(
        /kora\.operational_state\.transitioned .* ready → paused .*reasons=operator .*"operator pause from the cli test"/,
      );
      follower.child.kill('SIGINT');
      expect(await follower.exited).toEqual({ code: 0, signal: null });
    } finally {
      await follower.stop();
    }
  });

  it('SIGTERM: pauses, stops, flushes, exits 0, releases the store; the chain verifies', async () => {
    agent.child.kill('SIGTERM');
    expect((await agent.exited).code).toBe(0);
    expect(agent.lines).toContainEqual(
      expect.stringMatching(/paused → stopped +stop .*STOP-KORA L5/),
    );
    expect(existsSync(join(dataDir, 'agent.lock.json'))).toBe(false);

    // The directory is free again: the commands open it themselves.
    const events = await cli(['events', '--data-dir', dataDir, '--json']);
    expect(events.code).toBe(0);
    const chain = parseEvents(events.stdout);
    expect(arrows(chain)).toEqual([
      'booting→ready',
      'ready→active',
      'active→ready',
      'ready→active',
      'active→ready',
      'ready→paused',
      'paused→stopped',
    ]);
    expect(chain.map((e) => e.event_type)).toContain('kora.boot.ready');
    const verify = await cli(['verify-chain', '--data-dir', dataDir]);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toContain(`chain ok: workspace "default", ${chain.length} events`);
  });

  it('verify-chain after a tampered row: exit 1 naming that event', async () => {
    const db = await PGlite.create(join(dataDir, 'pglite'));
    let victim: string;
    try {
      const { rows } = await db.query<{ event_id: string }>(
        "SELECT event_id::text AS event_id FROM event_log WHERE payload->>'to_primary_state' = 'active' ORDER BY chain_seq LIMIT 1",
      );
      victim = rows[0]!.event_id;
      await db.query(
        `UPDATE event_log SET payload = jsonb_set(payload, '{trigger}', '"nothing happened"') WHERE event_id = $1`,
        [victim],
      );
    } finally {
      await db.close();
    }
    // The row is below the head verified before: an incremental run does not re-read it
    // (documented); --full does.
    const verify = await cli(['verify-chain', '--data-dir', dataDir, '--full']);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain(`chain BROKEN: workspace "default", event ${victim}`);
    const json = await cli(['verify-chain', '--data-dir', dataDir, '--full', '--json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, eventId: victim });
  });

  it('a stale lock (its agent was killed -9) does not hold the store', async () => {
    const gone = startTsProcess(bin, ['table']);
    await gone.exited;
    writeFileSync(
      join(dataDir, 'agent.lock.json'),
      JSON.stringify({ pid: gone.child.pid, url: 'http://127.0.0.1:9/' }),
    );
    const verify = await cli(['verify-chain', '--data-dir', dataDir, '--full']);
    // Read from the directory itself (not the dead agent's URL): still the tampered chain.
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain(`; embedded PGlite ${dataDir})`);
  });
});

describe('kora-opstate start on PostgreSQL (DATABASE_URL)', () => {
  let db: TestSchema;
  beforeAll(async () => {
    db = await createTestSchema('cli');
  });
  afterAll(async () => {
    await db.drop();
  });

  it('boots, works a ticket, stops on SIGTERM with exit 0; verify-chain catches tampering', async () => {
    // The agent's data dir (chain key, spool, verified heads) is the test's own.
    const env = { DATABASE_URL: db.url, KORA_WORKSPACE: 'ws-cli', KORA_DATA_DIR: tempDir() };
    const { agent, url } = await startAgentCli([], env);
    try {
      await agent.waitFor(/^\[kora-opstate\] boot +ready/);
      expect((await get(`${url}/readyz`)).status).toBe(200);
      await agent.waitFor(/→ ready +claim\.released/);
      // Postgres is shared: another process reads the chain while the agent runs.
      const live = await cli(['verify-chain', '--json'], env);
      expect(live.code).toBe(0);
      expect(JSON.parse(live.stdout)).toMatchObject({ workspace_id: 'ws-cli', ok: true });
      agent.child.kill('SIGTERM');
      expect((await agent.exited).code).toBe(0);
    } finally {
      await agent.stop();
    }
    const { rows: tickets } = await db.pool.query<{ status: string; resolved_by: string }>(
      "SELECT status, resolved_by FROM tickets WHERE queue = 'demo' AND status = 'done'",
    );
    expect(tickets.length).toBeGreaterThanOrEqual(1);

    const events = await cli(['events', '--json', '-n', '100'], env);
    const chain = parseEvents(events.stdout);
    expect(arrows(chain)).toContain('ready→active');
    expect(arrows(chain)).toContain('active→ready');
    expect(arrows(chain).slice(-2)).toEqual(['ready→paused', 'paused→stopped']);
    expect((await cli(['verify-chain'], env)).code).toBe(0);

    const victim = chain.find((e) => e.payload.to_primary_state === 'active')!.event_id;
    await db.pool.query(
      `UPDATE event_log SET payload = jsonb_set(payload, '{trigger}', '"forged"') WHERE event_id = $1`,
      [victim],
    );
    const broken = await cli(['verify-chain', '--full'], env);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain(`event ${victim}`);
  });

  it('events --follow misses nothing when thousands of events arrive between two looks', async () => {
    const env = { DATABASE_URL: db.url, KORA_WORKSPACE: 'ws-burst' };
    const sink = createPostgresSink({ workspaceId: 'ws-burst', pool: db.pool });
    await sink.start();
    const events = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({
        event_type: 'kora.operational_state.transitioned',
        payload: {
          from_primary_state: 'ready',
          to_primary_state: 'ready',
          trigger: `b${from + i}`,
        },
        workspace_id: 'ws-burst',
        instance_id: 'burst',
        seq: from + i,
        occurred_at: new Date().toISOString(),
      }));
    // One event before the follower starts: printing it is its first look, observed.
    await sink.append(events(1, 1));
    const follower = startTsProcess(
      bin,
      ['events', '--follow', '--json', '--interval-ms', '50'],
      env,
    );
    try {
      await follower.waitFor(/"chain_seq":1[,}]/);
      // 2,500 events in one append, one statement: they become visible together, so they
      // all arrive between two of the follower's looks — two and a half pages at once.
      const burst = 2500;
      await sink.append(events(2, burst));
      await follower.waitFor(new RegExp(`"chain_seq":${burst + 1}[,}]`));
      const printed = follower.lines.map((l) => (JSON.parse(l) as JsonEvent).chain_seq);
      expect(printed).toEqual(Array.from({ length: burst + 1 }, (_, i) => i + 1));
      follower.child.kill('SIGINT');
      expect(await follower.exited).toEqual({ code: 0, signal: null });
    } finally {
      await follower.stop();
      await sink.close();
    }
  });
});

describe('kora-opstate start on a Postgres that refuses it: exit 1 at once, one line', () => {
  // The machine's service trusts 127.0.0.1 (a wrong password passes there): a cluster of
  // its own with password auth, a role without CREATE, and no database "nope".
  let cluster: ThrowawayCluster;
  beforeAll(async () => {
    cluster = await createThrowawayCluster({ password: 'right-pw' });
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE kora_limited LOGIN PASSWORD 'limited-pw'`);
      await admin.query('CREATE SCHEMA locked');
      await admin.query('GRANT USAGE ON SCHEMA locked TO kora_limited');
    } finally {
      await admin.end();
    }
  }, 120_000);
  afterAll(async () => {
    await cluster?.destroy();
  });

  const url = (change: (u: URL) => void, schema?: string) => () => {
    const u = new URL(cluster.url);
    change(u);
    return schema ? urlWithSchema(u.toString(), schema) : u.toString();
  };
  it.each([
    {
      name: 'a wrong password',
      url: url((u) => {
        u.password = 'wrong-pw';
      }),
      said: 'password authentication failed for user "postgres" (28P01); check the user name and password in the URL',
      masked: 'postgres:***@',
    },
    {
      name: 'a database that does not exist',
      url: url((u) => {
        u.pathname = '/nope';
      }),
      said: 'database "nope" does not exist (3D000); create that database (createdb) or put an existing one in the URL',
      masked: 'postgres:***@',
    },
    {
      name: 'a user without permission to create the tables',
      url: url((u) => {
        u.username = 'kora_limited';
        u.password = 'limited-pw';
      }, 'locked'),
      said: "permission denied for schema locked (42501); grant the user CREATE and USAGE on the schema kora-opstate's tables go into (or use its owner)",
      masked: 'kora_limited:***@',
    },
  ])(
    '$name',
    async ({ url, said, masked }) => {
      const dataDir = tempDir();
      // A retry would wait 10 minutes: passing within the test's timeout means "at once".
      const { code, stdout, stderr } = await cli(
        ['start', '--port', '0', '--boot-retry-ms', '600000', '--ticket-every-ms', '0'],
        { DATABASE_URL: url(), KORA_DATA_DIR: dataDir },
      );
      expect(code, stderr).toBe(1);
      expect(stdout).not.toContain('boot.gate_retry');
      expect(stdout).toMatch(/\[kora-opstate\] boot +stopped \(event_store fail\)/);
      const lines = stderr.trimEnd().split('\n');
      // One line names the store (password masked), the refusal and what to do.
      const naming = lines.filter((l) => l.includes('127.0.0.1'));
      expect(naming, stderr).toHaveLength(1);
      expect(naming[0], stderr).toMatch(
        `[kora-opstate] cannot use the store postgres://${masked}127.0.0.1:${cluster.port}/`,
      );
      expect(naming[0]!.endsWith(`: ${said}`), naming[0]).toBe(true);
      expect(stderr).not.toMatch(/right-pw|wrong-pw|limited-pw/);
      expect(stderr).not.toMatch(/^\s+at /m); // no stack without KORA_DEBUG=1
      // The boot's own events could not be stored: the close line says so, with the cause.
      const cause = said.slice(0, said.indexOf(' ('));
      expect(stderr).toContain(`not stored (last error: ${cause})`);
      expect(lines.length, stderr).toBeLessThanOrEqual(4);
    },
    60_000,
  );

  it('verify-chain and events on such a store: exit 1, the same one line', async () => {
    const nope = url((u) => {
      u.pathname = '/nope';
    })();
    for (const command of ['verify-chain', 'events']) {
      const { code, stdout, stderr } = await cli([command], { DATABASE_URL: nope });
      expect({ code, stdout, stderr }).toEqual({
        code: 1,
        stdout: '',
        stderr: `kora-opstate ${command}: cannot use the store postgres://postgres:***@127.0.0.1:${cluster.port}/nope: database "nope" does not exist (3D000); create that database (createdb) or put an existing one in the URL\n`,
      });
    }
  }, 60_000);
});

describe('kora-opstate start: faults and the inspector', () => {
  it('an unreachable Postgres: the transient gate retries, then the boot stops and exit is 1', async () => {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    const dataDir = tempDir();
    const agent = startTsProcess(
      bin,
      ['start', '--port', '0', '--boot-retry-ms', '5', '--ticket-every-ms', '0'],
      { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/test', KORA_DATA_DIR: dataDir },
    );
    try {
      const { code } = await agent.exited;
      expect(code).toBe(1);
      const retries = agent.lines.filter((l) =>
        / booting → booting +boot\.gate_retry +permission=none reasons=substrate /.test(l),
      );
      expect(retries).toHaveLength(4); // 5 attempts
      expect(agent.lines).toContainEqual(
        expect.stringMatching(/ booting → stopped +boot\.gate_failed /),
      );
      expect(agent.lines).toContainEqual(
        expect.stringMatching(
          /\[kora-opstate\] boot +stopped \(event_store fail after 5 attempts\)/,
        ),
      );
      expect(agent.stderr()).toMatch(/boot ended stopped: gate event_store: .*ECONNREFUSED/);
      // Its chain events had nowhere to go: said out loud, with the count and the true
      // cause, never silently.
      expect(agent.stderr()).toMatch(
        /closed with 6 event\(s\) not stored \(last error: connect ECONNREFUSED 127\.0\.0\.1:1\)/,
      );
      expect(agent.stderr()).not.toMatch(/^\s+at /m);
    } finally {
      await agent.stop();
    }
  }, 60_000);

  it('SIGTERM while a gate is still retrying: paused, stopped, exit without waiting out the boot', async () => {
    const agent = startTsProcess(
      bin,
      ['start', '--port', '0', '--boot-retry-ms', '600000', '--ticket-every-ms', '0'],
      { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/test', KORA_DATA_DIR: tempDir() },
    );
    try {
      await agent.waitFor(/ booting → booting +boot\.gate_retry /);
      agent.child.kill('SIGTERM');
      // The store never opened: its events wait in the spool for the next run, said out
      // loud, and nothing is lost, so the shutdown is a clean one.
      expect((await agent.exited).code).toBe(0);
      const transitions = agent.lines.filter((l) => /^\[kora-opstate\] #\d+ /.test(l));
      expect(transitions.map((l) => /#\d+ (\w+ → \w+)/.exec(l)![1])).toEqual([
        'booting → booting',
        'booting → paused',
        'paused → stopped',
      ]);
      expect(agent.stderr()).toMatch(/they stay in the spool .*spool/);
    } finally {
      await agent.stop();
    }
  }, 60_000);

  it('--inspect: a local WebSocket client receives the actor, its events and snapshots', async () => {
    const { agent, url } = await startAgentCli(['--data-dir', tempDir(), '--inspect']);
    try {
      const line = await agent.waitFor(/ inspector +http:/);
      const wsUrl = /\(WebSocket (ws:\/\/127\.0\.0\.1:\d+)/.exec(line)![1]!;
      const ws = new WebSocket(wsUrl);
      const types: string[] = [];
      const seen: string[] = [];
      ws.on('message', (data) => {
        const m = JSON.parse(String(data)) as { type: string; event?: { type?: string } };
        types.push(m.type);
        if (m.type === '@xstate.event' && m.event?.type) seen.push(m.event.type);
      });
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      // The relay replays what happened before this client came: the boot and the claims.
      await agent.waitFor(/→ ready +claim\.released/);
      await expect.poll(() => seen, { timeout: 5000 }).toContain('claim.released');
      expect(types).toContain('@xstate.actor');
      expect(types).toContain('@xstate.snapshot');
      expect(seen).toContain('boot.gates_passed');
      expect(seen).toContain('claim.acquired');
      expect((await get(`${url}/readyz`)).status).toBe(200);
      ws.close();
      agent.child.kill('SIGTERM');
      expect((await agent.exited).code).toBe(0);
    } finally {
      await agent.stop();
    }
  });
  it('--inspect without the optional @statelyai/inspect: exit 1 saying how to install it', async () => {
    // Resolving the package fails as it does when it is not installed; nothing else needs it.
    const hook = fileURLToPath(new URL('./support/withoutStatelyInspect.mjs', import.meta.url));
    const { code, stderr } = await cli(
      ['start', '--port', '0', '--inspect', '--ticket-every-ms', '0'],
      { NODE_OPTIONS: `--import ${hook}` },
    );
    expect(stderr).toContain(
      'kora-opstate start: the Stately inspector needs the optional package @statelyai/inspect, ' +
        'which is not installed; run `npm install @statelyai/inspect`',
    );
    expect(code).toBe(1);
  }, 60_000);
});

describe('kora-opstate commands and flags', () => {
  it('table prints the 15 rows of the derived table', async () => {
    const { code, stdout } = await cli(['table']);
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(2 + TRANSITION_TABLE.length);
    for (const row of TRANSITION_TABLE) {
      expect(lines[1 + row.row]).toMatch(
        new RegExp(`^${row.row} +${row.from} +${row.to} +${row.event.replace('.', '\\.')} +`),
      );
      expect(lines[1 + row.row]).toContain(row.trigger);
    }
    const json = await cli(['table', '--json']);
    expect(JSON.parse(json.stdout)).toEqual(JSON.parse(JSON.stringify(TRANSITION_TABLE)));
  });

  it('diagram prints the Mermaid statechart, or SVG', async () => {
    expect((await cli(['diagram'])).stdout).toBe(toMermaid());
    const svg = await cli(['diagram', '--format', 'svg']);
    expect(svg.code).toBe(0);
    expect(svg.stdout).toMatch(
      /^(<\?xml [^>]*\?>\n)?<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/,
    );
    for (const state of ['booting', 'ready', 'active', 'paused', 'stopped']) {
      expect(svg.stdout).toContain(`>${state}<`);
    }
  });

  it.each<[string[], Record<string, string>, string | RegExp]>([
    [['start', '--bogus'], {}, 'unknown option --bogus'],
    [['start', '--prot', '8080'], {}, 'unknown option --prot (did you mean --port?)'],
    [['start', '--port'], {}, '--port needs a value'],
    [['start', '--inspect=yes'], {}, '--inspect takes no value'],
    [['events', '-x'], {}, 'unknown option -x'],
    [
      ['start', '--port', 'abc'],
      {},
      'invalid --port "abc": expected a whole number from 0 to 65535',
    ],
    [
      ['start'],
      { KORA_PORT: 'abc' },
      'invalid KORA_PORT "abc": expected a whole number from 0 to 65535',
    ],
    [
      ['start', '--port', '70000'],
      {},
      'invalid --port "70000": expected a whole number from 0 to 65535',
    ],
    [
      ['start', '--operator-token', ''],
      {},
      'invalid --operator-token: it must be non-empty, without whitespace',
    ],
    [
      ['start'],
      { KORA_OPERATOR_TOKEN: 'a b' },
      'invalid KORA_OPERATOR_TOKEN: it must be non-empty, without whitespace',
    ],
    [
      ['start', '--allowed-host', 'ok.test', '--allowed-host', 'example.org:80'],
      {},
      /^invalid --allowed-host "example\.org:80": expected a host name/,
    ],
    [
      ['start', '--database-url', 'mysql://x/y'],
      {},
      'invalid --database-url "mysql://x/y": not a postgres:// URL',
    ],
    // The password is masked in the message too.
    [
      ['verify-chain'],
      { DATABASE_URL: 'mysql://u:pw@x/y' },
      'invalid DATABASE_URL "mysql://u:***@x/y": not a postgres:// URL',
    ],
    [
      ['start', '--agent-id', 'a/b'],
      {},
      /^invalid --agent-id: agent id must be 1–200 characters of letters, digits .*, got "a\/b"$/,
    ],
    [
      ['start'],
      { KORA_AGENT_ID: '../x' },
      /^invalid KORA_AGENT_ID: agent id must be .*, got "\.\.\/x"$/,
    ],
    [['events', '-n', '0'], {}, 'invalid --limit "0": expected a whole number from 1 to 1000'],
    [['events', 'extra'], {}, 'unexpected argument "extra"'],
    [['diagram', '--format', 'png'], {}, 'unknown --format "png"; expected mermaid or svg'],
    [['verify-chain', '--workspace', ' '], {}, 'invalid --workspace " ": empty'],
    [['events'], { KORA_WORKSPACE: ' ' }, 'invalid KORA_WORKSPACE " ": empty'],
  ])('%j %j → exit 2: one line naming the flag or variable, one hint', async (args, env, says) => {
    const { code, stderr, stdout } = await cli(args, env);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    const [line, hint, ...rest] = stderr.split('\n');
    const prefix = `kora-opstate ${args[0]}: `;
    expect(line!.startsWith(prefix), stderr).toBe(true);
    if (typeof says === 'string') expect(line!.slice(prefix.length)).toBe(says);
    else expect(line!.slice(prefix.length)).toMatch(says);
    expect(hint).toBe(`run kora-opstate ${args[0]} --help for its options`);
    expect(rest).toEqual(['']);
  });

  it('an unknown command: one line and the hint; no command at all: the command list', async () => {
    const unknown = await cli(['frobnicate']);
    expect(unknown).toEqual({
      code: 2,
      stdout: '',
      stderr: 'kora-opstate: unknown command "frobnicate"\nrun kora-opstate --help\n',
    });
    const none = await cli([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^Usage: kora-opstate <command>/);
  });

  it.each(['start', 'table', 'diagram', 'verify-chain', 'events'])(
    '%s --help: every option description starts in one column',
    async (command) => {
      const { code, stdout } = await cli([command, '--help']);
      expect(code).toBe(0);
      const lines = stdout.split('\n');
      const options = lines.slice(lines.indexOf('Options:') + 1).filter((l) => l.trim() !== '');
      expect(options.length).toBeGreaterThan(0);
      // Flag lines: "  -x, --flag ARG   text"; continuation lines: indented text.
      const columns = options.map((l) =>
        l.startsWith('  -')
          ? /^ {2}-\S.*?\s{2,}(?=\S)/.exec(l)![0].length
          : /^ +/.exec(l)![0].length,
      );
      expect(new Set(columns).size, stdout).toBe(1);
    },
  );

  it.each(['start', 'table', 'diagram', 'verify-chain', 'events'])(
    '%s --help prints its usage, exit 0',
    async (command) => {
      const { code, stdout } = await cli([command, '--help']);
      expect(code).toBe(0);
      expect(stdout).toContain(`Usage: kora-opstate ${command}`);
    },
  );

  it('start on a port that is taken: exit 1 naming it, the store left unlocked', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as AddressInfo;
    const dir = tempDir();
    try {
      const { code, stderr } = await cli(['start', '--port', String(port), '--data-dir', dir]);
      expect(code).toBe(1);
      expect(stderr).toContain(`127.0.0.1:${port} is in use; pass another --port`);
      expect(existsSync(join(dir, 'agent.lock.json'))).toBe(false);
    } finally {
      taken.close();
    }
  });

  it('verify-chain on a directory with no store says so (exit 1)', async () => {
    const empty = tempDir();
    const { code, stderr } = await cli(['verify-chain', '--data-dir', empty]);
    expect(code).toBe(1);
    expect(stderr).toContain(`no embedded store at ${empty}`);
  });
});
