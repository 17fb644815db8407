/**
 * The environment of every child process a test starts: `PATH` and `HOME` (npm, tsx and
 * the shell need them) and what the test passes — never this process's `DATABASE_URL` or
 * `KORA_*` settings, so a developer's shell cannot point a test's agent at another store.
 */

/** Variables a child keeps from this process. */
const KEPT = ['PATH', 'HOME', 'TMPDIR'] as const;

/**
 * `PATH`, `HOME` (and `TMPDIR` when set) plus `extra`; an `undefined` in `extra` leaves the
 * variable out.
 *
 * @example
 * spawn(process.execPath, ['--import', 'tsx', bin, 'start'], { env: childEnv({ DATABASE_URL: db.url }) });
 */
export function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of KEPT) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}
