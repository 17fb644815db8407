/**
 * Ticket pollers on the machine's real PostgreSQL (127.0.0.1:5432), several agent
 * processes sharing one `tickets` table (each test in a schema of its own): every ticket
 * worked exactly once; a worker killed with SIGKILL mid-claim loses its lease and another
 * process finishes the ticket.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPostgresTicketSource } from '../src/claims/sources/postgres.js';
import { GENERIC_TRANSITION_EVENT } from '../src/emit.js';
import { createPostgresSink } from '../src/sinks/postgres.js';
import { type AgentProcess, startAgent } from './support/agentProcess.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

let db: TestSchema;
const agents: AgentProcess[] = [];

beforeEach(async () => {
  db = await createTestSchema('poller');
  await db.pool.query(`CREATE TABLE work_log (
    ticket_id text NOT NULL, worker_id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
});

afterEach(async () => {
  for (const a of agents.splice(0)) {
    if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
    await a.exited;
  }
  await db.drop();
});

function agent(worker: string, env: Record<string, string> = {}): AgentProcess {
  const a = startAgent({ AGENT_URL: db.url, AGENT_WORKER: worker, ...env });
  agents.push(a);
  return a;
}

/** Polls the database until `predicate` holds for the query's first row. */
async function untilRow<T>(sql: string, predicate: (row: T) => boolean): Promise<T> {
  for (;;) {
    const { rows } = await db.pool.query(sql);
    if (predicate(rows[0] as T)) return rows[0] as T;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Counts `claim.released` changes (active → ready) in the chain, of one instance or all. */
function releasesSql(instance?: string): string {
  return `SELECT count(*)::int AS n FROM event_log
           WHERE event_type = '${GENERIC_TRANSITION_EVENT}'
             AND payload->>'from_primary_state' = 'active' AND payload->>'to_primary_state' = 'ready'
             ${instance ? `AND instance_id = '${instance}'` : ''}`;
}

/** The generic chain events of one instance, as `from→to` (with the trigger when asked). */
async function chainOf(instance: string, withTrigger = false): Promise<string[]> {
  const { rows } = await db.pool.query<{ payload: Record<string, string> }>(
    `SELECT payload FROM event_log WHERE instance_id = $1 AND event_type = $2 ORDER BY seq`,
    [instance, GENERIC_TRANSITION_EVENT],
  );
  return rows.map(
    ({ payload: p }) =>
      `${p.from_primary_state}→${p.to_primary_state}${withTrigger ? ` ${p.trigger}` : ''}`,
  );
}

describe('ticket pollers on PostgreSQL', () => {
  it('3 agent processes, 300 tickets: each worked exactly once, resolved by its worker, every claim in the chain', async () => {
    const source = createPostgresTicketSource({ pool: db.pool });
    await source.start();
    const ids = Array.from({ length: 300 }, (_, i) => `t-${String(i).padStart(3, '0')}`);
    await source.enqueue(ids.map((id, i) => ({ id, payload: { n: i }, critical: i % 50 === 0 })));

    const workers = ['agent-a', 'agent-b', 'agent-c'].map((w) => `${w}-${db.schema}`);
    const procs = workers.map((w) => agent(w, { AGENT_BARRIER: '1', AGENT_WORK_MS: '2' }));
    await Promise.all(procs.map((p) => p.waitFor('ready')));
    for (const p of procs) p.send('go');

    await untilRow<{ n: number }>(
      `SELECT count(*)::int AS n FROM tickets WHERE status = 'done'`,
      (r) => r.n === 300,
    );
    // A ticket is resolved while its claim is still held: wait for the last release too.
    await untilRow<{ n: number }>(releasesSql(), (r) => r.n === 300);
    for (const p of procs) p.child.kill('SIGTERM');
    const exits = await Promise.all(procs.map((p) => p.exited));
    expect(exits, procs.map((p) => p.stderr()).join('\n')).toEqual(
      workers.map(() => ({ code: 0, signal: null })),
    );

    // Worked exactly once: one work_log row per ticket, no ticket twice.
    const { rows: work } = await db.pool.query<{ n: number; distinct_n: number }>(
      'SELECT count(*)::int AS n, count(DISTINCT ticket_id)::int AS distinct_n FROM work_log',
    );
    expect(work[0]).toEqual({ n: 300, distinct_n: 300 });
    const { rows: mismatched } = await db.pool.query(
      `SELECT t.id FROM tickets t JOIN work_log w ON w.ticket_id = t.id
        WHERE t.resolved_by IS DISTINCT FROM w.worker_id`,
    );
    expect(mismatched).toEqual([]);
    const { rows: tickets } = await db.pool.query<{
      status: string;
      resolution: string;
      attempts: number;
      n: number;
    }>(`SELECT status, resolution, attempts, count(*)::int AS n FROM tickets GROUP BY 1, 2, 3`);
    expect(tickets).toEqual([{ status: 'done', resolution: 'done', attempts: 1, n: 300 }]);

    const { rows: perWorker } = await db.pool.query<{ resolved_by: string; n: number }>(
      'SELECT resolved_by, count(*)::int AS n FROM tickets GROUP BY 1 ORDER BY 1',
    );
    expect(perWorker.map((r) => r.resolved_by)).toEqual(workers);
    for (const { resolved_by, n } of perWorker) {
      expect(n).toBeGreaterThan(0);
      // Each claim is a ready → active → ready in that agent's chain; then shutdown.
      const chain = await chainOf(resolved_by);
      expect(chain.filter((c) => c === 'ready→active')).toHaveLength(n);
      expect(chain.filter((c) => c === 'active→ready')).toHaveLength(n);
      expect(chain[0]).toBe('booting→ready');
      expect(chain.slice(-2)).toEqual(['ready→paused', 'paused→stopped']);
    }
    for (const p of procs) {
      expect(p.final()).toMatchObject({
        state: { primaryState: 'stopped' },
        poller: { leaseLost: 0, failed: 0 },
      });
    }
    // The three processes share one hash chain; it verifies.
    const sink = createPostgresSink({ workspaceId: 'ws-agents', pool: db.pool });
    await sink.start();
    const verified = await sink.verifyChain();
    expect(verified.ok).toBe(true);
    await sink.close();
  }, 60_000);

  it('kill -9 mid-claim: the lease expires and another process finishes the ticket', async () => {
    const source = createPostgresTicketSource({ pool: db.pool });
    await source.start();
    await source.enqueue([{ id: 't-kill', payload: { note: 'survives a crash' } }]);
    const victim = `victim-${db.schema}`;
    const rescuer = `rescuer-${db.schema}`;

    const a = agent(victim, { AGENT_MODE: 'hang', AGENT_LEASE_MS: '1000' });
    await a.waitFor('working t-kill');
    a.child.kill('SIGKILL');
    expect(await a.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const { rows: held } = await db.pool.query(
      `SELECT status, lease_owner, attempts FROM tickets WHERE id = 't-kill'`,
    );
    expect(held[0]).toEqual({ status: 'claimed', lease_owner: victim, attempts: 1 });

    const b = agent(rescuer, { AGENT_LEASE_MS: '1000' });
    await untilRow<{ n: number }>(releasesSql(rescuer), (r) => r.n === 1);
    const done = await untilRow<Record<string, unknown>>(
      `SELECT status, resolution, resolved_by, attempts, lease_owner FROM tickets WHERE id = 't-kill'`,
      (r) => r.status === 'done',
    );
    expect(done).toEqual({
      status: 'done',
      resolution: 'done',
      resolved_by: rescuer,
      attempts: 2,
      lease_owner: null,
    });
    const { rows: work } = await db.pool.query(
      'SELECT ticket_id, worker_id FROM work_log ORDER BY at',
    );
    expect(work).toEqual([
      { ticket_id: 't-kill', worker_id: victim },
      { ticket_id: 't-kill', worker_id: rescuer },
    ]);
    // The victim's chain ends mid-claim; the rescuer's shows the claim and its release.
    expect(await chainOf(victim)).toEqual(['booting→ready', 'ready→active']);
    expect(await chainOf(rescuer)).toEqual(['booting→ready', 'ready→active', 'active→ready']);

    b.child.kill('SIGTERM');
    expect(await b.exited).toEqual({ code: 0, signal: null });
  }, 60_000);
});
