/**
 * Chain verification (SPEC §10), shared by both durable sinks: walks a workspace's chain
 * by `chain_seq` and names the first event that does not hold.
 *
 * - positions are contiguous from 1 (a removed event leaves a gap);
 * - each `prev_event_hash` is the previous event's `this_event_hash`;
 * - a `sha256-v1` event recomputes (in SQL) to its hash; once a keyed event appears, a
 *   later unkeyed one fails (an append or insert by someone without the key);
 * - a `hmac-sha256-v2` event verifies with the chain key (a writer without the key
 *   cannot forge one); without the key, or with another, the failure says so;
 * - anchors: an incremental run's starting head, and any expected head, must still be
 *   in the chain with the same hash — else the tail was truncated or rewritten.
 */
import { OperationalStateInputError, quote } from '../vocabulary.js';
import { type ChainKey, linkV2 } from './keyed.js';
import {
  CHAIN_GAP_EVENT,
  GAPS_SQL,
  KEYED_FROM_SQL,
  LINK_V1,
  LINK_V2,
  ROWS_AT_SQL,
  type SqlSession,
  VERIFY_PAGE,
  VERIFY_SQL,
} from './sql.js';
import type { ChainGap, ChainHead, VerifyChainOptions, VerifyChainResult } from './types.js';

const HASH = /^[0-9a-f]{64}$/;

/** Validates a head given by a caller (`field` names it in the error). @internal */
export function checkChainHead(value: unknown, field: string): ChainHead {
  const h = value as Partial<ChainHead> | null;
  if (
    h === null ||
    typeof h !== 'object' ||
    !Number.isSafeInteger(h.chain_seq) ||
    (h.chain_seq as number) < 1 ||
    typeof h.hash !== 'string' ||
    !HASH.test(h.hash)
  ) {
    throw new OperationalStateInputError(
      field,
      value,
      `${field} must be { chain_seq: a positive integer, hash: 64 lowercase hex }, got ${quote(value)}`,
    );
  }
  return { chain_seq: h.chain_seq as number, hash: h.hash };
}

/**
 * Parses `SEQ:HASH` (what `verify-chain` prints as a head) into a {@link ChainHead}.
 *
 * @example
 * parseChainHead('1200:9f86d0…'); // { chain_seq: 1200, hash: '9f86d0…' }
 */
export function parseChainHead(text: string, field = 'head'): ChainHead {
  const m = /^#?(\d{1,15}):([0-9a-fA-F]{64})$/.exec(text.trim());
  if (!m || Number(m[1]) < 1) {
    throw new OperationalStateInputError(
      field,
      text,
      `invalid ${field} ${quote(text)}: expected SEQ:HASH (a chain position from 1, a colon, the 64-hex hash there)`,
    );
  }
  return { chain_seq: Number(m[1]), hash: m[2]!.toLowerCase() };
}

/** `SEQ:HASH`, the form {@link parseChainHead} reads. */
export const formatChainHead = (h: ChainHead): string => `${h.chain_seq}:${h.hash}`;

const short = (hash: string | null | undefined) => (hash ? `${hash.slice(0, 12)}…` : 'none');

interface Row {
  event_id: string;
  chain_seq: number | string;
  prev_event_hash: string | null;
  this_event_hash: string;
  link_alg: string;
  key_id: string | null;
  workspace_id: string;
  agent_id: string;
  instance_id: string;
  seq: number | string;
  event_type: string;
  recomputed: string | null;
  occurred_at: string | null;
  payload: unknown;
}

function gapOf(chainSeq: number, payload: unknown): ChainGap {
  const p = (payload ?? {}) as Record<string, unknown>;
  return {
    chain_seq: chainSeq,
    instance_id: String(p.instance_id ?? ''),
    from_seq: Number(p.from_seq),
    to_seq: Number(p.to_seq),
    dropped: Number(p.dropped),
    ...(typeof p.reason === 'string' ? { reason: p.reason } : {}),
  };
}

/** What verification is given besides the session. @internal */
export interface VerifyContext extends VerifyChainOptions {
  /** The chain key, when the verifier holds it. */
  key?: ChainKey;
  /** A head the verifier itself appended (the running sink's): checked like `expectHeads`. */
  ownHead?: ChainHead;
}

/**
 * Verifies `workspaceId`'s chain; see the module comment for the rules.
 * @internal Use a sink's `verifyChain`.
 */
export async function verifySqlChain(
  session: SqlSession,
  workspaceId: string,
  context: VerifyContext = {},
): Promise<VerifyChainResult> {
  const from = context.from === undefined ? undefined : checkChainHead(context.from, 'from');
  if (context.expectHeads !== undefined && !Array.isArray(context.expectHeads)) {
    throw new OperationalStateInputError(
      'expectHeads',
      context.expectHeads,
      `expectHeads must be an array of { chain_seq, hash }, got ${quote(context.expectHeads)}`,
    );
  }
  const anchors = (context.expectHeads ?? []).map((h, i) => checkChainHead(h, `expectHeads[${i}]`));
  if (context.ownHead) anchors.push(context.ownHead);
  const key = context.key;

  let after = 0;
  let prevHash: string | null = null;
  let keyedFrom: number | null = null;
  let checked = 0;
  const gaps: ChainGap[] = [];
  const summary = () => ({
    events: after,
    checked,
    head: after > 0 ? { chain_seq: after, hash: prevHash! } : null,
    keyedFrom,
    gaps: [...gaps],
  });
  const broken = (
    eventId: string | null,
    chainSeq: number | null,
    reason: string,
  ): VerifyChainResult => ({ ok: false, ...summary(), eventId, chainSeq, reason });

  const rowsAt = async (seqs: number[]) => {
    const { rows } = await session.query(ROWS_AT_SQL, [workspaceId, seqs]);
    return new Map(
      (
        rows as {
          event_id: string;
          chain_seq: number | string;
          this_event_hash: string;
          link_alg: string;
        }[]
      ).map((r) => [Number(r.chain_seq), r]),
    );
  };
  const noLongerExtends = (
    h: ChainHead,
    row: { event_id: string; this_event_hash: string } | undefined,
    end: string,
  ) =>
    broken(
      row?.event_id ?? null,
      h.chain_seq,
      `chain no longer extends the verified head #${h.chain_seq} (${short(h.hash)}): tail truncated or rewritten ` +
        (row ? `(#${h.chain_seq} now holds ${short(row.this_event_hash)})` : `(${end})`),
    );

  if (from) {
    // Incremental: the prefix up to `from` was verified before; it must still be there.
    const row = (await rowsAt([from.chain_seq])).get(from.chain_seq);
    if (!row || row.this_event_hash !== from.hash) {
      const { rows } = await session.query(
        'SELECT max(chain_seq) AS n FROM event_log WHERE workspace_id = $1',
        [workspaceId],
      );
      const n = rows[0]?.n == null ? 0 : Number(rows[0].n);
      return noLongerExtends(
        from,
        row,
        n === 0 ? 'the chain is now empty' : `the chain now ends at #${n}`,
      );
    }
    after = from.chain_seq;
    prevHash = from.hash;
    if (row.link_alg !== LINK_V1) {
      const { rows } = await session.query(KEYED_FROM_SQL, [workspaceId]);
      keyedFrom = rows[0] ? Number(rows[0].chain_seq) : from.chain_seq;
    }
    const { rows } = await session.query(GAPS_SQL, [workspaceId, from.chain_seq]);
    for (const g of rows) gaps.push(gapOf(Number(g.chain_seq), g.payload));
  }

  for (;;) {
    const { rows } = (await session.query(VERIFY_SQL, [workspaceId, after])) as { rows: Row[] };
    for (const row of rows) {
      const pos = Number(row.chain_seq);
      const fail = (reason: string) => broken(row.event_id, pos, reason);
      if (pos !== after + 1) {
        return fail(`chain position gap: expected ${after + 1}, found ${pos} (events removed)`);
      }
      if (row.prev_event_hash !== prevHash) {
        return fail(
          prevHash === null
            ? 'first event has a prev_event_hash'
            : `prev_event_hash does not link to the previous event's this_event_hash`,
        );
      }
      if (row.link_alg === LINK_V1) {
        if (keyedFrom !== null) {
          return fail(
            `unkeyed event after the chain became keyed (at #${keyedFrom}): appended or inserted without the chain key`,
          );
        }
        if (row.recomputed !== row.this_event_hash) {
          return fail(
            `this_event_hash mismatch: the stored event (payload or fields) hashes to ` +
              `${short(row.recomputed)}, stored ${short(row.this_event_hash)}`,
          );
        }
      } else if (row.link_alg === LINK_V2) {
        keyedFrom ??= pos;
        if (!key) {
          return fail(
            `the chain is keyed from #${keyedFrom} (key id ${row.key_id}): verifying it needs the chain key`,
          );
        }
        if (row.key_id !== key.keyId) {
          return fail(
            `keyed with another key (key id ${row.key_id}, yours ${key.keyId}): another chain key, or a forged event`,
          );
        }
        let link: string;
        try {
          link = linkV2(key, prevHash, {
            event_id: row.event_id,
            workspace_id: row.workspace_id,
            agent_id: row.agent_id,
            instance_id: row.instance_id,
            seq: Number(row.seq),
            chain_seq: pos,
            event_type: row.event_type,
            occurred_at: row.occurred_at ?? '',
            payload: row.payload,
          });
        } catch (err) {
          return fail(`the stored payload has no canonical form (${(err as Error).message})`);
        }
        if (link !== row.this_event_hash) {
          return fail(
            `keyed link mismatch: the stored event (payload or fields) does not verify with the chain key ` +
              `(stored ${short(row.this_event_hash)}): altered, re-hashed or inserted without the key`,
          );
        }
      } else {
        return fail(`unknown link algorithm ${quote(row.link_alg)}`);
      }
      if (row.event_type === CHAIN_GAP_EVENT) gaps.push(gapOf(pos, row.payload));
      checked++;
      after = pos;
      prevHash = row.this_event_hash;
    }
    if (rows.length < VERIFY_PAGE) break;
  }

  if (anchors.length) {
    anchors.sort((a, b) => a.chain_seq - b.chain_seq);
    const held = await rowsAt(anchors.filter((h) => h.chain_seq <= after).map((h) => h.chain_seq));
    for (const h of anchors) {
      const row = held.get(h.chain_seq);
      if (!row || row.this_event_hash !== h.hash) {
        return noLongerExtends(
          h,
          row,
          after === 0 ? 'the chain is now empty' : `the chain now ends at #${after}`,
        );
      }
    }
  }
  return { ok: true, ...summary() };
}
