/**
 * The keyed chain (SPEC §10): links made with a chain key that never enters the database.
 *
 *   this_event_hash = hex HMAC-SHA256(key, (prev_event_hash ?? '') + '\n' + canonical)
 *   canonical = RFC 8785 JSON of ['v2', event_id, workspace_id, agent_id, instance_id, seq,
 *                                 chain_seq, event_type, occurred_at, payload]
 *
 * `occurred_at` is the emitted millisecond ISO string (`Date#toISOString`), which the
 * database renders back identically; `payload` is canonicalized as JSON-parsed, so what
 * is hashed at append is what the stored jsonb reads back as. A database writer without
 * the key cannot make a link that verifies. Stored hashes depend on this text: never
 * change it — a new form needs a new `link_alg`.
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import canonicalize from 'canonicalize';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import type { ChainEvent } from './types.js';

/** A chain key ready for use: the key material (never printed) and its public id. @internal */
export interface ChainKey {
  readonly secret: KeyObject;
  /** First 16 hex of HMAC(key, 'kora-opstate key id'): names the key, reveals nothing. */
  readonly keyId: string;
}

/** The shortest key accepted, in bytes. */
export const MIN_CHAIN_KEY_BYTES = 16;

/**
 * Validates a chain key (a string, as its UTF-8 bytes, or bytes): at least 16 bytes.
 * The key is never echoed: errors name its length only.
 * @internal
 */
export function createChainKey(value: unknown): ChainKey {
  let bytes: Buffer;
  if (typeof value === 'string') bytes = Buffer.from(value, 'utf8');
  else if (value instanceof Uint8Array) bytes = Buffer.from(value);
  else {
    throw new OperationalStateInputError(
      'chainKey',
      typeof value,
      `chainKey must be a string or a Uint8Array, got ${value === null ? 'null' : typeof value}`,
    );
  }
  if (bytes.length < MIN_CHAIN_KEY_BYTES) {
    throw new OperationalStateInputError(
      'chainKey',
      `[${bytes.length} bytes]`,
      `chainKey must be at least ${MIN_CHAIN_KEY_BYTES} bytes, got ${bytes.length}`,
    );
  }
  const secret = createSecretKey(bytes);
  bytes.fill(0);
  const keyId = createHmac('sha256', secret)
    .update('kora-opstate key id')
    .digest('hex')
    .slice(0, 16);
  return { secret, keyId };
}

/** The fields a v2 link covers. @internal */
export interface LinkedFields {
  readonly event_id: string;
  readonly workspace_id: string;
  readonly agent_id: string;
  readonly instance_id: string;
  readonly seq: number;
  readonly chain_seq: number;
  readonly event_type: string;
  readonly occurred_at: string;
  readonly payload: unknown;
}

/** The v2 link of one event. @internal */
export function linkV2(key: ChainKey, prev: string | null, f: LinkedFields): string {
  const canonical = canonicalize([
    'v2',
    f.event_id,
    f.workspace_id,
    f.agent_id,
    f.instance_id,
    f.seq,
    f.chain_seq,
    f.event_type,
    f.occurred_at,
    f.payload,
  ]) as string;
  return createHmac('sha256', key.secret)
    .update(`${prev ?? ''}\n${canonical}`, 'utf8')
    .digest('hex');
}

const EMITTED_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * A keyed link covers `occurred_at` as text, so it must be the form the database renders
 * back: `YYYY-MM-DDTHH:MM:SS.mmmZ` (what `Date#toISOString` emits), a real instant.
 * @internal
 */
export function isEmittedTimestamp(value: unknown): value is string {
  if (typeof value !== 'string' || !EMITTED_AT.test(value)) return false;
  const t = Date.parse(value);
  return Number.isFinite(t) && new Date(t).toISOString() === value;
}

/** An error carrying a SQLSTATE, so the outbox tells a refusal from an outage. @internal */
export class ChainWriteError extends Error {
  override readonly name = 'ChainWriteError';
  constructor(
    message: string,
    readonly code: string,
    readonly constraint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The keyed sink's check of one event, at append (before it is queued). @internal */
export function checkKeyedEvent(e: ChainEvent): void {
  if (!isEmittedTimestamp(e.occurred_at)) {
    throw new OperationalStateInputError(
      'occurred_at',
      e.occurred_at,
      `occurred_at must be a millisecond ISO-8601 UTC time (YYYY-MM-DDTHH:MM:SS.mmmZ) on a keyed chain, got ${quote(e.occurred_at)}`,
    );
  }
}
