/**
 * Opening a PGlite data directory fast on the first start. A new directory costs PGlite an
 * `initdb`: a second WebAssembly instance, seconds of CPU and ~800 MB resident. The
 * package ships the result instead — a data directory made at build time (`npm run build`
 * writes `pglite-template.tar.gz` next to this module) — and a new directory is unpacked
 * from it, which leaves PGlite only the work of opening an existing one. A template that
 * is missing, damaged or refused by PGlite falls back to `initdb` — run on a worker
 * thread, so the event loop (and a status server's `/livez`) is never held by it — with a
 * warning.
 */
import { randomBytes } from 'node:crypto';
import { access, mkdir, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PGlite } from '@electric-sql/pglite';
import { errorText, LOG_TAGS, type Logger, report, SILENT_LOGGER } from '../logger.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import { applyMigrations, type Migration } from './migrations.js';
import { packTarGz, unpackTarGz } from './pgliteTar.js';
import { initdbInWorker } from './pgliteWorker.js';

const TAG = LOG_TAGS.pglite;

/** The template's file name, next to this module in `dist/src/sinks/`. */
export const PGLITE_TEMPLATE_FILE = 'pglite-template.tar.gz';

/** Where the package's template is: beside the compiled module (absent when run from source). */
export const DEFAULT_PGLITE_TEMPLATE = fileURLToPath(
  new URL(`./${PGLITE_TEMPLATE_FILE}`, import.meta.url),
);

export interface OpenPgliteOptions {
  /**
   * The data-directory template a new directory is unpacked from (default: the package's
   * own, {@link DEFAULT_PGLITE_TEMPLATE}); `false` always runs `initdb`.
   */
  template?: string | false;
  /** Where a fallback is reported (default: silent). */
  logger?: Logger;
}

/** How the directory was opened. */
export type PgliteOrigin = 'existing' | 'template' | 'initdb' | 'memory';

/** @internal Validates a `template` option: a non-empty path or `false`. */
export function checkTemplateOption(template: unknown): void {
  if (template !== undefined && template !== false && (typeof template !== 'string' || !template)) {
    throw new OperationalStateInputError(
      'template',
      template,
      `template must be a path or false, got ${quote(template)}`,
    );
  }
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * Opens (or creates) the PGlite database in `dataDir`: an existing directory as it is; a
 * new or empty one is unpacked from the template, or else `initdb`-ed on a worker thread
 * (never on the event loop), then opened. Either is done in a sibling directory renamed
 * into place once complete, so an interrupted start never leaves half a database.
 * `memory://` and other PGlite URLs go to PGlite unchanged.
 *
 * @example
 * const { db, origin } = await openPglite('./.kora-opstate/pglite', { logger: console });
 * origin; // 'template' on the first start, 'existing' afterwards
 * await db.close();
 */
export async function openPglite(
  dataDir: string,
  options: OpenPgliteOptions = {},
): Promise<{ db: PGlite; origin: PgliteOrigin }> {
  checkTemplateOption(options.template);
  const logger = options.logger ?? SILENT_LOGGER;
  // Loaded on first use: the WebAssembly build is large and Postgres users never need it.
  const { PGlite } = await import('@electric-sql/pglite');
  if (dataDir.includes('://')) return { db: await PGlite.create(dataDir), origin: 'memory' };
  if (await exists(join(dataDir, 'PG_VERSION'))) {
    return { db: await PGlite.create(dataDir), origin: 'existing' };
  }
  const present = await readdir(dataDir).catch(() => undefined);
  if (present && present.length > 0) {
    // Not ours to clear: PGlite decides (it initialises into it, as it always did).
    report(
      logger,
      'warn',
      TAG,
      `${dataDir} is neither empty nor a database; PGlite opens it as it is`,
    );
    return { db: await PGlite.create(dataDir), origin: 'initdb' };
  }
  await mkdir(dirname(dataDir), { recursive: true });
  const staging = join(
    dirname(dataDir),
    `.${basename(dataDir)}.new-${randomBytes(4).toString('hex')}`,
  );
  const place = async () => {
    // Gone already when a template that did not open was cleared away.
    if (present) await rmdir(dataDir).catch(() => {});
    await rename(staging, dataDir);
  };
  const template = options.template ?? DEFAULT_PGLITE_TEMPLATE;
  // Compiled while the template unpacks (PGlite would compile it after): ~150 ms less.
  const wasm = template !== false && (await exists(template)) ? compilePgliteWasm() : undefined;
  if (template !== false && (await unpackTemplate(template, staging, options, logger))) {
    let placed = false;
    try {
      await place();
      placed = true;
      const pgliteWasmModule = await wasm;
      const db = await PGlite.create({
        dataDir,
        ...(pgliteWasmModule ? { pgliteWasmModule } : {}),
      });
      report(logger, 'info', TAG, `new store ${dataDir}: unpacked from the template, open`);
      return { db, origin: 'template' };
    } catch (err) {
      report(
        logger,
        'warn',
        TAG,
        `the directory unpacked from the template ${template} did not open (${errorText(err)}); running initdb instead`,
      );
      await rm(staging, { recursive: true, force: true });
      // Everything in it came from the template a moment ago.
      if (placed) await rm(dataDir, { recursive: true, force: true });
    }
  }
  report(logger, 'info', TAG, `new store ${dataDir}: initdb (a few seconds)…`);
  try {
    await initdbInWorker(staging);
    await place();
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    report(
      logger,
      'warn',
      TAG,
      `initdb on a worker thread failed (${errorText(err)}); running it here, the event loop held meanwhile`,
    );
  }
  await mkdir(dataDir, { recursive: true });
  const db = await PGlite.create(dataDir);
  report(logger, 'info', TAG, `new store ${dataDir}: initdb done, open`);
  return { db, origin: 'initdb' };
}

/** PGlite's WebAssembly, compiled; undefined (PGlite then compiles it) if that fails. */
async function compilePgliteWasm(): Promise<WebAssembly.Module | undefined> {
  try {
    const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
    return await WebAssembly.compile(await readFile(join(dirname(entry), 'pglite.wasm')));
  } catch {
    return undefined;
  }
}

/**
 * @internal Unpacks `template` into `staging` (a new directory). False, with a warning,
 * when it cannot — unless the package's own template is simply absent, as when running
 * from source: then silently.
 */
export async function unpackTemplate(
  template: string,
  staging: string,
  options: Pick<OpenPgliteOptions, 'template'>,
  logger: Logger,
): Promise<boolean> {
  let bytes: Buffer;
  try {
    bytes = await readFile(template);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    if (!missing || options.template !== undefined) {
      report(logger, 'warn', TAG, `cannot read the PGlite template ${template}: ${errorText(err)}`);
    }
    return false;
  }
  try {
    await mkdir(staging, { mode: 0o700 });
    await unpackTarGz(bytes, staging);
    if (!(await stat(join(staging, 'PG_VERSION')).catch(() => undefined))?.isFile()) {
      throw new Error('it holds no PG_VERSION');
    }
    return true;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    report(logger, 'warn', TAG, `the PGlite template ${template} is unusable: ${errorText(err)}`);
    return false;
  }
}

/**
 * Makes a template: a new database in a scratch directory with the migrations applied,
 * closed cleanly (so it opens without recovery), packed as gzipped tar into `file`.
 * Returns its size in bytes. The build runs it (`scripts/pglite-template.ts`).
 *
 * The migrations' `applied_at` in a store made from it is the build's time.
 *
 * @example
 * const scratch = await mkdtemp(join(tmpdir(), 'template-'));
 * await writePgliteTemplate('dist/src/sinks/pglite-template.tar.gz', scratch); // 4.6e6 (bytes)
 */
export async function writePgliteTemplate(
  file: string,
  scratch: string,
  /** Default: all of the package's; a start applies whatever the template lacks. */
  migrations?: readonly Migration[],
): Promise<number> {
  const { PGlite } = await import('@electric-sql/pglite');
  const dir = join(scratch, 'pgdata');
  const db = await PGlite.create(dir);
  try {
    // A new store's first start would apply them anyway: done here, it costs nothing then.
    await applyMigrations(db, migrations === undefined ? {} : { migrations });
  } finally {
    await db.close();
  }
  await mkdir(dirname(file), { recursive: true });
  return packTarGz(dir, file);
}
