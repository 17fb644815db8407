/**
 * Part of `npm run build`: writes the PGlite data-directory template a new embedded store
 * is unpacked from (`dist/src/sinks/pglite-template.tar.gz`, ~4.5 MB), made by the
 * installed PGlite with the package's migrations applied, so the two always match. See
 * src/sinks/pgliteTemplate.ts. Making one is an initdb (seconds): the result is kept in
 * node_modules/.cache under a key of what it depends on (PGlite's and node-tar's versions,
 * the migrations, the packing code), and reused by the next build while that is unchanged.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MIGRATIONS } from '../src/sinks/migrations.js';
import { PGLITE_TEMPLATE_FILE, writePgliteTemplate } from '../src/sinks/pgliteTemplate.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist', 'src', 'sinks', PGLITE_TEMPLATE_FILE);
const pgliteEntry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
const pglitePackage = join(dirname(pgliteEntry), '..', 'package.json');
const tarPackage = join(root, 'node_modules', 'tar', 'package.json');

const hash = createHash('sha256');
hash.update(JSON.parse(await readFile(pglitePackage, 'utf8')).version);
hash.update(JSON.parse(await readFile(tarPackage, 'utf8')).version);
hash.update(JSON.stringify(MIGRATIONS));
for (const f of ['pgliteTar.ts', 'pgliteTemplate.ts']) {
  hash.update(await readFile(join(root, 'src', 'sinks', f)));
}
const cached = join(
  root,
  'node_modules',
  '.cache',
  'kora-opstate',
  `pglite-template-${hash.digest('hex').slice(0, 16)}.tar.gz`,
);

const t = performance.now();
await mkdir(dirname(out), { recursive: true });
let how = 'cached';
if (!(await stat(cached).catch(() => undefined))) {
  how = 'made';
  const scratch = await mkdtemp(join(tmpdir(), 'kora-pglite-template-'));
  try {
    await writePgliteTemplate(join(scratch, PGLITE_TEMPLATE_FILE), scratch);
    await mkdir(dirname(cached), { recursive: true });
    await copyFile(join(scratch, PGLITE_TEMPLATE_FILE), cached);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
await copyFile(cached, out);
const mb = (await stat(out)).size / 1048576;
process.stdout.write(
  `pglite template: ${out} (${mb.toFixed(1)} MB, ${how}, ${Math.round(performance.now() - t)} ms)\n`,
);
