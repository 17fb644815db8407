/** Migration 1 of the package's SQL (see `../migrations.ts`): never edit it once applied. */
import { CHAIN_LOCK_CLASS, eventHashSql } from '../sql.js';

/** @internal The v1 hash of the event an append function is inserting (migrations 1 and 3). */
export const NEW_EVENT_HASH = eventHashSql({
  prev: 'head_hash',
  eventId: 'new_id',
  workspaceId: 'ws',
  instanceId: "e->>'instance_id'",
  seq: "(e->>'seq')::bigint",
  eventType: 'cur_type',
  occurredAt: "(e->>'occurred_at')::timestamptz",
  payload: "e->'payload'",
});

/**
 * Migration 1: the hash-chained event log and its append function.
 *
 * `kora_opstate_append(events jsonb)` takes one committed change's events (one workspace)
 * and, under a per-workspace transaction advisory lock, links each to the chain head:
 * `chain_seq` = head + 1, `prev_event_hash` = head's hash, `this_event_hash` computed here.
 * A retried event (same instance_id, seq) is skipped, so a retry never forks the chain.
 */
export const EVENT_LOG = `
CREATE TABLE IF NOT EXISTS event_log (
  event_id        uuid        NOT NULL PRIMARY KEY,
  workspace_id    text        NOT NULL CHECK (workspace_id <> ''),
  instance_id     text        NOT NULL CHECK (instance_id <> ''),
  seq             bigint      NOT NULL CHECK (seq >= 1),
  event_type      text        NOT NULL,
  payload         jsonb       NOT NULL,
  occurred_at     timestamptz NOT NULL,
  chain_seq       bigint      NOT NULL CHECK (chain_seq >= 1),
  prev_event_hash text,
  this_event_hash text        NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT event_log_event_type_vocabulary CHECK (event_type IN (
    'kora.operational_state.transitioned',
    'kora.boot.ready',
    'kora.boot.failed',
    'kora.paused.cost_limit'
  )),
  CONSTRAINT event_log_instance_seq_key UNIQUE (instance_id, seq),
  CONSTRAINT event_log_workspace_chain_key UNIQUE (workspace_id, chain_seq)
);

CREATE OR REPLACE FUNCTION kora_opstate_append(events jsonb) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
  ws         text := events->0->>'workspace_id';
  e          jsonb;
  head_seq   bigint;
  head_hash  text;
  new_id     uuid;
  new_hash   text;
  cur_type   text;
  stored     integer := 0;
  refused_by text;
BEGIN
  IF ws IS NULL THEN
    RETURN 0;
  END IF;
  -- One chain per workspace: appends to it are serialized here, across processes.
  -- The lock is taken before the head is read (a new snapshot per statement).
  PERFORM pg_advisory_xact_lock(${CHAIN_LOCK_CLASS}, hashtext(ws));
  SELECT chain_seq, this_event_hash INTO head_seq, head_hash
    FROM event_log WHERE workspace_id = ws ORDER BY chain_seq DESC LIMIT 1;
  head_seq := coalesce(head_seq, 0);
  FOR e IN SELECT value FROM jsonb_array_elements(events) LOOP
    cur_type := e->>'event_type';
    IF (e->>'workspace_id') IS DISTINCT FROM ws THEN
      RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = format('one append holds one workspace: %L, then %L', ws, e->>'workspace_id');
    END IF;
    new_id := gen_random_uuid();
    new_hash := ${NEW_EVENT_HASH};
    INSERT INTO event_log (event_id, workspace_id, instance_id, seq, event_type, payload,
                           occurred_at, chain_seq, prev_event_hash, this_event_hash)
    VALUES (new_id, ws, e->>'instance_id', (e->>'seq')::bigint, cur_type, e->'payload',
            (e->>'occurred_at')::timestamptz, head_seq + 1, head_hash, new_hash)
    ON CONFLICT (instance_id, seq) DO NOTHING;
    IF FOUND THEN
      head_seq := head_seq + 1;
      head_hash := new_hash;
      stored := stored + 1;
    END IF;
  END LOOP;
  RETURN stored;
EXCEPTION WHEN check_violation THEN
  -- The constraint's own message does not say which event it refused.
  GET STACKED DIAGNOSTICS refused_by = CONSTRAINT_NAME;
  RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = refused_by,
    MESSAGE = format('event_log refused event type %s (instance %s, seq %s): %s',
                     cur_type, e->>'instance_id', e->>'seq', SQLERRM);
END
$fn$;
`;
