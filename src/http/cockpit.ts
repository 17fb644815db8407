/**
 * The panel's cockpit (SPEC §12): keys added to the status payload beside the seed's —
 * who the agent is (`agent`), its claim and queue (`claims`), its boot gates (`boot`),
 * its chain store (`chain_store`) and the millisecond time of each transition
 * (`history_times`). Additive only: each key is there only when its source was given to
 * the app, so a payload without them is byte for byte the seed's.
 */
import type { BootSummary } from '../boot/summary.js';
import type { OperationalStateHolder } from '../holder.js';
import type { BootSource, CockpitSources, QueueLike } from './cockpitOptions.js';
import type { Verified } from './verifyCache.js';

export type {
  AgentInfoOptions,
  BootSource,
  CockpitOptions,
  CoordinatorLike,
  PollerLike,
  QueueLike,
} from './cockpitOptions.js';

/** `agent` of the payload. `started_at` is ISO 8601 with milliseconds; uptime is now minus it. */
export interface AgentPayload {
  readonly agent_id: string | null;
  readonly instance_id: string | null;
  readonly version: string | null;
  readonly started_at: string;
  readonly pid: number;
  /** The operator route is on (an `operatorToken` is configured): the panel offers its controls. */
  readonly operator_api: boolean;
}

/** `claims` of the payload. */
export interface ClaimsPayload {
  /** The held claim's ticket, or null. `since`: the `claim.acquired` record's time. */
  readonly held: {
    readonly ticket_id: string;
    readonly critical: boolean;
    readonly attempts: number | null;
    readonly lease_owner: string | null;
    readonly since: string | null;
  } | null;
  /** Tickets queued (the queue's count; null without a `queue`, or before its first count). */
  readonly queue_depth: number | null;
  /** Tickets done in the queue, by every worker (null without a `queue`). */
  readonly done: number | null;
  /** Tickets this agent's poller completed and failed (null without a `poller`). */
  readonly completed: number | null;
  readonly failed: number | null;
  /** When the queue was last counted, and the last count's error. */
  readonly counted_at: string | null;
  readonly queue_error: string | null;
}

/** `boot` of the payload: the gates in order, once the boot has finished. */
export interface BootPayload {
  readonly finished: boolean;
  readonly result: BootSummary['result'] | null;
  readonly gates: readonly {
    readonly id: string;
    readonly class: string;
    readonly outcome: string;
    readonly attempts: number;
    readonly elapsed_ms: number;
    readonly detail: string | null;
  }[];
  readonly failed_gate: string | null;
  readonly error: string | null;
}

/** `chain_store` of the payload: the durable sink's position and the last verification. */
export interface ChainStorePayload {
  readonly workspace_id: string | null;
  readonly head: { readonly chain_seq: number; readonly hash: string } | null;
  readonly key_id: string | null;
  readonly spool_depth: number | null;
  readonly last_verify: {
    readonly at: string;
    readonly ok: boolean;
    readonly events: number;
    readonly reason: string | null;
  } | null;
}

/** @internal What the core asks of the cockpit. */
export interface Cockpit {
  /** The cockpit keys as JSON members (`,"agent":{…}…`), or '' when it has no source. */
  json(holder: OperationalStateHolder): string;
  /** Starts timing `holder`'s commits (for `history_times`); returns the undo. */
  follow(holder: OperationalStateHolder): () => void;
  /** Records a finished chain verification (from `GET …/chain/verify`). */
  verified(v: Verified<{ ok: boolean; events: number; reason?: string }>): void;
}

/** Queue counts are asked for at most this often (ms), and only while the status is read. */
const COUNT_EVERY_MS = 1000;
const iso = (ms: number) => new Date(ms).toISOString();
const text = (v: unknown) => (typeof v === 'string' ? v : null);

/** @internal */
export function createCockpit(
  s: CockpitSources,
  sink: () => object | undefined,
  operatorApi: boolean,
): Cockpit {
  const started = s.agent?.startedAt ?? s.now();
  const startedAt = iso(started instanceof Date ? started.getTime() : started);
  const times = new Map<number, number>();
  let lastVerify: ChainStorePayload['last_verify'] = null;
  let counts: Awaited<ReturnType<QueueLike['counts']>> | undefined;
  let countedAt: number | undefined;
  let countError: string | null = null;
  let counting = false;
  let boot: BootSummary | undefined;
  let bootAsked: PromiseLike<BootSummary> | undefined;

  function count(): void {
    const q = s.queue;
    if (!q || counting || (countedAt !== undefined && s.now() - countedAt < COUNT_EVERY_MS)) return;
    counting = true;
    Promise.resolve()
      .then(() => q.counts())
      .then(
        (c) => {
          counts = c;
          countError = null;
        },
        (err) => {
          countError = err instanceof Error ? err.message : String(err);
        },
      )
      .finally(() => {
        counting = false;
        countedAt = s.now();
      });
  }

  function bootSummary(): BootSummary | undefined {
    if (boot || !s.boot) return boot;
    let b: BootSource | undefined = s.boot;
    if (typeof b === 'function') b = b();
    if (b && typeof (b as PromiseLike<BootSummary>).then === 'function') {
      const p = b as PromiseLike<BootSummary>;
      if (p !== bootAsked) {
        bootAsked = p;
        p.then(
          (summary) => {
            boot = summary;
          },
          () => {},
        );
      }
      return undefined;
    }
    boot = b as BootSummary | undefined;
    return boot;
  }

  function agentPayload(h: OperationalStateHolder): AgentPayload {
    const chain = h.chain;
    return {
      agent_id: s.agent?.agentId ?? chain?.agentId ?? null,
      instance_id: s.agent?.instanceId ?? chain?.instanceId ?? null,
      version: s.agent?.version ?? null,
      started_at: startedAt,
      pid: process.pid,
      operator_api: operatorApi,
    };
  }

  function claimsPayload(h: OperationalStateHolder): ClaimsPayload {
    // With a boot, the queue is counted once it finished: its gates are what open the queue.
    if (!s.boot || bootSummary()) count();
    const t = s.coordinator?.held;
    let since: string | null = null;
    if (t) {
      const acquired = h.history().findLast((r) => r.event === 'claim.acquired');
      if (acquired)
        since = times.has(acquired.seq) ? iso(times.get(acquired.seq)!) : acquired.timestamp;
    }
    const p = s.poller?.stats;
    return {
      held: t
        ? {
            ticket_id: t.id,
            critical: t.critical === true,
            attempts: typeof t.attempts === 'number' ? t.attempts : null,
            lease_owner: text(t.lease?.owner),
            since,
          }
        : null,
      queue_depth: counts ? counts.queued : null,
      done: counts ? counts.done : null,
      completed: p ? p.completed : null,
      failed: p ? p.failed : null,
      counted_at: countedAt !== undefined && counts ? iso(countedAt) : null,
      queue_error: countError,
    };
  }

  function bootPayload(): BootPayload {
    const b = bootSummary();
    return {
      finished: b !== undefined,
      result: b?.result ?? null,
      gates: (b?.gates ?? []).map((g) => ({
        id: g.gate_id,
        class: g.gate_class,
        outcome: g.outcome,
        attempts: g.attempts,
        elapsed_ms: g.elapsed_ms,
        detail: g.detail,
      })),
      failed_gate: b?.failedGate?.gate_id ?? null,
      error: b?.error ?? null,
    };
  }

  function chainStore(): ChainStorePayload | undefined {
    const k = sink() as
      | {
          workspaceId?: unknown;
          head?: { chain_seq: number; hash: string } | null;
          keyId?: unknown;
          stats?: { spool?: { depth?: unknown } };
        }
      | undefined;
    if (!k) return undefined;
    const depth = k.stats?.spool?.depth;
    return {
      workspace_id: text(k.workspaceId),
      head: k.head ? { chain_seq: k.head.chain_seq, hash: k.head.hash } : null,
      key_id: text(k.keyId),
      spool_depth: typeof depth === 'number' ? depth : null,
      last_verify: lastVerify,
    };
  }

  // The parts that move only with a commit (the times) or once (the agent's ids, the
  // finished boot) are serialized once per change, not on every read of the status.
  let timesFor: object | undefined;
  let timesJson = '';
  function historyTimes(h: OperationalStateHolder): string {
    if (h.current !== timesFor) {
      const out: Record<string, string> = {};
      for (const r of h.history()) {
        const ms = times.get(r.seq);
        if (ms !== undefined) out[r.seq] = iso(ms);
      }
      timesJson = JSON.stringify(out);
      timesFor = h.current;
    }
    return timesJson;
  }
  let agentJson: string | undefined;
  function agentPart(h: OperationalStateHolder): string {
    if (agentJson) return agentJson;
    const a = agentPayload(h);
    const json = JSON.stringify(a);
    // The ids may come with a sink connected later: kept once both are known.
    if (a.agent_id !== null && a.instance_id !== null) agentJson = json;
    return json;
  }
  let bootJson: string | undefined;
  function bootPart(): string {
    if (bootJson) return bootJson;
    const b = bootPayload();
    const json = JSON.stringify(b);
    if (b.finished) bootJson = json;
    return json;
  }

  const any = s.agent || s.coordinator || s.poller || s.queue || s.boot;
  return {
    json(h) {
      if (!any) return '';
      let out = '';
      const add = (key: string, json: string | undefined) => {
        if (json !== undefined) out += `,"${key}":${json}`;
      };
      if (s.agent) add('agent', agentPart(h));
      if (s.coordinator || s.poller || s.queue) add('claims', JSON.stringify(claimsPayload(h)));
      if (s.boot) add('boot', bootPart());
      if (s.agent) {
        const store = chainStore();
        add('chain_store', store && JSON.stringify(store));
        add('history_times', historyTimes(h));
      }
      return out;
    },
    follow(h) {
      if (!any) return () => {};
      // The actor notifies its subscribers in order, the holder (which commits) first:
      // the newest record is the one just committed, timed here, not when a listener runs.
      let last = h.history(1)[0]?.seq ?? 0;
      const sub = h.actor.subscribe(() => {
        const seq = h.history(1)[0]?.seq ?? 0;
        if (seq <= last) return;
        last = seq;
        times.set(seq, s.now());
        // Forget the times of records the history no longer holds.
        const oldest = h.history()[0]?.seq ?? seq;
        for (const k of times.keys()) if (k < oldest) times.delete(k);
      });
      return () => sub.unsubscribe();
    },
    verified(v) {
      lastVerify = {
        at: iso(v.at),
        ok: v.result.ok,
        events: v.result.events,
        reason: v.result.reason ?? null,
      };
    },
  };
}
