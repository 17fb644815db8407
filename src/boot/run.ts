/** The boot itself: the gates in order on one instance, each outcome a §9.1 event. */
import type { Opstate } from '../holder.js';
import { LOG_TAGS, type Logger, report } from '../logger.js';
import { PERSISTING_PAUSE_CAUSES, type RestoredPause } from '../restore.js';
import { type DegradationReason, quote, sanitizeText } from '../vocabulary.js';
import {
  errorText,
  type Gate,
  type GateResult,
  gateDetail,
  gateDetails,
  gateRetryDelay,
  type retryDefaults,
  runCheck,
} from './gates.js';
import type { BootSummary } from './summary.js';

/** @internal What the run needs, resolved and checked. */
export interface BootRun {
  gates: readonly Gate[];
  retry: typeof retryDefaults;
  sleep: (ms: number) => Promise<void>;
  now: () => number;
  logger: Logger;
  restore?: () => Promise<RestoredPause | undefined>;
}

function log(logger: Logger, level: 'error' | 'warn' | 'info', message: string, err?: unknown) {
  report(logger, level, LOG_TAGS.wireIn, message, err);
}

/** @internal Runs the gates on `holder` (in booting); resolves with the summary. */
export async function runGates(holder: Opstate, o: BootRun): Promise<BootSummary> {
  const { logger } = o;

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
