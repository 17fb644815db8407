/**
 * Embedding the library in a program of one's own: once its sinks and servers are closed
 * the program ends by itself (no `process.exit`), an unclosed sink does not keep it alive
 * for ever, and the status server takes the emit listener itself as its `emitter`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createOperationalStateHolder,
  createPgliteSink,
  makeEmitListener,
  startStatusServer,
} from '../src/index.js';
import { type AgentProcess, startTsProcess } from './support/agentProcess.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const child = fileURLToPath(new URL('./support/embedChild.ts', import.meta.url));
/** tsx, PGlite's WebAssembly and a first connection, on a busy machine. */
const START_MS = 120_000;
/** Closed, nothing is left to hold the process: it ends at once (this is only slack). */
const PROMPT_MS = 5000;

let work: string;
let db: TestSchema;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'kora-embed-'));
  db = await createTestSchema('embed');
});

afterAll(async () => {
  await db?.drop();
  rmSync(work, { recursive: true, force: true });
});

interface Outcome {
  code: number | null;
  done: { stored: boolean; chain: Record<string, unknown> };
  exitAfterMs: number;
  /** What the library logged (nothing, when all went well: no unstored events at close). */
  logged: string[];
}

/** Runs the embedding program and waits for it to end by itself. */
async function embed(
  kind: 'pglite' | 'postgres',
  mode: 'close' | 'leave-sink-open',
): Promise<Outcome> {
  const spool = mkdtempSync(join(work, `${kind}-${mode}-`));
  const args = [kind, mode, spool, ...(kind === 'postgres' ? [db.url] : [])];
  let proc: AgentProcess | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    proc = startTsProcess(child, args);
    const p = proc;
    const { code } = await Promise.race([
      p.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `the program did not end within ${START_MS} ms:\n${p.lines.join('\n')}\n${p.stderr()}`,
              ),
            ),
          START_MS,
        );
      }),
    ]);
    const line = (key: string) => {
      const found = p.lines.find((l) => l.startsWith(`{"${key}"`));
      if (!found)
        throw new Error(`no ${key} line (exit ${code}):\n${p.lines.join('\n')}\n${p.stderr()}`);
      return JSON.parse(found)[key];
    };
    return {
      code,
      done: line('done'),
      exitAfterMs: line('exitAfterMs'),
      logged: p
        .stderr()
        .split('\n')
        .filter((l) => l.includes('[kora.')),
    };
  } finally {
    clearTimeout(timer);
    await proc?.stop();
  }
}

const health = {
  emitted: 2,
  failures: 0,
  last_error: null,
  outbox_depth: 0,
  dropped: 0,
  refused: 0,
};

describe('an embedding program ends by itself', () => {
  it(
    'PGlite: sink and status server closed → the process exits at once',
    async () => {
      const r = await embed('pglite', 'close');
      expect(r.code).toBe(0);
      expect(r.logged).toEqual([]);
      expect(r.done).toEqual({ stored: true, chain: health });
      expect(r.exitAfterMs).toBeLessThan(PROMPT_MS);
    },
    START_MS + 10_000,
  );

  it(
    'Postgres: sink, ticket source and status server closed → the process exits at once',
    async () => {
      const r = await embed('postgres', 'close');
      expect(r.code).toBe(0);
      expect(r.logged).toEqual([]);
      expect(r.done).toEqual({ stored: true, chain: health });
      expect(r.exitAfterMs).toBeLessThan(PROMPT_MS);
    },
    START_MS + 10_000,
  );

  it(
    'Postgres: a sink and a ticket source left open do not hold the process (idle connections are unref’d)',
    async () => {
      const r = await embed('postgres', 'leave-sink-open');
      expect(r.code).toBe(0);
      expect(r.logged).toEqual([]);
      expect(r.done.stored).toBe(true);
      // pg's idle timeout (10 s) held it before: the pools they own allow exit on idle.
      expect(r.exitAfterMs).toBeLessThan(PROMPT_MS);
    },
    START_MS + 10_000,
  );

  it(
    'PGlite: a sink left open holds the process only until the embedded Postgres idles (~10 s)',
    async () => {
      const r = await embed('pglite', 'leave-sink-open');
      expect(r.code).toBe(0);
      expect(r.logged).toEqual([]);
      expect(r.done.stored).toBe(true);
      // PGlite's statistics timer (PGSTAT_IDLE_INTERVAL, 10 s after the last write) runs
      // inside its WebAssembly; nothing of ours is left.
      expect(r.exitAfterMs).toBeLessThan(30_000);
    },
    START_MS + 10_000,
  );
});

describe('startStatusServer({ sink, emitter: makeEmitListener(sink) })', () => {
  it('serves the emit listener’s counts over a real socket', async () => {
    const sink = createPgliteSink({ workspaceId: 'ws-emitter', dataDir: 'memory://' });
    await sink.start();
    const holder = createOperationalStateHolder();
    const emitter = makeEmitListener(sink);
    holder.addListener(emitter);
    await holder.transitionTo('ready', 'all §9.2 gates pass');
    const status = await startStatusServer({ holder, sink, emitter });
    const get = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${status.url}${path}`, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      const state = await get('/api/operational-state');
      expect(state.status).toBe(200);
      expect(JSON.parse(state.body).chain).toEqual(health);
      const metrics = await get('/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toMatch(/^kora_operational_state_emitted_total 2$/m);
    } finally {
      await status.close();
      await sink.close();
    }
  }, 60_000);
});
