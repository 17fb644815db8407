/**
 * The one logger shape, the one set of log tags, and the one way to report: every part
 * of the package logs through {@link report}, so a throwing logger never breaks a
 * transition, a boot or a request.
 */

/** A console-compatible logger. */
export interface Logger {
  error(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  info(...args: unknown[]): void;
  debug?(...args: unknown[]): void;
}

/** Greppable prefixes, one per part of the package. */
export const LOG_TAGS = {
  holder: '[kora.operational_state.holder]',
  emit: '[kora.operational_state.emit]',
  wireIn: '[kora.operational_state.wire_in]',
  http: '[kora.operational_state.http]',
  claims: '[kora.operational_state.claims]',
  poller: '[kora.operational_state.poller]',
  shutdown: '[kora.operational_state.shutdown]',
  outbox: '[kora.operational_state.outbox]',
  spool: '[kora.operational_state.spool]',
  postgres: '[kora.operational_state.sink.postgres]',
  pglite: '[kora.operational_state.sink.pglite]',
  tickets: '[kora.operational_state.tickets.postgres]',
  inspect: '[kora.operational_state.inspect]',
  // The command line's lines are read by people at a terminal: they carry the command's name.
  cli: '[kora-opstate]',
} as const;

/** @internal */
export type LogTag = (typeof LOG_TAGS)[keyof typeof LOG_TAGS];

/** @internal A logger that drops everything. */
export const SILENT_LOGGER: Logger = { error() {}, warn() {}, info() {} };

/**
 * @internal Logs `tag message` (and `err`, when given) at `level`; a logger that throws
 * is ignored — there is nothing left to report to.
 */
export function report(
  logger: Logger,
  level: 'error' | 'warn' | 'info',
  tag: LogTag,
  message: string,
  err?: unknown,
): void {
  try {
    if (err === undefined) logger[level](`${tag} ${message}`);
    else logger[level](`${tag} ${message}`, err);
  } catch {
    // A throwing logger must not turn a reported failure into a second one.
  }
}

/** @internal An error's message, or the thrown value as text. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** @internal True when `value` looks like a {@link Logger} (has the three required methods). */
export function isLogger(value: unknown): value is Logger {
  const l = value as Partial<Logger> | null | undefined;
  return (
    l !== null &&
    typeof l === 'object' &&
    typeof l.error === 'function' &&
    typeof l.warn === 'function' &&
    typeof l.info === 'function'
  );
}
