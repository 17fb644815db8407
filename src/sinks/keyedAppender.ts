/**
 * The keyed sink's writer (SPEC §10): it links a batch with the chain key (`keyed.ts`)
 * onto the head it knows and stores it, optimistically in one statement; when writers
 * contend, through offers linked together (Postgres) or under the chain lock (PGlite); a
 * retried event is skipped, a reused instance id refused.
 */
import { appendByOffer, type OfferPool, offerPool } from './groupLink.js';
import type { ChainKey } from './keyed.js';
import {
  explainRefusal,
  identity,
  identityOf,
  type KnownHead,
  link,
  type Prepared,
  pairKey,
  prepare,
  reused,
  type Taken,
} from './linking.js';
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

/**
 * Committed synchronously: only a writer that is alone appends this way, so no one waits
 * on the lock behind its flush (migration 4's `_async` twin is no longer called).
 */
const APPEND_KEYED =
  'SELECT kora_opstate_append_keyed($1::bigint, $2::text, $3::text, $4::jsonb) AS r';

/** What an append stored, the head after it, and whether it is flushed already. @internal */
export interface KeyedAppend {
  stored: number;
  head: ChainHead | undefined;
  durable: boolean;
  /** Offers it refused as leader, not signed with the key (see `groupLink.ts`). */
  unsigned?: number;
}

/** Optimistic tries (one statement each) before appending under an explicit lock. */
const OPTIMISTIC_TRIES = 2;

/** Offers in a row linked alone before a writer tries one statement again. */
const ALONE_TO_UNCONTEND = 8;

/**
 * A keyed sink's writer. It links each batch onto the head it knows and stores it with
 * one statement (`kora_opstate_append_keyed`, migration 3), which takes the chain lock
 * and stores the batch only if that is still the head — the common case, one round trip.
 * When the head moved (another writer appended):
 * - on a `pg.Pool`, it offers the batch (migration 7, `groupLink.ts`) and keeps offering
 *   while writers contend: the writers of a chain are then linked in batches, one commit
 *   each. Both commit synchronously: no writer waits on the lock behind another's flush
 *   (contended writers share one), so no WAL barrier is needed after them;
 * - on one session (PGlite), it relinks; after {@link OPTIMISTIC_TRIES} it appends in one
 *   transaction holding the lock while it links, so contention cannot starve it.
 * An `(instance_id, seq)` already stored is skipped when it is the same event (a retry)
 * and refused (23505) otherwise.
 * @internal
 */
export class KeyedAppender {
  readonly #key: ChainKey;
  /** The head after the last append, or as last learned; undefined when unknown. */
  #known: KnownHead | undefined;
  /** The head moved under its last append (another writer): it offers instead (pools only). */
  #contended = false;
  /** Offers in a row it linked alone (see {@link ALONE_TO_UNCONTEND}). */
  #alone = 0;

  constructor(key: ChainKey) {
    this.#key = key;
  }

  /**
   * Every commit is synchronous (`durable` when it stored something). `barrier`: the
   * server runs the WAL barrier, so a group of offers commits asynchronously and each
   * writer waits for the flush with no lock held (see `groupLink.ts`).
   */
  async append(
    session: SqlSession,
    events: readonly ChainEvent[],
    barrier = false,
  ): Promise<KeyedAppend> {
    let batch = prepare(events);
    const pool = offerPool(session);
    try {
      // While writers contend, the head this writer knows is stale: offer at once.
      if (pool && this.#contended) return await this.#offer(pool, batch, barrier);
      const tries = pool ? 1 : OPTIMISTIC_TRIES;
      for (let attempt = 0; attempt < tries && batch.length > 0; attempt++) {
        const expected = this.#known ?? { seq: 0, hash: null };
        const { rows, head } = link(this.#key, batch, expected);
        if (rows.length === 0) return { stored: 0, head: undefined, durable: false };
        let r: {
          stored: number;
          head_seq?: number | null;
          head_hash?: string | null;
          taken?: { instance_id: string; seq: number }[];
        };
        try {
          ({
            rows: [{ r }],
          } = await session.query(APPEND_KEYED, [
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
          return {
            stored: r.stored,
            head: { chain_seq: head.seq, hash: head.hash! },
            durable: true,
          };
        }
        // Not the head any more, or some pairs are stored already (the same events: a
        // retry — another event there is refused by the function).
        this.#known = { seq: Number(r.head_seq ?? 0), hash: r.head_hash ?? null };
        const taken = new Set((r.taken ?? []).map((t) => pairKey(t.instance_id, t.seq)));
        batch = batch.filter((e) => !taken.has(pairKey(e.instance_id, e.seq)));
      }
      // All of it was stored before: a retry, whose first commit the barrier covers.
      if (batch.length === 0) return { stored: 0, head: undefined, durable: false };
      if (pool) {
        this.#contended = true;
        return await this.#offer(pool, batch, barrier);
      }
      return { ...(await this.#appendLocked(session, batch)), durable: true };
    } catch (err) {
      this.#known = undefined;
      throw err;
    }
  }

  /** Through an offer (migration 7): linked in a batch with the other writers' offers. */
  async #offer(pool: OfferPool, batch: Prepared[], barrier: boolean): Promise<KeyedAppend> {
    const r = await appendByOffer(pool, this.#key, batch, barrier);
    // Leading its own offer alone, again and again: no one contends any more, and one
    // statement will do again. (Once alone proves little: two writers often take turns.)
    this.#alone = r.led === 1 ? this.#alone + 1 : 0;
    this.#contended = this.#alone < ALONE_TO_UNCONTEND;
    this.#known = r.head ? { seq: r.head.chain_seq, hash: r.head.hash } : undefined;
    return { stored: r.stored, head: r.head, durable: true, unsigned: r.unsigned };
  }

  /** The same, holding the chain lock while linking: one transaction, five round trips. */
  #appendLocked(
    session: SqlSession,
    batch: Prepared[],
  ): Promise<{ stored: number; head: ChainHead | undefined }> {
    const ws = batch[0]!.workspace_id;
    return inTransaction(session, async (tx) => {
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
