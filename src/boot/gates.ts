/**
 * The §9.2 boot gates: their shape, their checks (timeouts, thrown errors, bad answers),
 * the transient-gate backoff, and the recorded (storable, bounded) gate results.
 */
import {
  checkText,
  DEGRADATION_REASONS,
  type DegradationReason,
  MAX_DETAILS_BYTES,
  OperationalStateInputError,
  quote,
  sanitizeText,
} from '../vocabulary.js';

/**
 * How a gate's failure is handled: `transient` is retried with backoff (row 2) and stops
 * the boot when its budget is spent (row 3); `invariant` stops the boot at once (row 3);
 * `invariant_pause` pauses it for an operator (row 4, the §9.8 epoch mismatch).
 *
 * @example
 * const gate: Gate = { id: 'schema', gateClass: GateClass.INVARIANT, check: async () => true };
 */
export const GateClass = {
  TRANSIENT: 'transient',
  INVARIANT: 'invariant',
  INVARIANT_PAUSE: 'invariant_pause',
} as const;
export type GateClass = (typeof GateClass)[keyof typeof GateClass];
export const GATE_CLASSES: readonly GateClass[] = Object.freeze(Object.values(GateClass));

/** The longest gate id accepted (the `boot.gate_retry` event's `gate`). */
export const MAX_GATE_ID_LENGTH = 200;

/**
 * The longest gate detail recorded (UTF-16 units): a longer one — a check's detail, an
 * exception's message — is cut and ends with `…`; characters a store refuses become U+FFFD.
 */
export const MAX_GATE_DETAIL_LENGTH = 500;

/**
 * What a gate's check may answer: a boolean, or `{ ok, detail?, retry? }`. `retry: false`
 * on a failure of a transient gate says no retry can fix it (a database that does not
 * exist, a wrong password): the boot stops at once, as for an invariant gate.
 */
export type GateCheckResult = boolean | { ok: boolean; detail?: string; retry?: boolean };

/** One §9.2 boot gate. A check that throws (or rejects) fails with `unexpected exception: …`. */
export interface Gate {
  /** Unique among the gates; shown in the chain's gate results. */
  id: string;
  gateClass: GateClass;
  /** Added while a transient gate is being retried; cleared once it passes. */
  reason?: DegradationReason;
  check: () => Promise<GateCheckResult>;
  /** A check still running after this long fails with `timed out after … ms` (default: no limit). */
  timeoutMs?: number;
}

/** A gate's final outcome: `pass`, or `fail` (the gate that ended the boot). */
export type GateOutcome = 'pass' | 'fail';

/** One gate's result, as in the `kora.boot.*` payloads (snake_case, the wire shape). */
export interface GateResult {
  readonly gate_id: string;
  readonly gate_class: GateClass;
  readonly outcome: GateOutcome;
  /** Checks run (1 unless a transient gate was retried). */
  readonly attempts: number;
  /** From the first check to the outcome, backoff included. */
  readonly elapsed_ms: number;
  /** The last check's detail (`null` when it gave none). */
  readonly detail: string | null;
}

/** Transient-gate backoff: `attempts` checks, waiting `initialDelayMs × factor^n`, capped. */
export interface GateRetryOptions {
  /** Checks per transient gate, the first included (default 5). */
  attempts?: number;
  /** Wait before the second check (default 2,000 ms). */
  initialDelayMs?: number;
  /** Multiplier per further retry (default 2). */
  factor?: number;
  /** Longest wait (default 30,000 ms). */
  maxDelayMs?: number;
}

/** @internal */
export const retryDefaults = { attempts: 5, initialDelayMs: 2000, factor: 2, maxDelayMs: 30_000 };

/** @internal */
export function fail(field: string, value: unknown, message: string): never {
  throw new OperationalStateInputError(field, value, message);
}

/** @internal */
export function isFunction(v: unknown): v is (...args: never[]) => unknown {
  return typeof v === 'function';
}

/** @internal Checks every gate; throws an `OperationalStateInputError` naming the bad one. */
export function validateGates(given: unknown): readonly Gate[] {
  const gates = (given ?? []) as Gate[];
  if (!Array.isArray(gates)) fail('gates', gates, `gates must be an array, got ${quote(gates)}`);
  const ids = new Set<string>();
  gates.forEach((g: Gate, i) => {
    const at = `gates[${i}]`;
    if (g === null || typeof g !== 'object')
      fail(at, g, `${at} must be an object, got ${quote(g)}`);
    if (typeof g.id !== 'string' || g.id.trim() === '') {
      fail(`${at}.id`, g.id, `${at}.id must be a non-empty string, got ${quote(g.id)}`);
    }
    // The id is recorded as is (the retry event's `gate`, the chain's gate results).
    if (g.id.length > MAX_GATE_ID_LENGTH) {
      fail(
        `${at}.id`,
        g.id,
        `${at}.id is ${g.id.length} characters, more than ${MAX_GATE_ID_LENGTH}: ${quote(g.id)}`,
      );
    }
    checkText(g.id, `${at}.id`);
    if (ids.has(g.id)) fail(`${at}.id`, g.id, `gate id ${quote(g.id)} is used twice`);
    ids.add(g.id);
    if (!GATE_CLASSES.includes(g.gateClass)) {
      fail(
        `${at}.gateClass`,
        g.gateClass,
        `unknown gate class ${quote(g.gateClass)} for gate ${quote(g.id)}; expected one of ${GATE_CLASSES.join(', ')}`,
      );
    }
    if (g.reason !== undefined && !DEGRADATION_REASONS.includes(g.reason)) {
      fail(
        `${at}.reason`,
        g.reason,
        `unknown degradation reason ${quote(g.reason)} for gate ${quote(g.id)}; expected one of ${DEGRADATION_REASONS.join(', ')}`,
      );
    }
    if (g.timeoutMs !== undefined && !(Number.isFinite(g.timeoutMs) && g.timeoutMs > 0)) {
      fail(
        `${at}.timeoutMs`,
        g.timeoutMs,
        `gate ${quote(g.id)}: timeoutMs must be a positive number, got ${quote(g.timeoutMs)}`,
      );
    }
    if (!isFunction(g.check)) {
      fail(
        `${at}.check`,
        g.check,
        `gate ${quote(g.id)} needs a check function, got ${quote(g.check)}`,
      );
    }
  });
  return gates;
}

/** @internal The backoff options over their defaults, each checked. */
export function resolveRetry(options: { retry?: GateRetryOptions }): typeof retryDefaults {
  const given = options.retry ?? {};
  if (given === null || typeof given !== 'object') {
    fail('retry', given, `retry must be an object, got ${quote(given)}`);
  }
  const retry = { ...retryDefaults };
  for (const key of Object.keys(retryDefaults) as (keyof typeof retryDefaults)[]) {
    const v = given[key];
    if (v === undefined) continue;
    const ok =
      typeof v === 'number' &&
      Number.isFinite(v) &&
      (key === 'attempts' ? Number.isInteger(v) && v >= 1 : key === 'factor' ? v >= 1 : v >= 0);
    if (!ok) {
      const want =
        key === 'attempts'
          ? 'a positive integer'
          : key === 'factor'
            ? 'a number ≥ 1'
            : 'a non-negative number';
      fail(`retry.${key}`, v, `retry.${key} must be ${want}, got ${quote(v)}`);
    }
    retry[key] = v;
  }
  return retry;
}

/** An error's message as storable text: anything may be thrown, with any text in it. */
/** @internal */
export function errorText(err: unknown): string {
  return sanitizeText(err instanceof Error ? err.message : err, MAX_GATE_DETAIL_LENGTH);
}

/** A gate's detail as recorded: storable text, at most this long (the rest cut, `…`). */
/** @internal */
export function gateDetail(detail: unknown): string {
  return sanitizeText(detail, MAX_GATE_DETAIL_LENGTH);
}

/** Per-gate detail lengths tried in turn until the boot's details fit `MAX_DETAILS_BYTES`. */
const FIT_DETAIL_LENGTHS = [MAX_GATE_DETAIL_LENGTH, 120, 20, 1];

/**
 * The details of a boot outcome (`gates`, and the failed gate): gate details are cut
 * shorter until they fit the holder's `details` limit, so a boot never fails on long
 * detail texts; with more gates than fit at all, only the failed one is listed and
 * `gates_omitted` counts the others.
 */
/** @internal */
export function gateDetails(
  results: readonly GateResult[],
  failed?: GateResult,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const cut = (d: string | null, max: number) => (d === null ? null : sanitizeText(d, max));
  for (const max of FIT_DETAIL_LENGTHS) {
    const details = {
      gates: results.map((r) => ({ ...r, detail: cut(r.detail, max) })),
      ...(failed ? { failed_gate_id: failed.gate_id, failed_detail: cut(failed.detail, max) } : {}),
      ...extra,
    };
    if (Buffer.byteLength(JSON.stringify(details)) <= MAX_DETAILS_BYTES) return details;
  }
  return {
    gates: failed ? [{ ...failed, detail: cut(failed.detail, 1) }] : [],
    gates_omitted: results.length - (failed ? 1 : 0),
    ...(failed ? { failed_gate_id: failed.gate_id, failed_detail: cut(failed.detail, 1) } : {}),
    ...extra,
  };
}

/** Runs one check; never throws. */
/** @internal */
export async function runCheck(
  gate: Gate,
): Promise<{ ok: boolean; detail: string | null; final?: boolean }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const checked = gate.check();
    const answer =
      gate.timeoutMs === undefined
        ? await checked
        : await Promise.race([
            checked,
            new Promise<never>((_, reject) => {
              timer = setTimeout(
                () => reject(new GateTimeoutError(gate.timeoutMs!)),
                gate.timeoutMs,
              );
            }),
          ]);
    if (typeof answer === 'boolean') return { ok: answer, detail: null };
    if (answer !== null && typeof answer === 'object' && typeof answer.ok === 'boolean') {
      return {
        ok: answer.ok,
        detail:
          answer.detail === undefined || answer.detail === null ? null : gateDetail(answer.detail),
        ...(answer.retry === false ? { final: true } : {}),
      };
    }
    return {
      ok: false,
      detail: gateDetail(`check returned ${quote(answer)}, not a boolean or { ok }`),
    };
  } catch (err) {
    if (err instanceof GateTimeoutError) return { ok: false, detail: err.message };
    return { ok: false, detail: gateDetail(`unexpected exception: ${errorText(err)}`) };
  } finally {
    if (timer) clearTimeout(timer);
  }
}

class GateTimeoutError extends Error {
  constructor(ms: number) {
    super(`timed out after ${ms} ms`);
  }
}

/** Backoff before retry `n` (1-based): `initial × factor^(n-1)`, capped. */
export function gateRetryDelay(n: number, retry: Required<GateRetryOptions>): number {
  return Math.min(retry.maxDelayMs, retry.initialDelayMs * retry.factor ** (n - 1));
}
