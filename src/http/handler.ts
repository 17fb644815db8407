/**
 * The status API as one web-standard handler, `(Request) => Promise<Response>`: the
 * status app's `fetch`, with the app's registry, open streams and `close()` on it.
 */
import type { Registry } from 'prom-client';
import { createStatusApp } from './app.js';
import { FAST_PATH } from './fast.js';
import type { StatusHandlerOptions } from './options.js';

export type { StatusAppOptions, StatusHandlerOptions } from './options.js';
export { HTTP_LOG_TAG } from './respond.js';

/** The handler, plus what its owner needs to shut it down and observe it. */
export interface StatusHandler {
  (request: Request): Promise<Response>;
  /** The registry `/metrics` serves. */
  readonly registry: Registry;
  /** Open SSE streams. */
  readonly openStreams: number;
  /**
   * Ends every open SSE stream (cleanly: the client sees the end of the stream), removes
   * the holder listeners and this handler's metrics; later requests get 503.
   */
  close(): Promise<void>;
}

/**
 * Creates the status API handler: {@link createStatusApp}'s routes as a fetch-style
 * function (for tests, and for servers that take one).
 *
 * @example
 * const opstate = createOpstate();
 * const handler = createStatusHandler({ opstate, operatorToken: process.env.KORA_OPERATOR_TOKEN });
 * const res = await handler(new Request('http://localhost/api/operational-state'));
 * (await res.json()).primary_state; // 'booting'
 * await handler.close();
 */
export function createStatusHandler(options: StatusHandlerOptions = {}): StatusHandler {
  const status = createStatusApp(options);
  const { app } = status;
  const handler = (async (request: Request) => app.fetch(request)) as StatusHandler;
  Object.defineProperties(handler, {
    registry: { value: status.registry, enumerable: true },
    openStreams: { get: () => status.openStreams, enumerable: true },
    close: { value: () => status.close() },
    // The node server answers the cached bodies through it (startStatusServer).
    [FAST_PATH]: { value: status[FAST_PATH] },
  });
  return handler;
}
