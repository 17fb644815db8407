/**
 * Validation of what the HTTP API accepts: the operator's transition body and the
 * history query. Strict zod schemas: unknown fields are refused, and every error names
 * the field and the bad value.
 */
import { z } from 'zod';
import type { OperationalEvent } from '../../machines/operationalState.machine.js';
import { inputErrorFrom, parseEvent } from '../events.js';
import {
  CLAIM_PERMISSIONS,
  type ClaimPermission,
  checkText,
  DEGRADATION_REASONS,
  type DegradationReason,
  MAX_TRIGGER_LENGTH,
  OperationalStateInputError,
  PRIMARY_STATES,
  type PrimaryState,
  quote,
} from '../vocabulary.js';

/** The largest operator request body accepted (bytes). */
export const MAX_OPERATOR_BODY_BYTES = 16 * 1024;

/** The largest `limit` the history route accepts. */
export const MAX_HISTORY_LIMIT = 10_000;

const reasons = z.array(z.enum(DEGRADATION_REASONS as [DegradationReason, ...DegradationReason[]]));

/** `{ to, trigger, claim_permission?, add_reasons?, remove_reasons? }` — the `transitionTo` path. */
const transitionBody = z.strictObject({
  to: z.enum(PRIMARY_STATES as [PrimaryState, ...PrimaryState[]]),
  trigger: z.string().min(1).max(MAX_TRIGGER_LENGTH),
  claim_permission: z.enum(CLAIM_PERMISSIONS as [ClaimPermission, ...ClaimPermission[]]).optional(),
  add_reasons: reasons.optional(),
  remove_reasons: reasons.optional(),
});

/** `{ event: { type, ...fields } }` — the `send` path; the event itself is checked by `parseEvent`. */
const eventBody = z.strictObject({ event: z.unknown() });

/** A validated operator request. */
export type OperatorCommand =
  | {
      readonly kind: 'transition';
      readonly to: PrimaryState;
      readonly trigger: string;
      readonly claimPermission?: ClaimPermission;
      readonly addReasons?: readonly DegradationReason[];
      readonly removeReasons?: readonly DegradationReason[];
    }
  | { readonly kind: 'event'; readonly event: OperationalEvent };

/**
 * Validates a parsed JSON body as an operator command; throws `OperationalStateInputError`
 * naming the field and value (fields of the event are named `event.<field>`).
 *
 * @example
 * parseOperatorCommand({ to: 'paused', trigger: 'operator' }); // { kind: 'transition', ... }
 * parseOperatorCommand({ event: { type: 'pause', cause: 'cost_limit' } }); // { kind: 'event', ... }
 * parseOperatorCommand({ to: 'paused', trigger: 'x', force: true }); // throws: unknown field "force"
 */
export function parseOperatorCommand(body: unknown): OperatorCommand {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new OperationalStateInputError(
      'body',
      body,
      `body must be a JSON object, got ${quote(body)}`,
    );
  }
  if (Object.hasOwn(body, 'event')) {
    const parsed = eventBody.safeParse(body);
    if (!parsed.success) throw inputErrorFrom(parsed.error.issues, body);
    try {
      return { kind: 'event', event: parseEvent(parsed.data.event) };
    } catch (err) {
      if (!(err instanceof OperationalStateInputError)) throw err;
      const field = err.field === 'event' ? 'event' : `event.${err.field}`;
      throw new OperationalStateInputError(field, err.value, `event: ${err.message}`);
    }
  }
  const parsed = transitionBody.safeParse(body);
  if (!parsed.success) throw inputErrorFrom(parsed.error.issues, body);
  const b = parsed.data;
  // Refused here, not only by the holder: the answer names the body's field.
  checkText(b.trigger, 'trigger');
  return {
    kind: 'transition',
    to: b.to,
    trigger: b.trigger,
    ...(b.claim_permission !== undefined ? { claimPermission: b.claim_permission } : {}),
    ...(b.add_reasons !== undefined ? { addReasons: b.add_reasons } : {}),
    ...(b.remove_reasons !== undefined ? { removeReasons: b.remove_reasons } : {}),
  };
}

const limitParam = z
  .string()
  .regex(/^[1-9][0-9]*$/, 'must be a positive integer')
  .transform(Number)
  .pipe(z.number().max(MAX_HISTORY_LIMIT, `must be at most ${MAX_HISTORY_LIMIT}`));

/**
 * The history route's `limit` (absent → `undefined`: everything kept); throws
 * `OperationalStateInputError` naming the bad value.
 *
 * @example
 * parseHistoryLimit(new URLSearchParams('limit=5')); // 5
 * parseHistoryLimit(new URLSearchParams('limit=abc')); // throws: invalid limit "abc": ...
 */
export function parseHistoryLimit(params: URLSearchParams): number | undefined {
  const all = params.getAll('limit');
  if (all.length === 0) return undefined;
  if (all.length > 1) {
    throw new OperationalStateInputError(
      'limit',
      all,
      `limit given ${all.length} times (${all.map((v) => quote(v)).join(', ')}); give it once`,
    );
  }
  const raw = all[0]!;
  const parsed = limitParam.safeParse(raw);
  if (!parsed.success) {
    throw new OperationalStateInputError(
      'limit',
      raw,
      `invalid limit ${quote(raw)}: ${parsed.error.issues[0]?.message ?? 'must be a positive integer'}`,
    );
  }
  return parsed.data;
}

/** The chain route's default and largest `limit`. */
export const DEFAULT_CHAIN_LIMIT = 20;
export const MAX_CHAIN_LIMIT = 1000;

const chainQuery = z.strictObject({
  limit: z
    .string()
    .regex(/^[1-9][0-9]*$/, 'must be a positive integer')
    .transform(Number)
    .pipe(z.number().max(MAX_CHAIN_LIMIT, `must be at most ${MAX_CHAIN_LIMIT}`))
    .optional(),
  after_seq: z
    .string()
    .regex(/^(0|[1-9][0-9]*)$/, 'must be a non-negative integer')
    .transform(Number)
    .pipe(z.number().max(Number.MAX_SAFE_INTEGER, 'is too large'))
    .optional(),
  take: z.enum(['newest', 'oldest']).optional(),
});

/**
 * The chain route's query: `limit` (1–1,000, default 20), `after_seq` (a chain position,
 * default 0) and `take` (`newest`, the default, or `oldest`: the first `limit` after
 * `after_seq`, for paging forward); unknown or repeated parameters are refused, naming
 * the value.
 *
 * @example
 * parseChainQuery(new URLSearchParams('limit=5&after_seq=40')); // { limit: 5, afterSeq: 40, take: 'newest' }
 */
export function parseChainQuery(params: URLSearchParams): {
  limit: number;
  afterSeq: number;
  take: 'newest' | 'oldest';
} {
  const raw: Record<string, string> = {};
  for (const key of new Set(params.keys())) {
    const all = params.getAll(key);
    if (all.length > 1) {
      throw new OperationalStateInputError(
        key,
        all,
        `${key} given ${all.length} times (${all.map((v) => quote(v)).join(', ')}); give it once`,
      );
    }
    raw[key] = all[0]!;
  }
  const parsed = chainQuery.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.code === 'unrecognized_keys' ? issue.keys[0]! : String(issue.path[0]);
    const message =
      issue.code === 'unrecognized_keys'
        ? `unknown query parameter ${quote(field)}; expected limit, after_seq, take`
        : `invalid ${field} ${quote(raw[field])}: ${issue.message}`;
    throw new OperationalStateInputError(field, raw[field] ?? field, message);
  }
  return {
    limit: parsed.data.limit ?? DEFAULT_CHAIN_LIMIT,
    afterSeq: parsed.data.after_seq ?? 0,
    take: parsed.data.take ?? 'newest',
  };
}
