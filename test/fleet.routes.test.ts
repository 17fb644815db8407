/**
 * The fleet's command routes (SPEC §12, issue 13 item 4: "the panel's fleet page offers
 * the same"), as `Request`s to the app on a real PostgreSQL: `POST /api/fleet/commands`
 * behind the operator token (403 without one configured, 401 with a wrong one, 400 naming
 * the bad field), issuing what `kora-opstate control` issues, which two agents with their
 * control receivers apply or refuse; `GET /api/fleet/commands/:id` reading the outcomes,
 * the agents still awaited and the expiry; 501 without the `fleetControl` option.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ControlOutcome,
  type ControlReceiver,
  createControlReceiver,
} from '../src/fleet/control.js';
import { createFleetRegistry, type FleetRegistry } from '../src/fleet/registry.js';
import { createOpstate, type Opstate } from '../src/holder.js';
import { createStatusApp, type StatusApp } from '../src/http/app.js';
import { applyMigrations } from '../src/sinks/migrations.js';
import { quietLogger } from './support/httpHandler.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const KEY = randomBytes(32).toString('hex');
const WS = 'ws-fleet-routes';
const TOKEN = 'fleet-operator-token';
const AGENTS = ['r1', 'r2'] as const;

let db: TestSchema;
let holders: Opstate[];
let registries: FleetRegistry[];
let receivers: ControlReceiver[];
const outcomes: ControlOutcome[] = [];
const waiters = new Set<() => boolean>();

/** Resolves once an agent recorded its outcome of command `id`. */
function outcomeOf(id: number, agent: string): Promise<ControlOutcome> {
  const find = () => outcomes.find((o) => o.command_id === id && o.agent_id === agent);
  const found = find();
  if (found) return Promise.resolve(found);
  return new Promise((resolve) => {
    waiters.add(() => {
      const o = find();
      if (o) resolve(o);
      return o !== undefined;
    });
  });
}

beforeAll(async () => {
  db = await createTestSchema('fleetroutes');
  await applyMigrations(db.pool);
  holders = AGENTS.map(() => createOpstate({ logger: quietLogger() }));
  registries = AGENTS.map((agentId, i) =>
    createFleetRegistry({
      opstate: holders[i]!,
      db: db.pool,
      workspaceId: WS,
      agentId,
      instanceId: `${agentId}-run`,
      heartbeatMs: 60_000,
      logger: quietLogger(),
    }),
  );
  receivers = AGENTS.map((agentId, i) =>
    createControlReceiver({
      holder: holders[i]!,
      db: db.pool,
      connectionString: db.url,
      workspaceId: WS,
      agentId,
      instanceId: `${agentId}-run`,
      chainKey: KEY,
      logger: quietLogger(),
      onOutcome: (o) => {
        outcomes.push(o);
        for (const w of waiters) if (w()) waiters.delete(w);
      },
    }),
  );
  await Promise.all(registries.map((r) => r.start()));
  for (const h of holders) await h.send({ type: 'boot.gates_passed' });
  await Promise.all(receivers.map((r) => r.start()));
});

afterAll(async () => {
  for (const a of apps) await a.close();
  for (const r of receivers ?? []) await r.stop();
  for (const r of registries ?? []) await r.stop();
  await db?.drop();
});

const apps: StatusApp[] = [];
/** The app's Hono `fetch` (the app is closed after the file's tests). */
function app(o: { token?: string; control?: boolean } = {}) {
  const made = createStatusApp({
    opstate: holders[0]!,
    fleet: registries[0]!,
    logger: quietLogger(),
    ...(o.token ? { operatorToken: o.token } : {}),
    ...(o.control === false
      ? {}
      : { fleetControl: { db: db.pool, workspaceId: WS, chainKey: KEY } }),
  });
  apps.push(made);
  return { fetch: (r: Request) => made.app.fetch(r) };
}

function post(body: unknown, token: string | null = TOKEN): Request {
  return new Request('http://127.0.0.1/api/fleet/commands', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
const get = (path: string) => new Request(`http://127.0.0.1${path}`);

describe('POST /api/fleet/commands and GET /api/fleet/commands/:id', () => {
  it('issues a command the agent applies; the outcome reads back, nobody pending', async () => {
    const a = app({ token: TOKEN });
    const view = await (await a.fetch(get('/api/fleet'))).json();
    expect(view.control).toEqual({ available: true, operator_api: true });

    const res = await a.fetch(
      post({ action: 'pause', agent: 'r2', cause: 'cost_limit', trigger: 'from a test' }),
    );
    expect(res.status).toBe(202);
    const body = await res.json();
    expect(body.awaiting).toEqual(['r2']);
    expect(body.command).toMatchObject({
      workspace_id: WS,
      target_agent: 'r2',
      action: 'pause',
      args: { cause: 'cost_limit', trigger: 'from a test' },
      issued_by: 'the fleet page',
    });
    expect(body.command.mac).toBeUndefined();
    const id = body.command.command_id as number;
    await outcomeOf(id, 'r2');
    expect(holders[1]!.current.primaryState).toBe('paused');
    expect(holders[1]!.history().at(-1)?.trigger).toBe(`kora_control #${id} pause: from a test`);

    const read = await a.fetch(get(`/api/fleet/commands/${id}`));
    expect(read.status).toBe(200);
    const c = await read.json();
    expect(c).toMatchObject({
      command: { command_id: id, verified: true },
      expired: false,
      pending: [],
      outcomes: [
        {
          agent_id: 'r2',
          outcome: 'applied',
          from_state: 'ready',
          to_state: 'paused',
          verified: true,
        },
      ],
    });
  });

  it('a transition the table refuses is an outcome "refused" with the 409 reason; "all" awaits every live agent', async () => {
    const a = app({ token: TOKEN });
    const refresh = await a.fetch(
      post({ action: 'credit-refresh', agent: 'r1', reconciled_spend_usd: 5, threshold_usd: 100 }),
    );
    expect(refresh.status).toBe(202);
    const rid = (await refresh.json()).command.command_id as number;
    const refused = await outcomeOf(rid, 'r1');
    expect(refused.outcome).toBe('refused');
    expect(refused.reason).toContain('invalid state transition ready');
    const read = await (await a.fetch(get(`/api/fleet/commands/${rid}`))).json();
    expect(read.outcomes[0]).toMatchObject({ outcome: 'refused', reason: refused.reason });

    const all = await a.fetch(post({ action: 'pause', all: true }));
    expect(all.status).toBe(202);
    const body = await all.json();
    expect(body.command.target_agent).toBeNull();
    expect(body.awaiting).toEqual(['r1', 'r2']);
    const id = body.command.command_id as number;
    await Promise.all(AGENTS.map((agent) => outcomeOf(id, agent)));
    const c = await (await a.fetch(get(`/api/fleet/commands/${id}`))).json();
    expect(c.pending).toEqual([]);
    expect(c.outcomes.map((o: ControlOutcome) => [o.agent_id, o.outcome])).toEqual([
      ['r1', 'applied'],
      ['r2', 'refused'],
    ]);
    expect(holders[0]!.current.primaryState).toBe('paused');

    // Back to ready for the next tests.
    const reset = await (await a.fetch(post({ action: 'reset', all: true }))).json();
    await Promise.all(AGENTS.map((agent) => outcomeOf(reset.command.command_id, agent)));
    expect(holders.map((h) => h.current.primaryState)).toEqual(['ready', 'ready']);
  });

  it('an agent that has not answered is pending; past its expiry, expired (a row altered without the key does not verify)', async () => {
    const a = app({ token: TOKEN });
    const res = await a.fetch(post({ action: 'stop', agent: 'ghost', ttl_ms: 60_000 }));
    expect(res.status).toBe(202);
    const id = (await res.json()).command.command_id as number;
    const before = await (await a.fetch(get(`/api/fleet/commands/${id}`))).json();
    expect(before).toMatchObject({ expired: false, pending: ['ghost'], outcomes: [] });
    expect(Date.parse(before.command.expires_at) - Date.parse(before.command.issued_at)).toBe(
      60_000,
    );
    await db.pool.query(
      `UPDATE kora_opstate_fleet_commands SET expires_at = now() - interval '1 second'
        WHERE command_id = $1`,
      [id],
    );
    const after = await (await a.fetch(get(`/api/fleet/commands/${id}`))).json();
    expect(after).toMatchObject({
      expired: true,
      pending: ['ghost'],
      command: { verified: false },
    });
  });

  it('auth: 403 without a configured token, 401 without or with a wrong token; nothing is issued', async () => {
    const count = async () =>
      Number(
        (await db.pool.query('SELECT count(*) FROM kora_opstate_fleet_commands')).rows[0].count,
      );
    const n = await count();
    const off = await app().fetch(post({ action: 'pause', all: true }));
    expect(off.status).toBe(403);
    expect((await off.json()).error).toContain('no operator token is configured');
    expect((await (await app().fetch(get('/api/fleet'))).json()).control).toEqual({
      available: true,
      operator_api: false,
    });
    const a = app({ token: TOKEN });
    for (const token of [null, 'wrong-token']) {
      const res = await a.fetch(post({ action: 'pause', all: true }, token));
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
    }
    expect(await count()).toBe(n);
  });

  it('400 naming the bad field; 404 for an unknown command; 405 for other methods', async () => {
    const a = app({ token: TOKEN });
    const cases: [unknown, string, string][] = [
      ['{"action":', 'body', 'invalid JSON body'],
      [[1], 'body', 'body must be a JSON object'],
      [{ action: 'dance', all: true }, 'action', 'invalid action "dance"'],
      [{ action: 'pause', all: true, colour: 'red' }, 'colour', 'unknown field "colour"'],
      [{ action: 'pause' }, 'agent', 'name the agent'],
      [{ action: 'pause', agent: 'r1', all: true }, 'agent', 'name the agent'],
      [{ action: 'pause', all: false }, 'all', 'invalid all false'],
      [{ action: 'pause', all: true, cause: 'bored' }, 'cause', 'invalid cause "bored"'],
      [{ action: 'reset', all: true, cause: 'operator' }, 'cause', 'a cause is for pause'],
      [
        { action: 'credit-refresh', all: true, reconciled_spend_usd: 5 },
        'threshold_usd',
        'invalid threshold_usd',
      ],
      [
        { action: 'credit-refresh', all: true, reconciled_spend_usd: -1, threshold_usd: 5 },
        'reconciled_spend_usd',
        'invalid reconciled_spend_usd -1',
      ],
      [{ action: 'stop', agent: 'r1', ttl_ms: 5 }, 'ttl_ms', 'invalid ttl_ms 5'],
    ];
    for (const [body, field, says] of cases) {
      const res = await a.fetch(post(body));
      const answer = await res.json();
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(answer.error, JSON.stringify(body)).toContain(says);
      if (field !== 'body' || !says.startsWith('invalid JSON')) {
        expect(answer.field, JSON.stringify(body)).toBe(field);
      }
    }
    const bad = await a.fetch(get('/api/fleet/commands/abc'));
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ field: 'id', error: 'invalid command id "abc"' });
    const missing = await a.fetch(get('/api/fleet/commands/987654321'));
    expect(missing.status).toBe(404);
    expect((await missing.json()).error).toBe(`no command #987654321 in workspace "${WS}"`);
    const put = await a.fetch(
      new Request('http://127.0.0.1/api/fleet/commands', { method: 'PUT' }),
    );
    expect(put.status).toBe(405);
  });

  it('without fleetControl (an embedded store): 501 with the reason, and the view says the controls are off', async () => {
    const a = app({ token: TOKEN, control: false });
    const res = await a.fetch(post({ action: 'pause', all: true }));
    expect(res.status).toBe(501);
    expect((await res.json()).error).toContain('fleet control is not available here');
    const read = await a.fetch(get('/api/fleet/commands/1'));
    expect(read.status).toBe(501);
    expect((await (await a.fetch(get('/api/fleet'))).json()).control).toEqual({
      available: false,
      operator_api: true,
    });
    expect(() =>
      createStatusApp({
        opstate: holders[0]!,
        fleetControl: { db: db.pool, workspaceId: WS } as never,
      }),
    ).toThrow('fleetControl.chainKey must be');
  });
});
