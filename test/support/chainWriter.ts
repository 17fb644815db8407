/**
 * Child process of the chain tests: one holder with the emit listener on a Postgres sink,
 * `CHAIN_TRANSITIONS` claim transitions (ready ⇄ active), then flush and report.
 *
 * Env: CHAIN_URL (connection string, search_path set), CHAIN_WORKSPACE, CHAIN_INSTANCE,
 * CHAIN_TRANSITIONS; CHAIN_KEY (optional) makes the sink keyed. Prints `ready` once started, waits for a `go` line on stdin (so
 * several writers really run at once), then prints one JSON line: { instanceId, emit, sink }.
 */
import { once } from 'node:events';
import { makeEmitListener } from '../../src/emit.js';
import { createOperationalStateHolder } from '../../src/holder.js';
import { createPostgresSink } from '../../src/sinks/postgres.js';

const env = (name: string) => {
  const v = process.env[name];
  if (!v) throw new Error(`chainWriter: ${name} is required`);
  return v;
};

const sink = createPostgresSink({
  workspaceId: env('CHAIN_WORKSPACE'),
  connectionString: env('CHAIN_URL'),
  chainKey: process.env.CHAIN_KEY || undefined,
});
// Every child starts (and migrates) at once: the migration lock is under test too.
await sink.start();
process.stdout.write('ready\n');
let input = '';
process.stdin.setEncoding('utf8');
while (!input.includes('go\n')) {
  const [chunk] = (await once(process.stdin, 'data')) as [string];
  input += chunk;
}
process.stdin.pause();
const holder = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
const emit = makeEmitListener(sink, { instanceId: env('CHAIN_INSTANCE') });
holder.addListener(emit);
const n = Number(env('CHAIN_TRANSITIONS'));
for (let i = 0; i < n; i++) {
  await holder.send(
    holder.current.primaryState === 'ready'
      ? { type: 'claim.acquired' }
      : { type: 'claim.released' },
  );
}
const flushed = await sink.flush(30_000);
const report = { instanceId: emit.instanceId, flushed, emit: emit.stats, sink: sink.stats };
await sink.close();
process.stdout.write(`${JSON.stringify(report)}\n`);
