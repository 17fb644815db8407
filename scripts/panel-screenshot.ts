/**
 * `npm run screenshot`: the README's picture, taken from what `npm start` really shows.
 * Runs the built demo agent (`dist/src/cli/bin.js start`) in a fresh data dir, waits
 * until it has worked a few demo tickets, opens its panel in headless Chromium (Debian's
 * `chromium`, or CHROMIUM_PATH) and writes `docs/panel.png`. The agent is stopped with
 * one SIGINT, as a person's Ctrl-C would.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'docs', 'panel.png');
const dataDir = await mkdtemp(join(tmpdir(), 'kora-screenshot-'));
const agent = spawn(
  process.execPath,
  [
    join(root, 'dist/src/cli/bin.js'),
    'start',
    '--port',
    '0',
    '--data-dir',
    dataDir,
    '--work-ms',
    '1200',
  ],
  {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
try {
  let text = '';
  // The panel's URL, then a few tickets worked: the history has something to show.
  const url = await new Promise<string>((resolve, reject) => {
    agent.stdout.setEncoding('utf8');
    agent.stdout.on('data', (chunk: string) => {
      text += chunk;
      const panel = / panel +(http:\/\/\S+?)\/?\n/.exec(text);
      if (panel && /#6 /.test(text)) resolve(panel[1]!);
    });
    agent.once('exit', (code) =>
      reject(new Error(`the agent exited (${code}) before it was ready:\n${text}`)),
    );
  });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${url}/`);
    await page.waitForFunction(() => document.getElementById('state-badge')?.textContent !== '');
    await page.screenshot({ path: out, fullPage: true });
  } finally {
    await browser.close();
  }
  console.log(`wrote ${out} from ${url}/`);
} finally {
  const exited = new Promise((r) => agent.once('exit', r));
  agent.kill('SIGINT');
  await exited;
  await rm(dataDir, { recursive: true, force: true });
}
