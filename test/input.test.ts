import { describe, expect, it } from 'vitest';
import { parseEvent } from '../src/events.js';
import { createOperationalStateHolder } from '../src/holder.js';
import { isDegraded, makeOperationalState, OperationalStateInputError } from '../src/vocabulary.js';

async function rejectsNaming(p: Promise<unknown>, needle: string | RegExp, field?: string) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OperationalStateInputError);
  expect((err as Error).message).toMatch(needle);
  if (field) expect((err as OperationalStateInputError).field).toBe(field);
  return err as OperationalStateInputError;
}

describe('bad input is refused with an error naming the value; the held state is unchanged', () => {
  it('unknown state names', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const before = h.current;
    const err = await rejectsNaming(
      h.transitionTo('degraded' as never, 'x'),
      /unknown primary state "degraded"/,
      'to',
    );
    expect(err.value).toBe('degraded');
    await rejectsNaming(h.transitionTo('READY' as never, 'x'), /"READY"/);
    await rejectsNaming(h.transitionTo(undefined as never, 'x'), /unknown primary state undefined/);
    expect(h.current).toBe(before);
    expect(h.history()).toEqual([]);
  });

  it('unknown reasons or permissions', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const before = h.current;
    await rejectsNaming(
      h.transitionTo('ready', 'x', { addReasons: ['auth', 'boredom' as never] }),
      /"boredom"/,
      'addReasons[1]',
    );
    await rejectsNaming(
      h.transitionTo('ready', 'x', { removeReasons: 'auth' as never }),
      /removeReasons must be an array.*"auth"/,
    );
    await rejectsNaming(
      h.transitionTo('ready', 'x', { claimPermission: 'all' as never }),
      /unknown claim permission "all"/,
    );
    await rejectsNaming(
      h.send({ type: 'update', addReasons: ['costs' as never] }),
      /invalid addReasons\.0 "costs"/,
    );
    await rejectsNaming(
      h.send({ type: 'update', claimPermission: 'full' as never }),
      /invalid claimPermission "full"/,
    );
    await rejectsNaming(h.send({ type: 'pause', cause: 'nap' as never }), /invalid cause "nap"/);
    expect(h.current).toBe(before);
  });

  it('a non-string or over-long trigger', async () => {
    const h = createOperationalStateHolder({ initial: { primaryState: 'ready' } });
    const before = h.current;
    await rejectsNaming(
      h.transitionTo('active', 42 as never),
      /trigger must be a string, got 42/,
      'trigger',
    );
    await rejectsNaming(h.transitionTo('active', null as never), /got null/);
    const long = 'x'.repeat(1001);
    await rejectsNaming(
      h.transitionTo('active', long),
      /trigger is 1001 characters, more than 1000: "xxx/,
    );
    await rejectsNaming(h.send({ type: 'claim.acquired', trigger: long }), /invalid trigger/);
    // Every refusal left the held state as it was, and recorded nothing.
    expect(h.current).toBe(before);
    expect(h.history()).toEqual([]);
    // 1,000 characters exactly is fine.
    await expect(h.transitionTo('active', 'y'.repeat(1000))).resolves.toMatchObject({
      primaryState: 'active',
    });
  });

  it('unknown event types and unknown fields', async () => {
    const h = createOperationalStateHolder();
    await rejectsNaming(
      h.send({ type: 'explode' } as never),
      /unknown event type "explode"; expected one of boot\.gates_passed/,
      'type',
    );
    await rejectsNaming(
      h.send({ type: 'pause', reason: 'x' } as never),
      /unknown field "reason"/,
      'reason',
    );
    await rejectsNaming(
      h.send({ type: 'resume.credit_refresh', thresholdUsd: 'lots' } as never),
      /invalid thresholdUsd "lots"/,
    );
    await rejectsNaming(h.send(null as never), /event must be an object, got null/);
    expect(h.current.primaryState).toBe('booting');
  });

  it('parseEvent accepts every documented field', () => {
    expect(
      parseEvent({
        type: 'boot.gate_retry',
        gate: 'db',
        trigger: 't',
        claimPermission: 'none',
        addReasons: ['substrate'],
        removeReasons: [],
        details: { attempt: 2 },
      }),
    ).toMatchObject({ type: 'boot.gate_retry', gate: 'db' });
  });
});

describe('the vocabulary', () => {
  it('makeOperationalState sorts and de-duplicates reasons and freezes the result', () => {
    const s = makeOperationalState({
      primaryState: 'active',
      degradationReasons: ['token_expiring', 'auth', 'auth'],
    });
    expect(s).toEqual({
      primaryState: 'active',
      claimPermission: 'normal',
      degradationReasons: ['auth', 'token_expiring'],
    });
    expect(Object.isFrozen(s)).toBe(true);
    expect(isDegraded(s)).toBe(true);
    expect(isDegraded(makeOperationalState())).toBe(false);
  });

  it('makeOperationalState names bad values', () => {
    expect(() => makeOperationalState({ degradationReasons: ['nope' as never] })).toThrow(/"nope"/);
    expect(() => makeOperationalState({ claimPermission: 'some' as never })).toThrow(/"some"/);
    expect(() => makeOperationalState('ready' as never)).toThrow(/must be an object, got "ready"/);
  });
});
