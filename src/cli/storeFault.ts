/**
 * What the CLI tells a person whose Postgres refuses it. A store that is down or slow
 * (connection refused, a timeout) may come back: the boot gate retries it. A store that
 * answered "no" — wrong password, no such database, no permission — says the same on
 * every retry: the boot stops at once with one line naming the URL (password masked) and
 * what to do.
 */
import { inspect } from 'node:util';
import { errorText, type Logger } from '../logger.js';

/** @internal A refusal no retry can fix, with its one-line explanation. */
export interface StoreFault {
  /** SQLSTATE, e.g. `3D000`. */
  readonly code: string;
  /** The server's message and code, e.g. `database "x" does not exist (3D000)`. */
  readonly detail: string;
  /** The one line for a person: the masked URL, the refusal, what to do. */
  readonly line: string;
}

/** SQLSTATEs that no retry changes, and what to do about each. */
const REFUSALS: Readonly<Record<string, string>> = {
  // invalid_password
  '28P01': 'check the user name and password in the URL',
  // invalid_authorization_specification: no such role, or pg_hba.conf rejects it
  '28000': "check the user name in the URL, and that the server's pg_hba.conf lets it connect",
  // invalid_catalog_name
  '3D000': 'create that database (createdb) or put an existing one in the URL',
  // insufficient_privilege: kora-opstate creates its tables on first start
  '42501':
    "grant the user CREATE and USAGE on the schema kora-opstate's tables go into (or use its owner)",
};

/**
 * `url` with its password replaced by `***` (and nothing else changed).
 *
 * @internal
 * @example
 * maskUrl('postgres://app:s3cret@db:5432/ops'); // 'postgres://app:***@db:5432/ops'
 */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = '***';
    return u.toString();
  } catch {
    // Not a URL to the parser; still no password shown (user:password@ before the host).
    return url.replace(/^([^:/]*:\/\/[^:/@]*:)[^@/]*@/, '$1***@');
  }
}

/**
 * The refusal in `err`, if it is one no retry can fix (auth failure, unknown database,
 * permission denied); `undefined` for anything else (refused connection, timeout,
 * server starting up), which the boot retries.
 *
 * @internal
 * @example
 * const fault = storeFault(err, url);
 * if (fault) return { ok: false, detail: fault.detail, retry: false };
 */
export function storeFault(err: unknown, url: string): StoreFault | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !(code in REFUSALS)) return undefined;
  const message = errorText(err);
  const detail = `${message} (${code})`;
  return {
    code,
    detail,
    line: `cannot use the store ${maskUrl(url)}: ${detail}; ${REFUSALS[code]}`,
  };
}

/**
 * The CLI's logger: one line per call. An `Error` argument is its message — its stack
 * only with `KORA_DEBUG=1` — so a failing store costs a line, not a page.
 *
 * @internal
 */
export function cliLogger(env: Record<string, string | undefined>): Logger {
  if (env.KORA_DEBUG) return console;
  const line = (args: unknown[]): string => {
    let text = '';
    for (const a of args) {
      const part =
        a instanceof Error
          ? a.message
          : typeof a === 'string'
            ? a
            : inspect(a, { breakLength: Number.POSITIVE_INFINITY, depth: 2 });
      // An error logged after a sentence that already quotes it adds nothing.
      if (a instanceof Error && text.includes(part)) continue;
      text = text === '' ? part : `${text}${a instanceof Error ? ': ' : ' '}${part}`;
    }
    return text;
  };
  return {
    error: (...args) => console.error(line(args)),
    warn: (...args) => console.warn(line(args)),
    info: (...args) => console.info(line(args)),
    debug: (...args) => console.debug(line(args)),
  };
}
