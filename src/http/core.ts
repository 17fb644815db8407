/**
 * What the routes share: the holder (given, or asked for until it exists and then kept),
 * the metrics that follow it, the chain health, the cached status JSON, the open streams
 * and whether the app was closed.
 */
import { OperationalStateHolder } from '../holder.js';
import type { Logger } from '../logger.js';
import { type Cockpit, createCockpit } from './cockpit.js';
import { createInspectorLog, type InspectorLog } from './inspectorLog.js';
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
  /** The actor's recent steps for the offline inspector (`GET /api/inspector`). */
  readonly inspector: InspectorLog;
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
  /**
   * `GET /api/operational-state` as JSON text: the same string until a commit or the
   * chain counters change it (compare with `===`).
   */
  statusJson(): string;
  /** {@link statusJson} encoded, the same bytes until the text changes. */
  statusBody(): Uint8Array;
  /** Records a finished chain verification: the cockpit's `chain_store.last_verify`. */
  verified: Cockpit['verified'];
  readonly closed: boolean;
  /** Ends the streams, removes the holder listener and the metrics. Idempotent. */
  close(): void;
}

const encoder = new TextEncoder();

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
        requestsTransitions: false,
      });
      untime = cockpit.follow(h);
      unfollowSteps = inspector.follow(h);
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
  const cockpit = createCockpit(options.cockpit, sink, options.operatorToken !== undefined);
  let untime: (() => void) | undefined;
  const inspector = createInspectorLog(options.inspectorSteps, options.cockpit.now, logger);
  let unfollowSteps: (() => void) | undefined;

  // The payload changes on a commit (every commit swaps `holder.current` for a new frozen
  // object: its identity keys the serialized state) and when the chain counters move (they
  // move on their own: their small JSON is built on each read and compared). The text and
  // its bytes are reused until either changes, so a read is never stale and an unchanged
  // payload is served without serializing or encoding it again.
  let stateFor: OperationalStateHolder['current'] | undefined;
  let stateJson = '';
  let chainJson: string | undefined;
  let extraJson = '';
  let cachedJson = JSON.stringify(STUB_STATUS);
  let bodyFor: string | undefined;
  let body = new Uint8Array();
  let stub = true;
  function statusJson(): string {
    const h = holder();
    if (!h) {
      if (!stub) cachedJson = JSON.stringify(STUB_STATUS);
      stub = true;
      return cachedJson;
    }
    const current = h.current;
    const c = chain();
    const cj = c ? JSON.stringify(c) : undefined;
    // The cockpit's keys (only with its options) move on their own too: compared likewise.
    const xj = cockpit.json(h);
    if (stub || current !== stateFor || cj !== chainJson || xj !== extraJson) {
      if (stub || current !== stateFor) {
        stateJson = JSON.stringify(statusOf(h));
        stateFor = current;
      }
      stub = false;
      chainJson = cj;
      extraJson = xj;
      const chainPart = cj === undefined ? '' : `,"chain":${cj}`;
      cachedJson = chainPart || xj ? `${stateJson.slice(0, -1)}${chainPart}${xj}}` : stateJson;
    }
    return cachedJson;
  }
  function statusBody(): Uint8Array {
    const text = statusJson();
    if (text !== bodyFor) {
      body = encoder.encode(text);
      bodyFor = text;
    }
    return body;
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
    inspector,
    holder,
    sink,
    emitter,
    chain,
    statusJson,
    statusBody,
    verified: cockpit.verified,
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
      untime?.();
      untime = undefined;
      unfollowSteps?.();
      unfollowSteps = undefined;
      metrics.remove();
    },
  };
}
