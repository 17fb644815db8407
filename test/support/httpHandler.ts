/**
 * Helpers for the HTTP tests: requests against a handler, a quiet logger, and a count of
 * the holder listeners the HTTP layer has registered and not yet removed.
 */
import { vi } from 'vitest';
import type { OperationalStateHolder } from '../../src/holder.js';
import { recordingLogger } from './logger.js';

export const BASE = 'http://127.0.0.1';

/** A Request for `path` on the handler's (fake) origin. */
export function req(path: string, init: RequestInit = {}): Request {
  return new Request(`${BASE}${path}`, init);
}

/** A POST with a JSON body (or a raw string) and an optional bearer token. */
export function post(
  path: string,
  body: unknown,
  options: { token?: string; headers?: Record<string, string> } = {},
): Request {
  return new Request(`${BASE}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(options.token !== undefined ? { authorization: `Bearer ${options.token}` } : {}),
      ...options.headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export const quietLogger = () => recordingLogger();

/**
 * Counts the listeners added through `holder.addListener` whose name starts with
 * `prefix`, minus those unsubscribed since.
 */
export function trackListeners(holder: OperationalStateHolder, prefix: string) {
  let live = 0;
  let added = 0;
  const original = holder.addListener.bind(holder);
  vi.spyOn(holder, 'addListener').mockImplementation((fn, options) => {
    const off = original(fn, options);
    if (!options?.name?.startsWith(prefix)) return off;
    live++;
    added++;
    let removed = false;
    return () => {
      if (!removed) {
        removed = true;
        live--;
      }
      off();
    };
  });
  return {
    get live() {
      return live;
    },
    get added() {
      return added;
    },
  };
}
