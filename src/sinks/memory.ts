/**
 * The in-memory sink: keeps appended chain events in an array. For tests and demos —
 * nothing survives the process.
 */
import { checkText, OperationalStateInputError, quote } from '../vocabulary.js';
import type { ChainEvent, EventSink } from './types.js';

export interface MemorySinkOptions {
  /** The workspace every event belongs to (default `'default'`). */
  workspaceId?: string;
}

/** An {@link EventSink} whose events are an inspectable array. */
export interface MemoryEventSink extends EventSink {
  /** Every appended event, in append order. */
  readonly events: ChainEvent[];
  /** `append` calls so far (one per committed change when fed by the emitter). */
  readonly appends: number;
  /** Forgets the events. */
  clear(): void;
}

/**
 * Creates an in-memory sink.
 *
 * @example
 * const sink = createMemorySink({ workspaceId: 'ws-1' });
 * const opstate = createOpstate({ sink }); // the chain listener is the instance's own
 * await opstate.send({ type: 'boot.gates_passed' });
 * sink.events.map((e) => e.event_type); // ['kora.operational_state.transitioned', 'kora.boot.ready']
 */
export function createMemorySink(options: MemorySinkOptions = {}): MemoryEventSink {
  const workspaceId = options.workspaceId ?? 'default';
  if (typeof workspaceId !== 'string' || workspaceId.trim() === '') {
    throw new OperationalStateInputError(
      'workspaceId',
      workspaceId,
      `workspaceId must be a non-empty string, got ${quote(workspaceId)}`,
    );
  }
  checkText(workspaceId, 'workspaceId'); // the same rule as the durable sinks
  const events: ChainEvent[] = [];
  let appends = 0;
  return {
    workspaceId,
    events,
    get appends() {
      return appends;
    },
    async append(batch: ChainEvent[]) {
      appends++;
      for (const e of batch) events.push(Object.freeze({ ...e }));
    },
    clear() {
      events.length = 0;
    },
  };
}
