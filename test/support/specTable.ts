/**
 * The §9.1 table and its domain events as SPEC §2 writes them, typed here a second time
 * on purpose: it is the oracle test/paths.test.ts holds the machine's generated paths
 * against. Nothing here is read from machines/ or src/table.ts (only types are imported),
 * so a row, a guard or an effect deleted from the machine shows up as a difference.
 *
 * `specStep` is the table as a function: from a state and an event, the row taken and the
 * state after it, or the reason the spec refuses the event.
 */
import type {
  OperationalEvent,
  OperationalEventType,
} from '../../machines/operationalState.machine.js';
import type {
  ClaimPermission,
  DegradationReason,
  PauseCause,
  PrimaryState,
} from '../../src/vocabulary.js';

/** SPEC §2 invariant: claim permission is `none` here, and an event asking otherwise is refused. */
export const SPEC_NO_CLAIM_STATES: readonly PrimaryState[] = ['booting', 'paused', 'stopped'];

/**
 * How a row sets claim permission.
 * - `none`: into booting, paused or stopped — always `none`.
 * - `grant`: into ready from a no-claim state — the event's, else `normal` (row 1 says so;
 *   rows 10 and 11 get ready's default, SPEC §3).
 * - `keep`: between ready and active — the event's, else unchanged.
 */
export type ClaimRule = 'none' | 'grant' | 'keep';

/** The guards of §2, by the names the spec gives them. */
export type SpecGuardName = 'retryBudgetLeft' | 'creditRefreshSafe';

export interface SpecRow {
  readonly row: number;
  readonly from: PrimaryState;
  readonly to: PrimaryState;
  readonly event: OperationalEventType;
  readonly guard?: SpecGuardName;
  readonly claim: ClaimRule;
  /** Reasons the row adds; for the pause rows they depend on the cause (`PAUSE_CAUSE_ADDS`). */
  readonly adds: readonly DegradationReason[] | 'by pause cause';
  /** Reasons the row removes. */
  readonly removes: readonly DegradationReason[];
}

/** `pause`: `cost_limit` adds `cost`, `operator` adds `operator`, `substrate` adds `substrate`. */
export const PAUSE_CAUSE_ADDS: Readonly<Record<PauseCause, readonly DegradationReason[]>> = {
  stop_kora: [],
  cost_limit: ['cost'],
  operator: ['operator'],
  substrate: ['substrate'],
};
export const DEFAULT_PAUSE_CAUSE: PauseCause = 'operator';

const PAUSE = { event: 'pause', claim: 'none', adds: 'by pause cause', removes: [] } as const;
const STOP = { to: 'stopped', event: 'stop', claim: 'none', adds: [], removes: [] } as const;
const NONE = { claim: 'none', adds: [], removes: [] } as const;

/** The 15 rows of SPEC §2 (`any → X` expanded) with each row's effect on the context. */
export const SPEC_ROWS: readonly SpecRow[] = [
  { row: 1, from: 'booting', to: 'ready', event: 'boot.gates_passed', ...NONE, claim: 'grant' },
  {
    row: 2,
    from: 'booting',
    to: 'booting',
    event: 'boot.gate_retry',
    guard: 'retryBudgetLeft',
    ...NONE,
  },
  { row: 3, from: 'booting', to: 'stopped', event: 'boot.gate_failed', ...NONE },
  {
    row: 4,
    from: 'booting',
    to: 'paused',
    event: 'boot.epoch_mismatch',
    ...NONE,
    adds: ['substrate'],
  },
  { row: 5, from: 'ready', to: 'active', event: 'claim.acquired', ...NONE, claim: 'keep' },
  { row: 6, from: 'active', to: 'ready', event: 'claim.released', ...NONE, claim: 'keep' },
  { row: 7, from: 'ready', to: 'paused', ...PAUSE },
  { row: 8, from: 'active', to: 'paused', ...PAUSE },
  { row: 9, from: 'booting', to: 'paused', ...PAUSE },
  {
    row: 10,
    from: 'paused',
    to: 'ready',
    event: 'resume.credit_refresh',
    guard: 'creditRefreshSafe',
    claim: 'grant',
    adds: [],
    removes: ['cost'],
  },
  {
    row: 11,
    from: 'paused',
    to: 'ready',
    event: 'resume.operator_reset',
    claim: 'grant',
    adds: [],
    removes: ['operator'],
  },
  { row: 12, from: 'ready', ...STOP },
  { row: 13, from: 'active', ...STOP },
  { row: 14, from: 'paused', ...STOP },
  { row: 15, from: 'booting', ...STOP },
];

/** What the spec tracks between events (the state plus what the guards read). */
export interface SpecState {
  readonly primaryState: PrimaryState;
  readonly claimPermission: ClaimPermission;
  /** Sorted, unique. */
  readonly degradationReasons: readonly DegradationReason[];
  /** Since `claim.acquired`, until `claim.released`. */
  readonly claimHeld: boolean;
  /** `boot.gate_retry` count per gate in this boot. */
  readonly retries: Readonly<Record<string, number>>;
}

export const SPEC_INITIAL: SpecState = {
  primaryState: 'booting',
  claimPermission: 'none',
  degradationReasons: [],
  claimHeld: false,
  retries: {},
};

/**
 * Each guard as a refusal: `undefined` when it holds, else why not. The reasons are the
 * guard-`false` cases the paths must show refused.
 */
export const SPEC_GUARDS: Readonly<
  Record<
    SpecGuardName,
    {
      readonly refusals: readonly string[];
      readonly refuses: (
        s: SpecState,
        e: OperationalEvent,
        retryBudget: number,
      ) => string | undefined;
    }
  >
> = {
  // Retries per gate (default 'boot') in this boot, at most `retryBudget`.
  retryBudgetLeft: {
    refusals: ['retry budget exhausted'],
    refuses: (s, e, retryBudget) => {
      const gate = (e.type === 'boot.gate_retry' && e.gate) || 'boot';
      return (s.retries[gate] ?? 0) < retryBudget ? undefined : 'retry budget exhausted';
    },
  },
  // Reconciled spend < threshold; claim already safe-released (§9.6).
  creditRefreshSafe: {
    refusals: ['spend not below threshold', 'claim still held'],
    refuses: (s, e) => {
      const spend = e.type === 'resume.credit_refresh' ? e.reconciledSpendUsd : undefined;
      const threshold = e.type === 'resume.credit_refresh' ? e.thresholdUsd : undefined;
      if (typeof spend !== 'number' || typeof threshold !== 'number' || !(spend < threshold)) {
        return 'spend not below threshold';
      }
      return s.claimHeld ? 'claim still held' : undefined;
    },
  },
};

export type SpecOutcome =
  | { readonly taken: true; readonly row: SpecRow | undefined; readonly next: SpecState }
  | { readonly taken: false; readonly row: SpecRow | undefined; readonly why: string };

/** The reasons `row` adds for `event`. */
export function rowAdds(row: SpecRow, event: OperationalEvent): readonly DegradationReason[] {
  if (row.adds !== 'by pause cause') return row.adds;
  return PAUSE_CAUSE_ADDS[(event.type === 'pause' && event.cause) || DEFAULT_PAUSE_CAUSE];
}

/**
 * What the spec does with `event` in state `s`: the row it takes (none for `update` and a
 * `claim.released` outside active) and the state after, or why it is refused.
 */
export function specStep(s: SpecState, event: OperationalEvent, retryBudget: number): SpecOutcome {
  if (s.primaryState === 'stopped')
    return { taken: false, row: undefined, why: 'stopped is final' };
  const row = SPEC_ROWS.find((r) => r.from === s.primaryState && r.event === event.type);
  const asksClaims = event.claimPermission !== undefined && event.claimPermission !== 'none';

  if (!row) {
    if (event.type === 'update') {
      // Same-state change of reasons / claim permission; not a table row.
      if (SPEC_NO_CLAIM_STATES.includes(s.primaryState) && asksClaims) {
        return { taken: false, row, why: `claim permission is none in ${s.primaryState}` };
      }
      return { taken: true, row, next: apply(s, s.primaryState, event, 'keep', [], []) };
    }
    if (event.type === 'claim.released' && s.claimHeld) {
      // Outside active: only clears the held-claim flag (no primary change).
      return { taken: true, row, next: { ...s, claimHeld: false } };
    }
    return { taken: false, row, why: `no row for ${event.type} from ${s.primaryState}` };
  }

  const refusal = row.guard && SPEC_GUARDS[row.guard].refuses(s, event, retryBudget);
  if (refusal) return { taken: false, row, why: refusal };
  if (SPEC_NO_CLAIM_STATES.includes(row.to) && asksClaims) {
    return { taken: false, row, why: `claim permission is none in ${row.to}` };
  }
  const next = apply(s, row.to, event, row.claim, rowAdds(row, event), row.removes);
  if (event.type === 'claim.acquired')
    return { taken: true, row, next: { ...next, claimHeld: true } };
  if (event.type === 'claim.released')
    return { taken: true, row, next: { ...next, claimHeld: false } };
  if (event.type === 'boot.gate_retry') {
    const gate = event.gate || 'boot';
    const retries = { ...s.retries, [gate]: (s.retries[gate] ?? 0) + 1 };
    return { taken: true, row, next: { ...next, retries } };
  }
  return { taken: true, row, next };
}

function apply(
  s: SpecState,
  to: PrimaryState,
  event: OperationalEvent,
  claim: ClaimRule,
  adds: readonly DegradationReason[],
  removes: readonly DegradationReason[],
): SpecState {
  const reasons = new Set([...s.degradationReasons, ...adds, ...(event.addReasons ?? [])]);
  for (const r of [...removes, ...(event.removeReasons ?? [])]) reasons.delete(r);
  const claimPermission: ClaimPermission =
    claim === 'none'
      ? 'none'
      : (event.claimPermission ?? (claim === 'grant' ? 'normal' : s.claimPermission));
  return {
    ...s,
    primaryState: to,
    claimPermission,
    degradationReasons: [...reasons].sort(),
  };
}
