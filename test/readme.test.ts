/**
 * The README is the front door: the parts of it that can drift from the code are checked
 * against the code — the statechart diagram, the commands and the `start` flags, and every
 * ```ts example: each is type-checked against the package source (`@kora/opstate` is
 * `src/index.ts`, so an example can use only what the package exports), and each marked
 * `<!-- run -->` is run with tsx in a child process and must exit 0.
 *
 * Markers, in HTML comments right before a block (hidden when the README is rendered):
 * `<!-- run -->` or `<!-- no-run: why -->` (one of the two, on every block);
 * `<!-- prelude: code -->`, put before the block (free variables it uses);
 * `<!-- check: code -->`, put after it (asserts what its comments claim; `assert` is
 * `node:assert/strict`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BenchResults, renderTable } from '../scripts/bench/table.js';
import { startCommand } from '../src/cli/start.js';
import { STORE_OPTIONS } from '../src/cli/store.js';
import { toMermaid } from '../src/diagram.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(root, 'README.md'), 'utf8');

interface Example {
  /** README line of the opening fence. */
  line: number;
  code: string;
  prelude: string;
  check: string;
  run: boolean;
  /** The module it is written to. */
  file: string;
}

/** Every ```ts block with the marker comments right before it. */
function parseExamples(markdown: string): Example[] {
  const out: Example[] = [];
  const block = /((?:<!--(?:(?!-->)[\s\S])*-->\s*)*)```ts\n([\s\S]*?)```/g;
  for (const m of markdown.matchAll(block)) {
    const comments = [...(m[1] ?? '').matchAll(/<!--((?:(?!-->)[\s\S])*)-->/g)].map((c) =>
      (c[1] ?? '').trim(),
    );
    const line = markdown.slice(0, m.index + (m[1] ?? '').length).split('\n').length;
    const example: Example = {
      line,
      code: m[2] ?? '',
      prelude: '',
      check: '',
      run: false,
      file: '',
    };
    let marked = 0;
    for (const c of comments) {
      const [, key, rest] = /^([a-z-]+)(?::\s*([\s\S]*))?$/.exec(c) ?? [];
      if (key === 'run' && rest === undefined) {
        example.run = true;
        marked++;
      } else if (key === 'no-run' && rest) marked++;
      else if (key === 'prelude' && rest) example.prelude += `${rest}\n`;
      else if (key === 'check' && rest) example.check += `${rest}\n`;
      else throw new Error(`README.md:${line}: unknown example marker <!-- ${c} -->`);
    }
    if (marked !== 1) {
      throw new Error(
        `README.md:${line}: a ts block needs one <!-- run --> or <!-- no-run: why -->`,
      );
    }
    out.push(example);
  }
  return out;
}

/** Lines before an example's prelude in its module. */
const HEADER_LINES = 2;

/** The module an example is written as: the header, the prelude, the block, the check. */
function moduleOf(e: Example): string {
  return [
    `// README.md line ${e.line}`,
    "import assert from 'node:assert/strict';",
    e.prelude + e.code + e.check,
    'export {};',
    '',
  ].join('\n');
}

/** Where line `n` of an example's module comes from: the block's README line, or its markers. */
function readmeLine(e: Example, n: number): string {
  const prelude = e.prelude.split('\n').length - 1;
  const code = n - HEADER_LINES - prelude;
  if (code < 1) return `README.md:${e.line} (prelude)`;
  if (code > e.code.split('\n').length - 1) return `README.md:${e.line} (check)`;
  return `README.md:${e.line + code}`;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
}

/** Runs `args` with node; a child still running after `timeoutMs` is killed. */
function node(args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number) {
  let child: ChildProcess | undefined;
  const done = new Promise<Exit>((resolve, reject) => {
    child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (d) => {
      out += d;
    });
    child.stderr?.on('data', (d) => {
      out += d;
    });
    const timer = setTimeout(() => child?.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    });
  });
  return {
    done,
    kill: () => {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

const examples = parseExamples(readme);
const runnable = examples.filter((e) => e.run);
let dir = '';
let env: NodeJS.ProcessEnv = {};
/** An example that uses a name the package no longer exports: must not compile. */
let canary = '';
let typecheck: ReturnType<typeof node> | undefined;
const children: ReturnType<typeof node>[] = [];

beforeAll(() => {
  const artifacts = join(root, 'test-artifacts');
  mkdirSync(artifacts, { recursive: true });
  // Inside the repository, so `xstate` and `tsx` resolve from its node_modules.
  dir = mkdtempSync(join(artifacts, 'readme-examples-'));
  const tsconfig = join(dir, 'tsconfig.json');
  env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    TMPDIR: tmpdir(),
    TSX_TSCONFIG_PATH: tsconfig,
  };
  canary = join(dir, 'canary.ts');
  examples.forEach((e, i) => {
    e.file = join(dir, `example-${i + 1}-line-${e.line}`, 'example.ts');
    mkdirSync(join(e.file, '..'));
    writeFileSync(e.file, moduleOf(e));
  });
  writeFileSync(canary, "import { getWiredEmitter } from '@kora/opstate';\ngetWiredEmitter();\n");
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: join(root, 'tsconfig.json'),
      compilerOptions: {
        noEmit: true,
        declaration: false,
        sourceMap: false,
        rootDir: root,
        paths: { '@kora/opstate': [join(root, 'src/index.ts')] },
      },
      include: [],
      files: [...examples.map((e) => e.file), canary],
    }),
  );
  // One compiler run for every block, alongside the runs below (two cores).
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  typecheck = node([tsc, '-p', tsconfig, '--pretty', 'false'], root, env, 180_000);
});

afterAll(() => {
  for (const child of [typecheck, ...children]) child?.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('README', () => {
  it('the Benchmarks table is the one docs/bench-results.json (npm run bench -- --json) renders', () => {
    const results = JSON.parse(
      readFileSync(join(root, 'docs', 'bench-results.json'), 'utf8'),
    ) as BenchResults;
    // Cell by cell: the formatter pads the README's columns.
    const cells = (markdown: string) =>
      markdown
        .split('\n')
        .filter((l) => l.startsWith('|') && !/^\|[\s|:-]+\|$/.test(l))
        .map((l) => l.split('|').map((c) => c.trim()));
    const section = readme.slice(readme.indexOf('## Benchmarks'), readme.indexOf('## Tests'));
    expect(results.rows.length).toBeGreaterThan(20);
    expect(cells(section)).toEqual(cells(renderTable(results)));
  });

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

  it('marks its examples, imports only the package, xstate and node:, and runs most', () => {
    expect(examples.length).toBeGreaterThanOrEqual(8);
    expect(runnable.length).toBeGreaterThanOrEqual(6);
    for (const e of examples) {
      for (const [, from] of e.code.matchAll(/from '([^']+)'/g)) {
        expect(from, `README.md:${e.line}`).toMatch(/^(@kora\/opstate|xstate|node:.+)$/);
      }
    }
  });

  it('has examples that type-check against the package source', { timeout: 180_000 }, async () => {
    const result = await typecheck!.done;
    const lines = result.out.split('\n');
    // tsc names files relative to its working directory (the repository).
    const at = (file: string) => lines.filter((l) => l.startsWith(`${relative(root, file)}(`));
    // The canary proves the check sees the examples (and that removed names fail).
    expect(at(canary).join('\n'), result.out).toMatch(/has no exported member 'getWiredEmitter'/);
    // Errors elsewhere (the source under edit) are the typecheck's business, not this test's.
    const errors = examples.flatMap((e) =>
      at(e.file).map((l) => {
        const m = /^\((\d+),\d+\): ([\s\S]*)$/.exec(l.slice(relative(root, e.file).length));
        return m ? `${readmeLine(e, Number(m[1]))}: ${m[2]}` : `README.md:${e.line}: ${l}`;
      }),
    );
    expect(errors).toEqual([]);
  });

  for (const e of runnable) {
    it(`runs the example at README.md:${e.line}`, { timeout: 60_000 }, async () => {
      const child = node(['--import', 'tsx', e.file], join(e.file, '..'), env, 50_000);
      children.push(child);
      try {
        const result = await child.done;
        expect(
          { code: result.code, signal: result.signal },
          `README.md:${e.line} example:\n${result.out}`,
        ).toEqual({ code: 0, signal: null });
      } finally {
        child.kill();
      }
    });
  }
});
