/** `kora-opstate verify-chain` and `kora-opstate events`. */
import { resolve } from 'node:path';
import { resolveChainKey } from '../chainKey.js';
import { errorText } from '../logger.js';
import type { PositionedChainEvent } from '../sinks/sql.js';
import type { ChainHead } from '../sinks/types.js';
import { parseChainHead } from '../sinks/verify.js';
import { quote } from '../vocabulary.js';
import { type Command, intFlag, noPositionals, UsageError, untilSignal } from './command.js';
import {
  openChainReader,
  resolveDataDir,
  resolveStore,
  resolveWorkspace,
  STORE_OPTIONS,
  STORE_USAGE,
  storeIdentity,
} from './store.js';
import { readVerifiedHead, rememberVerifiedHead, VERIFIED_HEADS_FILE } from './verifiedHeads.js';

/** @internal */
export const verifyChainCommand: Command = {
  name: 'verify-chain',
  summary: "verify a workspace's chain",
  usage: `[options]

Verifies the workspace's chain: every link (sha256, or HMAC with the chain key once the
chain is keyed), positions without a gap, and that the chain still extends the heads
verified before (remembered in <data-dir>/${VERIFIED_HEADS_FILE}) and any --expect-head.
By default only the events after the remembered head are checked (incremental).
Exit 0 when it holds; exit 1 naming the first event that does not.

Options:
${STORE_USAGE}
  --chain-key-file F   the chain key (default: env KORA_CHAIN_KEY, else <data-dir>/chain.key)
  --full               re-check every event, not only those after the remembered head
  --expect-head S:H    fail unless the chain still holds hash H at position S (repeatable)
  --json               print the result as JSON
  --operator-token T   a running agent's operator token, when it has one (env KORA_OPERATOR_TOKEN)
  -h, --help           this help`,
  options: {
    ...STORE_OPTIONS,
    'chain-key-file': { type: 'string' },
    'operator-token': { type: 'string' },
    full: { type: 'boolean' },
    'expect-head': { type: 'string', multiple: true },
    json: { type: 'boolean' },
  },
  async run(values, positionals, io) {
    noPositionals(positionals);
    const store = resolveStore(values, io);
    const workspace = resolveWorkspace(values, io);
    const dataDir = resolveDataDir(values, io);
    let expectHeads: ChainHead[];
    try {
      expectHeads = ((values['expect-head'] as string[] | undefined) ?? []).map((h) =>
        parseChainHead(h, '--expect-head'),
      );
    } catch (err) {
      throw new UsageError(errorText(err));
    }
    const keyFile = values['chain-key-file'] as string | undefined;
    // verify-chain never creates a key: without one, a keyed chain fails saying so.
    const key = await resolveChainKey({
      env: io.env,
      ...(keyFile !== undefined ? { keyFile: resolve(io.cwd, keyFile) } : {}),
      dataDir,
    });
    if (key.warning) io.stderr(`kora-opstate verify-chain: warning: ${key.warning}\n`);
    const identity = storeIdentity(store);
    const remembered = await readVerifiedHead(dataDir, identity, workspace);
    const full = Boolean(values.full) || remembered === undefined;
    // Through a running agent that has an operator token, /chain/verify needs it.
    const token = (values['operator-token'] as string | undefined) ?? io.env.KORA_OPERATOR_TOKEN;
    const reader = await openChainReader(store, workspace, key.key, token || undefined);
    try {
      const r = await reader.verifyChain({
        ...(full ? {} : { from: remembered }),
        expectHeads: full && remembered ? [remembered, ...expectHeads] : expectHeads,
      });
      const mode = full ? 'full' : `incremental from #${remembered!.chain_seq}`;
      if (r.ok && r.head) {
        await rememberVerifiedHead(dataDir, identity, workspace, {
          chain_seq: r.head.chain_seq,
          hash: r.head.hash,
          keyed_from: r.keyedFrom,
          verified_at: new Date().toISOString(),
        });
      }
      if (values.json) {
        io.stdout(
          `${JSON.stringify({ workspace_id: workspace, mode: full ? 'full' : 'incremental', ...r })}\n`,
        );
        return r.ok ? 0 : 1;
      }
      const ws = quote(workspace);
      if (r.ok && r.head === null) {
        io.stdout(`no events in workspace ${ws}: nothing to verify (${reader.via})\n`);
        return 0;
      }
      if (r.ok) {
        io.stdout(`chain ok: workspace ${ws}, ${r.events} events (${reader.via})\n`);
      } else {
        const which =
          r.eventId !== null
            ? `event ${r.eventId}${r.chainSeq !== null ? ` (#${r.chainSeq})` : ''}`
            : `event #${r.chainSeq} (gone)`;
        io.stdout(
          `chain BROKEN: workspace ${ws}, ${which}: ${r.reason} (${r.events} events before it verified; ${reader.via})\n`,
        );
        if (/needs the chain key/.test(r.reason) && !reader.remote) {
          io.stdout(`  no chain key found; looked at: ${key.looked.join(', ')}\n`);
        }
      }
      io.stdout(`  mode        ${mode}, ${r.checked} event(s) checked\n`);
      if (r.head) io.stdout(`  head        #${r.head.chain_seq} ${r.head.hash}\n`);
      io.stdout(
        `  keyed from  ${r.keyedFrom === null ? 'never (unkeyed chain: detects accidental corruption only)' : `#${r.keyedFrom}`}\n`,
      );
      io.stdout(`  gaps        ${r.gaps.length === 0 ? 'none' : r.gaps.length}\n`);
      for (const g of r.gaps) {
        io.stdout(
          `    #${g.chain_seq}: ${g.dropped} event(s) of instance ${quote(g.instance_id)} (seq ${g.from_seq}–${g.to_seq}) were never stored${g.reason ? ` (${g.reason})` : ''}\n`,
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
      const stop = untilSignal();
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
