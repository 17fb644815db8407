/**
 * Linking keyed events (SPEC §10), shared by a writer's own appends (`keyedAppender.ts`)
 * and a leader linking several writers' offers (`groupLink.ts`): validating a batch,
 * telling a retry from a reused instance id, and the v2 links themselves.
 * @internal
 */
import { randomUUID } from 'node:crypto';
import canonicalize from 'canonicalize';
import { quote } from '../vocabulary.js';
import { type ChainKey, ChainWriteError, isEmittedTimestamp, linkV2 } from './keyed.js';
import type { ChainEvent } from './types.js';

/** A stored event at a pair a batch wants, as read for comparing identities. @internal */
export interface Taken {
  chain_seq: number;
  workspace_id: string;
  agent_id: string;
  event_type: string;
  payload: unknown;
  occurred_at: string;
}

/** What an event is, for telling a retry from a reused instance id. */
export const identity = (e: Omit<Taken, 'chain_seq'>) =>
  canonicalize([e.workspace_id, e.agent_id, e.event_type, e.occurred_at, e.payload]) as string;

/** @internal */
export const pairKey = (instance: string, seq: number | string) => `${seq}\u0000${instance}`;

/** One event as the database will hold it (JSON-normalized payload). */
/** @internal */
export interface Prepared {
  readonly workspace_id: string;
  readonly agent_id: string;
  readonly instance_id: string;
  readonly seq: number;
  readonly event_type: string;
  readonly occurred_at: string;
  readonly payload: unknown;
}

/** Runs `fn` (a canonicalization) on `e`; an event with no canonical form is refused for good. */
export function canonical<T>(e: Prepared, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    // e.g. a lone surrogate: no canonical form, so no link — refused, not retried.
    throw new ChainWriteError(
      `${e.instance_id} seq ${e.seq} has no canonical JSON form: ${(err as Error).message}`,
      '22P02',
      undefined,
      { cause: err },
    );
  }
}

/** {@link identity} of a prepared event, computed when needed (only to compare a retry). */
const identities = new WeakMap<Prepared, string>();
export function identityOf(e: Prepared): string {
  let id = identities.get(e);
  if (id === undefined) {
    id = canonical(e, () => identity(e));
    identities.set(e, id);
  }
  return id;
}

/** Validates a batch (one workspace, linkable times and payloads): refusals are permanent. */
export function prepare(events: readonly ChainEvent[]): Prepared[] {
  const ws = events[0]?.workspace_id;
  return events.map((e) => {
    if (e.workspace_id !== ws) {
      throw new ChainWriteError(
        `one append holds one workspace: ${quote(ws)}, then ${quote(e.workspace_id)}`,
        '22023',
      );
    }
    if (!isEmittedTimestamp(e.occurred_at)) {
      throw new ChainWriteError(
        `occurred_at ${quote(e.occurred_at)} of ${e.instance_id} seq ${e.seq} is not a millisecond ISO-8601 UTC time`,
        '22007',
      );
    }
    return {
      workspace_id: e.workspace_id,
      agent_id: e.agent_id ?? 'default',
      instance_id: e.instance_id,
      seq: e.seq,
      event_type: e.event_type,
      occurred_at: e.occurred_at,
      payload: JSON.parse(JSON.stringify(e.payload)) as unknown,
    };
  });
}

/** @internal */
export const reused = (
  e: { instance_id: string; seq: number | string },
  chainSeq: number,
  ws: string,
) =>
  new ChainWriteError(
    `instance id reused: instance ${quote(e.instance_id)} seq ${e.seq} is already stored as another event ` +
      `(#${chainSeq} of workspace ${quote(ws)}); an instance id must be unique per run`,
    '23505',
    'event_log_instance_seq_key',
  );

/** A head as the chain has it: position 0 and no hash for an empty chain. */
/** @internal */
export interface KnownHead {
  readonly seq: number;
  readonly hash: string | null;
}

/** What a later event at the same `(instance_id, seq)` is compared with. @internal */
export interface Prior {
  readonly chainSeq: number;
  readonly ws: string;
  /** Its {@link identity}, computed when needed (only a repeated pair needs it). */
  id(): string;
}

/**
 * Links `batch` onto `head`: a new event id, position and HMAC each. A pair repeated in
 * the batch, or `known` from elsewhere (stored, or in an earlier offer), is a retry
 * (skipped) or another event (refused). `seen` holds the pairs this batch linked.
 */
export function link(
  key: ChainKey,
  batch: readonly Prepared[],
  head: KnownHead,
  known?: ReadonlyMap<string, Prior>,
) {
  const rows: Record<string, unknown>[] = [];
  const seen = new Map<string, Prior>();
  let seq = head.seq;
  let hash = head.hash;
  for (const e of batch) {
    const pair = pairKey(e.instance_id, e.seq);
    const prior = seen.get(pair) ?? known?.get(pair);
    if (prior) {
      if (prior.id() === identityOf(e)) continue;
      throw reused(e, prior.chainSeq, prior.ws);
    }
    const eventId = randomUUID();
    const linked = canonical(e, () =>
      linkV2(key, hash, { ...e, event_id: eventId, chain_seq: seq + 1 }),
    );
    rows.push({
      ...e,
      event_id: eventId,
      chain_seq: seq + 1,
      prev_event_hash: hash,
      this_event_hash: linked,
    });
    seen.set(pair, { chainSeq: seq + 1, ws: e.workspace_id, id: () => identityOf(e) });
    seq += 1;
    hash = linked;
  }
  return { rows, head: { seq, hash }, seen };
}

/** A CHECK's own message does not say which event it refused: name it (as migration 3 does). */
export function explainRefusal(err: unknown, rows: Record<string, unknown>[]): unknown {
  const e = err as { code?: string; constraint?: string; detail?: string; message?: string };
  if (e?.code !== '23514') return err;
  const id = /Failing row contains \(([0-9a-f-]{36}),/.exec(e.detail ?? '')?.[1];
  const refused = rows.filter((r) => r.event_id === id);
  const named = refused.length ? refused : rows;
  return new ChainWriteError(
    `event_log refused event type ${named.map((r) => String(r.event_type)).join(', ')} ` +
      `(instance ${String(named[0]!.instance_id)}, seq ${String(named[0]!.seq)}): ${e.message}`,
    '23514',
    e.constraint,
    { cause: err },
  );
}
