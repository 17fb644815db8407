/**
 * Holder figures (in-process: CPU-bound): `transitionTo` (ready ⇄ active) with 0, 1 and
 * 10 no-op listeners (plain functions; and `async` ones, which run in the holder's async
 * context unless declared), and `send` with 1, vs. a bare XState actor of the same machine
 * doing the same transitions — the cost the holder adds over the actor it wraps. Each
 * round runs a fixed batch of every variant, in a rotated order, after a warm-up round.
 * Also the memory bound: the heap after 1,000,000 transitions vs. after 1,000.
 */
import { createActor } from 'xstate';
import { createOpstate, operationalStateMachine } from '../../src/index.js';
import { heapMiB, paired, quiet, row, type SuiteOptions } from './stats.js';
import type { BenchRow } from './types.js';

/** A bare actor of the machine, driven to `ready` by its own events. */
function bareActor() {
  const actor = createActor(operationalStateMachine, { input: {} }).start();
  actor.send({ type: 'boot.gates_passed' } as never);
  const state = () => (actor.getSnapshot().context as { primaryState: string }).primaryState;
  if (state() !== 'ready') throw new Error(`bare actor: expected ready, got ${state()}`);
  let held = false;
  return {
    step() {
      actor.send((held ? { type: 'claim.released' } : { type: 'claim.acquired' }) as never);
      held = !held;
    },
    check() {
      if (state() !== (held ? 'active' : 'ready')) throw new Error('bare actor did not move');
    },
  };
}

/**
 * A holder with `listeners` no-op listeners: plain functions, or `async` ones — which
 * may request a transition after an `await`, so they run in the holder's async context
 * unless declared `requestsTransitions: false`.
 */
function holderWith(listeners: number, kind: 'sync' | 'async' | 'async declared' = 'sync') {
  const h = createOpstate({ initial: { primaryState: 'ready' }, logger: quiet });
  for (let i = 0; i < listeners; i++) {
    if (kind === 'sync') h.addListener(() => {});
    else h.addListener(async () => {}, kind === 'async' ? {} : { requestsTransitions: false });
  }
  return h;
}

export async function benchHolder(options: SuiteOptions = {}): Promise<BenchRow[]> {
  const rounds = options.rounds ?? 9;
  const batch = options.quick ? 2000 : 6000;
  const bare = bareActor();
  const timed = async (fn: () => unknown) => {
    const t = performance.now();
    for (let i = 0; i < batch; i++) await fn();
    return batch / ((performance.now() - t) / 1000);
  };
  const flip = (h: ReturnType<typeof holderWith>) => () =>
    h.current.primaryState === 'ready'
      ? h.transitionTo('active', 'claim acquired')
      : h.transitionTo('ready', 'claim released');
  const h0 = holderWith(0);
  const h1 = holderWith(1);
  const h10 = holderWith(10);
  const h1a = holderWith(1, 'async');
  const h10a = holderWith(10, 'async');
  const h1q = holderWith(1, 'async declared');
  const s1 = holderWith(1);
  const sendFlip = () =>
    s1.send(
      s1.current.primaryState === 'ready' ? { type: 'claim.acquired' } : { type: 'claim.released' },
    );
  // The bare side is timed the same way (an awaited call per transition) so the
  // per-call await is not charged to the holder.
  const bareRun = async () => {
    const v = await timed(() => bare.step());
    bare.check();
    return v;
  };
  const r = await paired(rounds, bareRun, {
    t0: () => timed(flip(h0)),
    t1: () => timed(flip(h1)),
    t10: () => timed(flip(h10)),
    t1a: () => timed(flip(h1a)),
    t10a: () => timed(flip(h10a)),
    t1q: () => timed(flip(h1q)),
    s1: () => timed(sendFlip),
  });
  for (const h of [h0, h1, h10, h1a, h10a, h1q, s1]) {
    if (h.stats.commits < batch * rounds) throw new Error(`holder committed ${h.stats.commits}`);
  }
  const baseline = 'bare XState actor `send` of the same machine (ready ⇄ active)';
  const note = `${rounds} rounds × ${batch.toLocaleString('en-US')} transitions, each beside a bare run of the same size (order flipping), in-process`;
  return [
    row(
      {
        group: 'holder',
        name: 'holder.transitionTo, 0 listeners',
        unit: 'ops/s',
        baseline,
        note,
        target: '≥ 0.33×',
        check: (x) => x >= 0.33,
      },
      r.t0.value,
      r.t0.baseline,
    ),
    row(
      {
        group: 'holder',
        name: 'holder.transitionTo, 1 no-op listener',
        unit: 'ops/s',
        baseline,
        note,
        target: '≥ 0.67×',
        check: (x) => x >= 0.67,
      },
      r.t1.value,
      r.t1.baseline,
    ),
    row(
      {
        group: 'holder',
        name: 'holder.transitionTo, 10 no-op listeners',
        unit: 'ops/s',
        baseline,
        note,
        target: '≥ 0.4×',
        check: (x) => x >= 0.4,
      },
      r.t10.value,
      r.t10.baseline,
    ),
    row(
      {
        group: 'holder',
        name: 'holder.transitionTo, 1 async no-op listener',
        unit: 'ops/s',
        baseline,
        note,
      },
      r.t1a.value,
      r.t1a.baseline,
    ),
    row(
      {
        group: 'holder',
        name: 'holder.transitionTo, 10 async no-op listeners',
        unit: 'ops/s',
        baseline,
        note,
      },
      r.t10a.value,
      r.t10a.baseline,
    ),
    row(
      {
        group: 'holder',
        name: 'holder.transitionTo, 1 async no-op listener declared requestsTransitions: false',
        unit: 'ops/s',
        baseline,
        note,
      },
      r.t1q.value,
      r.t1q.baseline,
    ),
    row(
      { group: 'holder', name: 'holder.send, 1 no-op listener', unit: 'ops/s', baseline, note },
      r.s1.value,
      r.s1.baseline,
    ),
  ];
}

/**
 * Heap after 1,000,000 transitions (one listener) vs. after 1,000: the history ring keeps
 * memory flat. The figure is read at five checkpoints (200k, 400k, ... 1M) — its spread
 * is how flat it stays; the baseline is one reading. Run with `--expose-gc`.
 */
export async function benchHolderMemory(options: SuiteOptions = {}): Promise<BenchRow[]> {
  const transitions = options.quick ? 20_000 : 1_000_000;
  const h = createOpstate({ initial: { primaryState: 'ready' }, logger: quiet });
  let seen = 0;
  h.addListener(() => {
    seen++;
  });
  const run = async (n: number) => {
    for (let i = 0; i < n; i++) {
      if (h.current.primaryState === 'ready') await h.send({ type: 'claim.acquired' });
      else await h.send({ type: 'claim.released' });
    }
  };
  await run(1000);
  const after1k = heapMiB();
  const rss1k = process.memoryUsage().rss / 2 ** 20;
  const checkpoints: number[] = [];
  const step = (transitions - 1000) / 5;
  for (let c = 0; c < 5; c++) {
    await run(step);
    checkpoints.push(heapMiB());
  }
  const rss = process.memoryUsage().rss / 2 ** 20;
  if (seen !== transitions) throw new Error(`listener saw ${seen} of ${transitions}`);
  const n = transitions.toLocaleString('en-US');
  return [
    row(
      {
        group: 'memory',
        name: `heap at 5 checkpoints up to ${n} transitions (1 listener)`,
        unit: 'MiB',
        baseline: 'heap after 1,000 transitions',
        note: `process RSS ${rss.toFixed(0)} MiB at the end vs ${rss1k.toFixed(0)} MiB after 1,000 (the bench process, not an agent)`,
        target: '≤ 1.5× (bounded history)',
        check: (x) => x <= 1.5,
      },
      checkpoints,
      checkpoints.map(() => after1k),
    ),
  ];
}
