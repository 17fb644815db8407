/**
 * PGlite's `initdb` is one synchronous WebAssembly run of seconds: on the main thread it
 * holds the event loop for all of it, and a status server in the same process answers
 * nothing meanwhile (`/livez` included). When a new directory cannot come from the
 * template, the `initdb` runs here instead, in a worker thread; the main thread then
 * opens the finished directory like any existing one.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

// CommonJS, evaluated in the worker: the package's own modules may be TypeScript (tests
// run the sources), PGlite's CommonJS build is plain JavaScript wherever we run.
const SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { PGlite } = require(workerData.pglite);
PGlite.create(workerData.dataDir)
  .then((db) => db.close())
  .then(
    () => parentPort.postMessage({ ok: true }),
    (err) => parentPort.postMessage({ ok: false, message: String((err && err.message) || err) }),
  );
`;

/**
 * Creates a PGlite database in `dataDir` (new or empty) on a worker thread and closes it
 * cleanly; rejects with PGlite's error, or if the worker could not run.
 *
 * @example
 * await initdbInWorker('/var/lib/agent/pglite'); // seconds, the event loop free
 * const db = await PGlite.create('/var/lib/agent/pglite'); // an existing directory now
 */
export function initdbInWorker(dataDir: string): Promise<void> {
  const pglite = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  return new Promise<void>((resolve, reject) => {
    let answered = false;
    const worker = new Worker(SOURCE, { eval: true, workerData: { dataDir, pglite } });
    worker.once('message', (m: { ok: boolean; message?: string }) => {
      answered = true;
      if (m.ok) resolve();
      else reject(new Error(`initdb in a worker thread failed: ${m.message}`));
      void worker.terminate();
    });
    worker.once('error', (err) => {
      answered = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!answered)
        reject(new Error(`the initdb worker thread exited (${code}) without an answer`));
    });
  });
}
