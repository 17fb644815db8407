/**
 * What `verifyChain` answers for an intact chain of `events` events, checked in full:
 * the head at its last position, no gaps (`keyedFrom` null: unkeyed, unless given).
 */
import { expect } from 'vitest';

export function chainOk(
  events: number,
  over: { keyedFrom?: number | null; checked?: number } = {},
) {
  return {
    ok: true,
    events,
    checked: over.checked ?? events,
    head:
      events === 0 ? null : { chain_seq: events, hash: expect.stringMatching(/^[0-9a-f]{64}$/) },
    keyedFrom: over.keyedFrom ?? null,
    gaps: [],
  };
}
