/**
 * `GET /api/operational-state/stream`: Server-Sent Events, one hub per app.
 *
 * Messages (the JSON of each `data:` line, see {@link StreamMessage}):
 * - `snapshot`: the whole status payload (what `GET /api/operational-state` answers). Sent
 *   when a stream opens (whatever `Last-Event-ID` says), when the holder first appears,
 *   and to a client that fell behind. To ask for one again, reconnect.
 * - `change`: one per committed transition: its record and the state right after it.
 *   Apply it with {@link applyStreamMessage} (the panel does the same).
 * Each carries `id: <seq>` (a snapshot: its newest record's seq), and a comment line goes
 * out every `heartbeatMs` so proxies and clients know the stream is alive.
 *
 * Cost: one holder listener for all the streams; each message is serialized and encoded
 * once and the same bytes are queued for every client. A client's queue is bounded: one
 * {@link MAX_PENDING} messages behind, its queued changes are dropped and it gets one
 * fresh snapshot when it reads again (coalesced, never closed for being slow).
 *
 * No timer looks for a holder: while there is none, streams get the stub snapshot and the
 * heartbeat asks for the holder again; the first one that finds it sends its snapshot.
 */
import type { ServerResponse } from 'node:http';
import type { Context } from 'hono';
import type { OperationalStateHolder, TransitionRecord } from '../holder.js';
import type { StatusCore } from './core.js';
import { HTTP_LOG_TAG } from './respond.js';
import { type StatusPayload, statusFrom } from './status.js';

/** The whole status: on connect, when the holder appeared, after the client fell behind. */
export interface StreamSnapshotMessage {
  readonly kind: 'snapshot';
  readonly status: StatusPayload;
}

/**
 * One committed transition: its record, the status fields right after it (all but the
 * history), and how many records the history keeps after it (older ones fall off).
 */
export interface StreamChangeMessage {
  readonly kind: 'change';
  readonly record: TransitionRecord;
  readonly state: Omit<StatusPayload, 'transition_history'>;
  readonly history_length: number;
}

/** The JSON of every `data:` line of the stream. */
export type StreamMessage = StreamSnapshotMessage | StreamChangeMessage;

/**
 * The status after `message`, from the status before it (undefined before the first
 * snapshot). A change the status already holds (by seq) leaves it as it is.
 *
 * @example
 * let status: StatusPayload | undefined;
 * source.onmessage = (e) => {
 *   status = applyStreamMessage(status, JSON.parse(e.data));
 * };
 */
export function applyStreamMessage(
  status: StatusPayload | undefined,
  message: StreamMessage,
): StatusPayload | undefined {
  if (message.kind === 'snapshot') return message.status;
  if (!status) return status;
  const history = status.transition_history;
  if ((history.at(-1)?.seq ?? 0) >= message.record.seq) return status;
  return {
    ...message.state,
    transition_history: [...history, message.record].slice(-message.history_length),
  };
}

/**
 * @internal A stream body's own clean end, for the node server's `close()`: a body that
 * carries it is served as it is, not wrapped to be endable (one stage less per message).
 */
export const END_STREAM: unique symbol = Symbol('kora.operational_state.endStream');

/** Messages a client may be behind before its queue collapses into one snapshot. */
export const MAX_PENDING = 256;

const HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-store',
  'x-accel-buffering': 'no',
  'x-content-type-options': 'nosniff',
} as const;

const encoder = new TextEncoder();

const CRLF = Buffer.from('\r\n');
/** Each message's HTTP/1.1 chunk, framed once and shared by every node client. */
const chunks = new WeakMap<Uint8Array, Buffer>();
function chunk(bytes: Uint8Array): Buffer {
  let framed = chunks.get(bytes);
  if (!framed) {
    framed = Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, CRLF]);
    chunks.set(bytes, framed);
  }
  return framed;
}
const RETRY = encoder.encode('retry: 2000\n\n');

/** One open stream. `seq`: the newest record it was given (by snapshot or change). */
interface Client {
  /** Where its bytes go: a web stream's controller, or a node response. */
  readonly out: {
    /** Whether a write now is taken without queueing past the transport's buffer. */
    room(): boolean;
    write(bytes: Uint8Array): void;
    end(): void;
  };
  seq: number;
  /** Queued past what the stream itself buffers (its high-water mark is one chunk). */
  pending: Uint8Array[];
  /** Its changes were dropped: a snapshot goes out when it reads again. */
  stale: boolean;
  closed: boolean;
  close(): void;
}

/** @internal The app's streams: one holder listener and one heartbeat for all of them. */
export interface StreamHub {
  /** A new stream's body; it ends when the client cancels, `signal` aborts or the app closes. */
  open(signal: AbortSignal): ReadableStream<Uint8Array>;
  /**
   * The same stream written straight to a node response (no web stream between: the node
   * server's fast path). Returns its clean end, for the server's `close()`.
   */
  openNode(res: ServerResponse): () => void;
}

/** @internal */
export function createStreamHub(core: StatusCore): StreamHub {
  const { logger } = core;
  const clients = new Set<Client>();
  let holder: OperationalStateHolder | undefined;
  let unsubscribe: (() => void) | undefined;
  let beat: ReturnType<typeof setInterval> | undefined;

  // The snapshot message, rebuilt only when the status text changed (core keeps it).
  let snapshotFor: string | undefined;
  let snapshot = { bytes: new Uint8Array(), seq: 0 };
  function currentSnapshot() {
    const json = core.statusJson();
    if (json !== snapshotFor) {
      const seq = holder?.history(1)[0]?.seq ?? 0;
      const id = seq > 0 ? `id: ${seq}\n` : '';
      snapshot = {
        bytes: encoder.encode(`${id}data: {"kind":"snapshot","status":${json}}\n\n`),
        seq,
      };
      snapshotFor = json;
    }
    return snapshot;
  }

  /** Moves what the client's stream will take now from its queue (or a snapshot) into it. */
  function flush(c: Client): void {
    while (!c.closed && c.out.room()) {
      const next = c.pending.shift();
      if (next) c.out.write(next);
      else if (c.stale) {
        const s = currentSnapshot();
        c.stale = false;
        c.seq = s.seq;
        c.out.write(s.bytes);
      } else return;
    }
  }

  function push(c: Client, bytes: Uint8Array): void {
    if (c.pending.length === 0 && c.out.room()) {
      c.out.write(bytes);
    } else if (c.pending.length >= MAX_PENDING) {
      c.pending = []; // a snapshot replaces them when the client reads again
      c.stale = true;
    } else c.pending.push(bytes);
  }

  /** Every client's next message is a fresh snapshot (its queue is dropped). */
  function resync(c: Client): void {
    c.pending = [];
    c.stale = true;
    flush(c);
  }

  function onChange(h: OperationalStateHolder, record: TransitionRecord, state: StatusPayload) {
    let bytes: Uint8Array | undefined;
    for (const c of clients) {
      if (c.stale || c.seq >= record.seq) continue; // its snapshot already holds this record
      c.seq = record.seq;
      if (!bytes) {
        // The history as of this record (later commits may already be in it).
        let length = 0;
        for (const r of h.history()) if (r.seq <= record.seq) length++;
        const { transition_history: _, ...rest } = state;
        const message: StreamChangeMessage = {
          kind: 'change',
          record,
          state: rest,
          history_length: length,
        };
        bytes = encoder.encode(`id: ${record.seq}\ndata: ${JSON.stringify(message)}\n\n`);
      }
      push(c, bytes);
    }
  }

  /** Follows the holder once it exists (until then the stub snapshot was sent). */
  function look(): void {
    if (holder) return;
    let next: OperationalStateHolder | undefined;
    try {
      next = core.holder();
    } catch (err) {
      logger.error(`${HTTP_LOG_TAG} stream: reading the holder failed`, err);
    }
    if (!next) return;
    const h = next;
    holder = h;
    unsubscribe = h.addListener(
      (_old, next, record) => onChange(h, record, statusFrom(next, [], core.chain())),
      { name: 'kora.operational_state.http.stream', requestsTransitions: false },
    );
    for (const c of clients) resync(c);
  }

  function heartbeat(): void {
    look();
    const bytes = encoder.encode(`: heartbeat ${new Date().toISOString()}\n\n`);
    // A client with data queued needs no sign of life.
    for (const c of clients) if (!c.stale && c.pending.length === 0) push(c, bytes);
  }

  /** The last client left: no listener, no timer. */
  function idle(): void {
    if (clients.size > 0) return;
    clearInterval(beat);
    beat = undefined;
    try {
      unsubscribe?.();
    } catch (err) {
      logger.error(`${HTTP_LOG_TAG} stream: unsubscribing failed`, err);
    }
    unsubscribe = undefined;
    holder = undefined;
  }

  /** A new client: the retry line now, its snapshot when it has room. */
  function join(client: Client): void {
    client.out.write(RETRY);
    clients.add(client);
    core.streams.add(client);
    beat ??= setInterval(heartbeat, core.options.heartbeatMs);
    beat.unref?.();
    look();
  }

  /** The client left (`end`: we end it, so it sees the end of the stream). */
  function leave(client: Client, end: boolean): boolean {
    if (client.closed) return false;
    client.closed = true;
    client.pending = [];
    clients.delete(client);
    core.streams.delete(client);
    idle();
    if (end) {
      try {
        client.out.end();
      } catch {
        // Already gone.
      }
    }
    return true;
  }

  function open(signal: AbortSignal): ReadableStream<Uint8Array> {
    let client!: Client;
    const onAbort = () => leave(client, true);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        client = {
          out: {
            room: () => (controller.desiredSize ?? 0) > 0,
            write: (bytes) => controller.enqueue(bytes),
            end: () => controller.close(),
          },
          seq: 0,
          pending: [],
          stale: true,
          closed: false,
          close: () => {
            if (leave(client, true)) signal.removeEventListener('abort', onAbort);
          },
        };
        if (signal.aborted) {
          client.closed = true;
          controller.close();
          return;
        }
        signal.addEventListener('abort', onAbort, { once: true });
        join(client); // the snapshot follows when the client reads
      },
      pull() {
        flush(client);
      },
      cancel() {
        // The client cancelled the body or went away.
        if (leave(client, false)) signal.removeEventListener('abort', onAbort);
      },
    });
    return Object.assign(body, { [END_STREAM]: () => client.close() });
  }

  function openNode(res: ServerResponse): () => void {
    res.writeHead(200, HEADERS);
    res.flushHeaders();
    // Chunked (HTTP/1.1): each message goes to the socket as one chunk framed once for
    // every client — one socket write, where `res.write` makes four of every message.
    const socket = (res as { chunkedEncoding?: boolean }).chunkedEncoding ? res.socket : null;
    const onDrain = () => flush(client);
    const client: Client = {
      out: socket
        ? {
            room: () => !socket.writableNeedDrain && !socket.destroyed,
            write: (bytes) => void socket.write(chunk(bytes)),
            end: () => res.end(),
          }
        : {
            room: () => !res.writableNeedDrain && !res.destroyed,
            write: (bytes) => void res.write(bytes),
            end: () => res.end(),
          },
      seq: 0,
      pending: [],
      stale: true,
      closed: false,
      close: () => void leave(client, true),
    };
    (socket ?? res).on('drain', onDrain);
    res.once('close', () => {
      (socket ?? res).off('drain', onDrain);
      leave(client, false);
    });
    join(client);
    flush(client);
    return client.close;
  }

  return { open, openNode };
}

/** @internal The stream route's handler, on the app's hub. */
export function streamHandler(hub: StreamHub): (c: Context) => Response {
  return (c) => {
    // HEAD: the headers, and no stream left open behind them.
    if (c.req.method === 'HEAD') return new Response(null, { headers: HEADERS });
    return new Response(hub.open(c.req.raw.signal), { headers: HEADERS });
  };
}
