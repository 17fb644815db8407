/** The holder's options, their defaults and their checks. */
import type { ActorOptions } from 'xstate';
import type { OperationalStateMachine } from '../../machines/operationalState.machine.js';
import type { Logger } from '../logger.js';
import type { EventSink } from '../sinks/types.js';
import type { OperationalState } from '../vocabulary.js';

export { positiveInt } from '../vocabulary.js';

export interface OperationalStateHolderOptions<S extends EventSink = EventSink> {
  /** Default: booting, no reasons; claim permission by state. */
  initial?: Partial<OperationalState>;
  /** Retries per gate per boot (default 4, i.e. 5 attempts). */
  retryBudget?: number;
  /** History ring size (default 10). */
  historySize?: number;
  /** How long a transition waits for each listener (default 5000 ms). */
  listenerTimeoutMs?: number;
  /** Passed to XState's `createActor` (e.g. the Stately inspector's `inspect`). */
  inspect?: ActorOptions<OperationalStateMachine>['inspect'];
  logger?: Logger;
  /** Clock for history timestamps and chain events (default `Date.now`). */
  now?: () => number;
  /**
   * Where every committed change's chain events go (SPEC §4): a sink registered as the
   * `chain` listener. Default: none.
   */
  sink?: S;
  /** The agent, stable across runs (default `'default'`); only with a `sink`. */
  agentId?: string;
  /** Unique per process run (default: host, pid, random); only with a `sink`. */
  instanceId?: string;
}

/** Counters a status page or metrics endpoint can read. */
export interface HolderStats {
  commits: number;
  rejected: number;
  listenerFailures: number;
  listenerTimeouts: number;
}

/** @internal */
export const defaults = {
  initial: {} as Partial<OperationalState>,
  retryBudget: 4,
  historySize: 10,
  listenerTimeoutMs: 5000,
  inspect: undefined as OperationalStateHolderOptions['inspect'],
  logger: console as Logger,
  now: Date.now as () => number,
  sink: undefined as EventSink | undefined,
  agentId: undefined as string | undefined,
  instanceId: undefined as string | undefined,
};

/**
 * @internal A clock's readings as UTC `YYYY-MM-DDTHH:MM:SSZ`, formatted once per second:
 * every change in the same second shares the text.
 */
export function secondsClock(now: () => number): () => string {
  let second = Number.NaN;
  let text = '';
  return () => {
    const ms = now();
    const s = Math.floor(ms / 1000);
    if (s !== second) {
      second = s;
      text = `${new Date(ms).toISOString().slice(0, 19)}Z`;
    }
    return text;
  };
}

/** @internal A copy without the `undefined` fields (so they fall back to defaults). */
export function stripUndefined<T extends object>(obj: T): T {
  const out = {} as T;
  for (const key of Object.keys(obj) as (keyof T)[]) {
    if (obj[key] !== undefined) out[key] = obj[key];
  }
  return out;
}
