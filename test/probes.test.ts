/**
 * The probes (SPEC §7, §12): `/livez`, `/readyz`, `/startupz` in every primary state and
 * before the instance exists, their `?verbose` bodies (Kubernetes style) and `?exclude`,
 * the `draining` flag, configured status codes and their validation; then a real
 * `kora-opstate start --shutdown-delay-ms` on PostgreSQL: SIGTERM drops `/readyz` at once
 * while the agent is still ready or active.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createOperationalStateHolder, type OperationalStateHolder } from '../src/holder.js';
import { createStatusHandler, type StatusHandler } from '../src/http/handler.js';
import { startStatusServer } from '../src/http/node.js';
import type { ClaimPermission, PrimaryState } from '../src/vocabulary.js';
import { type AgentProcess, startTsProcess } from './support/agentProcess.js';
import { CLI_BIN, runCli, tempDirs } from './support/cli.js';
import { quietLogger, req } from './support/httpHandler.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const handlers: StatusHandler[] = [];
function handler(options: Parameters<typeof createStatusHandler>[0] = {}): StatusHandler {
  const h = createStatusHandler({ logger: quietLogger(), ...options });
  handlers.push(h);
  return h;
}
afterEach(async () => {
  for (const h of handlers.splice(0)) await h.close();
});

function holderIn(
  primaryState: PrimaryState,
  claimPermission?: ClaimPermission,
): OperationalStateHolder {
  return createOperationalStateHolder({
    initial: { primaryState, ...(claimPermission ? { claimPermission } : {}) },
    logger: quietLogger(),
  });
}

async function answer(h: StatusHandler, path: string) {
  const res = await h(req(path));
  const type = res.headers.get('content-type') ?? '';
  return {
    status: res.status,
    type,
    body: type.startsWith('application/json') ? await res.json() : await res.text(),
  };
}

describe('/startupz', () => {
  it.each([
    [
      'booting',
      503,
      { started: false, primary_state: 'booting', reason: 'primary state is booting' },
    ],
    ['ready', 200, { started: true, primary_state: 'ready' }],
    ['active', 200, { started: true, primary_state: 'active' }],
    // A boot that failed into paused or stopped has finished too: liveness and readiness
    // take over (a stopped agent fails /livez and is restarted).
    ['paused', 200, { started: true, primary_state: 'paused' }],
    ['stopped', 200, { started: true, primary_state: 'stopped' }],
  ] as const)('in %s → %i', async (state, status, body) => {
    const h = handler({ opstate: holderIn(state) });
    expect(await answer(h, '/startupz')).toMatchObject({ status, body });
  });

  it('503 before the instance exists; 200 once the boot leaves booting (same app)', async () => {
    let holder: OperationalStateHolder | undefined;
    const h = handler({ holder: () => holder });
    expect(await answer(h, '/startupz')).toMatchObject({
      status: 503,
      body: {
        started: false,
        primary_state: 'booting',
        reason: 'OperationalStateHolder not yet initialized',
      },
    });
    holder = holderIn('booting');
    expect((await answer(h, '/startupz')).body.reason).toBe('primary state is booting');
    await holder.send({ type: 'boot.gates_passed' });
    expect(await answer(h, '/startupz')).toMatchObject({ status: 200, body: { started: true } });
  });
});

describe('?verbose: one line per check, then the verdict', () => {
  it('ready: every check passes', async () => {
    const h = handler({ opstate: holderIn('ready') });
    for (const [path, text] of [
      [
        '/readyz?verbose',
        '[+]ping ok\n[+]holder ok\n[+]primary_state ok\n[+]claim_permission ok\nreadyz check passed\n',
      ],
      ['/livez?verbose', '[+]ping ok\n[+]primary_state ok\nlivez check passed\n'],
      ['/startupz?verbose', '[+]ping ok\n[+]holder ok\n[+]boot ok\nstartupz check passed\n'],
    ] as const) {
      expect(await answer(h, path), path).toEqual({
        status: 200,
        type: 'text/plain; charset=utf-8',
        body: text,
      });
    }
  });

  it('before the instance exists: each failing check with its reason', async () => {
    const h = handler({ holder: () => undefined });
    expect(await answer(h, '/readyz?verbose')).toMatchObject({
      status: 503,
      body:
        '[+]ping ok\n' +
        '[-]holder failed: OperationalStateHolder not yet initialized\n' +
        '[-]primary_state failed: primary state is booting\n' +
        '[-]claim_permission failed: claim permission is none\n' +
        'readyz check failed\n',
    });
    expect(await answer(h, '/startupz?verbose')).toMatchObject({
      status: 503,
      body:
        '[+]ping ok\n' +
        '[-]holder failed: OperationalStateHolder not yet initialized\n' +
        '[-]boot failed: primary state is booting\n' +
        'startupz check failed\n',
    });
    expect(await answer(h, '/livez?verbose')).toMatchObject({
      status: 200,
      body: '[+]ping ok\n[+]primary_state ok\nlivez check passed\n',
    });
  });

  it.each([
    [
      'paused',
      undefined,
      503,
      '[-]primary_state failed: primary state is paused\n[-]claim_permission failed: claim permission is none\n',
    ],
    [
      'ready',
      'none',
      503,
      '[+]primary_state ok\n[-]claim_permission failed: claim permission is none\n',
    ],
    ['active', 'critical_only', 200, '[+]primary_state ok\n[+]claim_permission ok\n'],
  ] as const)('/readyz?verbose in %s/%s → %i', async (state, permission, status, lines) => {
    const h = handler({ opstate: holderIn(state, permission) });
    const verdict = status === 200 ? 'passed' : 'failed';
    expect(await answer(h, '/readyz?verbose')).toMatchObject({
      status,
      body: `[+]ping ok\n[+]holder ok\n${lines}readyz check ${verdict}\n`,
    });
  });

  it('stopped: /livez fails, /startupz passes', async () => {
    const h = handler({ opstate: holderIn('stopped') });
    expect(await answer(h, '/livez?verbose')).toMatchObject({
      status: 503,
      body: '[+]ping ok\n[-]primary_state failed: primary state is stopped\nlivez check failed\n',
    });
    expect((await answer(h, '/startupz?verbose')).status).toBe(200);
  });

  it('?verbose=1 and ?verbose=true are verbose; ?verbose=0, ?verbose=false and none are JSON', async () => {
    const h = handler({ opstate: holderIn('ready') });
    for (const q of ['?verbose', '?verbose=', '?verbose=1', '?verbose=true']) {
      expect((await answer(h, `/readyz${q}`)).type, q).toBe('text/plain; charset=utf-8');
    }
    for (const q of ['', '?verbose=0', '?verbose=false', '?other=1']) {
      expect(await answer(h, `/readyz${q}`), q).toEqual({
        status: 200,
        type: 'application/json; charset=utf-8',
        body: { ready: true, primary_state: 'ready', claim_permission: 'normal' },
      });
    }
  });

  it('HEAD answers the status without a body; a POST is 405', async () => {
    const h = handler({ opstate: holderIn('booting') });
    const head = await h(req('/startupz?verbose', { method: 'HEAD' }));
    expect(head.status).toBe(503);
    expect(await head.text()).toBe('');
    const post = await h(req('/startupz', { method: 'POST' }));
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });
});

describe('?exclude=<check>', () => {
  it('leaves a check out of the verdict (listed as excluded) and warns about unknown names', async () => {
    const h = handler({ opstate: holderIn('ready', 'none') });
    expect(await answer(h, '/readyz?verbose&exclude=claim_permission&exclude=nope')).toMatchObject({
      status: 200,
      body:
        '[+]ping ok\n[+]holder ok\n[+]primary_state ok\n[+]claim_permission excluded: ok\n' +
        'warn: some health checks cannot be excluded: no matches for "nope"\n' +
        'readyz check passed\n',
    });
    expect(await answer(h, '/readyz?exclude=claim_permission')).toMatchObject({
      status: 200,
      body: { ready: true },
    });
    // Comma-separated names work too; excluding nothing that fails changes nothing.
    expect(await answer(h, '/readyz?exclude=ping,holder')).toMatchObject({
      status: 503,
      body: { ready: false, reason: 'claim permission is none' },
    });
  });
});

describe('probes.draining', () => {
  it('true: /readyz fails with "shutting down" whatever the state; /livez and /startupz do not', async () => {
    let draining = false;
    const h = handler({ opstate: holderIn('active'), probes: { draining: () => draining } });
    expect(await answer(h, '/readyz?verbose')).toMatchObject({
      status: 200,
      body: '[+]ping ok\n[+]shutdown ok\n[+]holder ok\n[+]primary_state ok\n[+]claim_permission ok\nreadyz check passed\n',
    });
    draining = true;
    expect(await answer(h, '/readyz')).toEqual({
      status: 503,
      type: 'application/json; charset=utf-8',
      body: {
        ready: false,
        primary_state: 'active',
        claim_permission: 'normal',
        reason: 'shutting down',
      },
    });
    expect((await answer(h, '/readyz?verbose')).body).toBe(
      '[+]ping ok\n[-]shutdown failed: shutting down\n[+]holder ok\n[+]primary_state ok\n[+]claim_permission ok\nreadyz check failed\n',
    );
    expect((await answer(h, '/livez')).status).toBe(200);
    expect((await answer(h, '/startupz')).status).toBe(200);
  });

  it('a callback that throws fails readiness, naming the error', async () => {
    const h = handler({
      opstate: holderIn('ready'),
      probes: {
        draining: () => {
          throw new Error('flag store gone');
        },
      },
    });
    expect(await answer(h, '/readyz')).toMatchObject({
      status: 503,
      body: { ready: false, reason: 'the draining callback threw: flag store gone' },
    });
  });
});

describe('probe status codes (probes.successStatus, probes.failureStatus)', () => {
  it('every probe, plain and verbose, answers with the configured codes', async () => {
    const probes = { successStatus: 299, failureStatus: 500 };
    const up = handler({ opstate: holderIn('ready'), probes });
    const down = handler({ opstate: holderIn('stopped'), probes });
    for (const path of ['/livez', '/readyz', '/startupz']) {
      for (const q of ['', '?verbose']) {
        expect((await up(req(`${path}${q}`))).status, `${path}${q} up`).toBe(299);
      }
    }
    for (const path of ['/livez', '/readyz']) {
      for (const q of ['', '?verbose']) {
        expect((await down(req(`${path}${q}`))).status, `${path}${q} down`).toBe(500);
      }
    }
    expect(await answer(down, '/readyz')).toMatchObject({
      status: 500,
      body: { ready: false, reason: 'primary state is stopped' },
    });
  });

  it('bad values are refused at creation, naming the field and the value', () => {
    for (const [probes, message] of [
      [{ failureStatus: 200 }, 'probes.failureStatus must be an integer 400–599, got 200'],
      [{ failureStatus: 503.5 }, 'probes.failureStatus must be an integer 400–599, got 503.5'],
      [
        { successStatus: 404 },
        'probes.successStatus must be an integer 200–399 other than 204, 205 and 304 (no body), got 404',
      ],
      [
        { successStatus: 204 },
        'probes.successStatus must be an integer 200–399 other than 204, 205 and 304 (no body), got 204',
      ],
      [{ successStatus: '200' }, 'probes.successStatus must be an integer 200–399'],
      [{ draining: true }, 'probes.draining must be a function, got true'],
      [
        { failStatus: 500 },
        'probes has no option "failStatus" (successStatus, failureStatus, draining)',
      ],
      [5, 'probes must be an object, got 5'],
    ] as const) {
      expect(
        () => createStatusHandler({ probes: probes as never }),
        JSON.stringify(probes),
      ).toThrow(message);
    }
  });
});

describe('over a socket', () => {
  /** A GET with a Host header of our choosing (fetch does not let one set it). */
  const getWithHost = (port: number, path: string, host: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = httpRequest({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      r.on('error', reject);
      r.end();
    });

  it('/startupz?verbose answers any Host, like the other probes', async () => {
    const status = await startStatusServer({ opstate: holderIn('ready'), logger: quietLogger() });
    try {
      const host = 'pod-10-1-2-3.example';
      expect(await getWithHost(status.port, '/startupz?verbose', host)).toEqual({
        status: 200,
        body: '[+]ping ok\n[+]holder ok\n[+]boot ok\nstartupz check passed\n',
      });
      expect((await getWithHost(status.port, '/api/operational-state', host)).status).toBe(421);
    } finally {
      await status.close();
    }
  });
});

describe('kora-opstate start --shutdown-delay-ms on PostgreSQL', () => {
  const tempDir = tempDirs('kora-probes-');
  let db: TestSchema;
  beforeAll(async () => {
    db = await createTestSchema('probes');
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('SIGTERM: /readyz 503 "shutting down" at once while still ready/active, no pause during the delay; another signal exits at once', async () => {
    const agent: AgentProcess = startTsProcess(
      CLI_BIN,
      // A delay far longer than the test: what happens after it is shutdown.test.ts's.
      [
        'start',
        '--port',
        '0',
        '--ticket-every-ms',
        '0',
        '--work-ms',
        '50',
        '--shutdown-delay-ms',
        '600000',
      ],
      { DATABASE_URL: db.url, KORA_WORKSPACE: 'ws-probes', KORA_DATA_DIR: tempDir() },
    );
    try {
      const url = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(await agent.waitFor(/ panel +http:/))![1]!;
      await agent.waitFor(/^\[kora-opstate\] boot +ready/);
      expect((await fetch(`${url}/startupz`)).status).toBe(200);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      agent.kill('SIGTERM');
      await agent.waitFor(/readiness dropped; claims stop in 600000 ms/);
      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({
        ready: false,
        primary_state: expect.stringMatching(/^(ready|active)$/),
        claim_permission: 'normal',
        reason: 'shutting down',
      });
      expect(await (await fetch(`${url}/readyz?verbose`)).text()).toContain(
        '[-]shutdown failed: shutting down\n',
      );
      expect((await fetch(`${url}/livez`)).status).toBe(200);
      expect((await fetch(`${url}/startupz`)).status).toBe(200);
      expect(agent.lines.filter((l) => / → paused +pause /.test(l))).toEqual([]);
      // The delay is not a trap: another signal exits at once.
      agent.kill('SIGINT');
      expect((await agent.exited).code).toBe(130);
    } finally {
      await agent.stop();
    }
  }, 120_000);

  it('a bad --shutdown-delay-ms is a usage error (exit 2) naming it', async () => {
    const run = await runCli(['start', '--shutdown-delay-ms=-5'], { KORA_DATA_DIR: tempDir() });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      'invalid --shutdown-delay-ms "-5": expected a whole number from 0 to 600000',
    );
  });
});
