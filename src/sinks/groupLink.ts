/**
 * Several keyed writers on one chain, linked together (migration 7, SPEC §10): a writer
 * that found the head moved offers its events and queues on the chain lock; whoever gets
 * the lock with its offer still open links every open offer in one batch.
 * @internal
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { type ChainKey, ChainWriteError } from './keyed.js';
import {
  explainRefusal,
  identity,
  link,
  type Prepared,
  type Prior,
  pairKey,
  type Taken,
} from './linking.js';
import type { SqlSession } from './sql.js';
import type { ChainHead } from './types.js';

/** A client checked out of a `pg.Pool`: the offer's session lock lives on it. */
interface PoolClient extends SqlSession {
  release(err?: Error | boolean): void;
}
/** @internal */
export interface OfferPool {
  connect(): Promise<PoolClient>;
}

/** A `pg.Pool` (one connection per checkout); PGlite (one session, `transaction`) is not. */
export function offerPool(session: SqlSession): OfferPool | undefined {
  const pool = session as SqlSession & Partial<OfferPool>;
  return typeof pool.connect === 'function' && typeof session.transaction !== 'function'
    ? (pool as OfferPool)
    : undefined;
}

/**
 * The offer's HMAC with the chain key, over the JSON text it stores: a leader links only
 * offers made by a holder of the key.
 * @internal
 */
export function offerMac(key: ChainKey, ws: string, text: string): string {
  return createHmac('sha256', key.secret)
    .update(`kora-opstate offer\n${ws}\n${text}`, 'utf8')
    .digest('hex');
}

/** The offer's events, when its MAC verifies. */
function verifiedEvents(key: ChainKey, ws: string, offer: Offer): Prepared[] | undefined {
  if (typeof offer.mac !== 'string' || typeof offer.events !== 'string') return undefined;
  const a = Buffer.from(offerMac(key, ws, offer.events), 'utf8');
  const b = Buffer.from(offer.mac, 'utf8');
  if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined;
  return JSON.parse(offer.events) as Prepared[];
}

interface Offer {
  offer_id: number | string;
  /** JSON text of the writer's events, as signed. */
  events: string;
  mac: string;
}

/** How an offer ended: stored (its last event's position, when it stored any) or refused. */
type Outcome =
  | {
      state: 'linked';
      result: { stored: number; head_seq: number | null; head_hash: string | null };
    }
  | { state: 'refused'; result: { code: string; message: string; constraint: string | null } };

interface Lead {
  state: 'lead';
  offer_id: number | string;
  head_seq: number | string | null;
  head_hash: string | null;
  offers: Offer[];
  taken: (Taken & { instance_id: string; seq: number | string })[];
}

type OfferAnswer = Lead | { state: 'linked' | 'refused' | 'lost'; result: Outcome['result'] };

const OFFER_SQL = 'CALL kora_opstate_offer($1, $2, $3, $4, NULL)';
const LINK_SQL = 'CALL kora_opstate_link_offers($1, $2, $3, $4::jsonb, $5::jsonb, $6, NULL)';

const refusal = (err: unknown): Outcome => {
  const e = err as { code?: unknown; message?: unknown; constraint?: unknown };
  return {
    state: 'refused',
    result: {
      code: typeof e?.code === 'string' ? e.code : '23000',
      message: String(e?.message ?? err),
      constraint: typeof e?.constraint === 'string' ? e.constraint : null,
    },
  };
};

/**
 * Links every offer the lead answer holds onto its head, in offer order: an offer with a
 * MAC that does not verify, a reused instance id, or one `refused` already is refused
 * whole; a retried event (already stored, or earlier in the batch) is left out.
 */
function plan(key: ChainKey, ws: string, lead: Lead, refused: ReadonlyMap<string, Outcome>) {
  const known = new Map<string, Prior>();
  for (const t of lead.taken) {
    let id: string;
    try {
      id = identity(t);
    } catch {
      id = ''; // a stored payload with no canonical form equals no new event
    }
    known.set(pairKey(t.instance_id, t.seq), {
      chainSeq: Number(t.chain_seq),
      ws: t.workspace_id,
      id: () => id,
    });
  }
  let seq = Number(lead.head_seq ?? 0);
  let hash = lead.head_hash;
  const rows: Record<string, unknown>[] = [];
  const owner = new Map<string, string>(); // event id or pair → offer id
  const outcomes = new Map<string, Outcome>();
  let unsigned = 0;
  for (const offer of lead.offers) {
    const oid = String(offer.offer_id);
    const already = refused.get(oid);
    if (already) {
      outcomes.set(oid, already);
      continue;
    }
    const events = verifiedEvents(key, ws, offer);
    if (events === undefined) {
      unsigned++;
      outcomes.set(
        oid,
        refusal(
          new ChainWriteError(
            `offer ${oid} is not signed with this chain key: not linked`,
            '28000',
          ),
        ),
      );
      continue;
    }
    try {
      const linked = link(key, events, { seq, hash }, known);
      for (const [pair, prior] of linked.seen) known.set(pair, prior);
      for (const r of linked.rows) {
        owner.set(String(r.event_id), oid);
        owner.set(pairKey(String(r.instance_id), Number(r.seq)), oid);
        rows.push(r);
      }
      const stored = linked.rows.length;
      outcomes.set(oid, {
        state: 'linked',
        result: {
          stored,
          head_seq: stored ? linked.head.seq : null,
          head_hash: stored ? linked.head.hash : null,
        },
      });
      ({ seq, hash } = linked.head);
    } catch (err) {
      outcomes.set(oid, refusal(err));
    }
  }
  return { rows, owner, outcomes, unsigned };
}

/** What `kora_opstate_link_offers` answers when event_log refuses an event. */
interface Refused {
  detail: string | null;
  code: string;
  constraint: string | null;
  message: string;
}

/** Which offer an event_log refusal names: the failing row's event id, or its key's pair. */
function refusedOffer(r: Refused, owner: Map<string, string>) {
  const detail = r.detail ?? '';
  const id = /Failing row contains \(([0-9a-f-]{36}),/.exec(detail)?.[1];
  if (id) return owner.get(id);
  const pair = /Key \(instance_id, seq\)=\((.*), (\d+)\) already exists/.exec(detail);
  return pair ? owner.get(pairKey(pair[1]!, Number(pair[2]))) : undefined;
}

const asResult = (o: Outcome): { stored: number; head: ChainHead | undefined } => {
  if (o.state === 'refused') {
    throw new ChainWriteError(o.result.message, o.result.code, o.result.constraint ?? undefined);
  }
  const r = o.result;
  return {
    stored: r.stored,
    head: r.head_seq === null ? undefined : { chain_seq: Number(r.head_seq), hash: r.head_hash! },
  };
};

/**
 * Appends `batch` by offering it (migration 7): answered by whoever linked it, or, as the
 * leader, links every open offer. `led` says how many offers this call linked as leader
 * (0 when another writer linked it): 1 means no one else was waiting. `unsigned`: offers
 * it refused because their MAC does not verify — someone without the key wrote them.
 * @internal
 */
export async function appendByOffer(
  pool: OfferPool,
  key: ChainKey,
  batch: readonly Prepared[],
  barrier: boolean,
): Promise<{ stored: number; head: ChainHead | undefined; led: number; unsigned: number }> {
  const ws = batch[0]!.workspace_id;
  const offered = JSON.stringify(batch);
  const mac = offerMac(key, ws, offered);
  const client = await pool.connect();
  // The session may hold the chain lock when anything fails: drop the connection, not
  // the lock into the pool.
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  (client as unknown as NodeJS.EventEmitter).on?.('error', onError);
  let outcome: Outcome | undefined;
  let led = 0;
  let unsigned = 0;
  try {
    for (let tries = 0; outcome === undefined; tries++) {
      const answer = (await client.query(OFFER_SQL, [ws, offered, mac, barrier])).rows[0]!
        .r as OfferAnswer;
      if (answer.state === 'lead') {
        led = answer.offers.length;
        ({ outcome, unsigned } = await lead(client, key, ws, answer, barrier));
      } else if (answer.state !== 'lost') {
        outcome = answer as Outcome;
      } else if (tries >= 2) {
        throw new Error(`offers of workspace ${ws} keep disappearing (is event_offer truncated?)`);
      }
    }
  } catch (err) {
    broken ??= err instanceof Error ? err : new Error(String(err));
    throw err;
  } finally {
    (client as unknown as NodeJS.EventEmitter).off?.('error', onError);
    client.release(broken ?? false);
  }
  return { ...asResult(outcome), led, unsigned };
}

/** Links the open offers (holding the lock), relinking without an offer event_log refuses. */
async function lead(
  client: PoolClient,
  key: ChainKey,
  ws: string,
  answer: Lead,
  barrier: boolean,
): Promise<{ outcome: Outcome; unsigned: number }> {
  const own = String(answer.offer_id);
  const refused = new Map<string, Outcome>();
  for (;;) {
    const { rows, owner, outcomes, unsigned } = plan(key, ws, answer, refused);
    const others = [...outcomes]
      .filter(([id]) => id !== own)
      .map(([offer_id, o]) => ({ offer_id, ...o }));
    const { r } = (
      await client.query(LINK_SQL, [
        ws,
        own,
        key.keyId,
        JSON.stringify(rows),
        JSON.stringify(others),
        barrier,
      ])
    ).rows[0]! as { r: { refused?: Refused } };
    if (!r.refused) return { outcome: outcomes.get(own)!, unsigned };
    const offer = refusedOffer(r.refused, owner);
    const err = Object.assign(new Error(r.refused.message), r.refused);
    if (offer === undefined || refused.has(offer)) {
      // Not one offer's fault that we can tell: retried (XX000 is not a refusal).
      throw new ChainWriteError(
        `event_log refused a linked batch (${r.refused.code}) and names no offer of it: ${r.refused.message}`,
        'XX000',
        r.refused.constraint ?? undefined,
        { cause: err },
      );
    }
    refused.set(offer, refusal(explainRefusal(err, rows)));
  }
}
