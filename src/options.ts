/**
 * The one way an `…Options` object is resolved and checked: every option is optional,
 * filled in from defaults, and validated on creation by a zod schema whose messages say
 * what the field must be. The first bad field becomes an `OperationalStateInputError`
 * naming it and quoting the value as given, e.g. `leaseMs must be a positive integer, got 0`.
 */
import { z } from 'zod';
import { OperationalStateInputError, quote } from './input.js';

// The plain check, for one value outside an options object; it needs no zod.
export { positiveInt } from './vocabulary.js';

import { isLogger, type Logger } from './logger.js';

/** A schema whose issues read `<field> <must>, got <value>`. */
type Must = { error: string };

const POSITIVE_INT = 'must be a positive integer';
const NON_NEGATIVE_INT = 'must be a non-negative integer';

/**
 * A whole number ≥ 1 (≥ 0 with `allowZero`). Safe integers only: a lease of 2^60 ms is a
 * mistake, not a setting.
 *
 * @example
 * z.object({ leaseMs: positiveIntSchema() });
 */
export function positiveIntSchema(allowZero = false): z.ZodNumber {
  const must: Must = { error: allowZero ? NON_NEGATIVE_INT : POSITIVE_INT };
  return z
    .number(must)
    .int(must)
    .min(allowZero ? 0 : 1, must);
}

/** A finite number ≥ 0 (a timeout in ms). */
export function nonNegativeNumberSchema(): z.ZodNumber {
  const must: Must = { error: 'must be a non-negative number' };
  return z.number(must).min(0, must);
}

/** A whole number in `[min, max]`, described as `must be an integer min–max`. */
export function intRangeSchema(min: number, max: number): z.ZodNumber {
  const must: Must = { error: `must be an integer ${min}–${max}` };
  return z.number(must).int(must).min(min, must).max(max, must);
}

/** A string with at least one character. */
export function nonEmptyStringSchema(): z.ZodString {
  const must: Must = { error: 'must be a non-empty string' };
  return z.string(must).min(1, must);
}

/** Any function (zod checks only that it is one; its signature is the type's). */
export function functionSchema<T extends (...args: never[]) => unknown>(
  must = 'must be a function',
): z.ZodType<T> {
  return z.custom<T>((v) => typeof v === 'function', { error: must });
}

/**
 * An object with the given methods (and `properties`, own or inherited), e.g. a holder
 * (`send`, `current`), a source (`claimNext`, `release`); `must` is what the message says
 * it must be. Duck-typed: a test double or another copy of the package passes.
 */
export function objectWithSchema<T>(
  methods: readonly string[],
  must: string,
  properties: readonly string[] = [],
): z.ZodType<T> {
  return z.custom<T>(
    (v) =>
      v !== null &&
      typeof v === 'object' &&
      methods.every((m) => typeof (v as Record<string, unknown>)[m] === 'function') &&
      properties.every((p) => p in v),
    { error: must },
  );
}

/** A console-compatible {@link Logger}. */
export function loggerSchema(): z.ZodType<Logger> {
  return z.custom<Logger>(isLogger, { error: 'must be a logger (error, warn and info methods)' });
}

/** @internal `root` at `path` (the value as given, for an error message). */
export function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

/** `a.b[2]` for a zod path. */
function fieldName(path: readonly PropertyKey[], fallback: string): string {
  let name = '';
  for (const key of path) {
    if (typeof key === 'number') name += `[${key}]`;
    else name += name === '' ? String(key) : `.${String(key)}`;
  }
  return name || fallback;
}

/**
 * Resolves `given` over `defaults` (a given `undefined` keeps the default) and validates
 * the result with `schema`. Throws an `OperationalStateInputError` for the first bad
 * field: `<field> <the schema's message>, got <the value, quoted>`; `options must be an
 * object, got …` when `given` is not an object at all. `defaults` may be a function of the
 * given options, for defaults that depend on another option (the holder's logger).
 * Cross-field rules belong in the schema's `superRefine`, with the field as the path.
 *
 * @example
 * const schema = z.object({ leaseMs: positiveIntSchema(), logger: loggerSchema() });
 * const o = parseOptions(schema, { leaseMs: 0 }, { leaseMs: 30_000, logger: console });
 * // throws: leaseMs must be a positive integer, got 0
 */
export function parseOptions<S extends z.ZodType>(
  schema: S,
  given: unknown,
  defaults: Partial<z.input<S>> | ((given: Record<string, unknown>) => Partial<z.input<S>>) = {},
  name = 'options',
): z.output<S> {
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new OperationalStateInputError(
      name,
      given,
      `${name} must be an object, got ${quote(given)}`,
    );
  }
  const givenRecord = given as Record<string, unknown>;
  const resolved: Record<string, unknown> = {
    ...(typeof defaults === 'function' ? defaults(givenRecord) : defaults),
  };
  for (const [key, value] of Object.entries(givenRecord)) {
    if (value !== undefined) resolved[key] = value;
  }
  const result = schema.safeParse(resolved);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = fieldName(issue.path, name);
  const value = valueAt(resolved, issue.path);
  throw new OperationalStateInputError(
    field,
    value,
    `${field} ${issue.message}, got ${quote(value)}`,
  );
}
