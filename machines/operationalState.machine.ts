/**
 * The R4.1 §9.1 operational statechart, written once. Everything else — the derived
 * table, the holder, the panel's diagram — reads this machine.
 *
 * Pure: no I/O, no timers, no logging. Every action is an `assign`; every guard reads
 * only context and event.
 *
 * Hierarchy says the table more simply: `live` (every non-final state) carries the one
 * `stop` transition (rows 12–15); `unpaused` (booting, ready, active) carries the one
 * `pause` transition (rows 7–9). Each transition's `description` is its row's trigger
 * text; `meta.rows` maps each source state to its row number, `meta.guard` and
 * `meta.recoveryOwner` hold the other two columns.
 */
import { and, assign, setup } from 'xstate';
import {
  type ClaimPermission,
  type DegradationReason,
  type PauseCause,
  type PrimaryState,
  sortReasons,
} from '../src/vocabulary.js';

/** Fields every domain event may carry. */
export interface EventCommon {
  /** Free text, at most 1,000 characters; defaults to the row text. */
  trigger?: string;
  claimPermission?: ClaimPermission;
  addReasons?: readonly DegradationReason[];
  removeReasons?: readonly DegradationReason[];
  /** JSON object recorded with the change (e.g. gate results). */
  details?: Record<string, unknown>;
}

/** The domain events of §2, one per row family, plus the same-state `update`. */
export type OperationalEvent =
  | ({ type: 'boot.gates_passed' } & EventCommon)
  | ({ type: 'boot.gate_retry'; gate?: string } & EventCommon)
  | ({ type: 'boot.gate_failed' } & EventCommon)
  | ({ type: 'boot.epoch_mismatch' } & EventCommon)
  | ({ type: 'claim.acquired' } & EventCommon)
  | ({ type: 'claim.released' } & EventCommon)
  | ({ type: 'pause'; cause?: PauseCause } & EventCommon)
  | ({
      type: 'resume.credit_refresh';
      reconciledSpendUsd?: number;
      thresholdUsd?: number;
    } & EventCommon)
  | ({ type: 'resume.operator_reset' } & EventCommon)
  | ({ type: 'stop' } & EventCommon)
  | ({ type: 'update' } & EventCommon);

export type OperationalEventType = OperationalEvent['type'];

export const EVENT_TYPES = [
  'boot.gates_passed',
  'boot.gate_retry',
  'boot.gate_failed',
  'boot.epoch_mismatch',
  'claim.acquired',
  'claim.released',
  'pause',
  'resume.credit_refresh',
  'resume.operator_reset',
  'stop',
  'update',
] as const satisfies readonly OperationalEventType[];

export interface OperationalContext {
  claimPermission: ClaimPermission;
  /** Sorted, unique. */
  degradationReasons: DegradationReason[];
  /** A claim is held (set by `claim.acquired`, cleared by `claim.released`). */
  claimHeld: boolean;
  /** `boot.gate_retry` count per gate in this boot. */
  retries: Record<string, number>;
  /** Retries allowed per gate (attempts = budget + 1). */
  retryBudget: number;
}

export interface OperationalInput {
  claimPermission?: ClaimPermission;
  degradationReasons?: readonly DegradationReason[];
  retryBudget?: number;
}

/** Transition metadata: the table's guard and recovery-owner columns, and row numbers. */
export interface RowMeta {
  /** Source state → row number in the §9.1 table. */
  rows: Partial<Record<PrimaryState, number>>;
  guard: string;
  recoveryOwner: string;
}

export const DEFAULT_RETRY_BUDGET = 4;

/** How a transition sets the claim permission. */
type ClaimRule =
  /** Booting, paused, stopped: always none. */
  | 'none'
  /** Leaving a no-claim state for ready: the event's permission, else `normal`. */
  | 'grant'
  /** Between ready and active, or a same-state update: the event's, else unchanged. */
  | 'keep';

interface ApplyParams {
  claim: ClaimRule;
  add?: readonly DegradationReason[];
  remove?: readonly DegradationReason[];
}

const CAUSE_REASON: Record<PauseCause, DegradationReason | undefined> = {
  stop_kora: undefined,
  cost_limit: 'cost',
  operator: 'operator',
  substrate: 'substrate',
};

const STOP_ROW = 'STOP-KORA L4/L5';
const PAUSE_ROW = 'STOP-KORA L1–3, cost 100%, operator';

export const operationalStateMachine = setup({
  types: {
    context: {} as OperationalContext,
    events: {} as OperationalEvent,
    input: {} as OperationalInput,
    meta: {} as { primaryState: PrimaryState },
    transitionMeta: {} as RowMeta,
  },
  actions: {
    /** Applies the event's permission and reason changes plus the row's implied ones. */
    apply: assign(({ context, event }, params: ApplyParams) => {
      const reasons = new Set(context.degradationReasons);
      for (const r of params.add ?? []) reasons.add(r);
      for (const r of event.addReasons ?? []) reasons.add(r);
      for (const r of params.remove ?? []) reasons.delete(r);
      for (const r of event.removeReasons ?? []) reasons.delete(r);
      const claimPermission: ClaimPermission =
        params.claim === 'none'
          ? 'none'
          : (event.claimPermission ??
            (params.claim === 'grant' ? 'normal' : context.claimPermission));
      return { claimPermission, degradationReasons: sortReasons(reasons) };
    }),
    countRetry: assign({
      retries: ({ context, event }) => {
        const gate = (event.type === 'boot.gate_retry' && event.gate) || 'boot';
        return { ...context.retries, [gate]: (context.retries[gate] ?? 0) + 1 };
      },
    }),
    holdClaim: assign({ claimHeld: true }),
    releaseClaim: assign({ claimHeld: false }),
  },
  guards: {
    /** Row 2: this gate has retries left in this boot. */
    retryBudgetLeft: ({ context, event }) => {
      const gate = (event.type === 'boot.gate_retry' && event.gate) || 'boot';
      return (context.retries[gate] ?? 0) < context.retryBudget;
    },
    /** Row 10: reconciled spend below threshold, and no claim still held (§9.6). */
    creditRefreshSafe: ({ context, event }) =>
      event.type === 'resume.credit_refresh' &&
      typeof event.reconciledSpendUsd === 'number' &&
      typeof event.thresholdUsd === 'number' &&
      event.reconciledSpendUsd < event.thresholdUsd &&
      !context.claimHeld,
    /** Claim-permission invariant: booting, paused and stopped never grant claims. */
    noClaimPermission: ({ event }) =>
      event.claimPermission === undefined || event.claimPermission === 'none',
    claimHeld: ({ context }) => context.claimHeld,
  },
}).createMachine({
  id: 'operationalState',
  context: ({ input }) => ({
    claimPermission: input?.claimPermission ?? 'none',
    degradationReasons: sortReasons(input?.degradationReasons ?? []),
    claimHeld: false,
    retries: {},
    retryBudget: input?.retryBudget ?? DEFAULT_RETRY_BUDGET,
  }),
  initial: 'live',
  states: {
    live: {
      description: 'Every state that is not stopped.',
      initial: 'unpaused',
      on: {
        stop: {
          target: '#stopped',
          guard: 'noClaimPermission',
          actions: { type: 'apply', params: { claim: 'none' } },
          description: STOP_ROW,
          meta: {
            rows: { ready: 12, active: 13, paused: 14, booting: 15 },
            guard: '',
            recoveryOwner: 'operator (new boot)',
          },
        },
        update: {
          guard: 'noClaimPermission',
          actions: { type: 'apply', params: { claim: 'keep' } },
          description: 'same-state change of degradation reasons or claim permission',
        },
        'claim.released': {
          guard: 'claimHeld',
          actions: 'releaseClaim',
          description: 'claim released while not active: clears the held-claim flag only',
        },
      },
      states: {
        unpaused: {
          description: 'Booting, ready or active: a pause is possible.',
          initial: 'booting',
          on: {
            pause: {
              target: '#paused',
              guard: 'noClaimPermission',
              actions: {
                type: 'apply',
                params: ({ event }) => {
                  const reason = CAUSE_REASON[event.cause ?? 'operator'];
                  return { claim: 'none', add: reason ? [reason] : [] } satisfies ApplyParams;
                },
              },
              description: PAUSE_ROW,
              meta: {
                rows: { ready: 7, active: 8, booting: 9 },
                guard: '',
                recoveryOwner: 'per reason',
              },
            },
          },
          states: {
            booting: {
              id: 'booting',
              meta: { primaryState: 'booting' },
              on: {
                'boot.gates_passed': {
                  target: '#ready',
                  actions: { type: 'apply', params: { claim: 'grant' } },
                  description: 'all §9.2 gates pass',
                  meta: { rows: { booting: 1 }, guard: '', recoveryOwner: '' },
                },
                'boot.gate_retry': {
                  target: '#booting',
                  reenter: true,
                  guard: and(['retryBudgetLeft', 'noClaimPermission']),
                  actions: ['countRetry', { type: 'apply', params: { claim: 'none' } }],
                  description: 'transient gate failure',
                  meta: {
                    rows: { booting: 2 },
                    guard: 'retry budget not exhausted',
                    recoveryOwner: 'self (backoff)',
                  },
                },
                'boot.gate_failed': {
                  target: '#stopped',
                  guard: 'noClaimPermission',
                  actions: { type: 'apply', params: { claim: 'none' } },
                  description: 'invariant gate failure, or retry budget exhausted',
                  meta: { rows: { booting: 3 }, guard: '', recoveryOwner: 'operator' },
                },
                'boot.epoch_mismatch': {
                  target: '#paused',
                  guard: 'noClaimPermission',
                  actions: { type: 'apply', params: { claim: 'none', add: ['substrate'] } },
                  description: 'gate 3b epoch mismatch (§9.8)',
                  meta: { rows: { booting: 4 }, guard: '', recoveryOwner: 'operator' },
                },
              },
            },
            ready: {
              id: 'ready',
              meta: { primaryState: 'ready' },
              on: {
                'claim.acquired': {
                  target: '#active',
                  actions: ['holdClaim', { type: 'apply', params: { claim: 'keep' } }],
                  description: 'claim acquired',
                  meta: { rows: { ready: 5 }, guard: '', recoveryOwner: 'self' },
                },
                update: {
                  actions: { type: 'apply', params: { claim: 'keep' } },
                  description: 'same-state change of degradation reasons or claim permission',
                },
              },
            },
            active: {
              id: 'active',
              meta: { primaryState: 'active' },
              on: {
                'claim.released': {
                  target: '#ready',
                  actions: ['releaseClaim', { type: 'apply', params: { claim: 'keep' } }],
                  description: 'claim released',
                  meta: { rows: { active: 6 }, guard: '', recoveryOwner: 'self' },
                },
                update: {
                  actions: { type: 'apply', params: { claim: 'keep' } },
                  description: 'same-state change of degradation reasons or claim permission',
                },
              },
            },
          },
        },
        paused: {
          id: 'paused',
          meta: { primaryState: 'paused' },
          on: {
            'resume.credit_refresh': {
              target: '#ready',
              guard: 'creditRefreshSafe',
              actions: { type: 'apply', params: { claim: 'grant', remove: ['cost'] } },
              description: 'monthly credit refresh confirmed',
              meta: {
                rows: { paused: 10 },
                guard: 'reconciled spend < threshold; claim already safe-released (§9.6)',
                recoveryOwner: 'self (ramped, §9.6)',
              },
            },
            'resume.operator_reset': {
              target: '#ready',
              actions: { type: 'apply', params: { claim: 'grant', remove: ['operator'] } },
              description: 'operator clears via kora_control reset',
              meta: { rows: { paused: 11 }, guard: '', recoveryOwner: 'operator' },
            },
          },
        },
      },
    },
    stopped: {
      id: 'stopped',
      type: 'final',
      meta: { primaryState: 'stopped' },
      description: 'Final: nothing changes once stopped.',
    },
  },
});

export type OperationalStateMachine = typeof operationalStateMachine;
