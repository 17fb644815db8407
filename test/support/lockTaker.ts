/**
 * Child process of the lock tests: takes the embedded store's lock on command, so two of
 * them can race for one directory.
 *
 * Prints `ready` once it reads stdin. Commands, one per line:
 * - `go <trial> <dir>`     acquireStoreLock(dir) → `<trial> won` or `<trial> lost <message>`
 * - `update <trial> <url>` lock.update(url)     → `<trial> updated` or `<trial> update-failed <message>`
 * - `release <trial>`      lock.release()       → `<trial> released`
 */
import { acquireStoreLock, type StoreLock } from '../../src/cli/store.js';

const print = (line: string) => process.stdout.write(`${line}\n`);
let lock: StoreLock | undefined;
const oneLine = (err: unknown) => String((err as Error).message ?? err).replace(/\n/g, ' ');

async function run(line: string): Promise<void> {
  const [command, trial, ...rest] = line.split(' ');
  const arg = rest.join(' ');
  if (command === 'go') {
    try {
      lock = await acquireStoreLock(arg);
      print(`${trial} won`);
    } catch (err) {
      print(`${trial} lost ${oneLine(err)}`);
    }
  } else if (command === 'update') {
    try {
      await lock!.update(arg);
      print(`${trial} updated`);
    } catch (err) {
      print(`${trial} update-failed ${oneLine(err)}`);
    }
  } else if (command === 'release') {
    await lock?.release();
    lock = undefined;
    print(`${trial} released`);
  }
}

let buffered = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  buffered += chunk;
  let i = buffered.indexOf('\n');
  while (i >= 0) {
    const line = buffered.slice(0, i);
    buffered = buffered.slice(i + 1);
    i = buffered.indexOf('\n');
    // Each command at once, not queued behind the previous: `go` must run the moment it lands.
    void run(line);
  }
});
process.stdin.on('end', () => process.exit(0));
print('ready');
