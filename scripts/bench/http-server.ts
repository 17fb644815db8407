/**
 * One status server for `http-compare.ts`, in its own process: the status API of the tree
 * at `--root` (this checkout, or a copy of an older one) over a real holder, on
 * 127.0.0.1 with a free port. Prints `{"url": ...}` once listening; stops on SIGTERM.
 *
 * Usage: node --import tsx scripts/bench/http-server.ts --root DIR [--override-globals]
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { root: { type: 'string' }, 'override-globals': { type: 'boolean' } },
});
const root = values.root ?? process.cwd();
const load = (path: string) => import(pathToFileURL(join(root, path)).href);

const quiet = { error() {}, warn() {}, info() {}, debug() {} };
// The package entry: it names both in this tree and in the older ones compared against.
const api = await load('src/index.ts');
const createHolder = api.createOpstate ?? api.createOperationalStateHolder;
const { startStatusServer } = api;

// A realistic payload: ready, with a full history ring (10 records).
const holder = createHolder({ initial: { primaryState: 'ready' }, logger: quiet });
for (let i = 0; i < 10; i++) {
  await holder.send({ type: i % 2 === 0 ? 'claim.acquired' : 'claim.released' });
}
const status = await startStatusServer({
  holder,
  logger: quiet,
  host: '127.0.0.1',
  ...(values['override-globals'] ? { overrideGlobalObjects: true } : {}),
});
process.stdout.write(`${JSON.stringify({ url: status.url })}\n`);
process.on('SIGTERM', () => {
  void status.close().then(() => process.exit(0));
});
