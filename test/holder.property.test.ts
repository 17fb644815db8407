/**
 * Property: random batches of concurrent `transitionTo` / `send` calls (valid and
 * invalid) against a hand-written reference model of the §9.1 table.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { OperationalEvent } from '../machines/operationalState.machine.js';
import { createOperationalStateHolder, InvalidStateTransitionError } from '../src/holder.js';
import {
  type ClaimPermission,
  type DegradationReason,
  OperationalStateInputError,
  type PrimaryState,
} from '../src/vocabulary.js';

interface Model {
  primary: PrimaryState;
  perm: ClaimPermission;
  reasons: DegradationReason[];
  held: boolean;
  retries: Record<string, number>;
}

const BUDGET = 2;
const NO_CLAIM: PrimaryState[] = ['booting', 'paused', 'stopped'];
const CAUSE_REASON: Record<string, DegradationReason | undefined> = {
  cost_limit: 'cost',
  operator: 'operator',
  substrate: 'substrate',
  stop_kora: undefined,
};

type Outcome = 'ok' | 'invalid-transition' | 'bad-input';

/** The reference: what the table says a send does. Returns the outcome and the next model. */
function modelSend(m: Model, e: OperationalEvent): [Outcome, Model] {
  const reject: [Outcome, Model] = ['invalid-transition', m];
  if (m.primary === 'stopped') return reject;
  const noClaimAsk = e.claimPermission === undefined || e.claimPermission === 'none';
  const change = (
    to: PrimaryState,
    perm: ClaimPermission,
    add: DegradationReason[] = [],
    remove: DegradationReason[] = [],
    extra: Partial<Model> = {},
  ): [Outcome, Model] => {
    const set = new Set(m.reasons);
    for (const r of [...add, ...(e.addReasons ?? [])]) set.add(r);
    for (const r of [...remove, ...(e.removeReasons ?? [])]) set.delete(r);
    return ['ok', { ...m, primary: to, perm, reasons: [...set].sort(), ...extra }];
  };
  const p = m.primary;
  switch (e.type) {
    case 'boot.gates_passed':
      return p === 'booting' ? change('ready', e.claimPermission ?? 'normal') : reject;
    case 'boot.gate_retry': {
      const g = e.gate ?? 'boot';
      const n = m.retries[g] ?? 0;
      return p === 'booting' && n < BUDGET && noClaimAsk
        ? change('booting', 'none', [], [], { retries: { ...m.retries, [g]: n + 1 } })
        : reject;
    }
    case 'boot.gate_failed':
      return p === 'booting' && noClaimAsk ? change('stopped', 'none') : reject;
    case 'boot.epoch_mismatch':
      return p === 'booting' && noClaimAsk ? change('paused', 'none', ['substrate']) : reject;
    case 'claim.acquired':
      return p === 'ready'
        ? change('active', e.claimPermission ?? m.perm, [], [], { held: true })
        : reject;
    case 'claim.released':
      if (p === 'active')
        return change('ready', e.claimPermission ?? m.perm, [], [], { held: false });
      return m.held ? ['ok', { ...m, held: false }] : reject;
    case 'pause': {
      const r = CAUSE_REASON[e.cause ?? 'operator'];
      return ['booting', 'ready', 'active'].includes(p) && noClaimAsk
        ? change('paused', 'none', r ? [r] : [])
        : reject;
    }
    case 'resume.credit_refresh':
      return p === 'paused' &&
        !m.held &&
        (e.reconciledSpendUsd ?? Infinity) < (e.thresholdUsd ?? -Infinity)
        ? change('ready', e.claimPermission ?? 'normal', [], ['cost'])
        : reject;
    case 'resume.operator_reset':
      return p === 'paused'
        ? change('ready', e.claimPermission ?? 'normal', [], ['operator'])
        : reject;
    case 'stop':
      return noClaimAsk ? change('stopped', 'none') : reject;
    case 'update':
      if (NO_CLAIM.includes(p) && !noClaimAsk) return reject;
      return change(p, e.claimPermission ?? m.perm);
  }
}

/** The seed's path, per SPEC §3, on top of the reference send. */
const PAIR_EVENT: Record<string, OperationalEvent['type']> = {
  'booting>ready': 'boot.gates_passed',
  'booting>stopped': 'boot.gate_failed',
  'booting>paused': 'pause',
  'ready>active': 'claim.acquired',
  'active>ready': 'claim.released',
  'ready>paused': 'pause',
  'active>paused': 'pause',
  'paused>ready': 'resume.operator_reset',
  'ready>stopped': 'stop',
  'active>stopped': 'stop',
  'paused>stopped': 'stop',
};

function modelTransitionTo(
  m: Model,
  to: string,
  trigger: string,
  opts: Partial<OperationalEvent>,
): [Outcome, Model] {
  if (m.primary === 'stopped') return ['invalid-transition', m];
  if (to === m.primary)
    return modelSend(m, { type: 'update', trigger, ...opts } as OperationalEvent);
  let type = PAIR_EVENT[`${m.primary}>${to}`];
  if (!type) return ['invalid-transition', m];
  if (type === 'boot.gate_failed' && trigger.includes('STOP-KORA')) type = 'stop';
  if (type === 'pause' && m.primary === 'booting' && trigger.includes('epoch'))
    type = 'boot.epoch_mismatch';
  if (type === 'resume.operator_reset' && trigger.includes('credit'))
    type = 'resume.credit_refresh';
  const event = { type, trigger, ...opts } as OperationalEvent & { cause?: string };
  if (type === 'pause') {
    event.cause = trigger.includes('cost 100%')
      ? 'cost_limit'
      : trigger.includes('STOP-KORA')
        ? 'stop_kora'
        : /substrate|epoch/.test(trigger)
          ? 'substrate'
          : 'operator';
  }
  return modelSend(m, event);
}

const states = ['booting', 'ready', 'active', 'paused', 'stopped'] as const;
const reasons = fc.subarray(['cost', 'auth', 'operator', 'substrate'] as DegradationReason[], {
  maxLength: 2,
});
const perm = fc.option(fc.constantFrom<ClaimPermission>('none', 'critical_only', 'normal'), {
  nil: undefined,
});
const common = fc.record(
  { claimPermission: perm, addReasons: reasons, removeReasons: reasons },
  { requiredKeys: [] },
);
const trigger = fc.constantFrom(
  'x',
  'STOP-KORA L5',
  'gate 3b epoch',
  'credit refresh',
  'cost 100%',
  'op',
);

type Cmd =
  | { kind: 'send'; event: OperationalEvent }
  | { kind: 'to'; to: string; trigger: unknown; opts: Record<string, unknown> }
  | { kind: 'bad-send'; event: unknown };

const validEvent: fc.Arbitrary<OperationalEvent> = fc.oneof(
  common.map((c) => ({ type: 'boot.gates_passed', ...c }) as OperationalEvent),
  fc
    .tuple(common, fc.constantFrom('db', 'auth'))
    .map(([c, gate]) => ({ type: 'boot.gate_retry', gate, ...c }) as OperationalEvent),
  common.map((c) => ({ type: 'boot.gate_failed', ...c }) as OperationalEvent),
  common.map((c) => ({ type: 'boot.epoch_mismatch', ...c }) as OperationalEvent),
  common.map((c) => ({ type: 'claim.acquired', ...c }) as OperationalEvent),
  common.map((c) => ({ type: 'claim.released', ...c }) as OperationalEvent),
  fc
    .tuple(common, fc.constantFrom('stop_kora', 'cost_limit', 'operator', 'substrate'))
    .map(([c, cause]) => ({ type: 'pause', cause, ...c }) as OperationalEvent),
  fc.tuple(common, fc.integer({ min: 0, max: 200 })).map(
    ([c, spend]) =>
      ({
        type: 'resume.credit_refresh',
        reconciledSpendUsd: spend,
        thresholdUsd: 100,
        ...c,
      }) as OperationalEvent,
  ),
  common.map((c) => ({ type: 'resume.operator_reset', ...c }) as OperationalEvent),
  common.map((c) => ({ type: 'stop', ...c }) as OperationalEvent),
  common.map((c) => ({ type: 'update', ...c }) as OperationalEvent),
);

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: validEvent.map((event) => ({ kind: 'send' as const, event })) },
  {
    weight: 5,
    arbitrary: fc
      .tuple(fc.constantFrom(...states), trigger, common)
      .map(([to, t, opts]) => ({ kind: 'to' as const, to, trigger: t, opts })),
  },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constant({ kind: 'to' as const, to: 'degraded', trigger: 'x', opts: {} }),
      fc.constant({ kind: 'to' as const, to: 'ready', trigger: 42, opts: {} }),
      fc.constant({ kind: 'to' as const, to: 'ready', trigger: 'y'.repeat(1001), opts: {} }),
      fc.constant({
        kind: 'to' as const,
        to: 'ready',
        trigger: 'x',
        opts: { addReasons: ['bored'] },
      }),
      fc.constant({ kind: 'bad-send' as const, event: { type: 'explode' } }),
      fc.constant({ kind: 'bad-send' as const, event: { type: 'pause', cause: 'nap' } }),
      fc.constant({ kind: 'bad-send' as const, event: { type: 'update', claimPermission: 'all' } }),
    ),
  },
);

describe('holder property: concurrent calls vs. the reference model', () => {
  it('no lost update; invalid calls rejected with state unchanged; listener = commit = history order; claim invariant', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(cmd, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 8 }),
        async (batches) => {
          const holder = createOperationalStateHolder({
            retryBudget: BUDGET,
            historySize: 1000,
            logger: silent,
          });
          let model: Model = {
            primary: 'booting',
            perm: 'none',
            reasons: [],
            held: false,
            retries: {},
          };
          const heard: number[] = [];
          const listenerStates: string[] = [];
          let running = 0;
          let maxRunning = 0;
          holder.addListener(async (_old, next, record) => {
            running++;
            maxRunning = Math.max(maxRunning, running);
            await Promise.resolve();
            await Promise.resolve();
            running--;
            heard.push(record.seq);
            // Recorded, not asserted here: an expect thrown in a listener is isolated by design.
            listenerStates.push(`${record.to_state}/${next.claimPermission}`);
          });
          let commits = 0;
          for (const batch of batches) {
            // Fire the whole batch without awaiting: concurrent callers.
            const expected: Outcome[] = [];
            const calls = batch.map((c) => {
              let outcome: Outcome;
              let next: Model;
              if (c.kind === 'send') {
                [outcome, next] = modelSend(model, c.event);
                const p = holder.send(c.event);
                expected.push(outcome);
                model = next;
                return p;
              }
              if (c.kind === 'bad-send') {
                expected.push('bad-input');
                return holder.send(c.event as OperationalEvent);
              }
              const bad =
                !states.includes(c.to as never) ||
                typeof c.trigger !== 'string' ||
                (c.trigger as string).length > 1000 ||
                (c.opts.addReasons as string[] | undefined)?.includes('bored');
              if (bad) {
                expected.push('bad-input');
              } else {
                [outcome, next] = modelTransitionTo(model, c.to, c.trigger as string, c.opts);
                expected.push(outcome);
                model = next;
              }
              return holder.transitionTo(c.to as PrimaryState, c.trigger as string, c.opts);
            });
            const settled = await Promise.allSettled(calls);
            settled.forEach((s, i) => {
              const want = expected[i];
              if (want === 'ok') {
                expect(s.status, JSON.stringify(batch[i])).toBe('fulfilled');
                commits++;
              } else {
                expect(s.status, JSON.stringify(batch[i])).toBe('rejected');
                const reason = (s as PromiseRejectedResult).reason;
                expect(reason).toBeInstanceOf(
                  want === 'bad-input' ? OperationalStateInputError : InvalidStateTransitionError,
                );
              }
            });
            expect(holder.current).toEqual({
              primaryState: model.primary,
              claimPermission: model.perm,
              degradationReasons: model.reasons,
            });
          }
          const history = holder.history();
          expect(history.map((r) => r.seq)).toEqual(
            Array.from({ length: commits }, (_, i) => i + 1),
          );
          expect(heard).toEqual(history.map((r) => r.seq));
          // Never concurrently with itself, however many callers raced.
          if (commits > 0) expect(maxRunning).toBe(1);
          expect(listenerStates).toEqual(history.map((r) => `${r.to_state}/${r.claim_permission}`));
          for (const heardState of listenerStates) {
            const [state, permission] = heardState.split('/');
            if (NO_CLAIM.includes(state as PrimaryState)) expect(permission).toBe('none');
          }
          for (const r of history)
            if (NO_CLAIM.includes(r.to_state)) expect(r.claim_permission).toBe('none');
        },
      ),
      { numRuns: 300 },
    );
  });
});

const silent = { error() {}, warn() {}, info() {}, debug() {} };
