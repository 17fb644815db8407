/**
 * The rules of the house (docs/architecture.md), checked on the source: what may import
 * what, the one public entry point, and the size of a file.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function files(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) return files(path);
    return /\.(ts|js|css|html)$/.test(name) ? [path] : [];
  });
}

const sources = [...files('machines'), ...files('src')].filter((f) => f.endsWith('.ts'));

/** Relative module imports of a file, resolved to repository paths (`.js` → `.ts`). */
function importsOf(file: string): { local: string[]; packages: string[] } {
  const text = readFileSync(join(root, file), 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'([^']+)'/g)].map(
    (m) => m[1]!,
  );
  const dynamic = [...text.matchAll(/import\('([^']+)'\)/g)].map((m) => m[1]!);
  const all = [...specs, ...dynamic];
  return {
    local: all
      .filter((s) => s.startsWith('.'))
      .map((s) => relative(root, resolve(root, dirname(file), s)).replace(/\.js$/, '.ts')),
    packages: all.filter((s) => !s.startsWith('.')),
  };
}

describe('the rules of the house', () => {
  it('the machine is pure: it imports only xstate and the vocabulary', () => {
    for (const file of files('machines')) {
      const { local, packages } = importsOf(file);
      expect(packages, file).toEqual(packages.filter((p) => p === 'xstate'));
      for (const dep of local) expect(dep, file).toMatch(/^(machines\/|src\/vocabulary\.ts$)/);
      // Code only: a JSDoc example may show a caller logging.
      const code = readFileSync(join(root, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
      expect(code, file).not.toMatch(/\b(setTimeout|setInterval|process\.|console\.)/);
    }
  });

  it('the instance never imports HTTP, boot, claims, the inspector or the CLI', () => {
    for (const file of sources.filter((f) => /^src\/holder(\.ts|\/)/.test(f))) {
      for (const dep of importsOf(file).local) {
        expect(dep, file).not.toMatch(/^src\/(http|boot|claims|cli|inspect)/);
      }
    }
  });

  it('nothing but bin.ts imports the CLI, and no command imports main.ts', () => {
    for (const file of sources) {
      for (const dep of importsOf(file).local) {
        if (!file.startsWith('src/cli/')) expect(dep, file).not.toMatch(/^src\/cli\//);
        if (file.startsWith('src/cli/') && file !== 'src/cli/bin.ts') {
          expect(dep, file).not.toBe('src/cli/main.ts');
        }
      }
    }
  });

  it('only the seed singleton keeps module state for an instance; nothing polls for it', () => {
    const holders = sources.filter((f) =>
      /^let \w+: (OperationalStateHolder|Opstate)/m.test(readFileSync(join(root, f), 'utf8')),
    );
    expect(holders).toEqual(['src/holder.ts']);
    for (const file of sources) {
      const text = readFileSync(join(root, file), 'utf8');
      expect(text, file).not.toMatch(/getWiredEmitter|processSequence/);
    }
  });

  it('no source file is over 400 lines', () => {
    const long = [...files('machines'), ...files('src'), ...files('scripts')]
      .map((f) => [f, readFileSync(join(root, f), 'utf8').split('\n').length] as const)
      .filter(([, lines]) => lines > 400);
    expect(long).toEqual([]);
  });

  it('src/index.ts names fewer than 40 runtime exports, each documented with an @example', async () => {
    const api = await import('../src/index.js');
    const names = Object.keys(api);
    expect(names.length).toBeGreaterThan(20);
    expect(names.length).toBeLessThan(40);
    const text = sources.map((f) => readFileSync(join(root, f), 'utf8')).join('\n');
    const undocumented = names.filter((name) => {
      const at = new RegExp(
        `/\\*\\*((?:(?!\\*/)[\\s\\S])*?)\\*/\\s*export (?:async )?(?:function|const|class) ${name}\\b`,
      ).exec(text);
      return !at || !at[1]!.includes('@example');
    });
    expect(undocumented).toEqual([]);
  });

  it('test helpers are not public', async () => {
    const api = await import('../src/index.js');
    expect(Object.keys(api).filter((n) => /ForTests|^reset/i.test(n))).toEqual([]);
  });
});
