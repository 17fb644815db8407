/**
 * What the status API answers to whom: the Host allowlist (421 for a name it does not
 * serve — DNS rebinding — on every route but the probes, through the handler and through
 * a real socket, and through `kora-opstate start --allowed-host` / KORA_ALLOWED_HOSTS),
 * and `GET …/chain/verify`: behind the operator token when one is configured, otherwise
 * answered from a shared, cached verification.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { makeEmitListener } from '../src/emit.js';
import { createOperationalStateHolder, type OperationalStateHolder } from '../src/holder.js';
import { createStatusHandler, type StatusHandler } from '../src/http/handler.js';
import { type RunningStatusServer, startStatusServer } from '../src/http/node.js';
import type { DurableChainSink } from '../src/sinks/durable.js';
import { createPgliteSink } from '../src/sinks/pglite.js';
import { OperationalStateInputError } from '../src/vocabulary.js';
import { quietLogger } from './support/httpHandler.js';

const TOKEN = 'hosts-test-token';
const VERIFY = '/api/operational-state/chain/verify';
const EVIL = 'evil.example';

/** Every route that must refuse a foreign Host, with a request that would otherwise succeed. */
const GUARDED: readonly { method: string; path: string; body?: string }[] = [
  { method: 'GET', path: '/' },
  { method: 'GET', path: '/api/operational-state' },
  { method: 'HEAD', path: '/api/operational-state' },
  { method: 'GET', path: '/api/operational-state/history' },
  { method: 'GET', path: '/api/operational-state/stream' },
  { method: 'GET', path: '/api/operational-state/chain' },
  { method: 'GET', path: VERIFY },
  { method: 'GET', path: '/metrics' },
  {
    method: 'POST',
    path: '/api/operational-state/transitions',
    body: JSON.stringify({ to: 'paused', trigger: 'operator', add_reasons: ['operator'] }),
  },
  { method: 'GET', path: '/nowhere' },
];

let db: PGlite;
let sink: DurableChainSink;
let holder: OperationalStateHolder;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  db = await PGlite.create('memory://');
  sink = createPgliteSink({ workspaceId: 'ws-hosts', db, logger: quietLogger() });
  await sink.start();
  holder = createOperationalStateHolder({ logger: quietLogger() });
  holder.addListener(makeEmitListener(sink, { instanceId: 'run-hosts', logger: quietLogger() }));
  await holder.transitionTo('ready', 'all §9.2 gates pass');
  expect(await sink.flush(5_000)).toBe(true);
});

afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  await sink?.close();
  await db?.close();
});

function handlerWith(options: Parameters<typeof createStatusHandler>[0] = {}): StatusHandler {
  const h = createStatusHandler({ holder, sink, logger: quietLogger(), ...options });
  cleanups.push(() => h.close());
  return h;
}

async function serverWith(
  options: Parameters<typeof startStatusServer>[0] = {},
): Promise<RunningStatusServer> {
  const s = await startStatusServer({ holder, sink, logger: quietLogger(), ...options });
  cleanups.push(() => s.close());
  return s;
}

/** A request as a browser on `host` would send it (the Host header is what it names). */
function asHost(host: string | undefined, method: string, path: string, body?: string) {
  const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
  if (host !== undefined) headers.host = host;
  if (body !== undefined) headers['content-type'] = 'application/json';
  return new Request(`http://127.0.0.1${path}`, { method, headers, body: body ?? null });
}

/** A raw request over the socket with our own Host header; the body only for non-streams. */
function raw(
  port: number,
  options: { method: string; path: string; host: string; body?: string; token?: string },
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: options.method,
        path: options.path,
        headers: {
          host: options.host,
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          ...(options.body ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        if (String(res.headers['content-type']).startsWith('text/event-stream')) {
          // A stream that opened: that is the answer; do not wait for its end.
          res.destroy();
          resolve({ status: res.statusCode!, headers: res.headers, body: '' });
          return;
        }
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      },
    );
    r.on('error', reject);
    if (options.body !== undefined) r.write(options.body);
    r.end();
  });
}

function expect421(status: number, body: string, host: string, method: string) {
  expect(status).toBe(421);
  if (method === 'HEAD') return;
  const parsed = JSON.parse(body);
  expect(Object.keys(parsed)).toEqual(['error']);
  expect(parsed.error).toContain(`does not serve the host ${JSON.stringify(host)}`);
  expect(parsed.error).toContain('--allowed-host');
  expect(parsed.error).toContain('allowedHosts');
}

describe('Host allowlist through the handler', () => {
  it.each(GUARDED)('$method $path with Host: evil.example → 421, nothing done', async (r) => {
    const h = handlerWith({ operatorToken: TOKEN });
    const verify = vi.spyOn(sink, 'verifyChain');
    const before = holder.current;
    const res = await h(asHost(EVIL, r.method, r.path, r.body));
    expect421(res.status, await res.text(), EVIL, r.method);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(holder.current).toBe(before);
    expect(verify).not.toHaveBeenCalled();
    expect(h.openStreams).toBe(0);
  });

  it.each([
    'evil.example:7070',
    'localhost.evil.example',
    '127.0.0.1.evil.example',
    'localhost@evil.example',
    '127.0.0.1, evil.example',
    'evil.example.',
    'a b',
    '[::1',
    '',
  ])('Host %j → 421', async (host) => {
    const res = await handlerWith()(asHost(host, 'GET', '/api/operational-state'));
    expect(res.status).toBe(421);
  });

  it.each([
    'localhost',
    'localhost:7070',
    'LOCALHOST.:7070',
    'panel.localhost:7070',
    '127.0.0.1:7070',
    '127.8.9.10',
    '[::1]:7070',
    '[fe80::1]',
    '10.1.2.3:7070',
    undefined, // no Host header: the URL's host (127.0.0.1)
  ])('Host %j is served', async (host) => {
    const res = await handlerWith()(asHost(host, 'GET', '/api/operational-state'));
    expect(res.status).toBe(200);
    expect((await res.json()).primary_state).toBe('ready');
  });

  it('/livez and /readyz answer any Host (probes send the pod IP or any name)', async () => {
    const h = handlerWith();
    for (const path of ['/livez', '/readyz']) {
      const res = await h(asHost(EVIL, 'GET', path));
      expect(res.status, path).toBe(200);
      expect(await res.json(), path).toMatchObject({ primary_state: 'ready' });
    }
  });

  it('allowedHosts adds names (exact, or .suffix for a domain and its subdomains)', async () => {
    const h = handlerWith({ allowedHosts: ['agent.internal', '.corp.example'] });
    const status = async (host: string) =>
      (await h(asHost(host, 'GET', '/api/operational-state'))).status;
    for (const ok of [
      'agent.internal',
      'AGENT.INTERNAL:7070',
      'corp.example',
      'x.y.corp.example',
    ]) {
      expect(await status(ok), ok).toBe(200);
    }
    for (const no of ['xagent.internal', 'agent.internal.evil', 'evilcorp.example', EVIL]) {
      expect(await status(no), no).toBe(421);
    }
  });

  it("allowedHosts ['*'] turns the check off", async () => {
    const res = await handlerWith({ allowedHosts: ['*'] })(
      asHost(EVIL, 'GET', '/api/operational-state'),
    );
    expect(res.status).toBe(200);
  });

  it.each([
    [
      { allowedHosts: 'localhost' },
      'allowedHosts',
      'allowedHosts must be an array of host names, got "localhost"',
    ],
    [{ allowedHosts: [''] }, 'allowedHosts[0]', 'got ""'],
    [
      { allowedHosts: ['ok.example', 'example.org:80'] },
      'allowedHosts[1]',
      'got "example.org:80": give the name without a port',
    ],
    [{ allowedHosts: ['http://example.org'] }, 'allowedHosts[0]', 'got "http://example.org"'],
    [{ allowedHosts: [5] }, 'allowedHosts[0]', 'got 5'],
    [{ allowedHosts: ['.10.0.0.1'] }, 'allowedHosts[0]', 'an IP address has no subdomains'],
    [
      { verifyCacheMs: -1 },
      'verifyCacheMs',
      'verifyCacheMs must be an integer from 0 to 86400000 (ms), got -1',
    ],
    [{ verifyCacheMs: 1.5 }, 'verifyCacheMs', 'got 1.5'],
    [{ verifyCacheMs: '30000' }, 'verifyCacheMs', 'got "30000"'],
  ])('refuses %j naming %s', (options, field, message) => {
    let error: unknown;
    try {
      createStatusHandler({ logger: quietLogger(), ...(options as object) });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(OperationalStateInputError);
    expect((error as OperationalStateInputError).field).toBe(field);
    expect((error as Error).message).toContain(message);
  });
});

describe('Host allowlist over a real socket', () => {
  it('every route but the probes: 421 for Host: evil.example, 200 for the bound address', async () => {
    const s = await serverWith({ operatorToken: TOKEN });
    const before = holder.current;
    for (const r of GUARDED) {
      const res = await raw(s.port, { ...r, host: EVIL, token: TOKEN });
      expect421(res.status, res.body, EVIL, r.method);
    }
    expect(holder.current).toBe(before);
    expect(s.handler.openStreams).toBe(0);
    for (const path of ['/livez', '/readyz']) {
      expect((await raw(s.port, { method: 'GET', path, host: EVIL })).status, path).toBe(200);
    }
    // The same requests by the address it listens on are answered (the POST last: it pauses).
    for (const r of GUARDED) {
      const res = await raw(s.port, { ...r, host: `127.0.0.1:${s.port}`, token: TOKEN });
      expect(res.status, `${r.method} ${r.path}`).toBe(r.path === '/nowhere' ? 404 : 200);
    }
    expect(holder.current.primaryState).toBe('paused');
    await holder.send({ type: 'resume.operator_reset', trigger: 'test done' });
  });

  const name = hostname().toLowerCase();
  it('the host name it binds is served', async (ctx) => {
    const resolved = await lookup(name).catch(() => undefined);
    if (!resolved) ctx.skip(`${name} does not resolve on this machine`);
    const s = await serverWith({ host: name });
    const path = '/api/operational-state';
    expect((await raw(s.port, { method: 'GET', path, host: `${name}:${s.port}` })).status).toBe(
      200,
    );
    expect((await raw(s.port, { method: 'GET', path, host: EVIL })).status).toBe(421);
  });
});

describe('GET /chain/verify: who may run it, and how often it runs', () => {
  it('without a token: 10 concurrent calls share one verification, later ones reuse it until verifyCacheMs', async () => {
    const s = await serverWith();
    const verify = vi.spyOn(sink, 'verifyChain');
    const bodies = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const res = await fetch(`${s.url}${VERIFY}`);
        expect(res.status).toBe(200);
        return (await res.json()) as Record<string, unknown>;
      }),
    );
    expect(verify).toHaveBeenCalledTimes(1);
    const at = bodies[0]!.verified_at as string;
    expect(at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    for (const b of bodies) {
      expect(b).toMatchObject({ workspace_id: 'ws-hosts', ok: true, verified_at: at });
    }
    // Whoever came while it ran waited for it (cached: false); later calls get it stored.
    expect(bodies.filter((b) => b.cached === false).length).toBeGreaterThanOrEqual(1);
    const later = await (await fetch(`${s.url}${VERIFY}`)).json();
    expect(later).toMatchObject({ ok: true, verified_at: at, cached: true });
    expect(verify).toHaveBeenCalledTimes(1);
  });

  it('recomputes once the stored result is verifyCacheMs old; each distinct query has its own', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.parse('2026-01-01T00:00:00.000Z') });
    const h = handlerWith({ verifyCacheMs: 5_000 });
    const verify = vi.spyOn(sink, 'verifyChain');
    const get = async (path = VERIFY) => (await h(asHost('localhost', 'GET', path))).json();
    expect(await get()).toMatchObject({ verified_at: '2026-01-01T00:00:00.000Z', cached: false });
    vi.setSystemTime(Date.parse('2026-01-01T00:00:04.999Z'));
    expect(await get()).toMatchObject({ verified_at: '2026-01-01T00:00:00.000Z', cached: true });
    expect(verify).toHaveBeenCalledTimes(1);
    vi.setSystemTime(Date.parse('2026-01-01T00:00:05.000Z'));
    expect(await get()).toMatchObject({ verified_at: '2026-01-01T00:00:05.000Z', cached: false });
    expect(verify).toHaveBeenCalledTimes(2);

    // Another question (an expected head) is not answered from the plain one's result.
    const [head] = await sink.tail({ limit: 1 });
    const withHead = `${VERIFY}?expect_head=${head!.chain_seq}:${head!.this_event_hash}`;
    expect(await get(withHead)).toMatchObject({ ok: true, cached: false });
    expect(verify).toHaveBeenCalledTimes(3);
    expect(await get(withHead)).toMatchObject({ ok: true, cached: true });
    expect(verify).toHaveBeenCalledTimes(3);
  });

  it('runs one verification at a time, whatever the queries', async () => {
    const h = handlerWith({ verifyCacheMs: 0 });
    const original = sink.verifyChain.bind(sink);
    let running = 0;
    let most = 0;
    vi.spyOn(sink, 'verifyChain').mockImplementation(async (...args) => {
      running++;
      most = Math.max(most, running);
      try {
        return await original(...args);
      } finally {
        running--;
      }
    });
    const [head] = await sink.tail({ limit: 1 });
    const paths = [VERIFY, `${VERIFY}?expect_head=${head!.chain_seq}:${head!.this_event_hash}`];
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => h(asHost('localhost', 'GET', paths[i % 2]!))),
    );
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(most).toBe(1);
  });

  it('a verification that failed is not kept: the next call runs again', async () => {
    const h = handlerWith();
    vi.spyOn(sink, 'verifyChain').mockRejectedValueOnce(new Error('store went away'));
    const failed = await h(asHost('localhost', 'GET', VERIFY));
    expect(failed.status).toBe(500);
    const next = await h(asHost('localhost', 'GET', VERIFY));
    expect(next.status).toBe(200);
    expect(await next.json()).toMatchObject({ ok: true, cached: false });
  });

  it('with an operator token: 401 without it or with a wrong one, 200 and a fresh verification with it', async () => {
    const s = await serverWith({ operatorToken: TOKEN });
    const verify = vi.spyOn(sink, 'verifyChain');
    const none = await fetch(`${s.url}${VERIFY}`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="kora-opstate"');
    expect(await none.json()).toEqual({
      error: 'missing or wrong bearer token (Authorization: Bearer <token>)',
    });
    const wrong = await fetch(`${s.url}${VERIFY}`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    await wrong.body?.cancel();
    expect(verify).not.toHaveBeenCalled();
    for (let i = 1; i <= 2; i++) {
      const ok = await fetch(`${s.url}${VERIFY}`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toMatchObject({ workspace_id: 'ws-hosts', ok: true, cached: false });
      expect(verify).toHaveBeenCalledTimes(i);
    }
  });
});

describe('kora-opstate start --allowed-host / KORA_ALLOWED_HOSTS', () => {
  const bin = fileURLToPath(new URL('../src/cli/bin.ts', import.meta.url));
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** `start` with an explicit environment; resolves with its port once the panel is up. */
  async function startAgent(args: string[], env: Record<string, string> = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'kora-hosts-'));
    dirs.push(dir);
    const child: ChildProcessWithoutNullStreams = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        bin,
        'start',
        '--port',
        '0',
        '--data-dir',
        dir,
        '--ticket-every-ms',
        '0',
        ...args,
      ],
      {
        cwd: fileURLToPath(new URL('..', import.meta.url)),
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), ...env },
      },
    );
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        const m = / panel +http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.on('close', (code) => reject(new Error(`start exited ${code}:\n${out}\n${err}`)));
    });
    return port;
  }

  it.each([
    [
      '--allowed-host (repeatable)',
      ['--allowed-host', 'agent.test', '--allowed-host', '.corp.test'],
      {},
    ],
    ['KORA_ALLOWED_HOSTS', [], { KORA_ALLOWED_HOSTS: 'agent.test, .corp.test' }],
  ])(
    '%s: those names are served, others get 421 naming how to allow them',
    async (_n, args, env) => {
      const port = await startAgent(args, env);
      const path = '/api/operational-state';
      for (const host of [`agent.test:${port}`, 'x.corp.test', `127.0.0.1:${port}`, 'localhost']) {
        expect((await raw(port, { method: 'GET', path, host })).status, host).toBe(200);
      }
      const refused = await raw(port, { method: 'GET', path, host: `other.test:${port}` });
      expect(refused.status).toBe(421);
      expect(JSON.parse(refused.body).error).toContain(
        'kora-opstate start --allowed-host other.test (env KORA_ALLOWED_HOSTS)',
      );
      expect((await raw(port, { method: 'GET', path: '/livez', host: 'other.test' })).status).toBe(
        200,
      );
    },
    120_000,
  );
});
