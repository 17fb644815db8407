/**
 * Graceful shutdown (SPEC §6, §12): on SIGTERM/SIGINT readiness drops at once (`onDrain`),
 * the work goes on for `shutdownDelayMs`, then pause (no new claims), stop the poller,
 * wait for the held claim (bounded), stop (STOP-KORA L4/L5), flush the chain outbox,
 * exit. A second signal exits at once; the same signal repeated within a second (one Ctrl-C
 * delivered twice by the terminal and npm) is one. Nothing is installed on import.
 */
import { constants } from 'node:os';
import { z } from 'zod';
import type { OperationalStateHolder } from '../holder.js';
import { errorText, LOG_TAGS, type Logger, report } from '../logger.js';
import {
  functionSchema,
  loggerSchema,
  nonNegativeNumberSchema,
  objectWithSchema,
  parseOptions,
} from '../options.js';
import { quote } from '../vocabulary.js';
import { type ClaimCoordinator, holderLogger } from './coordinator.js';
import type { TicketPoller } from './poller.js';

/**
 * What shutdown needs of a sink: the durable sinks' `flush` (and `close`). Any
 * {@link EventSink} fits; one without `flush` has nothing to wait for.
 */
export interface FlushableSink {
  readonly workspaceId?: string;
  flush?(timeoutMs?: number): Promise<boolean>;
  close?(): Promise<void>;
  /** The crash-durable spool's directory, when it has one: unstored events wait there. */
  readonly spoolDir?: string;
}

/** Where signals come from (default `process`). */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
  off(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
}

export interface GracefulShutdownOptions {
  /** The instance to pause and stop (what `createOpstate` returns). */
  holder: OperationalStateHolder;
  /** Its held claim is waited for. */
  coordinator?: ClaimCoordinator;
  /** Stopped first, so it takes no new ticket. */
  poller?: TicketPoller;
  /** Flushed (then closed) last, so the pause and stop events are stored. */
  sink?: FlushableSink;
  /** Longest wait for the held claim (default 30,000 ms); then the stop goes ahead. */
  claimTimeoutMs?: number;
  /** Longest wait for the outbox (default 10,000 ms). */
  flushTimeoutMs?: number;
  /**
   * Called at once when the shutdown starts, before anything else: wire it to the status
   * app's `probes.draining`, so `/readyz` answers 503 `shutting down` from then on. A
   * throw is logged and ignored.
   */
  onDrain?: (reason: string) => void;
  /**
   * How long the agent goes on working after `onDrain` before it pauses (default 0 ms):
   * time for load balancers and Kubernetes endpoints to see `/readyz` drop. Waited only
   * when the instance is `ready` or `active` (its readiness was up).
   */
  shutdownDelayMs?: number;
  /** How the delay is waited (default a `setTimeout`); tests pass a fake clock's. */
  sleep?: (ms: number) => Promise<void>;
  logger?: Logger;
}

export interface ShutdownOptions extends GracefulShutdownOptions {
  /** Default `process.exit`. */
  exit?: (code: number) => void;
  /** Default `['SIGTERM', 'SIGINT']`. */
  signals?: readonly NodeJS.Signals[];
  /** Default `process`. */
  signalSource?: SignalSource;
  /**
   * The same signal again within this many ms of the first is the same interrupt, not a
   * second one (default 1,000; 0 = every repeat exits at once). A terminal's Ctrl-C
   * signals the whole process group and `npm`/`tsx` forward it again, so one keypress
   * arrives twice.
   */
  coalesceMs?: number;
  /** Monotonic clock in ms for `coalesceMs` (default `performance.now`). */
  now?: () => number;
}

// Loose: the coordinator, poller and sink are duck-typed where they are used.
const gracefulOptions = z.looseObject({
  holder: objectWithSchema<OperationalStateHolder>(['send'], 'must be an OperationalStateHolder'),
  claimTimeoutMs: nonNegativeNumberSchema(),
  flushTimeoutMs: nonNegativeNumberSchema(),
  onDrain: functionSchema<(reason: string) => void>().optional(),
  shutdownDelayMs: nonNegativeNumberSchema(),
  sleep: functionSchema<(ms: number) => Promise<void>>(),
  logger: loggerSchema(),
});

const handlerOptions = gracefulOptions.extend({
  exit: functionSchema<(code: number) => void>(),
  signals: z.custom<readonly NodeJS.Signals[]>(
    (v) => Array.isArray(v) && v.every((s) => typeof s === 'string' && s in constants.signals),
    { error: 'must be a list of signal names' },
  ),
  coalesceMs: nonNegativeNumberSchema(),
  now: functionSchema<() => number>(),
});

function gracefulDefaults(given: Record<string, unknown>) {
  return {
    ...holderLogger(given),
    claimTimeoutMs: 30_000,
    flushTimeoutMs: 10_000,
    shutdownDelayMs: 0,
    sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)),
  };
}

function handlerDefaults(given: Record<string, unknown>) {
  return {
    ...gracefulDefaults(given),
    exit: (code: number) => process.exit(code),
    signals: ['SIGTERM', 'SIGINT'] as const,
    coalesceMs: 1000,
    now: () => performance.now(),
  };
}

function resolveShutdownOptions(options: GracefulShutdownOptions) {
  return parseOptions(gracefulOptions, options, gracefulDefaults) as GracefulShutdownOptions &
    z.output<typeof gracefulOptions>;
}

/** Resolves `true` when `p` settles within `ms`, `false` otherwise. */
function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Runs the shutdown sequence once: `onDrain` (readiness drops) → wait `shutdownDelayMs`
 * (only from ready/active) → pause (cause `stop_kora`, trigger `STOP-KORA L1: shutdown (<reason>)`)
 * → stop the poller → wait for the held claim (≤ `claimTimeoutMs`) → `stop` (trigger
 * `STOP-KORA L5: shutdown (<reason>)`) → flush the sink (≤ `flushTimeoutMs`) and close
 * it. Never rejects; resolves with the exit code: 0, or 1 when the outbox could not be
 * flushed and the sink has no spool (chain events would be lost with the process).
 *
 * @internal Not exported by the package: {@link installShutdownHandlers} runs it on a signal.
 *
 * @example
 * const code = await gracefulShutdown({ holder: opstate, coordinator, poller, sink }, 'deploy');
 */
export async function gracefulShutdown(
  options: GracefulShutdownOptions,
  reason: string,
): Promise<number> {
  const o = resolveShutdownOptions(options);
  const { holder } = o;
  const log = (level: 'error' | 'warn' | 'info', message: string, err?: unknown) =>
    report(o.logger, level, LOG_TAGS.shutdown, message, err);
  let code = 0;

  // 0. Readiness drops at once; the work goes on while load balancers notice.
  if (o.onDrain) {
    try {
      o.onDrain(reason);
    } catch (err) {
      log('warn', `shutdown (${reason}): onDrain threw: ${errorText(err)}`, err);
    }
  }
  const before = holder.current.primaryState;
  if (o.shutdownDelayMs > 0 && (before === 'ready' || before === 'active')) {
    log(
      'info',
      `shutdown (${reason}): readiness dropped; claims stop in ${o.shutdownDelayMs} ms (shutdown delay)`,
    );
    try {
      // Called now (not a tick later): the wait starts with the signal.
      await o.sleep(o.shutdownDelayMs);
    } catch (err) {
      log('warn', `shutdown (${reason}): the shutdown delay failed: ${errorText(err)}`, err);
    }
  }

  // 1. No new claims.
  const first = holder.current.primaryState;
  if (first === 'stopped') {
    log('info', `shutdown (${reason}): the holder is already stopped`);
  } else if (first === 'paused') {
    log('info', `shutdown (${reason}): already paused`);
  } else {
    try {
      // A STOP-KORA pause: it adds no reason, so a restart does not restore it (SPEC §10).
      await holder.send({
        type: 'pause',
        cause: 'stop_kora',
        trigger: `STOP-KORA L1: shutdown (${reason})`,
      });
    } catch (err) {
      log('error', `shutdown (${reason}): pause refused: ${errorText(err)}`, err);
    }
  }

  // 2. The poller takes no new ticket; 3. the claim in progress finishes (bounded).
  const pollerDone = o.poller ? o.poller.stop() : Promise.resolve();
  const held = o.coordinator?.held;
  if (held) {
    log(
      'info',
      `shutdown (${reason}): waiting up to ${o.claimTimeoutMs} ms for the claim on ticket ${quote(held.id)}`,
    );
  }
  const claimDone = o.coordinator
    ? o.coordinator.waitForIdle(o.claimTimeoutMs)
    : Promise.resolve(true);
  const settled = await within(
    Promise.all([pollerDone, claimDone]).then(([, idle]) => {
      if (!idle) throw new Error('claim still held');
    }),
    o.claimTimeoutMs,
  );
  if (!settled || (o.coordinator?.held ?? undefined)) {
    log(
      'warn',
      `shutdown (${reason}): the claim${held ? ` on ticket ${quote(held.id)}` : ''} did not end within ${o.claimTimeoutMs} ms; stopping anyway`,
    );
  }

  // 4. Stop (STOP-KORA L4/L5 row): final.
  if (holder.current.primaryState !== 'stopped') {
    try {
      await holder.send({ type: 'stop', trigger: `STOP-KORA L5: shutdown (${reason})` });
    } catch (err) {
      log('error', `shutdown (${reason}): stop refused: ${errorText(err)}`, err);
    }
  }

  // 5. Every chain event stored before the process goes.
  if (o.sink && typeof o.sink.flush === 'function') {
    try {
      const flushed = await o.sink.flush(o.flushTimeoutMs);
      if (!flushed && o.sink.spoolDir) {
        // Acknowledged events are fsynced in the spool: the next run stores them first.
        log(
          'warn',
          `shutdown (${reason}): the store did not take every chain event within ${o.flushTimeoutMs} ms; ` +
            `they stay in the spool ${o.sink.spoolDir} for the next run`,
        );
      } else if (!flushed) {
        code = 1;
        log(
          'error',
          `shutdown (${reason}): the chain outbox did not drain within ${o.flushTimeoutMs} ms; its events are lost`,
        );
      }
    } catch (err) {
      code = 1;
      log('error', `shutdown (${reason}): flushing the sink failed`, err);
    }
  }
  if (o.sink && typeof o.sink.close === 'function') {
    try {
      await o.sink.close();
    } catch (err) {
      log('warn', `shutdown (${reason}): closing the sink failed`, err);
    }
  }
  log('info', `shutdown (${reason}): done, state ${holder.current.primaryState}, exit ${code}`);
  return code;
}

/**
 * Installs SIGTERM/SIGINT handlers that run {@link gracefulShutdown} and exit with its
 * code. The same signal again within `coalesceMs` (default 1 s) of the first is the same
 * interrupt and changes nothing; any later signal (or another signal) exits at once with
 * 128 + the signal number (SIGINT 130, SIGTERM 143). Returns the uninstall function.
 * Nothing is installed until this is called.
 *
 * @example
 * const uninstall = installShutdownHandlers({ holder: opstate, coordinator, poller, sink });
 */
export function installShutdownHandlers(options: ShutdownOptions): () => void {
  const { exit, signals, coalesceMs, now, logger } = parseOptions(
    handlerOptions,
    options,
    handlerDefaults,
  );
  const target: SignalSource = options.signalSource ?? process;
  // A throwing logger is ignored: going on (or exiting) anyway.
  const log = (level: 'error' | 'info', message: string) =>
    report(logger, level, LOG_TAGS.shutdown, message);
  let first: { signal: NodeJS.Signals; at: number } | undefined;
  let exited = false;
  const doExit = (code: number) => {
    exited = true;
    exit(code);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    const at = now();
    if (first) {
      if (signal === first.signal && at - first.at < coalesceMs) {
        log(
          'info',
          `${signal} again within ${coalesceMs} ms of the first: the same interrupt, still shutting down gracefully`,
        );
        return;
      }
      const code = 128 + (constants.signals[signal] ?? 15);
      log('error', `second signal (${signal}): exiting now with ${code}`);
      doExit(code);
      return;
    }
    first = { signal, at };
    log(
      'info',
      `${signal}: shutting down gracefully (another signal exits at once${coalesceMs > 0 ? `; ${signal} again within ${coalesceMs} ms is this one` : ''})`,
    );
    void gracefulShutdown(options, signal).then((code) => {
      if (!exited) doExit(code);
    });
  };
  for (const s of signals) target.on(s, onSignal);
  return () => {
    for (const s of signals) target.off(s, onSignal);
  };
}
