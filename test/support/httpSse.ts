/**
 * A small Server-Sent Events reader for tests: parses a response body into events
 * (`data`, `id`, `retry`, comment lines) one at a time.
 */

/** One event block of the stream. */
export interface SseBlock {
  id?: string;
  data?: string;
  retry?: number;
  /** Comment lines (`: ...`), without the colon. */
  comments: string[];
}

export interface SseReader {
  /** The next block; `undefined` when the stream ended. */
  next(): Promise<SseBlock | undefined>;
  /** The next block with a `data:` line, parsed as JSON; `undefined` when the stream ended. */
  nextData<T = unknown>(): Promise<T | undefined>;
  /** The next comment-only block (e.g. a heartbeat). */
  nextComment(): Promise<string | undefined>;
  /** Cancels the body (the client going away). */
  cancel(): Promise<void>;
}

export function sseReader(body: ReadableStream<Uint8Array>): SseReader {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let ended = false;

  async function next(): Promise<SseBlock | undefined> {
    for (;;) {
      const end = buffer.indexOf('\n\n');
      if (end >= 0) {
        const text = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const block: SseBlock = { comments: [] };
        for (const line of text.split('\n')) {
          if (line.startsWith(':')) block.comments.push(line.slice(1).trim());
          else if (line.startsWith('data: '))
            block.data = (block.data ? `${block.data}\n` : '') + line.slice(6);
          else if (line.startsWith('id: ')) block.id = line.slice(4);
          else if (line.startsWith('retry: ')) block.retry = Number(line.slice(7));
        }
        return block;
      }
      if (ended) return undefined;
      const { done, value } = await reader.read();
      if (done) ended = true;
      else buffer += decoder.decode(value, { stream: true });
    }
  }

  return {
    next,
    async nextData<T>() {
      for (;;) {
        const b = await next();
        if (!b) return undefined;
        if (b.data !== undefined) return JSON.parse(b.data) as T;
      }
    },
    async nextComment() {
      for (;;) {
        const b = await next();
        if (!b) return undefined;
        if (b.data === undefined && b.comments.length) return b.comments.join('\n');
      }
    },
    cancel: () => reader.cancel(),
  };
}
