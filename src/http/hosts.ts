/**
 * The Host allowlist: the status API answers only the names it serves, so a web page whose
 * own name was re-pointed at 127.0.0.1 (DNS rebinding) cannot read the status, history or
 * chain with the victim's browser. The browser sends that page's name as `Host`; this
 * refuses it.
 *
 * Always served: `localhost` and `*.localhost` (browsers resolve them to loopback
 * themselves, RFC 6761 §6.3, and no one can register them), and any IP literal (a page at an
 * IP address has that address as its origin, so no name is rebound; the CLI reaches an
 * agent bound to 0.0.0.0 as `Host: 0.0.0.0`, Prometheus a pod as its IP). Also served: the
 * names the owner allows — `example.org` exactly, `.example.org` for it and its
 * subdomains — and the bound host name. `'*'` turns the check off.
 */
import { isIP } from 'node:net';
import { OperationalStateInputError, quote } from '../vocabulary.js';

/** @internal Allows every Host: the check is off. */
export const ANY_HOST = '*';

/** A DNS name as browsers send it: lowercase letters, digits, `-`, `_`, dots. */
const NAME =
  /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$/;

/** `[::1]` → `::1`; a trailing dot and case do not make another name. */
function canonical(name: string): string {
  let n = name.toLowerCase();
  if (n.startsWith('[') && n.endsWith(']')) n = n.slice(1, -1);
  if (n.endsWith('.') && n.length > 1) n = n.slice(0, -1);
  return n;
}

/** The host name of a `Host` header value (`name`, `name:port`, `[v6]:port`); undefined when it is none. */
export function hostName(header: string): string | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^[\]:/\\@?#\s]+)(?::\d{0,5})?$/.exec(header);
  if (!m) return undefined;
  const name = canonical(m[1]!);
  return isIP(name) !== 0 || NAME.test(name) ? name : undefined;
}

/** @internal A compiled allowlist. */
export interface HostCheck {
  /** Whether `header` (a Host header value) names a host this server serves. */
  allows(header: string): boolean;
  /** False when {@link ANY_HOST} turned the check off. */
  readonly active: boolean;
}

/**
 * @internal Validates `allowedHosts` (an array of names, `.suffix` patterns, IP literals or
 * `'*'`) and compiles it; a bad entry is an {@link OperationalStateInputError} naming it.
 */
export function createHostCheck(allowedHosts: unknown, field = 'allowedHosts'): HostCheck {
  if (!Array.isArray(allowedHosts)) {
    throw new OperationalStateInputError(
      field,
      allowedHosts,
      `${field} must be an array of host names, got ${quote(allowedHosts)}`,
    );
  }
  const exact = new Set<string>();
  const suffixes: string[] = [];
  let any = false;
  allowedHosts.forEach((entry: unknown, i) => {
    const bad = (why: string) =>
      new OperationalStateInputError(
        `${field}[${i}]`,
        entry,
        `${field}[${i}] must be a host name (example.org), a .suffix (.example.org), an IP address or "*", got ${quote(entry)}${why}`,
      );
    if (typeof entry !== 'string') throw bad('');
    if (entry === ANY_HOST) {
      any = true;
      return;
    }
    const wildcard = entry.startsWith('.');
    const name = canonical(wildcard ? entry.slice(1) : entry);
    if (isIP(name) !== 0) {
      if (wildcard) throw bad(': an IP address has no subdomains');
      return; // IP literals are always served
    }
    if (!NAME.test(name)) {
      throw bad(/:\d+$/.test(entry) ? ': give the name without a port' : '');
    }
    if (wildcard) suffixes.push(name);
    else exact.add(name);
  });
  return {
    active: !any,
    allows(header) {
      if (any) return true;
      const name = hostName(header);
      if (name === undefined) return false;
      if (name === 'localhost' || name.endsWith('.localhost')) return true;
      if (isIP(name) !== 0 || exact.has(name)) return true;
      return suffixes.some((s) => name === s || name.endsWith(`.${s}`));
    },
  };
}

/** @internal The names a server bound to `host` serves by that name: none for an IP (IPs are always served) or a wildcard. */
export function boundHostNames(host: unknown): string[] {
  if (typeof host !== 'string') return [];
  const name = canonical(host);
  return isIP(name) === 0 && NAME.test(name) ? [name] : [];
}
