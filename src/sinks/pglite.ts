/**
 * The PGlite sink, the embedded default: the same SQL as Postgres, in-process, persisted
 * in a directory — zero setup. One process per data directory.
 */
import type { PGlite } from '@electric-sql/pglite';
import { LOG_TAGS } from '../logger.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import type { PgliteLike } from './drivers.js';
import { type DurableChainSink, type DurableSinkOptions, SqlEventSink } from './durable.js';
import { checkTemplateOption, openPglite } from './pgliteTemplate.js';
import { yieldingPglite } from './pgliteYield.js';

export interface PgliteSinkOptions extends DurableSinkOptions {
  /** The database directory (default `./.kora-opstate/pglite`; `memory://` keeps it in memory). */
  dataDir?: string;
  /** An open `PGlite` to use instead; the sink never closes it. */
  db?: PgliteLike;
  /**
   * The data-directory template a new `dataDir` is unpacked from instead of running
   * `initdb` (default: the one the package ships; `false`: always `initdb`). A missing or
   * damaged template falls back to `initdb` with a warning.
   */
  template?: string | false;
}

/** Where the embedded event log lives by default. */
export const DEFAULT_PGLITE_DIR = './.kora-opstate/pglite';

/**
 * Creates the PGlite sink. `start()` opens the directory (a new one is unpacked from the
 * package's pre-initialised template, not `initdb`-ed) and applies the migrations;
 * `close()` closes the database it opened. Left open, it holds the process
 * up to ~10 s after its last write (the embedded Postgres's idle statistics timer).
 *
 * @example
 * const sink = createPgliteSink({ workspaceId: 'ws-1', dataDir: './.kora-opstate/pglite' });
 * await sink.start();
 * const opstate = createOpstate({ sink });
 * await bootOpstate(opstate); // no gates: booting → ready, two chain events
 * await sink.flush(5000); // true once every event is stored
 * await sink.verifyChain(); // { ok: true, events: 2, head: { chain_seq: 2, hash }, ... } on a new directory
 * await sink.close();
 */
export function createPgliteSink(options: PgliteSinkOptions = {}): DurableChainSink {
  const given = options.db;
  if (given !== undefined && (given === null || typeof given.query !== 'function')) {
    throw new OperationalStateInputError('db', given, `db must be a PGlite, got ${quote(given)}`);
  }
  const dataDir = options.dataDir ?? DEFAULT_PGLITE_DIR;
  if (typeof dataDir !== 'string' || dataDir === '') {
    throw new OperationalStateInputError(
      'dataDir',
      dataDir,
      `dataDir must be a non-empty path, got ${quote(dataDir)}`,
    );
  }
  checkTemplateOption(options.template);
  let db: PgliteLike | undefined;
  let owned: PGlite | undefined;
  return new SqlEventSink(
    {
      tag: LOG_TAGS.pglite,
      async open() {
        if (!db) {
          if (given) {
            db = yieldingPglite(given);
          } else {
            owned = (
              await openPglite(dataDir, {
                logger: options.logger ?? console,
                ...(options.template === undefined ? {} : { template: options.template }),
              })
            ).db;
            db = yieldingPglite(owned);
          }
        }
        return db;
      },
      async shut() {
        db = undefined;
        const close = owned;
        owned = undefined;
        await close?.close();
      },
    },
    options,
  );
}
