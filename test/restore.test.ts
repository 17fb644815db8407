/**
 * Restore on restart (SPEC §10), as a pure fold over an agent's chain and as the boot's
 * `restore` step: which pauses persist, what clears them, what the boot does with them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { wireOperationalState } from '../src/boot.js';
import { getHolder, resetHolderForTests } from '../src/holder.js';
import { findPersistingPause } from '../src/restore.js';
import { createMemorySink } from '../src/sinks/memory.js';
import type { ChainEvent } from '../src/sinks/types.js';
import { recordingLogger } from './support/logger.js';

let n = 0;
function t(
  from: string,
  to: string,
  reasons: string[] = [],
  extra: Record<string, unknown> = {},
  instance = 'run-1',
): ChainEvent & { chain_seq: number } {
  n++;
  return {
    event_type: 'kora.operational_state.transitioned',
    payload: {
      from_primary_state: from,
      to_primary_state: to,
      claim_permission: to === 'ready' || to === 'active' ? 'normal' : 'none',
      degradation_reasons: reasons,
      trigger: `t${n}`,
      ...extra,
    },
    workspace_id: 'ws',
    agent_id: 'a',
    instance_id: instance,
    seq: n,
    occurred_at: new Date(n).toISOString(),
    chain_seq: n,
  };
}

afterEach(() => resetHolderForTests());

describe('findPersistingPause', () => {
  it('a cost pause that was never cleared persists through a stop and a crashed boot', () => {
    const events = [
      t('booting', 'ready'),
      t('ready', 'paused', ['cost'], { pause_cause: 'cost_limit' }),
      t('paused', 'stopped', ['cost']),
      // The next run crashed while its gates were still retrying.
      t('booting', 'booting', ['substrate'], {}, 'run-2'),
    ];
    expect(findPersistingPause(events)).toMatchObject({
      cause: 'cost_limit',
      reasons: ['cost'],
      instance_id: 'run-1',
      chain_seq: events[1]!.chain_seq,
    });
  });

  it('the clearing row ends it: nothing to restore after paused → ready', () => {
    expect(
      findPersistingPause([
        t('ready', 'paused', ['operator'], { pause_cause: 'operator' }),
        t('paused', 'ready', []),
        t('ready', 'paused', [], { pause_cause: 'stop_kora' }),
        t('paused', 'stopped', []),
      ]),
    ).toBeUndefined();
  });

  it('the shutdown pause (stop_kora) and an epoch-mismatch pause are not restored', () => {
    expect(
      findPersistingPause([
        t('ready', 'paused', [], { pause_cause: 'stop_kora' }),
        t('paused', 'stopped'),
      ]),
    ).toBeUndefined();
    // Row 4 is the boot's own verdict: the gate runs again on the next boot.
    expect(
      findPersistingPause([
        t('booting', 'paused', ['substrate']),
        t('paused', 'stopped', ['substrate']),
      ]),
    ).toBeUndefined();
  });

  it('reasons added while paused are restored with it; the cause’s own reason always is', () => {
    expect(
      findPersistingPause([
        t('active', 'paused', ['cost'], { pause_cause: 'cost_limit' }),
        t('paused', 'paused', ['cost', 'operator', 'auth']),
        t('paused', 'stopped', ['cost', 'operator', 'auth']),
      ]),
    ).toMatchObject({ cause: 'cost_limit', reasons: ['cost', 'operator'] });
    expect(
      findPersistingPause([
        t('ready', 'paused', ['substrate'], { pause_cause: 'substrate' }),
        t('paused', 'paused', []),
      ]),
    ).toMatchObject({ cause: 'substrate', reasons: ['substrate'] });
  });

  it('a restored pause is itself restored by the run after (booting → paused with the cause)', () => {
    expect(
      findPersistingPause([
        t('ready', 'paused', ['cost'], { pause_cause: 'cost_limit' }),
        t('paused', 'stopped', ['cost']),
        t('booting', 'paused', ['cost'], { pause_cause: 'cost_limit' }, 'run-2'),
        t('paused', 'stopped', ['cost'], {}, 'run-2'),
      ]),
    ).toMatchObject({ cause: 'cost_limit', instance_id: 'run-2' });
  });
});

describe('wireOperationalState({ restore })', () => {
  it('gates pass, then the restored pause: booting → paused (row 9) with its reasons, no boot.ready', async () => {
    const sink = createMemorySink({ workspaceId: 'ws' });
    const summary = await wireOperationalState({
      sink,
      logger: recordingLogger(),
      emit: { agentId: 'a' },
      gates: [{ id: 'g', gateClass: 'invariant', check: async () => true }],
      restore: async () => ({
        cause: 'cost_limit',
        reasons: ['cost', 'operator'],
        instance_id: 'run-1',
        seq: 7,
        chain_seq: 12,
        trigger: 'spend cap',
      }),
    });
    expect(summary).toMatchObject({ result: 'paused', restored: { cause: 'cost_limit' } });
    const holder = getHolder()!;
    expect(holder.current).toEqual({
      primaryState: 'paused',
      claimPermission: 'none',
      degradationReasons: ['cost', 'operator'],
    });
    const [record] = holder.history();
    expect(record).toMatchObject({
      from_state: 'booting',
      to_state: 'paused',
      event: 'pause',
      cause: 'cost_limit',
    });
    expect(record!.trigger).toBe(
      'restored cost_limit pause (cost, operator) of run-1 seq 7, chain #12',
    );
    expect(record!.details).toMatchObject({
      gates: [{ gate_id: 'g', outcome: 'pass' }],
      restored: { seq: 7 },
    });
    // The chain says what happened: a pause with its cause (and the cost-limit literal), no boot.ready.
    expect(sink.events.map((e) => e.event_type)).toEqual([
      'kora.operational_state.transitioned',
      'kora.paused.cost_limit',
    ]);
    expect(sink.events[0]).toMatchObject({ agent_id: 'a', payload: { pause_cause: 'cost_limit' } });
  });

  it('nothing to restore: ready as before', async () => {
    const summary = await wireOperationalState({
      sink: createMemorySink({ workspaceId: 'ws' }),
      logger: recordingLogger(),
      restore: async () => undefined,
    });
    expect(summary.result).toBe('ready');
  });

  it('a restore that cannot read the chain pauses for an operator (it cannot tell that no cost pause stands)', async () => {
    const logger = recordingLogger();
    const summary = await wireOperationalState({
      sink: createMemorySink({ workspaceId: 'ws' }),
      logger,
      restore: async () => {
        throw new Error('relation "event_log" does not exist');
      },
    });
    expect(summary).toMatchObject({
      result: 'paused',
      error: expect.stringMatching(/restore failed/),
    });
    expect(getHolder()!.current.degradationReasons).toEqual(['operator']);
    expect(logger.find('error', "could not read the agent's chain").length).toBe(1);
  });

  it('a restore that is not a function is refused, naming it', async () => {
    const summary = await wireOperationalState({
      sink: createMemorySink({ workspaceId: 'ws' }),
      logger: recordingLogger(),
      restore: 'yes' as never,
    });
    expect(summary).toMatchObject({
      result: 'error',
      error: expect.stringMatching(/restore must be a function, got "yes"/),
    });
  });
});
