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
import { and, assign, emit, enqueueActions, setup } from 'xstate';
import {
  type ClaimPermission,
  type DegradationReason,
  type PauseCause,
  type PrimaryState,
  sortReasons,
} from '../src/vocabulary.js';
import type {
  OperationalContext,
  OperationalEvent,
  OperationalEventType,
  OperationalFact,
  OperationalInput,
  RowMeta,
  TransitionedFact,
} from './types.js';

export * from './types.js';

export const DEFAULT_RETRY_BUDGET = 4;

/** How a transition sets the claim permission. */
type ClaimRule =
  /** Booting, paused, stopped: always none. */
  | 'none'
  /** Leaving a no-claim state for ready: the event's permission, else `normal`. */
  | 'grant'
  /** Between ready and active, or a same-state update: the event's, else unchanged. */
  | 'keep';

interface ReportParams {
  /** Target primary state; absent for a same-state change. */
  to?: PrimaryState;
}

/** The row's text per event, recorded when the event carries no trigger. */
const ROW_TEXT = {
  'boot.gates_passed': 'all §9.2 gates pass',
  'boot.gate_retry': 'transient gate failure',
  'boot.gate_failed': 'invariant gate failure, or retry budget exhausted',
  'boot.epoch_mismatch': 'gate 3b epoch mismatch (§9.8)',
  'claim.acquired': 'claim acquired',
  'claim.released': 'claim released',
  pause: 'STOP-KORA L1–3, cost 100%, operator',
  'resume.credit_refresh': 'monthly credit refresh confirmed',
  'resume.operator_reset': 'operator clears via kora_control reset',
  stop: 'STOP-KORA L4/L5',
  update: 'update',
} as const satisfies Record<OperationalEventType, string>;

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

/**
 * The §9.1 statechart. Run it through {@link createOpstate} (validated, recorded,
 * chained), or on its own as any XState machine.
 *
 * @example
 * const actor = createActor(operationalStateMachine, { input: {} }).start();
 * actor.on('transitioned', (fact) => console.log(`${fact.from} → ${fact.to}`));
 * actor.send({ type: 'boot.gates_passed' }); // booting → ready
 */
export const operationalStateMachine = setup({
  types: {
    context: {} as OperationalContext,
    events: {} as OperationalEvent,
    input: {} as OperationalInput,
    meta: {} as { primaryState: PrimaryState },
    transitionMeta: {} as RowMeta,
    emitted: {} as OperationalFact,
  },
  actions: {
    /** Every committed change says so; runs after `apply`, before the target's entry. */
    report: emit(({ context, event }, params: ReportParams | undefined): OperationalFact => {
      const fact: TransitionedFact = {
        type: 'transitioned',
        from: context.primaryState,
        to: params?.to ?? context.primaryState,
        event: event.type,
        trigger: event.trigger ?? ROW_TEXT[event.type],
        claimPermission: context.claimPermission,
        degradationReasons: context.degradationReasons,
      };
      if (event.type === 'pause') fact.cause = event.cause ?? 'operator';
      if (event.details) fact.details = event.details;
      return fact;
    }),
    reportBootReady: emit(
      ({ event }): OperationalFact =>
        event.details ? { type: 'boot.ready', details: event.details } : { type: 'boot.ready' },
    ),
    reportBootFailed: emit(
      ({ event }): OperationalFact =>
        event.details ? { type: 'boot.failed', details: event.details } : { type: 'boot.failed' },
    ),
    /** A pause for cost says so; before the target's entry, so `primaryState` is the source. */
    reportCostPause: enqueueActions(({ context, event, enqueue }) => {
      if (event.type === 'pause' && event.cause === 'cost_limit') {
        enqueue.emit({ type: 'paused.cost_limit', from: context.primaryState });
      }
    }),
    enter: assign((_, params: { state: PrimaryState }) => ({ primaryState: params.state })),
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
    primaryState: 'booting',
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
          actions: [
            { type: 'apply', params: { claim: 'none' } },
            { type: 'report', params: { to: 'stopped' } },
          ],
          description: ROW_TEXT.stop,
          meta: {
            rows: { ready: 12, active: 13, paused: 14, booting: 15 },
            guard: '',
            recoveryOwner: 'operator (new boot)',
          },
        },
        update: {
          guard: 'noClaimPermission',
          actions: [{ type: 'apply', params: { claim: 'keep' } }, 'report'],
          description: 'same-state change of degradation reasons or claim permission',
        },
        'claim.released': {
          guard: 'claimHeld',
          actions: ['releaseClaim', 'report'],
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
              actions: [
                {
                  type: 'apply',
                  params: ({ event }) => {
                    const reason = CAUSE_REASON[event.cause ?? 'operator'];
                    return { claim: 'none', add: reason ? [reason] : [] } satisfies ApplyParams;
                  },
                },
                { type: 'report', params: { to: 'paused' } },
                'reportCostPause',
              ],
              description: ROW_TEXT.pause,
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
              entry: { type: 'enter', params: { state: 'booting' } },
              on: {
                'boot.gates_passed': {
                  target: '#ready',
                  actions: [
                    { type: 'apply', params: { claim: 'grant' } },
                    { type: 'report', params: { to: 'ready' } },
                    'reportBootReady',
                  ],
                  description: ROW_TEXT['boot.gates_passed'],
                  meta: { rows: { booting: 1 }, guard: '', recoveryOwner: '' },
                },
                'boot.gate_retry': {
                  target: '#booting',
                  reenter: true,
                  guard: and(['retryBudgetLeft', 'noClaimPermission']),
                  actions: [
                    'countRetry',
                    { type: 'apply', params: { claim: 'none' } },
                    { type: 'report', params: { to: 'booting' } },
                  ],
                  description: ROW_TEXT['boot.gate_retry'],
                  meta: {
                    rows: { booting: 2 },
                    guard: 'retry budget not exhausted',
                    recoveryOwner: 'self (backoff)',
                  },
                },
                'boot.gate_failed': {
                  target: '#stopped',
                  guard: 'noClaimPermission',
                  actions: [
                    { type: 'apply', params: { claim: 'none' } },
                    { type: 'report', params: { to: 'stopped' } },
                    'reportBootFailed',
                  ],
                  description: ROW_TEXT['boot.gate_failed'],
                  meta: { rows: { booting: 3 }, guard: '', recoveryOwner: 'operator' },
                },
                'boot.epoch_mismatch': {
                  target: '#paused',
                  guard: 'noClaimPermission',
                  actions: [
                    { type: 'apply', params: { claim: 'none', add: ['substrate'] } },
                    { type: 'report', params: { to: 'paused' } },
                  ],
                  description: ROW_TEXT['boot.epoch_mismatch'],
                  meta: { rows: { booting: 4 }, guard: '', recoveryOwner: 'operator' },
                },
              },
            },
            ready: {
              id: 'ready',
              meta: { primaryState: 'ready' },
              entry: { type: 'enter', params: { state: 'ready' } },
              on: {
                'claim.acquired': {
                  target: '#active',
                  actions: [
                    'holdClaim',
                    { type: 'apply', params: { claim: 'keep' } },
                    { type: 'report', params: { to: 'active' } },
                  ],
                  description: ROW_TEXT['claim.acquired'],
                  meta: { rows: { ready: 5 }, guard: '', recoveryOwner: 'self' },
                },
                update: {
                  actions: [{ type: 'apply', params: { claim: 'keep' } }, 'report'],
                  description: 'same-state change of degradation reasons or claim permission',
                },
              },
            },
            active: {
              id: 'active',
              meta: { primaryState: 'active' },
              entry: { type: 'enter', params: { state: 'active' } },
              on: {
                'claim.released': {
                  target: '#ready',
                  actions: [
                    'releaseClaim',
                    { type: 'apply', params: { claim: 'keep' } },
                    { type: 'report', params: { to: 'ready' } },
                  ],
                  description: ROW_TEXT['claim.released'],
                  meta: { rows: { active: 6 }, guard: '', recoveryOwner: 'self' },
                },
                update: {
                  actions: [{ type: 'apply', params: { claim: 'keep' } }, 'report'],
                  description: 'same-state change of degradation reasons or claim permission',
                },
              },
            },
          },
        },
        paused: {
          id: 'paused',
          meta: { primaryState: 'paused' },
          entry: { type: 'enter', params: { state: 'paused' } },
          on: {
            'resume.credit_refresh': {
              target: '#ready',
              guard: 'creditRefreshSafe',
              actions: [
                { type: 'apply', params: { claim: 'grant', remove: ['cost'] } },
                { type: 'report', params: { to: 'ready' } },
              ],
              description: ROW_TEXT['resume.credit_refresh'],
              meta: {
                rows: { paused: 10 },
                guard: 'reconciled spend < threshold; claim already safe-released (§9.6)',
                recoveryOwner: 'self (ramped, §9.6)',
              },
            },
            'resume.operator_reset': {
              target: '#ready',
              actions: [
                { type: 'apply', params: { claim: 'grant', remove: ['operator'] } },
                { type: 'report', params: { to: 'ready' } },
              ],
              description: ROW_TEXT['resume.operator_reset'],
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
      entry: { type: 'enter', params: { state: 'stopped' } },
      description: 'Final: nothing changes once stopped.',
    },
  },
});

export type OperationalStateMachine = typeof operationalStateMachine;
