/**
 * The cost hard stop (§9.6): spend at 100% pauses the process with cause `cost_limit` (no
 * new claims; the claim in progress finishes and releases), and a confirmed monthly
 * credit refresh resumes it.
 */
import type { OperationalStateHolder } from '../holder.js';
import type { OperationalState } from '../vocabulary.js';

export interface CostHardStopOptions {
  /** Default `cost 100%: hard stop`. */
  trigger?: string;
  details?: Record<string, unknown>;
}

/**
 * Pauses with cause `cost_limit` (adds `cost`; chain event `kora.paused.cost_limit`).
 * Already paused: adds `cost` to the reasons, so the credit refresh is what clears it.
 * Stopped: nothing changes.
 *
 * @example
 * if (spendUsd >= budgetUsd) await costHardStop(opstate, { details: { spendUsd, budgetUsd } });
 */
export async function costHardStop(
  holder: OperationalStateHolder,
  options: CostHardStopOptions = {},
): Promise<OperationalState> {
  const trigger = options.trigger ?? 'cost 100%: hard stop';
  const details = options.details ? { details: options.details } : {};
  const { primaryState, degradationReasons } = holder.current;
  if (primaryState === 'stopped') return holder.current;
  if (primaryState === 'paused') {
    if (degradationReasons.includes('cost')) return holder.current;
    return holder.send({ type: 'update', trigger, addReasons: ['cost'], ...details });
  }
  return holder.send({ type: 'pause', cause: 'cost_limit', trigger, ...details });
}

export interface CreditRefreshOptions {
  reconciledSpendUsd: number;
  thresholdUsd: number;
  /** Default `monthly credit refresh confirmed`. */
  trigger?: string;
}

/**
 * Resumes after a cost hard stop (row 10): paused → ready, removes `cost`. Rejects with
 * `InvalidStateTransitionError` unless spend < threshold and no claim is still held.
 *
 * @example
 * await creditRefresh(opstate, { reconciledSpendUsd: 0, thresholdUsd: 500 });
 */
export function creditRefresh(
  holder: OperationalStateHolder,
  options: CreditRefreshOptions,
): Promise<OperationalState> {
  return holder.send({
    type: 'resume.credit_refresh',
    trigger: options.trigger ?? 'monthly credit refresh confirmed',
    reconciledSpendUsd: options.reconciledSpendUsd,
    thresholdUsd: options.thresholdUsd,
  });
}
