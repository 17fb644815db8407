/**
 * A program that embeds the library the way the README shows, for embed.test.ts: a sink
 * (PGlite in memory, or Postgres with a ticket source) with a spool, a holder, the emit
 * listener, the status server given that listener as its `emitter`; one transition, a
 * flush, one request. Then it closes the server and — unless told to leave them open —
 * the sink and the source, and returns. It never calls `process.exit`: the test waits for
 * the process to end on its own.
 *
 * Usage: `node --import tsx embedChild.ts <pglite|postgres> <close|leave-sink-open> <spoolDir> [url]`
 *
 * stdout: `{"done":{…}}` once it has returned, then `{"exitAfterMs":n}` when the process
 * exits (n: from `done` to exit). Past 60 s it names what still holds it on stderr.
 */
import { writeSync } from 'node:fs';
import {
  createOperationalStateHolder,
  createPgliteSink,
  createPostgresSink,
  createPostgresTicketSource,
  makeEmitListener,
  startStatusServer,
} from '../../src/index.js';

const [kind, mode, spoolDir, url] = process.argv.slice(2);
if (
  (kind !== 'pglite' && kind !== 'postgres') ||
  (mode !== 'close' && mode !== 'leave-sink-open') ||
  !spoolDir ||
  (kind === 'postgres' && !url)
) {
  throw new Error(
    `usage: embedChild.ts <pglite|postgres> <close|leave-sink-open> <spoolDir> [url], got ${process.argv.slice(2).join(' ')}`,
  );
}

const sink =
  kind === 'pglite'
    ? createPgliteSink({ workspaceId: 'ws-embed', dataDir: 'memory://', spoolDir })
    : createPostgresSink({ workspaceId: 'ws-embed', connectionString: url, spoolDir });
await sink.start();
// With Postgres, a ticket source too: it owns a pool of its own.
const source =
  kind === 'postgres' ? createPostgresTicketSource({ connectionString: url }) : undefined;
await source?.start();
await source?.enqueue([{ id: 't-1' }]);
const holder = createOperationalStateHolder();
const emitter = makeEmitListener(sink);
holder.addListener(emitter);
await holder.transitionTo('ready', 'all §9.2 gates pass');
// With a spool the transition resolved once its events were fsynced there; stored next.
const stored = await sink.flush(10_000);
const status = await startStatusServer({ holder, sink, emitter });
const payload = (await (await fetch(`${status.url}/api/operational-state`)).json()) as {
  chain?: unknown;
};
await status.close();
if (mode === 'close') {
  await sink.close();
  await source?.close();
}

const done = performance.now();
// Synchronous writes: the 'exit' handler cannot wait for a stream.
writeSync(1, `${JSON.stringify({ done: { stored, chain: payload.chain } })}\n`);
process.on('exit', () => {
  writeSync(1, `${JSON.stringify({ exitAfterMs: Math.round(performance.now() - done) })}\n`);
});
// Unref'd: a diagnosis for a test that waits in vain, never a reason to stay.
setTimeout(() => {
  writeSync(2, `still alive, held by: ${process.getActiveResourcesInfo().join(', ')}\n`);
}, 60_000).unref();
