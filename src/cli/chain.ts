/** `kora-opstate verify-chain` and `kora-opstate events`. */
import type { PositionedChainEvent } from '../sinks/sql.js';
import { quote } from '../vocabulary.js';
import { UsageError } from './io.js';
import type { Command } from './main.js';
import {
  openChainReader,
  resolveStore,
  resolveWorkspace,
  STORE_OPTIONS,
  STORE_USAGE,
} from './store.js';

/** @internal */
export const verifyChainCommand: Command = {
  name: 'verify-chain',
  summary: "recompute a workspace's hash chain",
  usage: `[options]

Recomputes every link of the workspace's chain (sha256 of the previous hash and the
canonical event). Exit 0 when it holds; exit 1 naming the first broken link.

Options:
${STORE_USAGE}
  --json               print the result as JSON
  -h, --help           this help`,
  options: { ...STORE_OPTIONS, json: { type: 'boolean' } },
  async run(values, positionals, io) {
    noPositionals(positionals);
    const store = resolveStore(values, io);
    const workspace = resolveWorkspace(values, io);
    const reader = await openChainReader(store, workspace);
    try {
      const r = await reader.verifyChain();
      if (values.json) {
        io.stdout(`${JSON.stringify({ workspace_id: workspace, ...r })}\n`);
      } else if (r.ok) {
        io.stdout(`chain ok: workspace ${quote(workspace)}, ${r.events} events (${reader.via})\n`);
      } else {
        io.stdout(
          `chain BROKEN: workspace ${quote(workspace)}, event ${r.eventId}: ${r.reason} (${r.events} events before it verified; ${reader.via})\n`,
        );
      }
      return r.ok ? 0 : 1;
    } finally {
      await reader.close();
    }
  },
};

/** Events per look of `--follow` (the chain route's largest page). */
const FOLLOW_PAGE = 1000;

/** @internal */
export const eventsCommand: Command = {
  name: 'events',
  summary: 'print the newest chain events',
  usage: `[options]

Prints the newest chain events of the workspace, oldest first, one line each.

Options:
  -n, --limit N        how many (1-1000, default 20)
  -f, --follow         keep printing new events until interrupted
  --interval-ms MS     how often --follow looks (default 500)
  --json               one JSON object per line
${STORE_USAGE}
  -h, --help           this help`,
  options: {
    ...STORE_OPTIONS,
    limit: { type: 'string', short: 'n', default: '20' },
    follow: { type: 'boolean', short: 'f' },
    'interval-ms': { type: 'string', default: '500' },
    json: { type: 'boolean' },
  },
  async run(values, positionals, io) {
    noPositionals(positionals);
    const limit = intFlag('limit', values.limit, 1, 1000);
    const intervalMs = intFlag('interval-ms', values['interval-ms'], 10, 60_000);
    const store = resolveStore(values, io);
    const workspace = resolveWorkspace(values, io);
    const reader = await openChainReader(store, workspace);
    const print = (e: PositionedChainEvent) =>
      io.stdout(`${values.json ? JSON.stringify(e) : formatEvent(e)}\n`);
    try {
      let last = 0;
      for (const e of await reader.tail({ limit })) {
        print(e);
        last = e.chain_seq;
      }
      if (!values.follow) return 0;
      const stop = interrupted();
      try {
        while (!(await stop.wait(intervalMs))) {
          // Page forward from the last position seen until caught up: nothing is skipped,
          // however many events arrived between two looks.
          for (;;) {
            const page = await reader.tail({ limit: FOLLOW_PAGE, afterSeq: last, take: 'oldest' });
            for (const e of page) {
              print(e);
              last = e.chain_seq;
            }
            if (page.length < FOLLOW_PAGE) break;
          }
        }
      } finally {
        stop.dispose();
      }
      return 0;
    } finally {
      await reader.close();
    }
  },
};

/** One chain event as a line: position, time, type, who, the change and its trigger. */
function formatEvent(e: PositionedChainEvent): string {
  const p = e.payload as Record<string, unknown>;
  const change =
    typeof p.from_primary_state === 'string'
      ? `${p.from_primary_state} → ${p.to_primary_state}`
      : '';
  const reasons = Array.isArray(p.degradation_reasons) ? p.degradation_reasons.join(',') : '';
  return [
    `#${e.chain_seq}`,
    e.occurred_at,
    e.event_type,
    `${e.instance_id}/${e.seq}`,
    change,
    `permission=${String(p.claim_permission ?? '-')}`,
    `reasons=${reasons || '-'}`,
    typeof p.trigger === 'string' ? JSON.stringify(p.trigger) : '',
  ]
    .filter(Boolean)
    .join('  ');
}

function noPositionals(positionals: string[]): void {
  if (positionals.length) {
    throw new UsageError(`unexpected argument ${quote(positionals[0])}`);
  }
}

/** @internal A whole-number flag within bounds, or a usage error naming the value. */
export function intFlag(name: string, value: unknown, min: number, max: number): number {
  const text = String(value);
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(
      `invalid --${name} ${quote(value)}: expected a whole number from ${min} to ${max}`,
    );
  }
  return Number(text);
}

/** SIGINT/SIGTERM end `--follow` cleanly (exit 0). */
function interrupted() {
  let stopped = false;
  let wake: (() => void) | undefined;
  const onSignal = () => {
    stopped = true;
    wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    /** Waits `ms`; true once a signal came. */
    wait(ms: number): Promise<boolean> {
      if (stopped) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(stopped), ms);
        wake = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
    },
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
