/**
 * Fleet control commands (SPEC §12): their shape, and their authentication with the chain
 * key (§10). A command row carries an HMAC-SHA256 over everything that decides what it
 * does — id, workspace, target, action, arguments, issuer, issue and expiry times — made
 * with the workspace's chain key, which never enters the database. An agent recomputes it
 * before applying: a row a database writer without the key inserted, altered or copied
 * under another id does not verify, and is refused. Outcome rows are keyed the same way,
 * so `kora-opstate control` can tell an agent's answer from a writer's.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import canonicalize from 'canonicalize';
import { type ChainKey, createChainKey } from '../sinks/keyed.js';
import {
  MAX_TRIGGER_LENGTH,
  OperationalStateInputError,
  PAUSE_CAUSES,
  type PauseCause,
  type PrimaryState,
  quote,
} from '../vocabulary.js';

/** What a command asks of an agent. */
export const CONTROL_ACTIONS = ['pause', 'reset', 'credit-refresh', 'stop'] as const;
export type ControlAction = (typeof CONTROL_ACTIONS)[number];

/** The channel commands are announced on (Kora's row 11 names it). */
export const CONTROL_CHANNEL = 'kora_control';

/** The chain event of a command an agent refused or let expire. */
export const CONTROL_REFUSED_EVENT = 'kora.control.refused';

/** How long a command waits for an agent that is down (default; `--ttl-ms`). */
export const DEFAULT_COMMAND_TTL_MS = 10 * 60_000;

/** A command's arguments (snake_case, as stored). */
export interface ControlArgs {
  /** `pause`: the pause cause (default `operator`). */
  readonly cause?: PauseCause;
  /** Free text for the transition's trigger (after the command's own prefix). */
  readonly trigger?: string;
  /** `credit-refresh`: the reconciled spend and the threshold it must stay under. */
  readonly reconciled_spend_usd?: number;
  readonly threshold_usd?: number;
}

/** One command row as read back. */
export interface ControlCommand {
  readonly command_id: number;
  readonly workspace_id: string;
  /** null: every agent of the workspace. */
  readonly target_agent: string | null;
  readonly action: string;
  readonly args: Readonly<Record<string, unknown>>;
  readonly issued_by: string;
  readonly issued_at: Date;
  readonly expires_at: Date;
  readonly key_id: string;
  readonly mac: string;
}

/** What an agent did with a command. */
export type ControlOutcomeKind = 'applied' | 'refused' | 'expired';

/** One (command, agent) outcome. */
export interface ControlOutcome {
  readonly command_id: number;
  readonly agent_id: string;
  readonly instance_id: string;
  readonly outcome: ControlOutcomeKind;
  /** Refused: the 409 reason, or why the row did not verify; expired: when it expired. */
  readonly reason: string | null;
  readonly from_state: PrimaryState | null;
  readonly to_state: PrimaryState | null;
}

/** @internal The chain key as a command key (the same key id as the chain's links). */
export function controlKey(key: string | Uint8Array | ChainKey): ChainKey {
  return typeof key === 'object' && 'secret' in key ? key : createChainKey(key);
}

function hmac(key: ChainKey, parts: unknown[]): string {
  return createHmac('sha256', key.secret)
    .update(canonicalize(parts) ?? '')
    .digest('hex');
}

/** @internal The MAC of a command row. */
export function commandMac(key: ChainKey, c: Omit<ControlCommand, 'mac' | 'key_id'>): string {
  return hmac(key, [
    'kora-control-v1',
    String(c.command_id),
    c.workspace_id,
    c.target_agent,
    c.action,
    c.args,
    c.issued_by,
    c.issued_at.getTime(),
    c.expires_at.getTime(),
  ]);
}

/** @internal The MAC of an outcome row. */
export function outcomeMac(key: ChainKey, o: ControlOutcome): string {
  return hmac(key, [
    'kora-control-outcome-v1',
    String(o.command_id),
    o.agent_id,
    o.instance_id,
    o.outcome,
    o.reason,
    o.from_state,
    o.to_state,
  ]);
}

/** Constant-time comparison of two hex MACs. */
export function sameMac(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Why a command row must not be applied (undefined when it verifies): another key, or a
 * MAC that does not match what the row says.
 */
export function commandForgery(key: ChainKey, c: ControlCommand): string | undefined {
  if (c.key_id !== key.keyId) {
    return `command #${c.command_id} is signed with key id ${quote(c.key_id)}, this agent's chain key is ${key.keyId}: inserted or altered without the chain key`;
  }
  if (!sameMac(c.mac, commandMac(key, c))) {
    return `command #${c.command_id} does not verify with the chain key (key id ${key.keyId}): inserted or altered without it`;
  }
  return undefined;
}

/** Validates an action name. */
export function parseControlAction(value: unknown, field = 'action'): ControlAction {
  if (!CONTROL_ACTIONS.includes(value as ControlAction)) {
    throw new OperationalStateInputError(
      field,
      value,
      `invalid ${field} ${quote(value)}: expected one of ${CONTROL_ACTIONS.join(', ')}`,
    );
  }
  return value as ControlAction;
}

function usd(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new OperationalStateInputError(
      field,
      value,
      `invalid ${field} ${quote(value)}: a non-negative amount in USD`,
    );
  }
  return value;
}

/**
 * The arguments an action takes, checked: a pause's cause, a credit refresh's two figures
 * (both required), an optional trigger text; anything else is refused, naming it.
 */
export function parseControlArgs(action: ControlAction, args: ControlArgs): ControlArgs {
  const out: Record<string, unknown> = {};
  if (args.trigger !== undefined) {
    if (typeof args.trigger !== 'string' || args.trigger.length > MAX_TRIGGER_LENGTH - 64) {
      throw new OperationalStateInputError(
        'trigger',
        args.trigger,
        `invalid trigger ${quote(args.trigger)}: text of at most ${MAX_TRIGGER_LENGTH - 64} characters`,
      );
    }
    out.trigger = args.trigger;
  }
  if (args.cause !== undefined) {
    if (action !== 'pause') {
      throw new OperationalStateInputError(
        'cause',
        args.cause,
        `a cause is for pause, not ${action}`,
      );
    }
    if (!PAUSE_CAUSES.includes(args.cause)) {
      throw new OperationalStateInputError(
        'cause',
        args.cause,
        `invalid cause ${quote(args.cause)}: expected one of ${PAUSE_CAUSES.join(', ')}`,
      );
    }
    out.cause = args.cause;
  }
  const spend = args.reconciled_spend_usd;
  const threshold = args.threshold_usd;
  if (action === 'credit-refresh') {
    out.reconciled_spend_usd = usd(spend, 'reconciled_spend_usd');
    out.threshold_usd = usd(threshold, 'threshold_usd');
  } else if (spend !== undefined || threshold !== undefined) {
    throw new OperationalStateInputError(
      spend !== undefined ? 'reconciled_spend_usd' : 'threshold_usd',
      spend ?? threshold,
      `spend and threshold figures are for credit-refresh, not ${action}`,
    );
  }
  return out as ControlArgs;
}

/**
 * The domain event a verified command sends, its trigger naming the command:
 * `kora_control #<id> <action>: <text>`.
 */
export function controlEvent(c: ControlCommand): Record<string, unknown> {
  const args = c.args as ControlArgs;
  const text = args.trigger ?? `by ${c.issued_by}`;
  const trigger = `kora_control #${c.command_id} ${c.action}: ${text}`.slice(0, MAX_TRIGGER_LENGTH);
  switch (c.action as ControlAction) {
    case 'pause':
      return { type: 'pause', cause: args.cause ?? 'operator', trigger };
    case 'reset':
      return { type: 'resume.operator_reset', trigger };
    case 'credit-refresh':
      return {
        type: 'resume.credit_refresh',
        reconciledSpendUsd: args.reconciled_spend_usd,
        thresholdUsd: args.threshold_usd,
        trigger,
      };
    case 'stop':
      return { type: 'stop', trigger };
    default:
      throw new OperationalStateInputError('action', c.action, `unknown action ${quote(c.action)}`);
  }
}
