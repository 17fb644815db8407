/**
 * `GET /api/operational-state/stream`: Server-Sent Events. One `data:` message with the
 * current status when the stream opens, one per committed transition (the record and the
 * status right after it), and a comment line every `heartbeatMs` so proxies and clients
 * know the stream is alive. The holder listener is removed when the client goes.
 */
import type { Logger, OperationalStateHolder, TransitionRecord } from '../holder.js';
import { type ChainHealth, type StatusPayload, statusFrom, statusOf } from './status.js';

/** The first message, and the message after the holder appeared or was replaced. */
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

/** @internal */
export interface StatusStreamOptions {
  resolveHolder(): OperationalStateHolder | undefined;
  chain(): ChainHealth | undefined;
  heartbeatMs: number;
  /** How often to look for a holder that appeared or was replaced. */
  holderPollMs: number;
  /** A client this far behind (bytes queued) is dropped rather than buffered without bound. */
  maxQueuedBytes: number;
  logger: Logger;
  /** Aborted when the client goes (the Request's signal). */
  signal?: AbortSignal;
  onClose(): void;
}

/** @internal An open event stream. */
export interface StatusStream {
  readonly body: ReadableStream<Uint8Array>;
  /** Ends the stream (server shutdown); idempotent. */
  close(): void;
}

const LOG_TAG = '[kora.operational_state.http]';
const encoder = new TextEncoder();

/** @internal Opens one event stream. */
export function openStatusStream(options: StatusStreamOptions): StatusStream {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  /** The holder the stream follows; `null` until the first status went out. */
  let holder: OperationalStateHolder | undefined | null = null;
  let unsubscribe: (() => void) | undefined;
  let closed = false;
  const timers: ReturnType<typeof setInterval>[] = [];

  const finish = (closeController: boolean) => {
    if (closed) return;
    closed = true;
    for (const t of timers) clearInterval(t);
    try {
      unsubscribe?.();
    } catch (err) {
      options.logger.error(`${LOG_TAG} stream: unsubscribing failed`, err);
    }
    unsubscribe = undefined;
    options.signal?.removeEventListener('abort', onAbort);
    if (closeController) {
      try {
        controller.close();
      } catch {
        // Already closed or errored by the consumer.
      }
    }
    try {
      options.onClose();
    } catch (err) {
      options.logger.error(`${LOG_TAG} stream: onClose failed`, err);
    }
  };
  const onAbort = () => finish(true);

  const write = (text: string) => {
    if (closed) return;
    const size = controller.desiredSize;
    if (size !== null && size < -options.maxQueuedBytes) {
      options.logger.warn(
        `${LOG_TAG} stream client is more than ${options.maxQueuedBytes} bytes behind; closing its stream`,
      );
      finish(true);
      return;
    }
    try {
      controller.enqueue(encoder.encode(text));
    } catch {
      finish(false);
    }
  };
  const send = (message: StreamMessage, id?: number) => {
    write(`${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify(message)}\n\n`);
  };

  const attach = (next: OperationalStateHolder | undefined) => {
    if (next === holder) return;
    unsubscribe?.();
    unsubscribe = undefined;
    holder = next;
    if (next) {
      const h = next;
      unsubscribe = h.addListener(
        (_old, state, record) => {
          if (closed) return;
          // The status as of this record: later commits may already be in the history.
          const history = h.history().filter((r) => r.seq <= record.seq);
          send(
            { kind: 'transition', record, status: statusFrom(state, history, options.chain()) },
            record.seq,
          );
        },
        { name: 'kora.operational_state.http.stream' },
      );
    }
    send({ kind: 'status', status: statusOf(next, options.chain()) });
  };

  const body = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
        if (options.signal?.aborted) {
          finish(true);
          return;
        }
        options.signal?.addEventListener('abort', onAbort, { once: true });
        write('retry: 2000\n\n');
        try {
          attach(options.resolveHolder());
        } catch (err) {
          options.logger.error(`${LOG_TAG} stream: reading the holder failed`, err);
        }
        const watch = setInterval(() => {
          try {
            attach(options.resolveHolder());
          } catch (err) {
            options.logger.error(`${LOG_TAG} stream: reading the holder failed`, err);
          }
        }, options.holderPollMs);
        const beat = setInterval(
          () => write(`: heartbeat ${new Date().toISOString()}\n\n`),
          options.heartbeatMs,
        );
        watch.unref?.();
        beat.unref?.();
        timers.push(watch, beat);
      },
      cancel() {
        finish(false);
      },
    },
    { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength },
  );

  return { body, close: () => finish(true) };
}
