/**
 * A throwaway PostgreSQL cluster for tests that must stop and start the server (the
 * outage test): its own data directory in a fresh temp dir, a free loopback port, trust
 * auth (or password auth over TCP with `{ password }`: the machine's own service trusts
 * 127.0.0.1, so only here can a wrong password fail), run as the `postgres` OS user
 * (initdb refuses root). `destroy()` stops it and
 * removes the directory; call it in `afterAll` — it is safe after any failure.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ThrowawayClusterOptions {
  /**
   * The `postgres` superuser's password; TCP connections then need a password
   * (scram-sha-256). Default: none, trust auth.
   */
  password?: string;
}

export interface ThrowawayCluster {
  readonly port: number;
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (`postgres:<password>@` with one). */
  readonly url: string;
  readonly dir: string;
  /** Whether the server is up (as far as this helper knows). */
  readonly running: boolean;
  /** Starts the server and waits until it accepts connections. */
  start(): Promise<void>;
  /** Stops the server (fast mode: open sessions are terminated) and waits. */
  stop(): Promise<void>;
  /** Stops the server if running and removes its directory. Idempotent. */
  destroy(): Promise<void>;
}

/** The newest installed server's bin directory, e.g. `/usr/lib/postgresql/15/bin`. */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL server binaries under ${root}`);
  return join(root, versions[0]!, 'bin');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const asRoot = process.getuid?.() === 0;

/** Runs a server binary as the `postgres` user. */
async function asPostgres(bin: string, args: string[]): Promise<string> {
  const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  try {
    const { stdout } = await run(file, argv, { timeout: 60_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${bin} ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`);
  }
}

/**
 * Creates and starts a cluster.
 *
 * @example
 * const cluster = await createThrowawayCluster();
 * try { ... await cluster.stop(); ... await cluster.start(); } finally { await cluster.destroy(); }
 */
export async function createThrowawayCluster(
  options: ThrowawayClusterOptions = {},
): Promise<ThrowawayCluster> {
  const bin = postgresBinDir();
  const dir = await mkdtemp(join(tmpdir(), 'kora-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  if (asRoot) chownSync(dir, ...postgresIds());
  const port = await freePort();
  let running = false;
  let destroyed = false;
  const pgCtl = join(bin, 'pg_ctl');
  const cluster: ThrowawayCluster = {
    port,
    url: `postgres://${options.password ? `postgres:${encodeURIComponent(options.password)}` : 'postgres'}@127.0.0.1:${port}/postgres`,
    dir,
    get running() {
      return running;
    },
    async start() {
      const opts = [
        `-p ${port}`,
        '-c listen_addresses=127.0.0.1',
        `-c unix_socket_directories=${dir}`,
        // Durability is not under test here; speed is welcome.
        '-c fsync=off',
        '-c synchronous_commit=off',
        '-c full_page_writes=off',
      ].join(' ');
      try {
        await asPostgres(pgCtl, ['-D', data, '-l', log, '-o', opts, '-w', '-t', '60', 'start']);
      } catch (err) {
        const text = await readFile(log, 'utf8').catch(() => '');
        throw new Error(`${(err as Error).message}\n--- server.log ---\n${text}`);
      }
      running = true;
    },
    async stop() {
      await asPostgres(pgCtl, ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
      running = false;
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        if (existsSync(join(data, 'postmaster.pid'))) {
          await asPostgres(pgCtl, ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop']);
        }
      } catch {
        // Already stopped.
      } finally {
        running = false;
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
  const auth = ['-A', 'trust'];
  if (options.password !== undefined) {
    const pwfile = join(dir, 'pwfile');
    writeFileSync(pwfile, `${options.password}\n`, { mode: 0o600 });
    if (asRoot) chownSync(pwfile, ...postgresIds());
    auth.splice(0, 2, '--auth-local=trust', '--auth-host=scram-sha-256', `--pwfile=${pwfile}`);
  }
  try {
    await asPostgres(join(bin, 'initdb'), [
      '-D',
      data,
      '-U',
      'postgres',
      ...auth,
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    await cluster.start();
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}

function postgresIds(): [number, number] {
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('no postgres OS user');
  return [uid, gid];
}
