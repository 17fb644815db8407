/**
 * The responses every route makes: JSON and text bodies with their length (so the node
 * server sends them in one write, never chunked), and the 400 for input outside the API.
 */
import { LOG_TAGS } from '../logger.js';
import { OperationalStateInputError } from '../vocabulary.js';

/** The log tag of everything the HTTP layer reports. */
export const HTTP_LOG_TAG = LOG_TAGS.http;

/** @internal Headers of every JSON answer. */
export const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
} as const;

/** @internal A fixed body with its `content-length`. */
export function textResponse(
  status: number,
  text: string,
  headers: Readonly<Record<string, string>>,
): Response {
  return new Response(text, {
    status,
    headers: { ...headers, 'content-length': String(Buffer.byteLength(text)) },
  });
}

/** @internal A JSON answer (`body` serialized here). */
export function json(
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): Response {
  return textResponse(status, JSON.stringify(body), { ...JSON_HEADERS, ...headers });
}

/** @internal 400 naming the field for input outside what the API accepts; anything else is rethrown. */
export function badInput(err: unknown): Response {
  if (err instanceof OperationalStateInputError) {
    return json(400, { error: err.message, field: err.field });
  }
  throw err;
}

/** @internal Runs `parse`; its input error becomes the 400 answer. */
export function parsed<T>(parse: () => T): { value: T } | { response: Response } {
  try {
    return { value: parse() };
  } catch (err) {
    return { response: badInput(err) };
  }
}
