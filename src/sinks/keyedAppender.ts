/**
 * The keyed sink's writer (SPEC §10): it links a batch with the chain key (`keyed.ts`)
 * onto the head it knows and stores it, optimistically in one statement, else under the
 * chain lock; a retried event is skipped, a reused instance id refused.
 */
import { randomUUID } from 'node:crypto';
import canonicalize from 'canonicalize';
import { quote } from '../vocabulary.js';
import { type ChainKey, ChainWriteError, isEmittedTimestamp, linkV2 } from './keyed.js';
import { CHAIN_LOCK_CLASS, LINK_V2, type SqlSession } from './sql.js';
import { inTransaction } from './transaction.js';
import type { ChainEvent, ChainHead } from './types.js';

const MS = `'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'`;

/** The head, and the stored events at the batch's (instance_id, seq) pairs: one round trip. */
const HEAD_AND_TAKEN_SQL = `WITH head AS (
    SELECT chain_seq, this_event_hash FROM event_log
     WHERE workspace_id = $1 ORDER BY chain_seq DESC LIMIT 1)
  SELECT true AS is_head, chain_seq, this_event_hash, NULL::text AS instance_id, NULL::bigint AS seq,
         NULL::text AS workspace_id, NULL::text AS agent_id, NULL::text AS event_type,
         NULL::jsonb AS payload, NULL::text AS occurred_at
    FROM head
  UNION ALL
  SELECT false, l.chain_seq, NULL, l.instance_id, l.seq, l.workspace_id, l.agent_id, l.event_type,
         l.payload, to_char(l.occurred_at AT TIME ZONE 'UTC', ${MS})
    FROM unnest($2::text[], $3::bigint[]) AS k(instance_id, seq)
    JOIN event_log l ON l.instance_id = k.instance_id AND l.seq = k.seq`;

const INSERT_SQL = `INSERT INTO event_log (event_id, workspace_id, agent_id, instance_id, seq, event_type,
    payload, occurred_at, chain_seq, prev_event_hash, this_event_hash, link_alg, key_id)
  SELECT r.event_id, r.workspace_id, r.agent_id, r.instance_id, r.seq, r.event_type, r.payload,
         r.occurred_at, r.chain_seq, r.prev_event_hash, r.this_event_hash, '${LINK_V2}', $2
    FROM jsonb_to_recordset($1::jsonb) AS r(event_id uuid, workspace_id text, agent_id text,
      instance_id text, seq bigint, event_type text, payload jsonb, occurred_at timestamptz,
      chain_seq bigint, prev_event_hash text, this_event_hash text)`;

interface Taken {
  chain_seq: number;
  workspace_id: string;
  agent_id: string;
  event_type: string;
  payload: unknown;
  occurred_at: string;
}

/** What an event is, for telling a retry from a reused instance id. */
const identity = (e: Omit<Taken, 'chain_seq'>) =>
  canonicalize([e.workspace_id, e.agent_id, e.event_type, e.occurred_at, e.payload]) as string;

const pairKey = (instance: string, seq: number | string) => `${seq}\u0000${instance}`;

/** One event as the database will hold it (JSON-normalized payload). */
interface Prepared {
  readonly workspace_id: string;
  readonly agent_id: string;
  readonly instance_id: string;
  readonly seq: number;
  readonly event_type: string;
  readonly occurred_at: string;
  readonly payload: unknown;
}

/** Runs `fn` (a canonicalization) on `e`; an event with no canonical form is refused for good. */
function canonical<T>(e: Prepared, fn: () => T): T {
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
function identityOf(e: Prepared): string {
  let id = identities.get(e);
  if (id === undefined) {
    id = canonical(e, () => identity(e));
    identities.set(e, id);
  }
  return id;
}

/** Validates a batch (one workspace, linkable times and payloads): refusals are permanent. */
function prepare(events: readonly ChainEvent[]): Prepared[] {
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

const reused = (e: { instance_id: string; seq: number | string }, chainSeq: number, ws: string) =>
  new ChainWriteError(
    `instance id reused: instance ${quote(e.instance_id)} seq ${e.seq} is already stored as another event ` +
      `(#${chainSeq} of workspace ${quote(ws)}); an instance id must be unique per run`,
    '23505',
    'event_log_instance_seq_key',
  );

/** A head as the chain has it: position 0 and no hash for an empty chain. */
interface KnownHead {
  readonly seq: number;
  readonly hash: string | null;
}

/**
 * Links `batch` onto `head`: a new event id, position and HMAC each. A pair repeated in
 * the batch is a retry (skipped) or another event (refused).
 */
function link(key: ChainKey, batch: readonly Prepared[], head: KnownHead) {
  const rows: Record<string, unknown>[] = [];
  const seen = new Map<string, { event: Prepared; chainSeq: number }>();
  let seq = head.seq;
  let hash = head.hash;
  for (const e of batch) {
    const pair = pairKey(e.instance_id, e.seq);
    const prior = seen.get(pair);
    if (prior) {
      if (identityOf(prior.event) === identityOf(e)) continue;
      throw reused(e, prior.chainSeq, e.workspace_id);
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
    seen.set(pair, { event: e, chainSeq: seq + 1 });
    seq += 1;
    hash = linked;
  }
  return { rows, head: { seq, hash } };
}

const APPEND_KEYED_SQL = (fn: string) =>
  `SELECT ${fn}($1::bigint, $2::text, $3::text, $4::jsonb) AS r`;
const APPEND_KEYED = APPEND_KEYED_SQL('kora_opstate_append_keyed');
/** Committing asynchronously (migration 4): the caller runs its WAL barrier next. */
const APPEND_KEYED_ASYNC = APPEND_KEYED_SQL('kora_opstate_append_keyed_async');

/** Optimistic tries (one statement each) before appending under an explicit lock. */
const OPTIMISTIC_TRIES = 2;

/**
 * A keyed sink's writer. It links each batch onto the head it knows and stores it with
 * one statement (`kora_opstate_append_keyed`, migration 3), which takes the chain lock
 * and stores the batch only if that is still the head — the common case, one round trip.
 * Otherwise it learns the head (another writer appended) and relinks; after
 * {@link OPTIMISTIC_TRIES} it appends in one transaction holding the lock while it links
 * (BEGIN, lock, read, insert, COMMIT), so contention cannot starve it. An
 * `(instance_id, seq)` already stored is skipped when it is the same event (a retry) and
 * refused (23505) otherwise.
 * @internal
 */
export class KeyedAppender {
  readonly #key: ChainKey;
  /** The head after the last append, or as last learned; undefined when unknown. */
  #known: KnownHead | undefined;

  constructor(key: ChainKey) {
    this.#key = key;
  }

  /** `asyncCommit`: commit without waiting for the WAL flush (the caller then waits for it). */
  async append(
    session: SqlSession,
    events: readonly ChainEvent[],
    asyncCommit = false,
  ): Promise<{ stored: number; head: ChainHead | undefined }> {
    let batch = prepare(events);
    try {
      for (let attempt = 0; attempt < OPTIMISTIC_TRIES && batch.length > 0; attempt++) {
        const expected = this.#known ?? { seq: 0, hash: null };
        const { rows, head } = link(this.#key, batch, expected);
        if (rows.length === 0) return { stored: 0, head: undefined };
        let r: {
          stored: number;
          head_seq?: number | null;
          head_hash?: string | null;
          taken?: { instance_id: string; seq: number }[];
        };
        try {
          ({
            rows: [{ r }],
          } = await session.query(asyncCommit ? APPEND_KEYED_ASYNC : APPEND_KEYED, [
            expected.seq === 0 ? null : expected.seq,
            expected.hash,
            this.#key.keyId,
            JSON.stringify(rows),
          ]));
        } catch (err) {
          throw explainRefusal(err, rows);
        }
        if (r.stored > 0) {
          this.#known = head;
          return { stored: r.stored, head: { chain_seq: head.seq, hash: head.hash! } };
        }
        // Not the head any more, or some pairs are stored already (the same events: a
        // retry — another event there is refused by the function).
        this.#known = { seq: Number(r.head_seq ?? 0), hash: r.head_hash ?? null };
        const taken = new Set((r.taken ?? []).map((t) => pairKey(t.instance_id, t.seq)));
        batch = batch.filter((e) => !taken.has(pairKey(e.instance_id, e.seq)));
      }
      if (batch.length === 0) return { stored: 0, head: undefined };
      return await this.#appendLocked(session, batch, asyncCommit);
    } catch (err) {
      this.#known = undefined;
      throw err;
    }
  }

  /** The same, holding the chain lock while linking: one transaction, five round trips. */
  #appendLocked(
    session: SqlSession,
    batch: Prepared[],
    asyncCommit: boolean,
  ): Promise<{ stored: number; head: ChainHead | undefined }> {
    const ws = batch[0]!.workspace_id;
    return inTransaction(session, async (tx) => {
      if (asyncCommit) await tx.query('SET LOCAL synchronous_commit = off');
      await tx.query(`SELECT pg_advisory_xact_lock(${CHAIN_LOCK_CLASS}, hashtext($1))`, [ws]);
      const { rows } = await tx.query(HEAD_AND_TAKEN_SQL, [
        ws,
        batch.map((e) => e.instance_id),
        batch.map((e) => e.seq),
      ]);
      let head: KnownHead = { seq: 0, hash: null };
      const taken = new Map<string, Taken & { key: string }>();
      for (const r of rows) {
        if (r.is_head) {
          head = { seq: Number(r.chain_seq), hash: r.this_event_hash };
          continue;
        }
        const t = { ...r, chain_seq: Number(r.chain_seq) } as Taken;
        let stored: string;
        try {
          stored = identity(t);
        } catch {
          stored = ''; // a stored payload with no canonical form equals no new event
        }
        taken.set(pairKey(r.instance_id, r.seq), { ...t, key: stored });
      }
      const fresh = batch.filter((e) => {
        const prior = taken.get(pairKey(e.instance_id, e.seq));
        if (!prior) return true;
        if (prior.key === identityOf(e)) return false; // a retry of a stored event
        throw reused(e, prior.chain_seq, prior.workspace_id);
      });
      const linked = link(this.#key, fresh, head);
      this.#known = head;
      if (linked.rows.length === 0) return { stored: 0, head: undefined };
      try {
        await tx.query(INSERT_SQL, [JSON.stringify(linked.rows), this.#key.keyId]);
      } catch (err) {
        throw explainRefusal(err, linked.rows);
      }
      this.#known = linked.head;
      return {
        stored: linked.rows.length,
        head: { chain_seq: linked.head.seq, hash: linked.head.hash! },
      };
    });
  }
}

/** A CHECK's own message does not say which event it refused: name it (as migration 3 does). */
function explainRefusal(err: unknown, rows: Record<string, unknown>[]): unknown {
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
