/**
 * What the routes share: the holder (given, or asked for until it exists and then kept),
 * the metrics that follow it, the chain health, the cached status JSON, the open streams
 * and whether the app was closed.
 */
import { OperationalStateHolder } from '../holder.js';
import type { Logger } from '../logger.js';
import { createStatusMetrics, type StatusMetrics } from './metrics.js';
import { type BearerCheck, bearerCheck } from './middleware.js';
import { hasStats, invalid, type ResolvedStatusOptions } from './options.js';
import { HTTP_LOG_TAG } from './respond.js';
import {
  type ChainHealth,
  chainHealth,
  type EmitterLike,
  type SinkLike,
  STUB_STATUS,
  statusOf,
} from './status.js';

/** @internal An open event stream, as the app sees it. */
export interface OpenStream {
  /** Ends the stream cleanly (the client sees its end); idempotent. */
  close(): void;
}

/** @internal The app's shared state. */
export interface StatusCore {
  readonly options: ResolvedStatusOptions;
  readonly logger: Logger;
  readonly bearer: BearerCheck;
  readonly streams: Set<OpenStream>;
  readonly metrics: StatusMetrics;
  /**
   * The holder, or undefined before it exists. A given holder is returned as is; without
   * one, the source is asked on each call until it returns a holder, which is then kept.
   */
  holder(): OperationalStateHolder | undefined;
  /** The sink: the option, else the holder's own `sink` (duck-typed), read now. */
  sink(): SinkLike | undefined;
  /** The emit listener: the `emitter` option, else the holder's own `chain`, read now. */
  emitter(): EmitterLike | undefined;
  /** The `chain` key, read now (the counters move on their own). */
  chain(): ChainHealth | undefined;
  /** `GET /api/operational-state` as JSON text. */
  statusJson(): string;
  readonly closed: boolean;
  /** Ends the streams, removes the holder listener and the metrics. Idempotent. */
  close(): void;
}

/** @internal */
export function createStatusCore(options: ResolvedStatusOptions): StatusCore {
  const { logger } = options;
  const streams = new Set<OpenStream>();
  const source = options.holder;
  let kept: OperationalStateHolder | undefined;
  let unfollow: (() => void) | undefined;
  let closed = false;

  // An instance (createOpstate) carries its sink and emit listener, perhaps connected
  // only after this app was made: read them when used, never copied.
  const own = <T>(key: 'sink' | 'chain'): T | undefined => {
    const v = (kept as Partial<Record<typeof key, unknown>> | undefined)?.[key];
    return hasStats(v) ? (v as T) : undefined;
  };
  const sink = () => options.sink ?? own<SinkLike>('sink');
  const emitter = () => options.emitter ?? own<EmitterLike>('chain');

  const metrics = createStatusMetrics(options.registry, {
    holder: () => holder(),
    emitter,
    sink,
    openStreams: () => streams.size,
  });

  function keep(h: OperationalStateHolder): OperationalStateHolder {
    kept = h;
    if (!closed) {
      metrics.follow(h);
      unfollow = h.addListener((_old, _next, record) => metrics.record(record), {
        name: 'kora.operational_state.http.metrics',
      });
    }
    return h;
  }

  function holder(): OperationalStateHolder | undefined {
    if (kept || source instanceof OperationalStateHolder) return kept;
    const h = source();
    if (h === undefined) return undefined;
    if (!(h instanceof OperationalStateHolder)) {
      throw invalid('holder()', h, 'an OperationalStateHolder or undefined');
    }
    return keep(h);
  }

  const chain = () => chainHealth(emitter(), sink());

  // The payload only changes on a commit, and every commit swaps `holder.current` for a
  // new frozen object: its identity keys the serialized payload. The chain counters move
  // on their own, so they are spliced in fresh each time.
  let cachedFor: OperationalStateHolder['current'] | undefined;
  let cachedJson = '';
  function statusJson(): string {
    const h = holder();
    if (!h) return JSON.stringify(STUB_STATUS);
    const current = h.current;
    if (current !== cachedFor) {
      cachedJson = JSON.stringify(statusOf(h));
      cachedFor = current;
    }
    const c = chain();
    return c ? `${cachedJson.slice(0, -1)},"chain":${JSON.stringify(c)}}` : cachedJson;
  }

  if (source instanceof OperationalStateHolder) keep(source);
  else {
    try {
      holder();
    } catch (err) {
      logger.error(`${HTTP_LOG_TAG} reading the holder failed`, err);
    }
  }

  return {
    options,
    logger,
    bearer: bearerCheck(options.operatorToken),
    streams,
    metrics,
    holder,
    sink,
    emitter,
    chain,
    statusJson,
    get closed() {
      return closed;
    },
    close() {
      if (closed) return;
      closed = true;
      for (const s of [...streams]) s.close();
      streams.clear();
      unfollow?.();
      unfollow = undefined;
      metrics.remove();
    },
  };
}
