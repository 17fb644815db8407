/**
 * The README is the front door: the parts of it that can drift from the code are checked
 * against the code — the statechart diagram, the commands and the `start` flags.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startCommand } from '../src/cli/start.js';
import { STORE_OPTIONS } from '../src/cli/store.js';
import { toMermaid } from '../src/diagram.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('shows the statechart exactly as the machine draws it', () => {
    const block = /```mermaid\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBe(toMermaid());
  });

  it('documents every command and every flag of start in its configuration table', () => {
    for (const command of ['start', 'table', 'diagram', 'verify-chain', 'events']) {
      expect(readme).toContain(`kora-opstate ${command}`);
    }
    const flags = Object.keys({ ...startCommand.options, ...STORE_OPTIONS });
    expect(flags.length).toBeGreaterThan(10);
    for (const flag of flags) expect(readme).toMatch(new RegExp(`\\| \`--${flag}[ \`]`));
  });

  it('gives the two set-up commands', () => {
    expect(readme).toContain('npm install && npm start');
    expect(readme).toMatch(/^npm test /m);
  });
});
