/**
 * Boot wire-in (ST3, SPEC §5): an instance in `booting` with its chain, then the §9.2
 * gates in order — each outcome a §9.1 event, so the boot shows in the history and the
 * chain (`kora.boot.ready` / `kora.boot.failed` carry the per-gate results).
 *
 * Never throws: a bad option or an unexpected failure is logged with the tag
 * `[kora.operational_state.wire_in]` and returned as `result: 'error'`.
 */

import {
  fail,
  type Gate,
  type GateRetryOptions,
  isFunction,
  resolveRetry,
  validateGates,
} from './boot/gates.js';
import { runGates } from './boot/run.js';
import type { BootSummary } from './boot/summary.js';
import type { EmitListenerOptions } from './emit.js';
import { initHolder, type OperationalStateHolderOptions, type Opstate } from './holder.js';
import { LOG_TAGS, type Logger, report } from './logger.js';
import type { RestoredPause } from './restore.js';
import type { EventSink } from './sinks/types.js';
import { quote, sanitizeText } from './vocabulary.js';

export * from './boot/gates.js';
export type { BootResult, BootSummary } from './boot/summary.js';

/** The log tag of every wire-in line. */
export const WIRE_IN_LOG_TAG = LOG_TAGS.wireIn;

/** Options of {@link bootOpstate}; all optional. */
export interface BootOptions {
  /** Run in order; the first failure ends the boot (default: none — straight to ready). */
  gates?: readonly Gate[];
  retry?: GateRetryOptions;
  /** Backoff wait (default a timer); tests pass a fake. */
  sleep?: (ms: number) => Promise<void>;
  /** Clock for gate timings (default `Date.now`). */
  now?: () => number;
  /** Default: the instance's logger. */
  logger?: Logger;
  /**
   * Runs after every gate passed: the agent's persisting pause to boot into (booting →
   * paused, row 9) instead of ready — e.g. `() => readPersistingPause(sink, agentId)`.
   * A restore that throws pauses the boot with cause `operator` (it cannot tell whether a
   * cost pause stands); an operator reset resumes it.
   */
  restore?: () => Promise<RestoredPause | undefined>;
}

/** Options of {@link wireOperationalState}: a sink, and the instance if not the singleton. */
export interface WireOptions extends BootOptions {
  /** Where the chain events go (an in-memory, Postgres or PGlite sink). */
  sink: EventSink;
  /** The instance to boot (default: the process singleton, created by this call). */
  opstate?: Opstate;
  /**
   * Options of the singleton holder, if this call creates it. `initial` may only add
   * degradation reasons: the boot starts in `booting` with claim permission `none`.
   * `retryBudget` defaults to `retry.attempts - 1`.
   */
  holderOptions?: OperationalStateHolderOptions;
  /** Options of the emit listener (e.g. `instanceId`, `agentId`). */
  emit?: Omit<EmitListenerOptions, 'logger' | 'now'>;
}

const timerSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The boot of each instance, so a second call returns the first one's. */
const BOOT = Symbol('kora.boot');
type Booted = Opstate & { [BOOT]?: Promise<BootSummary> };

function resolveBoot(options: BootOptions, fallback: Logger) {
  if (options === null || typeof options !== 'object') {
    fail('options', options, `options must be an object, got ${quote(options)}`);
  }
  const gates = validateGates(options.gates);
  const retry = resolveRetry(options);
  for (const key of ['sleep', 'now', 'restore'] as const) {
    const v = options[key];
    if (v !== undefined && !isFunction(v))
      fail(key, v, `${key} must be a function, got ${quote(v)}`);
  }
  const logger = options.logger ?? fallback;
  if (!isFunction(logger?.error) || !isFunction(logger?.warn) || !isFunction(logger?.info)) {
    fail('logger', logger, `logger must have error/warn/info methods, got ${quote(logger)}`);
  }
  return {
    gates,
    retry,
    sleep: options.sleep ?? timerSleep,
    now: options.now ?? Date.now,
    logger,
    ...(options.restore ? { restore: options.restore } : {}),
  };
}

function refused(logger: Logger, what: string, err: unknown): Promise<BootSummary> {
  const error = sanitizeText(err instanceof Error ? err.message : err, 500);
  report(logger, 'error', LOG_TAGS.wireIn, `${what}: ${error}`, err);
  return Promise.resolve({ result: 'error', gates: [], error });
}

function boot(opstate: Booted, run: Parameters<typeof runGates>[1]): Promise<BootSummary> {
  const running = runGates(opstate, run).catch((err): BootSummary => {
    const error = sanitizeText(err instanceof Error ? err.message : err, 500);
    report(run.logger, 'error', LOG_TAGS.wireIn, `boot failed unexpectedly: ${error}`, err);
    return { result: 'error', gates: [], error };
  });
  opstate[BOOT] = running;
  return running;
}

/**
 * Runs the §9.2 gates on `opstate` (in `booting`): all pass → ready (or the restored
 * pause), an invariant failure → stopped, an epoch mismatch → paused. Resolves with a
 * {@link BootSummary}; never rejects. A second call on the same instance returns the
 * first call's boot.
 *
 * @example
 * const opstate = createOpstate({ sink });
 * const summary = await bootOpstate(opstate, {
 *   gates: [{ id: 'event_log', gateClass: 'transient', reason: 'substrate', check: async () => ({ ok: true }) }],
 * });
 * summary.result; // 'ready'
 */
export function bootOpstate(opstate: Opstate, options: BootOptions = {}): Promise<BootSummary> {
  const booted = (opstate as Booted)[BOOT];
  if (booted) return booted;
  const fallback = opstate?.logger ?? console;
  let run: ReturnType<typeof resolveBoot>;
  try {
    run = resolveBoot(options, fallback);
  } catch (err) {
    return refused(fallback, 'invalid boot options', err);
  }
  return boot(opstate as Booted, run);
}

/**
 * The seed's face over {@link bootOpstate}: the process singleton (or `opstate`) in
 * `booting`/`none`, registers the chain emit listener
 * and runs the gates; resolves with a {@link BootSummary}. Never rejects. A second call
 * (on the same instance) returns the first call's boot — no second
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
  const given = (options as WireOptions | undefined)?.logger;
  const fallback: Logger = typeof given?.error === 'function' ? given : console;
  let run: ReturnType<typeof resolveBoot>;
  let holderOptions: OperationalStateHolderOptions;
  try {
    if (options === null || typeof options !== 'object') {
      fail('options', options, `options must be an object, got ${quote(options)}`);
    }
    const { sink } = options;
    if (sink === null || typeof sink !== 'object' || !isFunction(sink.append)) {
      fail('sink', sink, `sink must be an EventSink (with append()), got ${quote(sink)}`);
    }
    run = resolveBoot(options, fallback);
    holderOptions = options.holderOptions ?? {};
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
  } catch (err) {
    return refused(fallback, 'invalid wire-in options', err);
  }
  let opstate: Booted;
  try {
    opstate =
      options.opstate ??
      initHolder({
        logger: run.logger,
        now: run.now,
        retryBudget: run.retry.attempts - 1,
        ...holderOptions,
        initial: {
          primaryState: 'booting',
          claimPermission: 'none',
          degradationReasons: holderOptions.initial?.degradationReasons ?? [],
        },
      });
  } catch (err) {
    return refused(run.logger, 'holder could not be created', err);
  }
  if (opstate[BOOT]) return opstate[BOOT];
  try {
    opstate.connectSink(options.sink, options.emit ?? {});
  } catch (err) {
    return refused(run.logger, 'emit listener could not be created', err);
  }
  return boot(opstate, run);
}
