/**
 * A new PGlite directory without `initdb` on the event loop: the data-directory template
 * (made here as the build makes it), its fallbacks, the queries that yield to the event
 * loop, and an agent whose `/livez` answers while its new store is being created.
 */
import { mkdir, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENERIC_TRANSITION_EVENT } from '../src/emit.js';
import { MIGRATIONS } from '../src/sinks/migrations.js';
import { createPgliteSink } from '../src/sinks/pglite.js';
import { packTarGz, unpackTarGz } from '../src/sinks/pgliteTar.js';
import { openPglite, unpackTemplate, writePgliteTemplate } from '../src/sinks/pgliteTemplate.js';
import { yieldingPglite } from '../src/sinks/pgliteYield.js';
import { VERIFY_PAGE } from '../src/sinks/sql.js';
import type { ChainEvent } from '../src/sinks/types.js';
import { startTsProcess } from './support/agentProcess.js';
import { chainOk } from './support/chainResult.js';
import { CLI_BIN, tempDirs } from './support/cli.js';
import { recordingLogger } from './support/logger.js';

const tempDir = tempDirs('kora-pglite-template-');
// initdb (the template's, a fallback's) takes seconds, more on a busy machine.
const SLOW = 180_000;

const event = (seq: number, workspace_id: string): ChainEvent => ({
  event_type: GENERIC_TRANSITION_EVENT,
  payload: { n: seq },
  workspace_id,
  instance_id: `run-${workspace_id}`,
  seq,
  occurred_at: '2026-05-21T20:55:00.123Z',
});

const versions = async (db: { query(t: string): Promise<{ rows: { version: number }[] }> }) =>
  (await db.query('SELECT version FROM kora_opstate_migrations ORDER BY version')).rows.map(
    (r) => r.version,
  );

describe('the PGlite data-directory template', () => {
  let template: string;
  beforeAll(async () => {
    const dir = tempDir();
    template = join(dir, 'template.tar.gz');
    // Two migrations only: a start from it must apply the rest.
    await writePgliteTemplate(template, dir, MIGRATIONS.slice(0, 2));
  }, SLOW);

  it(
    'a new directory from it opens without initdb, applies the missing migrations, verifies, and persists',
    async () => {
      const dataDir = join(tempDir(), 'pglite');
      const logger = recordingLogger();
      const first = await openPglite(dataDir, { template, logger });
      expect(first.origin).toBe('template');
      expect(await versions(first.db)).toEqual([1, 2]);
      await first.db.close();

      const sink = createPgliteSink({ workspaceId: 'ws-t', dataDir, template, logger });
      await sink.start();
      for (let i = 1; i <= 5; i++) await sink.append([event(i, 'ws-t')]);
      expect(await sink.verifyChain()).toEqual(chainOk(5));
      await sink.close();

      // A restart opens the directory as it is: the chain and every migration are there.
      const again = await openPglite(dataDir, { template, logger });
      expect(again.origin).toBe('existing');
      expect(await versions(again.db)).toEqual(MIGRATIONS.map((m) => m.version));
      await again.db.close();
      const reopened = createPgliteSink({ workspaceId: 'ws-t', dataDir, template, logger });
      await reopened.start();
      expect(await reopened.verifyChain()).toEqual(chainOk(5));
      await reopened.close();
      expect(logger.find('warn')).toEqual([]);
      expect(logger.find('info', 'unpacked from the template')).toHaveLength(1);
    },
    SLOW,
  );

  it(
    'two directories from it are independent databases',
    async () => {
      const root = tempDir();
      const a = createPgliteSink({ workspaceId: 'ws', dataDir: join(root, 'a'), template });
      const b = createPgliteSink({ workspaceId: 'ws', dataDir: join(root, 'b'), template });
      try {
        await a.start();
        await b.start();
        await a.append([event(1, 'ws'), event(2, 'ws')]);
        await b.append([event(1, 'ws')]);
        expect(await a.verifyChain()).toEqual(chainOk(2));
        expect(await b.verifyChain()).toEqual(chainOk(1));
      } finally {
        await a.close();
        await b.close();
      }
      // An empty directory (as the agent makes it) is filled the same way.
      const empty = join(root, 'c');
      await mkdir(empty);
      const c = await openPglite(empty, { template });
      expect(c.origin).toBe('template');
      expect((await c.db.query('SELECT count(*)::int AS n FROM event_log')).rows).toEqual([
        { n: 0 },
      ]);
      await c.db.close();
    },
    SLOW,
  );

  it(
    'a damaged template falls back to initdb, with a warning naming it',
    async () => {
      const root = tempDir();
      const bytes = await readFile(template);
      const truncated = join(root, 'truncated.tar.gz');
      await writeFile(truncated, bytes.subarray(0, bytes.length >> 1));
      const logger = recordingLogger();
      const sink = createPgliteSink({
        workspaceId: 'ws-f',
        dataDir: join(root, 'pglite'),
        template: truncated,
        logger,
      });
      await sink.start();
      await sink.append([event(1, 'ws-f')]);
      expect(await sink.verifyChain()).toEqual(chainOk(1));
      await sink.close();
      expect(logger.find('warn', `the PGlite template ${truncated} is unusable`)).toHaveLength(1);
      expect(logger.find('info', 'initdb done')).toHaveLength(1);
      // The initdb ran on a worker thread (no warning that it had to run on the event loop).
      expect(logger.find('warn')).toHaveLength(1);
      const check = await openPglite(join(root, 'pglite'));
      expect(check.origin).toBe('existing');
      expect(await versions(check.db)).toEqual(MIGRATIONS.map((m) => m.version));
      await check.db.close();
      // Nothing half-made is left beside it.
      expect(await readdir(root)).toEqual(['pglite', 'truncated.tar.gz']);
    },
    SLOW,
  );

  it('a missing or empty template is refused, nothing left behind', async () => {
    const root = tempDir();
    const staging = join(root, 'staging');
    const logger = recordingLogger();
    const missing = join(root, 'nowhere.tar.gz');
    expect(await unpackTemplate(missing, staging, { template: missing }, logger)).toBe(false);
    expect(logger.find('warn', `cannot read the PGlite template ${missing}: ENOENT`)).toHaveLength(
      1,
    );
    // The package's own template absent (running from the sources): no warning.
    expect(await unpackTemplate(missing, staging, {}, logger)).toBe(false);
    const empty = join(root, 'empty.tar.gz');
    const emptyDir = join(tempDir(), 'pgdata');
    await mkdir(join(emptyDir, 'base'), { recursive: true });
    await packTarGz(emptyDir, empty);
    expect(await unpackTemplate(empty, staging, { template: empty }, logger)).toBe(false);
    expect(logger.find('warn', `${empty} is unusable: it holds no PG_VERSION`)).toHaveLength(1);
    expect(logger.find('warn')).toHaveLength(2);
    expect(await unpackTemplate(template, staging, { template }, logger)).toBe(true);
    expect(await readFile(join(staging, 'PG_VERSION'), 'utf8')).toMatch(/^\d+\n$/);
    expect(await readdir(root)).toEqual(['empty.tar.gz', 'staging']);
  });

  it('unpacking refuses a corrupt or truncated archive, links and paths out of the directory', async () => {
    const root = tempDir();
    const src = join(root, 'src');
    await mkdir(join(src, 'base'), { recursive: true });
    await writeFile(join(src, 'PG_VERSION'), '18\n');
    const okFile = join(root, 'ok.tar.gz');
    await packTarGz(src, okFile);
    const ok = await readFile(okFile);
    let n = 0;
    /** Unpacks `bytes` into a new directory; resolves to what it holds. */
    const unpackNew = async (bytes: Uint8Array) => {
      const dir = join(root, `out-${n++}`);
      await mkdir(dir);
      await unpackTarGz(bytes, dir);
      return (await readdir(dir, { recursive: true })).sort();
    };
    expect(await unpackNew(ok)).toEqual(['PG_VERSION', 'base']);
    const { gunzipSync, gzipSync } = await import('node:zlib');
    const raw = gunzipSync(ok);
    const bad = Buffer.from(raw);
    bad[0] = 'Q'.charCodeAt(0); // a header no longer matching its checksum
    await expect(unpackNew(gzipSync(bad))).rejects.toThrow(/checksum failure/);
    await expect(unpackNew(ok.subarray(0, ok.length - 8))).rejects.toThrow(
      /not a whole gzip stream/,
    );
    await expect(unpackNew(Buffer.from('not gzip'))).rejects.toThrow(/not a whole gzip stream/);
    // Cut inside PG_VERSION's data; cut after it, before the end-of-archive blocks.
    await expect(unpackNew(gzipSync(raw.subarray(0, 512)))).rejects.toThrow(
      /Truncated input.*"PG_VERSION"/,
    );
    await expect(unpackNew(gzipSync(raw.subarray(0, 1024)))).rejects.toThrow(
      /truncated \(no end-of-archive blocks\)/,
    );

    // Archives made by node-tar itself, holding what a template never does.
    const { create } = await import('tar');
    const made = async (cwd: string, paths: string[]) => {
      const chunks: Buffer[] = [];
      for await (const c of create({ cwd, gzip: true, preservePaths: true }, paths)) {
        chunks.push(c as Buffer);
      }
      return Buffer.concat(chunks);
    };
    await symlink('/etc/passwd', join(src, 'link'));
    await expect(unpackNew(await made(src, ['PG_VERSION', 'link']))).rejects.toThrow(
      /refused "link", a SymbolicLink/,
    );
    await expect(packTarGz(src, join(root, 'no.tar.gz'))).rejects.toThrow(
      /"link" is neither a file nor a directory/,
    );
    await expect(unpackNew(await made(join(src, 'base'), ['../PG_VERSION']))).rejects.toThrow(
      /path contains '..' \("..\/PG_VERSION"\)/,
    );
    const absolute = join(src, 'PG_VERSION');
    await expect(unpackNew(await made(src, [absolute]))).rejects.toThrow(
      new RegExp(`absolute path \\(${JSON.stringify(absolute)}\\)`),
    );
    // Nothing was written outside the directories unpacked into.
    expect(await readdir(root)).toEqual([
      'ok.tar.gz',
      ...Array.from({ length: n }, (_, i) => `out-${i}`),
      'src',
    ]);
  });

  it('packs a directory to the same bytes each time and unpacks exactly it', async () => {
    const root = tempDir();
    const src = join(root, 'src');
    await mkdir(join(src, 'pg_wal'), { recursive: true });
    await mkdir(join(src, 'base', '1'), { recursive: true });
    const wal = Buffer.alloc(256 * 1024); // mostly zeros, as a WAL segment is
    wal.write('record', 1000);
    await writeFile(join(src, 'PG_VERSION'), '18\n');
    await writeFile(join(src, 'pg_wal/000000010000000000000001'), wal);
    await writeFile(join(src, 'base/1/1259'), Buffer.alloc(8192, 7), { mode: 0o600 });
    await writeFile(join(src, 'empty'), '');
    const a = join(root, 'a.tar.gz');
    const b = join(root, 'b.tar.gz');
    expect(await packTarGz(src, a)).toBe((await readFile(a)).length);
    // No times in it: a file touched since packs the same.
    await utimes(join(src, 'PG_VERSION'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    await packTarGz(src, b);
    expect((await readFile(a)).equals(await readFile(b))).toBe(true);
    const dir = join(root, 'out');
    await mkdir(dir);
    await unpackTarGz(await readFile(a), dir);
    const tree = async (d: string) => (await readdir(d, { recursive: true })).sort();
    expect(await tree(dir)).toEqual(await tree(src));
    for (const f of ['PG_VERSION', 'pg_wal/000000010000000000000001', 'base/1/1259', 'empty']) {
      expect((await readFile(join(dir, f))).equals(await readFile(join(src, f))), f).toBe(true);
    }
    expect((await stat(join(dir, 'base/1/1259'))).mode & 0o777).toBe(0o600);
  });

  it('validates the template option', () => {
    expect(() => createPgliteSink({ template: '' })).toThrow(
      /template must be a path or false, got ""/,
    );
    expect(() => createPgliteSink({ template: 7 as never })).toThrow(/template.*7/);
  });
});

describe('PGlite queries and the event loop', () => {
  let db: PGlite;
  beforeAll(async () => {
    db = await PGlite.create();
  });
  afterAll(async () => {
    await db.close();
  });

  /** Runs `n` awaited queries; returns how many had finished when a 0 ms timer fired. */
  async function timerDuring(run: (i: number) => Promise<unknown>, n: number) {
    let firedAfter: number | undefined;
    let done = 0;
    setTimeout(() => {
      firedAfter = done;
    }, 0);
    for (let i = 0; i < n; i++) {
      await run(i);
      done++;
    }
    return firedAfter;
  }

  it('raw PGlite queries settle as microtasks: a timer waits for the whole loop', async () => {
    // What the wrapper is for: without it, nothing else runs until the loop ends.
    expect(await timerDuring(() => db.query('SELECT 1'), 200)).toBeUndefined();
  });

  it('through yieldingPglite a timer runs while the loop goes on, transactions included', async () => {
    const y = yieldingPglite(db);
    expect(await timerDuring(() => y.query('SELECT 1'), 200)).toBeLessThan(200);
    expect(
      await timerDuring(
        () =>
          y.transaction(async (tx) => {
            await tx.query('SELECT 1');
            await tx.exec('SELECT 2');
          }),
        100,
      ),
    ).toBeLessThan(100);
    expect(yieldingPglite(y)).toBe(y);
    // Calls start in the order they were made.
    await y.exec('CREATE TEMP TABLE seen (n int)');
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => y.query('INSERT INTO seen VALUES ($1)', [i])),
    );
    const { rows } = await y.query('SELECT n FROM seen');
    expect(rows.map((r: { n: number }) => r.n)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });
});

describe('a PGlite sink and the event loop', () => {
  it(
    'verifying a chain of several pages lets timers run between the pages',
    async () => {
      const db = await PGlite.create();
      const sink = createPgliteSink({ workspaceId: 'ws-v', db });
      try {
        await sink.start();
        const n = VERIFY_PAGE * 2 + 1;
        for (let i = 1; i <= n; i += 1000) {
          const last = Math.min(n, i + 999);
          await sink.append(Array.from({ length: last - i + 1 }, (_, k) => event(i + k, 'ws-v')));
        }
        let fired = false;
        let firedBeforeTheEnd = false;
        setTimeout(() => {
          fired = true;
        }, 0);
        const verified = sink.verifyChain().then((r) => {
          firedBeforeTheEnd = fired;
          return r;
        });
        expect(await verified).toEqual(chainOk(n));
        // Three pages, each its own query: a request arriving meanwhile is served between them.
        expect(firedBeforeTheEnd).toBe(true);
      } finally {
        await sink.close();
        await db.close();
      }
    },
    SLOW,
  );
});

describe('an agent creating its PGlite store', () => {
  it(
    'answers /livez all through its initdb (on a worker thread)',
    async () => {
      // From the sources there is no template (the build makes it): a new store is the
      // longest start there is, an initdb — seconds of one synchronous WebAssembly call.
      const dataDir = tempDir();
      const agent = startTsProcess(CLI_BIN, [
        'start',
        '--port',
        '0',
        '--data-dir',
        dataDir,
        '--tickets',
        '0',
        '--ticket-every-ms',
        '0',
      ]);
      try {
        const url = /panel\s+(http\S+)\//.exec(await agent.waitFor(/panel\s+http/))![1]!;
        await agent.waitFor('initdb (a few seconds)…');
        const began = performance.now();
        // Probes one after another until the store is open; the one in flight then ends
        // the list.
        const answers: { status: number; body: unknown }[] = [];
        let longest = 0;
        let open = false;
        while (!open) {
          open = agent.lines.some((l) => l.includes('initdb done'));
          const sent = performance.now();
          const res = await fetch(`${url}/livez`);
          answers.push({ status: res.status, body: await res.json() });
          longest = Math.max(longest, performance.now() - sent);
          // A probe every few ms, as a kubelet's would come every few seconds.
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        const initdb = performance.now() - began;
        expect(new Set(answers.map((a) => JSON.stringify(a)))).toEqual(
          new Set([
            JSON.stringify({ status: 200, body: { live: true, primary_state: 'booting' } }),
          ]),
        );
        // Not a deadline: a ratio of two spans of the same run. Were the initdb on the
        // event loop, one probe would wait for most of it; here the longest wait is the
        // final open of the finished directory, a fraction of the whole.
        expect(answers.length, `${answers.length} answers`).toBeGreaterThan(2);
        const figures = `${answers.length} answers, the longest in ${Math.round(longest)} of ${Math.round(initdb)} ms`;
        expect(longest, figures).toBeLessThan(initdb / 2);
        await agent.waitFor(/boot\s+ready/);
        expect((await fetch(`${url}/readyz`)).status).toBe(200);
        // The scratch directory became the store; nothing else is left beside it.
        expect((await readdir(dataDir)).filter((n) => n.includes('pglite'))).toEqual(['pglite']);
      } finally {
        await agent.stop();
      }
    },
    SLOW,
  );
});
