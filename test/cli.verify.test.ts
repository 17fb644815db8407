/**
 * `kora-opstate verify-chain` as a child process on a keyed chain: the first run checks
 * everything and remembers the head (`verified-heads.json`), the next checks only what is
 * new, `--full` checks all again, a truncated tail fails against the remembered head or an
 * `--expect-head`, an empty workspace is said plainly, a missing key is named — on the
 * embedded store directly, on PostgreSQL, and through a running agent.
 */
import { existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENERIC_TRANSITION_EVENT } from '../src/emit.js';
import type { DurableChainSink } from '../src/sinks/durable.js';
import { createPgliteSink } from '../src/sinks/pglite.js';
import { createPostgresSink } from '../src/sinks/postgres.js';
import type { ChainEvent } from '../src/sinks/types.js';
import { startTsProcess } from './support/agentProcess.js';
import { CLI_BIN as bin, runCli, tempDirs } from './support/cli.js';
import { createTestSchema, type TestSchema } from './support/postgres.js';

const KEY = 'cli-verify-test-chain-key-0123456789abcdef';
const tempDir = tempDirs('kora-verify-');
const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
  runCli(args, env, 120_000);

const event = (ws: string, instance: string, seq: number): ChainEvent => ({
  event_type: GENERIC_TRANSITION_EVENT,
  payload: { from_primary_state: 'ready', to_primary_state: 'active', trigger: `t${seq}` },
  workspace_id: ws,
  instance_id: instance,
  seq,
  occurred_at: new Date().toISOString(),
});

async function append(sink: DurableChainSink, instance: string, from: number, to: number) {
  for (let seq = from; seq <= to; seq++)
    await sink.append([event(sink.workspaceId, instance, seq)]);
}

const headLine = (stdout: string) => /^ {2}head +#(\d+) ([0-9a-f]{64})$/m.exec(stdout);

describe('verify-chain on the embedded store (keyed, key in the data dir)', () => {
  const dir = tempDir();
  const pgliteDir = join(dir, 'pglite');
  /** Opens the store in this process (the CLI must not run meanwhile). */
  const withSink = async <T>(
    fn: (sink: DurableChainSink) => Promise<T>,
    workspaceId = 'default',
  ) => {
    const sink = createPgliteSink({ workspaceId, dataDir: pgliteDir, chainKey: KEY });
    await sink.start();
    try {
      return await fn(sink);
    } finally {
      await sink.close();
    }
  };
  let fullHead: string;

  beforeAll(async () => {
    writeFileSync(join(dir, 'chain.key'), `${KEY}\n`, { mode: 0o600 });
    await withSink((s) => append(s, 'run-1', 1, 5));
  }, 120_000);

  it('the first run checks every event, prints mode, head and keyed-from, and remembers the head', async () => {
    const r = await cli(['verify-chain', '--data-dir', dir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`chain ok: workspace "default", 5 events (embedded PGlite ${dir})`);
    expect(r.stdout).toContain('  mode        full, 5 event(s) checked');
    expect(r.stdout).toContain('  keyed from  #1');
    expect(r.stdout).toContain('  gaps        none');
    const head = headLine(r.stdout)!;
    expect(head[1]).toBe('5');
    fullHead = `${head[1]}:${head[2]}`;
    const remembered = JSON.parse(readFileSync(join(dir, 'verified-heads.json'), 'utf8'));
    expect(remembered).toEqual({
      version: 1,
      heads: {
        [`pglite:${dir}`]: {
          default: {
            chain_seq: 5,
            hash: head[2],
            keyed_from: 1,
            verified_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
          },
        },
      },
    });
  });

  it('the next run checks only the new events; --full checks all again; --json says so', async () => {
    await withSink((s) => append(s, 'run-2', 1, 3));
    const inc = await cli(['verify-chain', '--data-dir', dir]);
    expect(inc.code).toBe(0);
    expect(inc.stdout).toContain('chain ok: workspace "default", 8 events');
    expect(inc.stdout).toContain('  mode        incremental from #5, 3 event(s) checked');
    expect(headLine(inc.stdout)![1]).toBe('8');
    const full = await cli(['verify-chain', '--data-dir', dir, '--full', '--json']);
    expect(full.code).toBe(0);
    expect(JSON.parse(full.stdout)).toEqual({
      workspace_id: 'default',
      mode: 'full',
      ok: true,
      events: 8,
      checked: 8,
      head: { chain_seq: 8, hash: headLine(inc.stdout)![2] },
      keyedFrom: 1,
      gaps: [],
    });
  });

  it('--expect-head: a head kept elsewhere must still be in the chain; a malformed one is a usage error', async () => {
    const ok = await cli(['verify-chain', '--data-dir', dir, '--expect-head', fullHead]);
    expect(ok.code).toBe(0);
    const [seq] = fullHead.split(':');
    const wrong = await cli([
      'verify-chain',
      '--data-dir',
      dir,
      '--expect-head',
      `${seq}:${'0'.repeat(64)}`,
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toMatch(
      /^chain BROKEN: workspace "default", event [0-9a-f-]{36} \(#5\): chain no longer extends the verified head #5 \(000000000000…\): tail truncated or rewritten \(#5 now holds /,
    );
    const bad = await cli(['verify-chain', '--data-dir', dir, '--expect-head', '5:xyz']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      'invalid --expect-head "5:xyz": expected SEQ:HASH (a chain position from 1, a colon, the 64-hex hash there)',
    );
  });

  it('an empty workspace is said plainly (exit 0)', async () => {
    const r = await cli(['verify-chain', '--data-dir', dir, '--workspace', 'nobody']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `no events in workspace "nobody": nothing to verify (embedded PGlite ${dir})\n`,
    );
  });

  it('without the key: exit 1 naming where it looked; KORA_CHAIN_KEY or --chain-key-file supply it', async () => {
    const keyFile = join(dir, 'chain.key');
    const moved = join(dir, 'elsewhere.key');
    renameSync(keyFile, moved);
    try {
      const r = await cli(['verify-chain', '--data-dir', dir, '--full']);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(
        /^chain BROKEN: workspace "default", event [0-9a-f-]{36} \(#1\): the chain is keyed from #1 \(key id [0-9a-f]{16}\): verifying it needs the chain key/,
      );
      expect(r.stdout).toContain(
        `  no chain key found; looked at: KORA_CHAIN_KEY (not set), ${keyFile}`,
      );
      // verify-chain never creates a key.
      expect(existsSync(keyFile)).toBe(false);
      const byFile = await cli([
        'verify-chain',
        '--data-dir',
        dir,
        '--full',
        '--chain-key-file',
        moved,
      ]);
      expect(byFile.code).toBe(0);
      const byEnv = await cli(['verify-chain', '--data-dir', dir, '--full'], {
        KORA_CHAIN_KEY: KEY,
      });
      expect(byEnv.code).toBe(0);
      const missing = await cli([
        'verify-chain',
        '--data-dir',
        dir,
        '--chain-key-file',
        join(dir, 'no.key'),
      ]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain(
        `cannot read the chain key file ${join(dir, 'no.key')} (--chain-key-file)`,
      );
    } finally {
      renameSync(moved, keyFile);
    }
  });

  it('a truncated tail fails against the remembered head, incremental and --full alike', async () => {
    const { PGlite } = await import('@electric-sql/pglite');
    const db = await PGlite.create(pgliteDir);
    try {
      await db.query("DELETE FROM event_log WHERE workspace_id = 'default' AND chain_seq > 6");
    } finally {
      await db.close();
    }
    for (const extra of [[], ['--full']]) {
      const r = await cli(['verify-chain', '--data-dir', dir, ...extra]);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(
        /^chain BROKEN: workspace "default", event #8 \(gone\): chain no longer extends the verified head #8 \([0-9a-f]{12}…\): tail truncated or rewritten \(the chain now ends at #6\)/,
      );
    }
    // A verifier with no memory of the head cannot tell (documented): what is left is consistent.
    rmSync(join(dir, 'verified-heads.json'));
    const forgetful = await cli(['verify-chain', '--data-dir', dir]);
    expect(forgetful.code).toBe(0);
    expect(forgetful.stdout).toContain('chain ok: workspace "default", 6 events');
  });
});

describe('verify-chain on PostgreSQL', () => {
  let db: TestSchema;
  beforeAll(async () => {
    db = await createTestSchema('cliverify');
  });
  afterAll(async () => {
    await db.drop();
  });

  it('remembers heads per store (server, database, options) and workspace, in the data dir', async () => {
    const dataDir = tempDir();
    const sink = createPostgresSink({ workspaceId: 'ws-pg', pool: db.pool, chainKey: KEY });
    await sink.start();
    try {
      await append(sink, `pg-${db.schema}`, 1, 4);
      const env = {
        DATABASE_URL: db.url,
        KORA_WORKSPACE: 'ws-pg',
        KORA_DATA_DIR: dataDir,
        KORA_CHAIN_KEY: KEY,
      };
      const first = await cli(['verify-chain'], env);
      expect(first.code).toBe(0);
      expect(first.stdout).toContain('  mode        full, 4 event(s) checked');
      const heads = JSON.parse(readFileSync(join(dataDir, 'verified-heads.json'), 'utf8')).heads;
      const url = new URL(db.url);
      expect(Object.keys(heads)).toEqual([
        `postgres://${url.hostname}:${url.port || '5432'}${url.pathname}?options=${encodeURIComponent(`-c search_path=${db.schema}`)}`,
      ]);
      expect(JSON.stringify(heads)).not.toContain('password');
      await append(sink, `pg-${db.schema}`, 5, 6);
      const next = await cli(['verify-chain'], env);
      expect(next.stdout).toContain('  mode        incremental from #4, 2 event(s) checked');
      // A middle row's payload changed: incremental runs do not re-read it; --full does.
      await db.pool.query(
        `UPDATE event_log SET payload = '{"forged": true}' WHERE workspace_id = 'ws-pg' AND chain_seq = 2`,
      );
      const inc = await cli(['verify-chain'], env);
      expect(inc.code).toBe(0);
      expect(inc.stdout).toContain('0 event(s) checked');
      const full = await cli(['verify-chain', '--full'], env);
      expect(full.code).toBe(1);
      expect(full.stdout).toMatch(
        /^chain BROKEN: workspace "ws-pg", event [0-9a-f-]{36} \(#2\): keyed link mismatch/,
      );
    } finally {
      await sink.close();
    }
  });
});

describe('verify-chain through a running agent (the embedded store is locked)', () => {
  it('the agent generates its key (0600); verify-chain runs through it, incrementally the second time', async () => {
    const dataDir = tempDir();
    const agent = startTsProcess(bin, [
      'start',
      '--port',
      '0',
      '--data-dir',
      dataDir,
      '--tickets',
      '1',
      '--ticket-every-ms',
      '300',
      '--work-ms',
      '50',
    ]);
    try {
      const keyLine = await agent.waitFor(/ chain key +/);
      expect(keyLine).toMatch(
        new RegExp(
          `chain key +${join(dataDir, 'chain.key')} \\(generated\\) \\(key id [0-9a-f]{16}\\)$`,
        ),
      );
      expect(statSync(join(dataDir, 'chain.key')).mode & 0o777).toBe(0o600);
      await agent.waitFor(/ panel +http:/);
      await agent.waitFor(/→ ready +claim\.released .*demo-[0-9a-z]+-1\b/);
      const first = await cli(['verify-chain', '--data-dir', dataDir]);
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      expect(first.stdout).toMatch(
        /^chain ok: workspace "default", \d+ events \(the running agent at http/,
      );
      expect(first.stdout).toContain('  keyed from  #1');
      const seen = Number(headLine(first.stdout)![1]);
      // A demo ticket finished after that verification adds events.
      const done = agent.lines
        .map((l) => / claim\.released .*demo-[0-9a-z]+-(\d+)\b/.exec(l)?.[1])
        .filter((n) => n !== undefined)
        .map(Number);
      const next = Math.max(...done) + 1;
      await agent.waitFor(new RegExp(`→ ready +claim\\.released .*demo-[0-9a-z]+-${next}\\b`));
      const second = await cli(['verify-chain', '--data-dir', dataDir]);
      expect(second.code).toBe(0);
      expect(second.stdout).toContain(`  mode        incremental from #${seen}, `);
      expect(Number(headLine(second.stdout)![1])).toBeGreaterThan(seen);
    } finally {
      await agent.stop();
    }
  }, 180_000);
});
