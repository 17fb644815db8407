/**
 * Holder figures: `send` / `transitionTo` with 0 and 1 listeners vs. a bare XState actor
 * `send` of the same machine and vs. a hand-written `Map` lookup of the table; and the
 * heap after 1,000,000 transitions vs. after 1,000.
 */
import { Bench } from 'tinybench';
import { createActor } from 'xstate';
import { operationalStateMachine } from '../../machines/operationalState.machine.js';
import { createOperationalStateHolder } from '../../src/holder.js';
import { TRANSITION_TABLE } from '../../src/table.js';
import type { BenchRow } from './types.js';

const quiet = { error() {}, warn() {}, info() {}, debug() {} };

export async function benchHolder(options: { time?: number } = {}): Promise<BenchRow[]> {
  const time = options.time ?? 1000;
  const bench = new Bench({ time, warmupTime: 200 });

  // Baseline 1: a hand-written table lookup (what a non-statechart holder would do).
  const table = new Map<string, string>();
  for (const r of TRANSITION_TABLE) table.set(`${r.from}>${r.to}`, r.event);
  let state = 'ready';
  bench.add('Map lookup of the table (ready ⇄ active)', () => {
    const to = state === 'ready' ? 'active' : 'ready';
    if (!table.has(`${state}>${to}`)) throw new Error('no row');
    state = to;
  });

  // Baseline 2: a bare actor of the same machine.
  const actor = createActor(operationalStateMachine, {
    snapshot: operationalStateMachine.resolveState({
      value: { live: { unpaused: 'ready' } },
      context: {
        primaryState: 'ready',
        claimPermission: 'normal',
        degradationReasons: [],
        claimHeld: false,
        retries: {},
        retryBudget: 4,
      },
    }),
    input: {},
  }).start();
  let held = false;
  bench.add('bare XState actor send (ready ⇄ active)', () => {
    actor.send(held ? { type: 'claim.released' } : { type: 'claim.acquired' });
    held = !held;
  });

  for (const listeners of [0, 1]) {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' }, logger: quiet });
    if (listeners) h.addListener(() => {});
    bench.add(`holder.send, ${listeners} listener${listeners === 1 ? '' : 's'}`, async () => {
      await h.send(
        h.current.primaryState === 'ready'
          ? { type: 'claim.acquired' }
          : { type: 'claim.released' },
      );
    });
    const t = createOperationalStateHolder({ initial: { primaryState: 'ready' }, logger: quiet });
    if (listeners) t.addListener(() => {});
    bench.add(
      `holder.transitionTo, ${listeners} listener${listeners === 1 ? '' : 's'}`,
      async () => {
        if (t.current.primaryState === 'ready') await t.transitionTo('active', 'claim acquired');
        else await t.transitionTo('ready', 'claim released');
      },
    );
  }

  await bench.run();
  const hz = (name: string) => {
    const task = bench.getTask(name);
    const result = task?.result as { throughput?: { mean: number }; hz?: number } | undefined;
    const value = result?.throughput?.mean ?? result?.hz;
    if (!value) throw new Error(`bench task ${name} has no result`);
    return value;
  };
  const bare = 'bare XState actor send (ready ⇄ active)';
  const map = 'Map lookup of the table (ready ⇄ active)';
  const rows: BenchRow[] = [];
  for (const task of bench.tasks) {
    if (task.name === bare || task.name === map) continue;
    const v = hz(task.name);
    rows.push({
      group: 'holder',
      name: task.name,
      value: v,
      unit: 'ops/s',
      baseline: bare,
      baselineValue: hz(bare),
      ratio: v / hz(bare),
      ...(task.name === 'holder.transitionTo, 0 listeners'
        ? { target: '≥ 0.33× (within 3× of a bare send)', met: v / hz(bare) >= 1 / 3 }
        : {}),
    });
    rows.push({
      group: 'holder',
      name: task.name,
      value: v,
      unit: 'ops/s',
      baseline: map,
      baselineValue: hz(map),
      ratio: v / hz(map),
    });
  }
  rows.push({
    group: 'holder',
    name: 'bare XState actor send (ready ⇄ active)',
    value: hz(bare),
    unit: 'ops/s',
    baseline: map,
    baselineValue: hz(map),
    ratio: hz(bare) / hz(map),
  });
  return rows;
}

function heapMiB(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/**
 * Heap after 1,000,000 transitions vs. after 1,000, with one listener: the history ring
 * keeps memory flat. Run with `--expose-gc` for a stable reading.
 */
export async function benchHolderMemory(transitions = 1_000_000): Promise<BenchRow[]> {
  const h = createOperationalStateHolder({ initial: { primaryState: 'ready' }, logger: quiet });
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
  await run(transitions - 1000);
  const after1m = heapMiB();
  if (seen !== transitions) throw new Error(`listener saw ${seen} of ${transitions}`);
  return [
    {
      group: 'memory',
      name: `heap after ${transitions.toLocaleString('en-US')} transitions (1 listener)`,
      value: after1m,
      unit: 'MiB',
      baseline: 'heap after 1,000 transitions',
      baselineValue: after1k,
      ratio: after1m / after1k,
      target: '≈ 1× (bounded history)',
      met: after1m / after1k < 1.5,
    },
  ];
}
