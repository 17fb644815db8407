/**
 * Packing the PGlite data-dir template and unpacking it, on node-tar (`tar`). Ours: the
 * refusal of anything a template never holds (links, devices, paths leaving the directory)
 * as an error where node-tar would skip it, and gzip on Node's zlib, which inflates on the
 * thread pool (node-tar's own gzip, minizlib, inflates on the event loop).
 */
import { createWriteStream } from 'node:fs';
import { lstat, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { constants, createGunzip, createGzip } from 'node:zlib';
import { create, UnpackSync } from 'tar';
import { quote } from '../vocabulary.js';

/**
 * Packs `dir` (regular files and directories only, in name order, no owners or times: the
 * same directory packs to the same bytes) as gzipped tar into `file`; returns its size.
 *
 * @example
 * await packTarGz(scratch, 'dist/src/sinks/pglite-template.tar.gz'); // 4.6e6
 */
export async function packTarGz(dir: string, file: string): Promise<number> {
  const paths = (await readdir(dir, { recursive: true })).sort();
  for (const rel of paths) {
    const s = await lstat(join(dir, rel));
    if (!s.isFile() && !s.isDirectory()) {
      throw new Error(`tar: ${quote(rel)} is neither a file nor a directory`);
    }
  }
  const tar = create(
    { cwd: dir, portable: true, noMtime: true, noDirRecurse: true, strict: true },
    paths,
  );
  await pipeline(tar, createGzip({ level: constants.Z_BEST_COMPRESSION }), createWriteStream(file));
  return (await stat(file)).size;
}

/**
 * Unpacks gzipped tar bytes into `dir` (which must exist). Rejects, naming the first thing
 * that is not a well-formed template: bad gzip, a damaged or truncated archive, a link or
 * device, a path leaving `dir` — `dir` is then the caller's to remove.
 *
 * @example
 * await mkdir(staging, { mode: 0o700 });
 * await unpackTarGz(await readFile(template), staging);
 */
export async function unpackTarGz(gz: Uint8Array, dir: string): Promise<void> {
  let first: Error | undefined;
  const fail = (err: Error) => {
    first ??= err;
  };
  // Synchronous writes, 64 KiB of tar at a time as zlib hands it over: as fast as eight
  // files written in parallel were, and the event loop is never held more than ~15 ms
  // (node-tar's async Unpack, a file at a time, took half as long again).
  const unpack = new UnpackSync({
    cwd: dir,
    strict: true, // every warning (a bad header, `..`, an absolute path) is an error
    preserveOwner: false,
    zstd: false,
    filter: (path, entry) => {
      // Always a ReadEntry here (a Stats only when packing).
      const type = 'type' in entry ? entry.type : undefined;
      const ok = type === 'File' || type === 'OldFile' || type === 'Directory';
      if (!ok) fail(new Error(`tar: refused ${quote(path)}, a ${type}`));
      return ok;
    },
  });
  unpack.on('error', (err: Error & { path?: string; entry?: { path?: string } }) => {
    const path = err.path ?? err.entry?.path;
    fail(new Error(`tar: ${err.message}${path ? ` (${quote(path)})` : ''}`, { cause: err }));
  });
  // node-tar takes an archive without its closing zero blocks as whole: a template is not.
  let closed = false;
  unpack.on('eof', () => {
    closed = true;
  });
  // After an error too (an abort, from a nested compressed stream, never ends).
  const ended = new Promise<void>((resolve) => {
    unpack.on('end', resolve);
    unpack.on('abort', resolve);
  });
  const gunzip = createGunzip({ chunkSize: 1 << 16 });
  gunzip.on('error', (err) => {
    fail(new Error(`tar: not a whole gzip stream (${err.message})`, { cause: err }));
    unpack.end();
  });
  // Not gunzip.pipe(unpack): a pipe stops at the first error, and `end` would never come.
  gunzip.on('data', (chunk: Buffer) => unpack.write(chunk));
  gunzip.on('end', () => unpack.end());
  gunzip.end(gz);
  await ended;
  if (first) throw first;
  if (!closed) throw new Error('tar: truncated (no end-of-archive blocks)');
}
