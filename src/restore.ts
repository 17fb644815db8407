/**
 * Restore on restart (SPEC §10): a pause that waits for a person or a refresh — causes
 * `cost_limit`, `operator`, `substrate` — outlives the process. A new run of the same
 * agent reads its own chain after its gates pass and, if the agent was left in such a
 * pause, boots into it (booting → paused, row 9) instead of into ready.
 *
 * The pause that shutdown makes is a STOP-KORA pause (cause `stop_kora`): not restored.
 */
import type { ChainEvent } from './sinks/types.js';
import type { DegradationReason, PauseCause } from './vocabulary.js';

/** The pause causes a restart restores, and the reason each adds. */
export const PERSISTING_PAUSE_CAUSES: Readonly<Partial<Record<PauseCause, DegradationReason>>> =
  Object.freeze({ cost_limit: 'cost', operator: 'operator', substrate: 'substrate' });

const PERSISTING_REASONS: ReadonlySet<string> = new Set(Object.values(PERSISTING_PAUSE_CAUSES));

/** A pause found in an agent's chain, to be restored. */
export interface RestoredPause {
  /** The cause of the pause that began it. */
  readonly cause: PauseCause;
  /** The persisting reasons it holds (the cause's own among them), sorted. */
  readonly reasons: readonly DegradationReason[];
  /** The event that began it. */
  readonly instance_id: string;
  readonly seq: number;
  /** Its chain position, when stored (absent for an event still in the spool). */
  readonly chain_seq?: number;
  readonly trigger: string;
}

/** What restore reads of an agent's chain: its transitions, oldest first. */
export interface AgentChainReader {
  /**
   * The agent's `kora.operational_state.transitioned` events since it was last ready or
   * active (stored ones, then ones not stored yet), oldest first.
   */
  agentTransitions(agentId: string): Promise<readonly (ChainEvent & { chain_seq?: number })[]>;
}

function persisting(reasons: unknown): DegradationReason[] {
  return Array.isArray(reasons)
    ? (reasons.filter(
        (r) => typeof r === 'string' && PERSISTING_REASONS.has(r),
      ) as DegradationReason[])
    : [];
}

/**
 * The pause an agent was left in, from its transitions (oldest first), if it is one a
 * restart restores: the last pause with a persisting cause that no later change into
 * ready or active ended. A stop, a crash or a boot that never finished leaves it standing;
 * reasons removed while paused are dropped (the cause's own reason always stays).
 *
 * @example
 * findPersistingPause(events); // { cause: 'cost_limit', reasons: ['cost'], instance_id: 'h:42:ab', seq: 7, ... }
 */
export function findPersistingPause(
  transitions: readonly (ChainEvent & { chain_seq?: number })[],
): RestoredPause | undefined {
  let found: RestoredPause | undefined;
  for (const e of transitions) {
    if (e.event_type !== 'kora.operational_state.transitioned') continue;
    const p = e.payload as Record<string, unknown>;
    const from = p.from_primary_state;
    const to = p.to_primary_state;
    if (to === 'ready' || to === 'active') {
      found = undefined;
      continue;
    }
    const cause = p.pause_cause as PauseCause | undefined;
    const own = cause ? PERSISTING_PAUSE_CAUSES[cause] : undefined;
    if (to === 'paused' && from !== 'paused' && cause && own) {
      found = {
        cause,
        reasons: [...new Set([own, ...persisting(p.degradation_reasons)])].sort(),
        instance_id: e.instance_id,
        seq: e.seq,
        ...(e.chain_seq !== undefined ? { chain_seq: e.chain_seq } : {}),
        trigger: typeof p.trigger === 'string' ? p.trigger : '',
      };
      continue;
    }
    if (found && from === 'paused') {
      const own2 = PERSISTING_PAUSE_CAUSES[found.cause]!;
      found = {
        ...found,
        reasons: [...new Set([own2, ...persisting(p.degradation_reasons)])].sort(),
      };
    }
  }
  return found;
}

/**
 * Reads `agentId`'s chain through `reader` (the shipped durable sinks are readers) and
 * finds the pause to restore, if any.
 *
 * @example
 * const opstate = createOpstate({ sink, agentId: 'worker-1' });
 * const summary = await bootOpstate(opstate, { gates, restore: () => readPersistingPause(sink, 'worker-1') });
 * summary.result; // 'paused' when a cost, operator or substrate pause stood at the last stop
 */
export async function readPersistingPause(
  reader: AgentChainReader,
  agentId: string,
): Promise<RestoredPause | undefined> {
  return findPersistingPause(await reader.agentTransitions(agentId));
}
