/**
 * The smallest tar (ustar) the PGlite data-dir template needs: regular files and
 * directories, packed from a directory and unpacked into one, gzip around it. Written here
 * rather than taken from a dependency: a few dozen lines, and the reader can refuse what
 * a template never holds (links, devices, paths leaving the directory).
 */
import { mkdir, open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';

const BLOCK = 512;
const gzipAsync = promisify(gzip);
// zlib works on the thread pool: a 40 MB template inflates without holding the event loop.
const gunzipAsync = promisify(gunzip);

/** One entry: a directory (`data` undefined) or a regular file. */
export interface TarEntry {
  /** POSIX path relative to the archive root, no trailing slash. */
  path: string;
  mode: number;
  data?: Uint8Array;
  /** The file's length when `data` stops short of it: the rest is zeros. */
  size?: number;
}

/**
 * The first entry of an archive whose files' trailing zeros were left out (a WAL segment
 * is 16 MB, mostly zeros): their full lengths, by path. A quarter less to inflate and
 * write; the files are extended back (sparse) when written.
 */
export const ZERO_TAILS = '.zero-tails.json';
// Below this a zero tail is not worth a manifest line.
const MIN_TAIL = 64 * 1024;

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(entry: TarEntry): Uint8Array {
  const name = entry.data ? entry.path : `${entry.path}/`;
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length > 100) throw new Error(`tar: path ${JSON.stringify(name)} is over 100 bytes`);
  const h = Buffer.alloc(BLOCK);
  bytes.copy(h, 0);
  h.write(octal(entry.mode & 0o7777, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(entry.data?.length ?? 0, 12), 124, 'latin1');
  h.write(octal(0, 12), 136, 'latin1'); // mtime 0: the same directory packs to the same bytes
  h.write(entry.data ? '0' : '5', 156, 'latin1');
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

function field(h: Uint8Array, at: number, width: number): string {
  const raw = Buffer.from(h.subarray(at, at + width)).toString('latin1');
  const end = raw.indexOf('\0');
  return end < 0 ? raw : raw.slice(0, end);
}

/** Packs `entries` (in order) into gzipped tar bytes, files' long zero tails left out. */
export async function packTarGz(input: readonly TarEntry[]): Promise<Buffer> {
  const tails: Record<string, number> = {};
  const entries = input.map((e) => {
    if (!e.data) return e;
    let end = e.data.length;
    while (end > 0 && e.data[end - 1] === 0) end--;
    if (e.data.length - end < MIN_TAIL) return e;
    tails[e.path] = e.data.length;
    return { ...e, data: e.data.subarray(0, end) };
  });
  if (Object.keys(tails).length > 0) {
    entries.unshift({ path: ZERO_TAILS, mode: 0o600, data: Buffer.from(JSON.stringify(tails)) });
  }
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    parts.push(header(e));
    if (e.data) {
      parts.push(e.data);
      const pad = (BLOCK - (e.data.length % BLOCK)) % BLOCK;
      if (pad) parts.push(new Uint8Array(pad));
    }
  }
  parts.push(new Uint8Array(BLOCK * 2));
  return gzipAsync(Buffer.concat(parts), { level: 9 });
}

/**
 * Reads gzipped tar bytes back into entries; throws naming the first thing that is not a
 * well-formed template (bad gzip, a header checksum, a link, a path leaving the root).
 */
export async function unpackTarGz(gz: Uint8Array): Promise<TarEntry[]> {
  const tar = await gunzipAsync(gz);
  const entries: TarEntry[] = [];
  let at = 0;
  for (;;) {
    if (at + BLOCK > tar.length) throw new Error(`tar: truncated at byte ${at}`);
    const h = tar.subarray(at, at + BLOCK);
    if (h.every((b) => b === 0)) return withTails(entries);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
    const stored = Number.parseInt(field(h, 148, 8).trim(), 8);
    if (stored !== sum) throw new Error(`tar: header checksum mismatch at byte ${at}`);
    const name = field(h, 0, 100).replace(/\/$/, '');
    const type = field(h, 156, 1);
    const size = Number.parseInt(field(h, 124, 12).trim() || '0', 8);
    const mode = Number.parseInt(field(h, 100, 8).trim() || '0', 8);
    const normal = posix.normalize(name);
    if (name === '' || normal !== name || name.startsWith('/') || name.startsWith('..')) {
      throw new Error(`tar: refused path ${JSON.stringify(name)} at byte ${at}`);
    }
    at += BLOCK;
    if (type === '5') {
      entries.push({ path: name, mode });
    } else if (type === '0' || type === '') {
      if (!Number.isSafeInteger(size) || at + size > tar.length) {
        throw new Error(`tar: ${JSON.stringify(name)} runs past the end (${size} bytes)`);
      }
      entries.push({ path: name, mode, data: tar.subarray(at, at + size) });
      at += Math.ceil(size / BLOCK) * BLOCK;
    } else {
      throw new Error(`tar: ${JSON.stringify(name)} has type ${JSON.stringify(type)}`);
    }
  }
}

/** Applies (and removes) the {@link ZERO_TAILS} manifest; throws on a length it cannot be. */
function withTails(entries: TarEntry[]): TarEntry[] {
  if (entries[0]?.path !== ZERO_TAILS) return entries;
  const tails = JSON.parse(Buffer.from(entries[0].data ?? []).toString('utf8')) as Record<
    string,
    unknown
  >;
  const rest = entries.slice(1);
  for (const [path, size] of Object.entries(tails)) {
    const e = rest.find((x) => x.path === path && x.data);
    if (!e || !Number.isSafeInteger(size) || (size as number) < e.data!.length) {
      throw new Error(`tar: ${ZERO_TAILS} names ${JSON.stringify(path)} with length ${size}`);
    }
    e.size = size as number;
  }
  return rest;
}

/** Every directory and file under `dir`, parents before children, in name order. */
export async function readTree(dir: string, prefix = ''): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  const names = (await readdir(join(dir, prefix))).sort();
  for (const name of names) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const s = await stat(join(dir, rel));
    if (s.isDirectory()) {
      out.push({ path: rel, mode: s.mode });
      out.push(...(await readTree(dir, rel)));
    } else if (s.isFile()) {
      out.push({ path: rel, mode: s.mode, data: await readFile(join(dir, rel)) });
    } else {
      throw new Error(`tar: ${JSON.stringify(rel)} is neither a file nor a directory`);
    }
  }
  return out;
}

/** Writes `entries` under `dir` (which must exist): directories first, files a few at a time. */
export async function writeTree(dir: string, entries: readonly TarEntry[]): Promise<void> {
  for (const e of entries) {
    if (!e.data) await mkdir(join(dir, e.path), { recursive: true, mode: e.mode || 0o700 });
  }
  const files = entries.filter((e) => e.data);
  let next = 0;
  const worker = async () => {
    for (let e = files[next++]; e; e = files[next++]) {
      const path = join(dir, e.path);
      if (e.size === undefined) {
        await writeFile(path, e.data!, { mode: e.mode || 0o600 });
        continue;
      }
      const file = await open(path, 'w', e.mode || 0o600);
      try {
        await file.write(e.data!, 0, e.data!.length, 0);
        await file.truncate(e.size);
      } finally {
        await file.close();
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}
