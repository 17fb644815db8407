/**
 * `GET /api/operational-state/chain/verify` on the wire: its query (an incremental start
 * and expected heads) and its JSON body — the one mapping between `verifyChain`'s result
 * and JSON, used by the route and by the CLI reading through a running agent.
 */

import type { ChainGap, ChainHead, VerifyChainOptions, VerifyChainResult } from '../sinks/types.js';
import { parseChainHead } from '../sinks/verify.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';

/** The route's query parameters. */
const PARAMS = ['from', 'expect_head'] as const;

/**
 * Reads `?from=SEQ:HASH` (once: verify incrementally from that head) and
 * `?expect_head=SEQ:HASH` (repeatable: heads the chain must still extend).
 * @internal
 *
 * @example
 * parseVerifyQuery(new URLSearchParams('from=12:ab…&expect_head=9:cd…'));
 * // { from: { chain_seq: 12, hash: 'ab…' }, expectHeads: [{ chain_seq: 9, hash: 'cd…' }] }
 */
export function parseVerifyQuery(params: URLSearchParams): VerifyChainOptions {
  for (const key of new Set(params.keys())) {
    if (!(PARAMS as readonly string[]).includes(key)) {
      throw new OperationalStateInputError(
        key,
        key,
        `unknown query parameter ${quote(key)}; expected ${PARAMS.join(', ')}`,
      );
    }
  }
  const from = params.getAll('from');
  if (from.length > 1) {
    throw new OperationalStateInputError(
      'from',
      from,
      `from given ${from.length} times (${from.map((v) => quote(v)).join(', ')}); give it once`,
    );
  }
  const expect = params.getAll('expect_head').map((v) => parseChainHead(v, 'expect_head'));
  return {
    ...(from[0] !== undefined ? { from: parseChainHead(from[0], 'from') } : {}),
    ...(expect.length ? { expectHeads: expect } : {}),
  };
}

/** The query string for {@link parseVerifyQuery} (empty, or starting with `?`). @internal */
export function verifyQueryString(options: VerifyChainOptions = {}): string {
  const params = new URLSearchParams();
  if (options.from) params.append('from', `${options.from.chain_seq}:${options.from.hash}`);
  for (const h of options.expectHeads ?? []) {
    params.append('expect_head', `${h.chain_seq}:${h.hash}`);
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** The route's body for a result (snake_case, as the rest of the API). @internal */
export function verifyResultJson(
  workspaceId: string,
  r: VerifyChainResult,
): Record<string, unknown> {
  const common = {
    workspace_id: workspaceId,
    ok: r.ok,
    events: r.events,
    checked: r.checked,
    head: r.head,
    keyed_from: r.keyedFrom,
    gaps: r.gaps,
  };
  return r.ok
    ? common
    : { ...common, event_id: r.eventId, chain_seq: r.chainSeq, reason: r.reason };
}

/** The result back from the route's body (the CLI through a running agent). @internal */
export function verifyResultFromJson(body: Record<string, unknown>): VerifyChainResult {
  const common = {
    events: Number(body.events),
    checked: Number(body.checked ?? body.events),
    head: (body.head as ChainHead | null | undefined) ?? null,
    keyedFrom: (body.keyed_from as number | null | undefined) ?? null,
    gaps: (body.gaps as ChainGap[] | undefined) ?? [],
  };
  return body.ok === true
    ? { ok: true, ...common }
    : {
        ok: false,
        ...common,
        eventId: (body.event_id as string | null | undefined) ?? null,
        chainSeq: (body.chain_seq as number | null | undefined) ?? null,
        reason: String(body.reason),
      };
}
