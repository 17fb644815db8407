/**
 * Where the chain key comes from (`resolveChainKey`), on the real file system: the
 * environment, a given file, the data dir's `chain.key` generated once (exclusive, 0600),
 * never generated for a verifier, and errors that name the source — never the key.
 */
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChainKeyError, resolveChainKey } from '../src/chainKey.js';
import { tempDirs } from './support/cli.js';

const tempDir = tempDirs('kora-key-');

const KEY = 'an-operator-supplied-chain-key-0123456789';

describe('resolveChainKey', () => {
  it('KORA_CHAIN_KEY comes first; too short is refused naming its length, not its text', async () => {
    const dir = tempDir();
    expect(
      await resolveChainKey({ env: { KORA_CHAIN_KEY: KEY }, dataDir: dir, create: true }),
    ).toEqual({
      key: KEY,
      source: 'env',
      looked: ['KORA_CHAIN_KEY'],
    });
    const err = await resolveChainKey({ env: { KORA_CHAIN_KEY: 'tiny-secret' } }).catch((e) => e);
    expect(err).toBeInstanceOf(ChainKeyError);
    expect(err.message).toBe('KORA_CHAIN_KEY holds 11 characters; a key needs at least 32');
    // Nothing was generated for the env case.
    expect(() => statSync(join(dir, 'chain.key'))).toThrow();
  });

  it('first start generates <data-dir>/chain.key once (mode 0600, 64 hex); later starts read it', async () => {
    const dir = join(tempDir(), 'nested', 'data');
    // Five starts at once: one key, the same for all.
    const all = await Promise.all(
      [1, 2, 3, 4, 5].map(() => resolveChainKey({ env: {}, dataDir: dir, create: true })),
    );
    const path = join(dir, 'chain.key');
    const text = readFileSync(path, 'utf8');
    expect(text).toMatch(/^[0-9a-f]{64}\n$/);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(new Set(all.map((r) => r.key))).toEqual(new Set([text.trim()]));
    expect(all.filter((r) => r.source === 'generated')).toHaveLength(1);
    expect(all.every((r) => r.path === path && r.warning === undefined)).toBe(true);
    const again = await resolveChainKey({ env: {}, dataDir: dir, create: true });
    expect(again).toMatchObject({ key: text.trim(), source: 'file', path });
  });

  it('a verifier never creates a key; it says where it looked', async () => {
    const dir = tempDir();
    const r = await resolveChainKey({ env: {}, dataDir: dir });
    expect(r).toEqual({
      key: undefined,
      source: 'none',
      looked: ['KORA_CHAIN_KEY (not set)', join(dir, 'chain.key')],
    });
    expect(() => statSync(join(dir, 'chain.key'))).toThrow();
  });

  it('a key file given must exist and be long enough; one readable by others is used with a warning', async () => {
    const dir = tempDir();
    const missing = join(dir, 'nope.key');
    await expect(
      resolveChainKey({ env: {}, keyFile: missing, dataDir: dir, create: true }),
    ).rejects.toThrow(
      new RegExp(`^cannot read the chain key file ${missing} \\(--chain-key-file\\): ENOENT`),
    );
    const short = join(dir, 'short.key');
    writeFileSync(short, 'secret\n', { mode: 0o600 });
    const err = await resolveChainKey({ env: {}, keyFile: short }).catch((e) => e);
    expect(err.message).toBe(`chain key file ${short} holds 6 characters; a key needs at least 32`);
    expect(err.message).not.toContain('secret');

    const open = join(dir, 'open.key');
    writeFileSync(open, `${KEY}\n`);
    chmodSync(open, 0o644);
    const r = await resolveChainKey({ env: {}, keyFile: open, dataDir: dir, create: true });
    expect(r).toMatchObject({ key: KEY, source: 'file', path: open });
    expect(r.warning).toBe(
      `chain key file ${open} is readable by group or others (mode 0644); run: chmod 600 ${open}`,
    );
    // The given file wins over the data dir's; nothing generated there.
    expect(() => statSync(join(dir, 'chain.key'))).toThrow();
  });
});
