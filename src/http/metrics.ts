/**
 * `/metrics`: the operational state in Prometheus text, through prom-client. Gauges are
 * read at scrape time (`collect`); transition counters count committed records.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { OperationalStateHolder, TransitionRecord } from '../holder.js';
import {
  CLAIM_PERMISSIONS,
  DEGRADATION_REASONS,
  type OperationalState,
  PRIMARY_STATES,
} from '../vocabulary.js';
import type { EmitterLike, SinkLike } from './status.js';

/** Every metric name this module registers starts with this. */
export const METRIC_PREFIX = 'kora_operational_state';

/**
 * @internal What the metrics read at scrape time. The emitter's and the sink's metrics are
 * registered at the first scrape that finds them (an instance may connect its sink after
 * the app exists); until then they are absent, not zero.
 */
export interface MetricSources {
  holder(): OperationalStateHolder | undefined;
  emitter(): EmitterLike | undefined;
  sink(): SinkLike | undefined;
  openStreams(): number;
}

/** @internal The handler's metrics: scrape-time gauges plus transition counters. */
export interface StatusMetrics {
  /** Counts one committed record (by seq: a record is counted at most once per holder). */
  record(record: TransitionRecord): void;
  /** Starts counting a new holder (seq restarts); counts the history it already kept. */
  follow(holder: OperationalStateHolder): void;
  /** Prometheus text of the whole registry. */
  text(): Promise<string>;
  /**
   * {@link text} encoded. Collected again only when something it shows moved; a registry
   * holding metrics of others is collected on every call (their values are not ours to know).
   */
  body(): Promise<Uint8Array>;
  readonly contentType: string;
  /** Removes this module's metrics from the registry. */
  remove(): void;
}

const BOOTING: OperationalState = {
  primaryState: 'booting',
  claimPermission: 'none',
  degradationReasons: [],
};

const encoder = new TextEncoder();

/** @internal Registers the metrics on `registry` (throws when one is already registered). */
export function createStatusMetrics(registry: Registry, sources: MetricSources): StatusMetrics {
  const names: string[] = [];
  const registers = [registry];
  const name = (suffix: string) => {
    const n = suffix ? `${METRIC_PREFIX}_${suffix}` : METRIC_PREFIX;
    names.push(n);
    return n;
  };
  const current = () => sources.holder()?.current ?? BOOTING;

  new Gauge({
    name: name(''),
    help: 'Primary operational state: 1 for the current state, 0 for the others.',
    labelNames: ['state'],
    registers,
    collect() {
      const s = current().primaryState;
      for (const state of PRIMARY_STATES) this.set({ state }, state === s ? 1 : 0);
    },
  });
  new Gauge({
    name: name('initialized'),
    help: '1 once the OperationalStateHolder exists (before that the status API serves a stub).',
    registers,
    collect() {
      this.set(sources.holder() ? 1 : 0);
    },
  });
  new Gauge({
    name: name('claim_permission'),
    help: 'Claim permission: 1 for the current one, 0 for the others.',
    labelNames: ['permission'],
    registers,
    collect() {
      const p = current().claimPermission;
      for (const permission of CLAIM_PERMISSIONS)
        this.set({ permission }, permission === p ? 1 : 0);
    },
  });
  new Gauge({
    name: name('degradation_reason'),
    help: 'Degradation reasons: 1 when active.',
    labelNames: ['reason'],
    registers,
    collect() {
      const active = new Set(current().degradationReasons);
      for (const reason of DEGRADATION_REASONS) this.set({ reason }, active.has(reason) ? 1 : 0);
    },
  });
  const transitions = new Counter({
    name: name('transitions_total'),
    help: 'Committed transitions by from/to primary state (same-state updates included).',
    labelNames: ['from', 'to'],
    registers,
  });
  new Counter({
    name: name('rejected_total'),
    help: 'Transitions the holder rejected (not in the table, guard failed, stopped).',
    registers,
    collect() {
      this.reset();
      this.inc(sources.holder()?.stats.rejected ?? 0);
    },
  });
  new Counter({
    name: name('listener_failures_total'),
    help: 'Holder listeners that threw, rejected or timed out.',
    registers,
    collect() {
      const s = sources.holder()?.stats;
      this.reset();
      this.inc(s ? s.listenerFailures + s.listenerTimeouts : 0);
    },
  });
  new Gauge({
    name: name('stream_clients'),
    help: 'Open Server-Sent Events streams.',
    registers,
    collect() {
      this.set(sources.openStreams());
    },
  });
  const emitted = (pick: (s: EmitterLike['stats']) => number) => () =>
    pick(sources.emitter()?.stats ?? { emitted: 0, failures: 0 });
  const sunk = (pick: (s: SinkLike['stats']) => number | undefined) => () =>
    pick(sources.sink()?.stats ?? { appended: 0, failures: 0, outboxDepth: 0, dropped: 0 }) ?? 0;
  const counter = (suffix: string, help: string, read: () => number) =>
    new Counter({
      name: name(suffix),
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  let emitterMetrics = false;
  let sinkMetrics = false;
  /** Registers the emitter's and the sink's metrics once they exist. */
  const discover = () => {
    if (!emitterMetrics && sources.emitter()) {
      emitterMetrics = true;
      counter(
        'emitted_total',
        'Chain events the emit listener stored.',
        emitted((s) => s.emitted),
      );
      counter(
        'emit_failures_total',
        'Chain-event emits that failed (logged with [kora.operational_state.emit]).',
        emitted((s) => s.failures),
      );
    }
    if (!sinkMetrics && sources.sink()) {
      sinkMetrics = true;
      const depth = sunk((s) => s.outboxDepth);
      new Gauge({
        name: name('outbox_depth'),
        help: 'Chain events waiting in the durable sink outbox.',
        registers,
        collect() {
          this.set(depth());
        },
      });
      counter(
        'outbox_dropped_total',
        'Chain events dropped because the outbox was full.',
        sunk((s) => s.dropped),
      );
      counter(
        'sink_failures_total',
        'Failed append attempts of the durable sink (each retry counts).',
        sunk((s) => s.failures),
      );
      counter(
        'sink_refused_total',
        'Chain events the store refused for good (not retried, not stored).',
        sunk((s) => s.refused),
      );
    }
  };
  discover();

  // What the metrics show, as one string: equal strings, equal text. The state's
  // identity changes on every commit; the counters are read as the collectors read them.
  let shownState: OperationalState | undefined;
  let commits = 0;
  const version = (): string | undefined => {
    if (registry.getMetricsAsArray().length !== names.length) return undefined;
    const h = sources.holder();
    const state = h?.current;
    if (state !== shownState) {
      shownState = state;
      commits++;
    }
    const hs = h?.stats;
    const e = sources.emitter()?.stats;
    const s = sources.sink()?.stats;
    return [
      names.length,
      h ? 1 : 0,
      commits,
      lastSeq,
      hs?.rejected,
      hs?.listenerFailures,
      hs?.listenerTimeouts,
      sources.openStreams(),
      e?.emitted,
      e?.failures,
      s?.outboxDepth,
      s?.dropped,
      s?.failures,
      s?.refused,
    ].join();
  };
  let cachedFor: string | undefined;
  let cachedText = '';
  let bytesFor: string | undefined;
  let bytes = new Uint8Array();
  const text = async () => {
    discover();
    const v = version(); // read before collecting: a change during it collects again next time
    if (v !== undefined && v === cachedFor) return cachedText;
    const t = await registry.metrics();
    cachedFor = v;
    cachedText = t;
    return t;
  };

  let lastSeq = 0;
  const record = (r: TransitionRecord) => {
    if (r.seq <= lastSeq) return;
    lastSeq = r.seq;
    transitions.inc({ from: r.from_state, to: r.to_state });
  };
  return {
    record,
    follow(holder) {
      lastSeq = 0;
      for (const r of holder.history()) record(r);
    },
    text,
    async body() {
      const t = await text();
      if (t !== bytesFor) {
        bytes = encoder.encode(t);
        bytesFor = t;
      }
      return bytes;
    },
    get contentType() {
      return registry.contentType;
    },
    remove() {
      for (const n of names) registry.removeSingleMetric(n);
    },
  };
}
