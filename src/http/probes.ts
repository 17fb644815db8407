/**
 * The probes after Kubernetes: `/livez`, `/readyz`, `/startupz`, each a list of named
 * checks. The plain answer is JSON (the first failing check is its `reason`); `?verbose`
 * answers the checks one per line the way kube-apiserver does (`[+]ping ok`,
 * `[-]holder failed: …`, then `readyz check passed` / `readyz check failed`), and
 * `?exclude=<check>` leaves a check out. Status codes come from the `probes` options.
 */
import { z } from 'zod';
import type { OperationalStateHolder } from '../holder.js';
import { functionSchema, parseOptions } from '../options.js';
import { quote } from '../vocabulary.js';
import { json, textResponse } from './respond.js';
import { HOLDER_NOT_INITIALIZED, STUB_STATUS } from './status.js';

/** The `probes` option of the status app; all optional. */
export interface ProbeOptions {
  /**
   * The status of a passing probe (default 200). 200–399 (what a Kubernetes probe counts
   * as success) but 204, 205 and 304, which carry no body.
   */
  successStatus?: number;
  /** The status of a failing probe (default 503); 400–599. */
  failureStatus?: number;
  /**
   * Asked on each `/readyz`: `true` once the process is shutting down, and `/readyz`
   * then fails with `shutting down` (the check `shutdown`) whatever the state. Wire it to
   * `installShutdownHandlers({ onDrain })`, which calls its callback at the signal, before
   * the `shutdownDelayMs` wait: load balancers see the drop while claims still run.
   */
  draining?: () => boolean;
}

/** @internal The `probes` option after validation. */
export interface ResolvedProbeOptions {
  readonly successStatus: number;
  readonly failureStatus: number;
  readonly draining: (() => boolean) | undefined;
}

/** @internal A probe's path without the slash. */
export type ProbeName = 'livez' | 'readyz' | 'startupz';

/** @internal One check's result: `failure` is why it failed, undefined when it passed. */
export interface ProbeCheck {
  readonly name: string;
  readonly failure: string | undefined;
}

// 204, 205 and 304 carry no body: the verbose listing would be lost.
const NO_BODY = [204, 205, 304];
const status = (min: number, max: number) => {
  const must = {
    error: `must be an integer ${min}–${max}${min < 400 ? ' other than 204, 205 and 304 (no body)' : ''}`,
  };
  return z
    .number(must)
    .int(must)
    .min(min, must)
    .max(max, must)
    .refine((n) => !NO_BODY.includes(n), must);
};

// Wrapped in `{ probes }` so a bad field is named `probes.failureStatus`.
const probesSchema = z.object({
  probes: z.strictObject(
    {
      successStatus: status(200, 399).default(200),
      failureStatus: status(400, 599).default(503),
      draining: functionSchema<() => boolean>().optional(),
    },
    {
      error: (issue) =>
        issue.code === 'unrecognized_keys'
          ? `has no option ${issue.keys.map((k) => quote(k)).join(', ')} (successStatus, failureStatus, draining)`
          : 'must be an object',
    },
  ),
});

/**
 * @internal Validates the `probes` option; throws an `OperationalStateInputError` naming
 * the field (`probes.failureStatus must be an integer 400–599, got 200`).
 */
export function resolveProbeOptions(probes: unknown): ResolvedProbeOptions {
  const o = parseOptions(probesSchema, { probes: probes ?? {} }).probes;
  return { successStatus: o.successStatus, failureStatus: o.failureStatus, draining: o.draining };
}

const pass = (name: string): ProbeCheck => ({ name, failure: undefined });
const check = (name: string, failure: string | false | undefined): ProbeCheck => ({
  name,
  failure: failure || undefined,
});

function drainingFailure(draining: () => boolean): string | undefined {
  try {
    return draining() ? 'shutting down' : undefined;
  } catch (err) {
    // A failing callback says nothing about readiness: count it as not ready, say why.
    return `the draining callback threw: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/**
 * @internal The checks of `probe` now, in the order listed (the first failure is the JSON
 * `reason`). Before the holder exists the stub's state (`booting`, `none`) is judged.
 */
export function probeChecks(
  probe: ProbeName,
  holder: OperationalStateHolder | undefined,
  options: ResolvedProbeOptions,
): ProbeCheck[] {
  const state = holder ? holder.current.primaryState : STUB_STATUS.primary_state;
  const noHolder = holder ? undefined : HOLDER_NOT_INITIALIZED;
  switch (probe) {
    case 'livez':
      // Alive until stopped: a paused or booting agent must not be restarted for it.
      return [
        pass('ping'),
        check('primary_state', state === 'stopped' && 'primary state is stopped'),
      ];
    case 'readyz': {
      const permission = holder ? holder.current.claimPermission : STUB_STATUS.claim_permission;
      return [
        pass('ping'),
        ...(options.draining ? [check('shutdown', drainingFailure(options.draining))] : []),
        check('holder', noHolder),
        check(
          'primary_state',
          state !== 'ready' && state !== 'active' && `primary state is ${state}`,
        ),
        check('claim_permission', permission === 'none' && 'claim permission is none'),
      ];
    }
    case 'startupz':
      // No row leads back to booting: any other state means the boot has finished (also a
      // boot that failed into paused or stopped: then /livez or /readyz say so).
      return [
        pass('ping'),
        check('holder', noHolder),
        check('boot', state === 'booting' && 'primary state is booting'),
      ];
  }
}

/** What the query asks of a probe: `?verbose`, `?exclude=<check>` (repeatable). */
interface ProbeQuery {
  readonly verbose: boolean;
  readonly exclude: readonly string[];
}

const PLAIN: ProbeQuery = { verbose: false, exclude: [] };

function probeQuery(url: string): ProbeQuery {
  // Probes come every few seconds from every kubelet: no URL parsing without a query.
  if (!url.includes('?')) return PLAIN;
  const params = new URL(url).searchParams;
  const v = params.get('verbose');
  return {
    verbose: v !== null && v !== '0' && v !== 'false',
    exclude: params.getAll('exclude').flatMap((e) => e.split(',')),
  };
}

const TEXT_HEADERS = {
  'content-type': 'text/plain; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
} as const;

/** The kube-apiserver's verbose body: one line per check, then the verdict. */
function verboseBody(
  probe: ProbeName,
  checks: readonly ProbeCheck[],
  exclude: readonly string[],
): string {
  let text = '';
  for (const c of checks) {
    if (exclude.includes(c.name)) text += `[+]${c.name} excluded: ok\n`;
    else if (c.failure === undefined) text += `[+]${c.name} ok\n`;
    else text += `[-]${c.name} failed: ${c.failure}\n`;
  }
  const unknown = exclude.filter((e) => !checks.some((c) => c.name === e));
  if (unknown.length) {
    text += `warn: some health checks cannot be excluded: no matches for ${unknown.map((e) => quote(e)).join(',')}\n`;
  }
  const failed = checks.some((c) => c.failure !== undefined && !exclude.includes(c.name));
  return `${text}${probe} check ${failed ? 'failed' : 'passed'}\n`;
}

/** @internal The answer of `probe` to a request for `url`. */
export function probeResponse(
  probe: ProbeName,
  url: string,
  holder: OperationalStateHolder | undefined,
  options: ResolvedProbeOptions,
): Response {
  const query = probeQuery(url);
  const checks = probeChecks(probe, holder, options);
  const failure = checks.find((c) => c.failure !== undefined && !query.exclude.includes(c.name));
  const code = failure ? options.failureStatus : options.successStatus;
  if (query.verbose)
    return textResponse(code, verboseBody(probe, checks, query.exclude), TEXT_HEADERS);
  const state = holder ? holder.current : undefined;
  const primary_state = state ? state.primaryState : STUB_STATUS.primary_state;
  const reason = failure ? { reason: failure.failure } : {};
  switch (probe) {
    case 'livez':
      return json(code, { live: !failure, primary_state, ...reason });
    case 'readyz':
      return json(code, {
        ready: !failure,
        primary_state,
        claim_permission: state ? state.claimPermission : STUB_STATUS.claim_permission,
        ...reason,
      });
    case 'startupz':
      return json(code, { started: !failure, primary_state, ...reason });
  }
}
