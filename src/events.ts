/**
 * Validation of domain events at the edge (holder `send`, the operator API): unknown
 * types, fields or values are refused with an error that names the bad value.
 */
import { type ZodType, z } from 'zod';
import {
  EVENT_TYPES,
  type OperationalEvent,
  type OperationalEventType,
} from '../machines/operationalState.machine.js';
import { valueAt } from './options.js';
import {
  CLAIM_PERMISSIONS,
  checkText,
  DEGRADATION_REASONS,
  MAX_TRIGGER_LENGTH,
  OperationalStateInputError,
  PAUSE_CAUSES,
  parseDetails,
  quote,
} from './vocabulary.js';

const common = {
  trigger: z.string().max(MAX_TRIGGER_LENGTH).optional(),
  claimPermission: z.enum(CLAIM_PERMISSIONS as [string, ...string[]]).optional(),
  addReasons: z.array(z.enum(DEGRADATION_REASONS as [string, ...string[]])).optional(),
  removeReasons: z.array(z.enum(DEGRADATION_REASONS as [string, ...string[]])).optional(),
  // Checked by `parseDetails` after the schema: plain JSON, bounded, copied and frozen.
  details: z.unknown().optional(),
};
const usd = z.number().finite();

/** @internal One strict schema per event type; unknown fields are refused. */
export const EVENT_SCHEMAS: Record<OperationalEventType, ZodType> = {
  'boot.gates_passed': z.strictObject({ type: z.literal('boot.gates_passed'), ...common }),
  'boot.gate_retry': z.strictObject({
    type: z.literal('boot.gate_retry'),
    gate: z.string().min(1).max(200).optional(),
    ...common,
  }),
  'boot.gate_failed': z.strictObject({ type: z.literal('boot.gate_failed'), ...common }),
  'boot.epoch_mismatch': z.strictObject({ type: z.literal('boot.epoch_mismatch'), ...common }),
  'claim.acquired': z.strictObject({ type: z.literal('claim.acquired'), ...common }),
  'claim.released': z.strictObject({ type: z.literal('claim.released'), ...common }),
  pause: z.strictObject({
    type: z.literal('pause'),
    cause: z.enum(PAUSE_CAUSES as [string, ...string[]]).optional(),
    ...common,
  }),
  'resume.credit_refresh': z.strictObject({
    type: z.literal('resume.credit_refresh'),
    reconciledSpendUsd: usd.optional(),
    thresholdUsd: usd.optional(),
    ...common,
  }),
  'resume.operator_reset': z.strictObject({ type: z.literal('resume.operator_reset'), ...common }),
  stop: z.strictObject({ type: z.literal('stop'), ...common }),
  update: z.strictObject({ type: z.literal('update'), ...common }),
};

/** @internal Turns the first zod issue into an error naming the field and the bad value. */
export function inputErrorFrom(
  issues: readonly z.core.$ZodIssue[],
  input: unknown,
  prefix = '',
): OperationalStateInputError {
  const issue = issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const at = issue.path.length ? `${prefix}${issue.path.join('.')}.` : prefix;
    const key = issue.keys[0]!;
    return new OperationalStateInputError(
      `${at}${key}`,
      valueAt(input, [...issue.path, key]),
      `unknown field ${quote(`${at}${key}`)}`,
    );
  }
  const field = `${prefix}${issue.path.join('.')}` || prefix.replace(/\.$/, '') || 'input';
  const value = valueAt(input, issue.path);
  return new OperationalStateInputError(
    field,
    value,
    `invalid ${field} ${quote(value)}: ${issue.message}`,
  );
}

/**
 * Validates an unknown value as a domain event; throws `OperationalStateInputError`
 * naming the bad field and value.
 *
 * @example
 * parseEvent({ type: 'pause', cause: 'cost_limit' }); // ok
 * parseEvent({ type: 'pause', cause: 'bored' }); // throws: invalid cause "bored": ...
 */
export function parseEvent(input: unknown): OperationalEvent {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new OperationalStateInputError(
      'event',
      input,
      `event must be an object, got ${quote(input)}`,
    );
  }
  const type = (input as { type?: unknown }).type;
  const schema =
    typeof type === 'string' && Object.hasOwn(EVENT_SCHEMAS, type)
      ? EVENT_SCHEMAS[type as OperationalEventType]
      : undefined;
  if (!schema) {
    throw new OperationalStateInputError(
      'type',
      type,
      `unknown event type ${quote(type)}; expected one of ${EVENT_TYPES.join(', ')}`,
    );
  }
  const result = schema.safeParse(input);
  if (!result.success) throw inputErrorFrom(result.error.issues, input);
  return storable(result.data as OperationalEvent);
}

/**
 * The text and `details` of a shape-checked event, made sure to be storable: a store
 * refuses NUL and lone surrogates for good, so they are refused here, before the commit
 * (see `checkText`); `details` become a deep-frozen JSON copy (see `parseDetails`).
 */
function storable(event: OperationalEvent): OperationalEvent {
  if (event.trigger !== undefined) checkText(event.trigger, 'trigger');
  if (event.type === 'boot.gate_retry' && event.gate !== undefined) checkText(event.gate, 'gate');
  if (event.details === undefined) return event;
  return { ...event, details: parseDetails(event.details, 'details') as Record<string, unknown> };
}
