/**
 * Boot wire-in (ST3, SPEC §5): the process singleton holder in `booting`, the chain emit
 * listener on it, then the §9.2 gates in order — each outcome a §9.1 event, so the boot
 * shows in the history and the chain (`kora.boot.ready` / `kora.boot.failed` carry the
 * per-gate results).
 *
 * Never throws: a bad option or an unexpected failure is logged with the tag
 * `[kora.operational_state.wire_in]` and returned as `result: 'error'`.
 */
import { type EmitListener, type EmitListenerOptions, makeEmitListener } from './emit.js';
import {
  getHolder,
  initHolder,
  type Logger,
  type OperationalStateHolder,
  type OperationalStateHolderOptions,
} from './holder.js';
import { PERSISTING_PAUSE_CAUSES, type RestoredPause } from './restore.js';
import type { EventSink } from './sinks/types.js';
import {
  checkText,
  DEGRADATION_REASONS,
  type DegradationReason,
  MAX_DETAILS_BYTES,
  OperationalStateInputError,
  quote,
  sanitizeText,
} from './vocabulary.js';

/** The log tag of every wire-in line. */
export const WIRE_IN_LOG_TAG = '[kora.operational_state.wire_in]';

/**
 * How a gate's failure is handled: `transient` is retried with backoff (row 2) and stops
 * the boot when its budget is spent (row 3); `invariant` stops the boot at once (row 3);
 * `invariant_pause` pauses it for an operator (row 4, the §9.8 epoch mismatch).
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

export type BootResult = 'ready' | 'paused' | 'stopped' | 'error';

/** What a boot came to. */
export interface BootSummary {
  readonly result: BootResult;
  /** The gates that ran, in order (gates after a failure do not run). */
  readonly gates: readonly GateResult[];
  /** The gate that stopped or paused the boot. */
  readonly failedGate?: GateResult;
  /** For `result: 'error'`: what went wrong. */
  readonly error?: string;
  /** The persisting pause a restart restored (result `paused`), see `restore`. */
  readonly restored?: RestoredPause;
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

export interface WireOptions {
  /** Where the chain events go (an in-memory, Postgres or PGlite sink). */
  sink: EventSink;
  /** Run in order; the first failure ends the boot (default: none — straight to ready). */
  gates?: readonly Gate[];
  retry?: GateRetryOptions;
  /** Backoff wait (default a timer); tests pass a fake. */
  sleep?: (ms: number) => Promise<void>;
  /** Clock for gate timings, history and events (default `Date.now`). */
  now?: () => number;
  logger?: Logger;
  /**
   * Options of the singleton holder, if this call creates it. `initial` may only add
   * degradation reasons: the boot starts in `booting` with claim permission `none`.
   * `retryBudget` defaults to `retry.attempts - 1`.
   */
  holderOptions?: OperationalStateHolderOptions;
  /** Options of the emit listener (e.g. `instanceId`, `agentId`). */
  emit?: Omit<EmitListenerOptions, 'logger' | 'now'>;
  /**
   * Runs after every gate passed: the agent's persisting pause to boot into (booting →
   * paused, row 9) instead of ready — e.g. `() => readPersistingPause(sink, agentId)`.
   * A restore that throws pauses the boot with cause `operator` (it cannot tell whether a
   * cost pause stands); an operator reset resumes it.
   */
  restore?: () => Promise<RestoredPause | undefined>;
}

const retryDefaults = { attempts: 5, initialDelayMs: 2000, factor: 2, maxDelayMs: 30_000 };

interface Resolved {
  sink: EventSink;
  gates: readonly Gate[];
  retry: typeof retryDefaults;
  sleep: (ms: number) => Promise<void>;
  now: () => number;
  logger: Logger;
  holderOptions: OperationalStateHolderOptions;
  emit: WireOptions['emit'];
  restore: WireOptions['restore'];
}

/** The wiring of the current singleton holder: a second call returns its boot. */
let wired:
  | { holder: OperationalStateHolder; emitter: EmitListener; boot: Promise<BootSummary> }
  | undefined;

const timerSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function fail(field: string, value: unknown, message: string): never {
  throw new OperationalStateInputError(field, value, message);
}

function isFunction(v: unknown): v is (...args: never[]) => unknown {
  return typeof v === 'function';
}

/** @internal Validates and fills the options; throws an `OperationalStateInputError`. */
export function resolveWireOptions(options: WireOptions): Resolved {
  if (options === null || typeof options !== 'object') {
    fail('options', options, `options must be an object, got ${quote(options)}`);
  }
  const { sink } = options;
  if (sink === null || typeof sink !== 'object' || !isFunction(sink.append)) {
    fail('sink', sink, `sink must be an EventSink (with append()), got ${quote(sink)}`);
  }
  const gates = options.gates ?? [];
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
  for (const key of ['sleep', 'now', 'restore'] as const) {
    const v = options[key];
    if (v !== undefined && !isFunction(v))
      fail(key, v, `${key} must be a function, got ${quote(v)}`);
  }
  const logger = options.logger ?? console;
  if (!isFunction(logger?.error) || !isFunction(logger?.warn) || !isFunction(logger?.info)) {
    fail('logger', logger, `logger must have error/warn/info methods, got ${quote(logger)}`);
  }
  const holderOptions = options.holderOptions ?? {};
  const initial = holderOptions.initial ?? {};
  if (
    (initial.primaryState !== undefined && initial.primaryState !== 'booting') ||
    (initial.claimPermission !== undefined && initial.claimPermission !== 'none')
  ) {
    fail(
      'holderOptions.initial',
      initial,
      `the boot starts in booting with claim permission none; holderOptions.initial may only set degradationReasons, got ${quote(initial)}`,
    );
  }
  return {
    sink,
    gates,
    retry,
    sleep: options.sleep ?? timerSleep,
    now: options.now ?? Date.now,
    logger,
    holderOptions,
    emit: options.emit,
    restore: options.restore,
  };
}

function log(logger: Logger, level: 'error' | 'warn' | 'info', message: string, err?: unknown) {
  try {
    if (err === undefined) logger[level](`${WIRE_IN_LOG_TAG} ${message}`);
    else logger[level](`${WIRE_IN_LOG_TAG} ${message}`, err);
  } catch {
    // A throwing logger must not break the boot.
  }
}

/** An error's message as storable text: anything may be thrown, with any text in it. */
function errorText(err: unknown): string {
  return sanitizeText(err instanceof Error ? err.message : err, MAX_GATE_DETAIL_LENGTH);
}

/** A gate's detail as recorded: storable text, at most this long (the rest cut, `…`). */
function gateDetail(detail: unknown): string {
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
function gateDetails(
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

/**
 * Initialises the process holder in `booting`/`none`, registers the chain emit listener
 * and runs the gates; resolves with a {@link BootSummary}. Never rejects. A second call
 * (while the same singleton holder lives) returns the first call's boot — no second
 * listener, no second run of the gates. Invalid options resolve to `result: 'error'`
 * naming the bad value, and leave the holder uncreated.
 *
 * @example
 * const sink = createPgliteSink({ workspaceId: 'ws-1' });
 * const summary = await wireOperationalState({
 *   sink,
 *   gates: [
 *     { id: 'event_log', gateClass: 'transient', reason: 'substrate', check: async () => { await sink.start(); return true; } },
 *     { id: 'schema_epoch', gateClass: 'invariant_pause', check: async () => ({ ok: epoch === 7, detail: `epoch ${epoch}` }) },
 *   ],
 * });
 * summary.result; // 'ready' | 'paused' | 'stopped' | 'error'
 */
export function wireOperationalState(options: WireOptions): Promise<BootSummary> {
  const existing = getHolder();
  if (wired && existing === wired.holder) return wired.boot;
  let resolved: Resolved;
  try {
    resolved = resolveWireOptions(options);
  } catch (err) {
    const given = (options as WireOptions | undefined)?.logger;
    const logger = typeof given?.error === 'function' ? given : console;
    log(logger, 'error', `invalid wire-in options: ${errorText(err)}`, err);
    return Promise.resolve({ result: 'error', gates: [], error: errorText(err) });
  }
  const { logger } = resolved;
  let holder: OperationalStateHolder;
  try {
    const reasons = resolved.holderOptions.initial?.degradationReasons;
    holder = initHolder({
      logger,
      now: resolved.now,
      retryBudget: resolved.retry.attempts - 1,
      ...resolved.holderOptions,
      initial: {
        primaryState: 'booting',
        claimPermission: 'none',
        degradationReasons: reasons ?? [],
      },
    });
  } catch (err) {
    log(logger, 'error', `holder could not be created: ${errorText(err)}`, err);
    return Promise.resolve({ result: 'error', gates: [], error: errorText(err) });
  }
  let emitter: EmitListener;
  try {
    // The holder's logger (the one the user configured, also for a holder that existed
    // before): an emit failure is logged there, once, by the listener — not rethrown.
    emitter = makeEmitListener(resolved.sink, {
      ...resolved.emit,
      logger: holder.logger,
      now: resolved.now,
    });
  } catch (err) {
    log(logger, 'error', `emit listener could not be created: ${errorText(err)}`, err);
    return Promise.resolve({ result: 'error', gates: [], error: errorText(err) });
  }
  const boot = runBoot(holder, emitter, resolved).catch((err): BootSummary => {
    log(logger, 'error', `boot failed unexpectedly: ${errorText(err)}`, err);
    return { result: 'error', gates: [], error: errorText(err) };
  });
  wired = { holder, emitter, boot };
  return boot;
}

/**
 * The chain-event emit listener {@link wireOperationalState} registered on the current
 * singleton holder (`undefined` before the wire-in): its `stats` are what the status API
 * shows as `chain.emitted` / `chain.failures`.
 *
 * @example
 * const boot = wireOperationalState({ sink, gates });
 * const status = await startStatusServer({ sink, emitter: getWiredEmitter() });
 */
export function getWiredEmitter(): EmitListener | undefined {
  return wired && getHolder() === wired.holder ? wired.emitter : undefined;
}

/** Runs one check; never throws. */
async function runCheck(
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

async function runBoot(
  holder: OperationalStateHolder,
  emit: EmitListener,
  o: Resolved,
): Promise<BootSummary> {
  const { logger } = o;
  holder.addListener(emit, { name: 'kora.operational_state.emit' });

  const start = holder.current.primaryState;
  if (start !== 'booting') {
    // The singleton existed before this call, already past booting.
    const error = `the holder is ${start}, not booting; gates not run`;
    log(logger, 'error', error);
    return { result: 'error', gates: [], error };
  }

  const results: GateResult[] = [];
  const details = (failed?: GateResult, extra?: Record<string, unknown>) =>
    gateDetails(results, failed, extra);
  /** The boot was moved on by someone else (an operator's pause or stop). */
  const overtaken = (): BootSummary | undefined => {
    const now = holder.current.primaryState;
    if (now === 'booting') return undefined;
    log(logger, 'warn', `boot overtaken: the holder is ${now}; remaining gates not run`);
    return { result: now === 'paused' || now === 'stopped' ? now : 'error', gates: [...results] };
  };

  for (const gate of o.gates) {
    const began = o.now();
    const maxAttempts = gate.gateClass === 'transient' ? o.retry.attempts : 1;
    /** Reasons this gate's retries added (not held before): cleared once it passes. */
    const staged: DegradationReason[] = [];
    let attempt = 0;
    let check: { ok: boolean; detail: string | null; final?: boolean };
    for (;;) {
      attempt++;
      check = await runCheck(gate);
      if (check.ok || check.final || attempt >= maxAttempts) break;
      const stopped = overtaken();
      if (stopped) return stopped;
      const add =
        gate.reason && !holder.current.degradationReasons.includes(gate.reason)
          ? [gate.reason]
          : [];
      try {
        await holder.send({
          type: 'boot.gate_retry',
          gate: gate.id,
          trigger: `transient gate failure: ${quote(gate.id)} attempt ${attempt}/${maxAttempts}`,
          ...(add.length ? { addReasons: add } : {}),
          details: { gate_id: gate.id, attempt, detail: check.detail },
        });
      } catch (err) {
        // The machine's own budget is smaller than ours (holderOptions.retryBudget):
        // the machine has the last word — the budget is spent.
        log(logger, 'warn', `gate ${quote(gate.id)}: retry refused (${errorText(err)})`);
        break;
      }
      staged.push(...add);
      const delay = gateRetryDelay(attempt, o.retry);
      log(
        logger,
        'warn',
        `gate ${quote(gate.id)} failed (attempt ${attempt}/${maxAttempts}: ${check.detail ?? 'no detail'}); retrying in ${delay} ms`,
      );
      await o.sleep(delay);
    }
    const result: GateResult = Object.freeze({
      gate_id: gate.id,
      gate_class: gate.gateClass,
      outcome: check.ok ? 'pass' : 'fail',
      attempts: attempt,
      elapsed_ms: Math.max(0, o.now() - began),
      detail:
        !check.ok && gate.gateClass === 'transient' && !check.final
          ? gateDetail(
              `retry budget exhausted after ${attempt} attempt(s): ${check.detail ?? 'no detail'}`,
            )
          : check.detail,
    });
    results.push(result);
    const stopped = overtaken();
    if (stopped) return stopped;

    if (check.ok) {
      if (staged.length > 0) {
        // The retries' reasons said "this gate is failing"; it no longer is.
        await holder.send({
          type: 'update',
          trigger: `transient gate ${quote(gate.id)} passed on attempt ${attempt}`,
          removeReasons: staged,
          details: { gate_id: gate.id, attempts: attempt },
        });
      }
      continue;
    }

    if (gate.gateClass === 'invariant_pause') {
      await holder.send({
        type: 'boot.epoch_mismatch',
        trigger: `gate 3b epoch mismatch (§9.8): ${quote(gate.id)}`,
        details: details(result),
      });
      log(logger, 'error', `boot paused: gate ${quote(gate.id)} failed: ${result.detail}`);
      return { result: 'paused', gates: [...results], failedGate: result };
    }
    const why =
      gate.gateClass === 'invariant'
        ? 'invariant gate failure'
        : check.final
          ? 'failure no retry can fix'
          : 'retry budget exhausted';
    await holder.send({
      type: 'boot.gate_failed',
      trigger: `${why}: ${quote(gate.id)}`,
      details: details(result),
    });
    log(logger, 'error', `boot stopped: gate ${quote(gate.id)} failed: ${result.detail}`);
    return { result: 'stopped', gates: [...results], failedGate: result };
  }

  if (o.restore) {
    let restored: RestoredPause | undefined;
    let failure: string | undefined;
    try {
      restored = await o.restore();
    } catch (err) {
      failure = errorText(err);
      log(
        logger,
        'error',
        `could not read the agent's chain to restore its pause: ${failure}`,
        err,
      );
    }
    const stopped = overtaken();
    if (stopped) return stopped;
    if (restored || failure !== undefined) {
      const cause = restored?.cause ?? 'operator';
      const own = PERSISTING_PAUSE_CAUSES[cause];
      const others = (restored?.reasons ?? []).filter((r) => r !== own);
      // What the chain said is read back from a database: made storable and short here.
      const from = restored
        ? `${sanitizeText(restored.instance_id, 200)} seq ${restored.seq}${restored.chain_seq !== undefined ? `, chain #${restored.chain_seq}` : ''}`
        : '';
      const why = sanitizeText(failure ?? '', 300);
      await holder.send({
        type: 'pause',
        cause,
        trigger: restored
          ? `restored ${cause} pause (${restored.reasons.join(', ')}) of ${from}`
          : `restore failed (${why}): paused until an operator reset`,
        ...(others.length ? { addReasons: others } : {}),
        details: details(undefined, {
          restored: restored
            ? {
                cause,
                reasons: [...restored.reasons],
                instance_id: sanitizeText(restored.instance_id, 200),
                seq: restored.seq,
                chain_seq: restored.chain_seq ?? null,
                trigger: sanitizeText(restored.trigger, 200),
              }
            : { error: why },
        }),
      });
      log(
        logger,
        'warn',
        restored
          ? `boot paused: restored the agent's ${cause} pause (${restored.reasons.join(', ')}) from ${restored.instance_id} seq ${restored.seq}`
          : "boot paused: the agent's pause could not be read; an operator reset resumes",
      );
      return {
        result: 'paused',
        gates: [...results],
        ...(restored ? { restored } : { error: `restore failed: ${failure}` }),
      };
    }
  }
  const stopped = overtaken();
  if (stopped) return stopped;
  await holder.send({
    type: 'boot.gates_passed',
    trigger: 'all §9.2 gates pass',
    claimPermission: 'normal',
    details: details(),
  });
  log(logger, 'info', `boot ready: ${results.length} gate(s) passed`);
  return { result: 'ready', gates: [...results] };
}
