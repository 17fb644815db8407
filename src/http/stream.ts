/**
 * `GET /api/operational-state/stream`: Server-Sent Events over Hono's `streamSSE`. One
 * `data:` message with the current status when the stream opens, one per committed
 * transition (the record and the status right after it), and a comment line every
 * `heartbeatMs` so proxies and clients know the stream is alive. The holder listener is
 * removed when the client goes.
 *
 * No timer looks for a holder: a stream opened before the holder exists sends the stub
 * status and asks for the holder again at each heartbeat; the first one that finds it
 * sends the live status and follows it from then on.
 */
import type { Context } from 'hono';
import { type SSEStreamingApi, streamSSE } from 'hono/streaming';
import type { OperationalStateHolder, TransitionRecord } from '../holder.js';
import type { StatusCore } from './core.js';
import { HTTP_LOG_TAG } from './respond.js';
import { type StatusPayload, statusFrom, statusOf } from './status.js';

/** The first message, and the message after the holder appeared. */
export interface StreamStatusMessage {
  readonly kind: 'status';
  readonly status: StatusPayload;
}

/** One committed transition: its record and the status right after it. */
export interface StreamTransitionMessage {
  readonly kind: 'transition';
  readonly record: TransitionRecord;
  readonly status: StatusPayload;
}

/** The JSON of every `data:` line of the stream. */
export type StreamMessage = StreamStatusMessage | StreamTransitionMessage;

/** A client this far behind (bytes written and not yet read) is dropped, not buffered without bound. */
const MAX_QUEUED_BYTES = 1024 * 1024;

const HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-store',
  'x-accel-buffering': 'no',
  'x-content-type-options': 'nosniff',
} as const;

const encoder = new TextEncoder();

/**
 * Runs one stream until the client goes or the app closes. Writes are not awaited (a
 * holder listener must never wait for a slow client); the bytes not yet read are counted
 * instead, and past {@link MAX_QUEUED_BYTES} the stream is ended.
 */
function follow(core: StatusCore, api: SSEStreamingApi, signal: AbortSignal): Promise<void> {
  const { logger } = core;
  let holder: OperationalStateHolder | undefined;
  let unsubscribe: (() => void) | undefined;
  let closed = false;
  let queued = 0;
  let done!: () => void;
  const ended = new Promise<void>((resolve) => {
    done = resolve;
  });

  const finish = () => {
    if (closed) return;
    closed = true;
    clearInterval(beat);
    signal.removeEventListener('abort', onAbort);
    try {
      unsubscribe?.();
    } catch (err) {
      logger.error(`${HTTP_LOG_TAG} stream: unsubscribing failed`, err);
    }
    unsubscribe = undefined;
    core.streams.delete(entry);
    done(); // streamSSE then closes the stream: the client sees its end
  };
  const entry = { close: finish };
  const onAbort = () => {
    finish();
    api.abort();
  };

  const write = (text: string) => {
    if (closed) return;
    const bytes = encoder.encode(text);
    if (queued + bytes.byteLength > MAX_QUEUED_BYTES) {
      logger.warn(
        `${HTTP_LOG_TAG} stream client is more than ${MAX_QUEUED_BYTES} bytes behind; closing its stream`,
      );
      onAbort();
      return;
    }
    queued += bytes.byteLength;
    void api.write(bytes).then(() => {
      queued -= bytes.byteLength;
    });
  };
  const send = (message: StreamMessage, id?: number) => {
    write(`${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify(message)}\n\n`);
  };

  /** Follows the holder once it exists; until then the stub was sent. */
  const look = () => {
    let next: OperationalStateHolder | undefined;
    try {
      next = core.holder();
    } catch (err) {
      logger.error(`${HTTP_LOG_TAG} stream: reading the holder failed`, err);
    }
    if (!next || next === holder) return;
    holder = next;
    const h = next;
    unsubscribe = h.addListener(
      (_old, state, record) => {
        if (closed) return;
        // The status as of this record: later commits may already be in the history.
        const history = h.history().filter((r) => r.seq <= record.seq);
        send(
          { kind: 'transition', record, status: statusFrom(state, history, core.chain()) },
          record.seq,
        );
      },
      { name: 'kora.operational_state.http.stream' },
    );
    send({ kind: 'status', status: statusOf(h, core.chain()) });
  };

  const beat = setInterval(() => {
    if (!holder) look();
    write(`: heartbeat ${new Date().toISOString()}\n\n`);
  }, core.options.heartbeatMs);
  beat.unref?.();
  core.streams.add(entry);
  api.onAbort(finish); // the client cancelled the body or went away
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });

  write('retry: 2000\n\n');
  look();
  if (!holder) send({ kind: 'status', status: statusOf(undefined) });
  return ended;
}

/** @internal The stream route's handler. */
export function streamHandler(core: StatusCore): (c: Context) => Response {
  return (c) => {
    // HEAD: the headers, and no stream left open behind them.
    if (c.req.method === 'HEAD') return new Response(null, { headers: HEADERS });
    const res = streamSSE(c, (api) => follow(core, api, c.req.raw.signal));
    for (const [k, v] of Object.entries(HEADERS)) res.headers.set(k, v);
    // Node frames the body itself; the length is unknown and the connection stays open.
    res.headers.delete('transfer-encoding');
    res.headers.delete('connection');
    return res;
  };
}
