/**
 * The cockpit's options (part of `StatusAppOptions`): where the panel's keys of the
 * status payload come from, validated on creation; a bad one is an error naming it.
 */
import type { BootSummary } from '../boot/summary.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';

/** Who the agent is: the `agent` option. */
export interface AgentInfoOptions {
  /** Default: the instance's chain `agentId` (what `createOpstate({ agentId })` was given). */
  agentId?: string;
  /** Default: the instance's chain `instanceId`. */
  instanceId?: string;
  /** The agent's version (the CLI: the package's). */
  version?: string;
  /** When the agent started (default: when the app was created). */
  startedAt?: Date | number;
}

/** The claim coordinator, as the cockpit reads it (structural: `ClaimCoordinator`). */
export interface CoordinatorLike {
  readonly held:
    | {
        readonly id: string;
        readonly critical?: boolean;
        readonly attempts?: number;
        readonly lease?: { readonly owner: string; readonly expiresAt: Date };
      }
    | undefined;
}

/** The ticket poller, as the cockpit reads it (structural: `TicketPoller`). */
export interface PollerLike {
  readonly stats: Readonly<{ completed: number; failed: number; abandoned: number }>;
}

/** A ticket queue's counts (structural: the Postgres ticket source's `counts()`). */
export interface QueueLike {
  counts(): Promise<{ queued: number; claimed: number; done: number; failed: number }>;
}

/** The boot's summary, a promise of it, or a function returning either (asked until it does). */
export type BootSource =
  | BootSummary
  | PromiseLike<BootSummary>
  | (() => BootSummary | PromiseLike<BootSummary> | undefined);

/** The cockpit's sources, validated (see `resolveStatusOptions`). @internal */
export interface CockpitSources {
  readonly agent: AgentInfoOptions | undefined;
  readonly coordinator: CoordinatorLike | undefined;
  readonly poller: PollerLike | undefined;
  readonly queue: QueueLike | undefined;
  readonly boot: BootSource | undefined;
  readonly now: () => number;
}

/** The cockpit's options, as `StatusAppOptions` has them. */
export interface CockpitOptions {
  /** The agent's identity: the `agent` key (with it also `chain_store` and `history_times`). */
  agent?: AgentInfoOptions;
  /** The claim coordinator: the held claim and ticket in `claims`. */
  coordinator?: CoordinatorLike;
  /** The ticket poller: the tickets it completed and failed, in `claims`. */
  poller?: PollerLike;
  /** The ticket queue: its depth and tickets done, in `claims` (counted at most once a second). */
  queue?: QueueLike;
  /** The boot (what `bootOpstate` returns, or a function returning it): `boot`. */
  boot?: BootSource;
  /** Clock for `started_at`, the transition times and the queue counts (default `Date.now`). */
  now?: () => number;
}

function bad(field: string, value: unknown, expected: string): OperationalStateInputError {
  return new OperationalStateInputError(
    field,
    value,
    `${field} must be ${expected}, got ${quote(value)}`,
  );
}
const isObject = (v: unknown): v is Record<string, unknown> =>
  (typeof v === 'object' || typeof v === 'function') && v !== null;

/** @internal Validates the cockpit's options; a bad one is an error naming it. */
export function resolveCockpit(o: CockpitOptions): CockpitSources {
  const { agent, coordinator, poller, queue, boot, now = Date.now } = o;
  if (agent !== undefined) {
    if (!isObject(agent)) throw bad('agent', agent, 'an object');
    for (const k of ['agentId', 'instanceId', 'version'] as const) {
      const v = agent[k];
      if (v !== undefined && (typeof v !== 'string' || v === '')) {
        throw bad(`agent.${k}`, v, 'a non-empty string');
      }
    }
    const t = agent.startedAt;
    const ms = t instanceof Date ? t.getTime() : t;
    if (t !== undefined && (typeof ms !== 'number' || !Number.isFinite(ms))) {
      throw bad('agent.startedAt', t, 'a Date or a time in ms');
    }
  }
  if (coordinator !== undefined && !(isObject(coordinator) && 'held' in coordinator)) {
    throw bad('coordinator', coordinator, 'a claim coordinator (with `held`)');
  }
  if (poller !== undefined && !(isObject(poller) && isObject(poller.stats))) {
    throw bad('poller', poller, 'a ticket poller (with `stats`)');
  }
  if (queue !== undefined && !(isObject(queue) && typeof queue.counts === 'function')) {
    throw bad('queue', queue, 'a ticket queue with counts()');
  }
  if (boot !== undefined && !isObject(boot)) {
    throw bad('boot', boot, 'a boot summary, a promise of one, or a function returning either');
  }
  if (typeof now !== 'function') throw bad('now', now, 'a function returning ms');
  return { agent, coordinator, poller, queue, boot, now };
}
