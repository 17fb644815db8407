/** Migration 3 of the package's SQL (see `../migrations.ts`): never edit it once applied. */
import { CHAIN_GAP_EVENT, CHAIN_LOCK_CLASS, LINK_V1, LINK_V2 } from '../sql.js';
import { NEW_EVENT_HASH } from './eventLog.js';

/**
 * Migration 3: the keyed chain (SPEC §10).
 *
 * Every event names its agent (`agent_id`, default `'default'`) and how its link was
 * made: `link_alg` `'sha256-v1'` (migration 1's hash, computed here; every existing row)
 * or `'hmac-sha256-v2'` (an HMAC with the chain key, computed by the sink — the key never
 * enters the database), with `key_id` naming the key. `kora.chain.gap` marks events a
 * spool overflow dropped.
 *
 * `kora_opstate_append_linked(events)` is migration 1's append, plus:
 * - it refuses a workspace whose head is keyed (23000): such a chain grows only through
 *   a sink holding the key;
 * - an `(instance_id, seq)` already stored is skipped only when it is the same event (a
 *   retry); a different one is refused (23505, "instance id reused"), never dropped;
 * - it answers `{ stored, head_seq, head_hash }`: the head after the append, so the sink
 *   knows its own head.
 * `kora_opstate_append(events)` keeps its signature and answers the count.
 * `kora_opstate_append_keyed(...)` stores a keyed sink's linked events in one statement
 * when the head is still the one they link to (see there).
 */
export const KEYED_CHAIN = `
ALTER TABLE event_log
  ADD COLUMN agent_id text NOT NULL DEFAULT 'default',
  ADD COLUMN link_alg text NOT NULL DEFAULT '${LINK_V1}',
  ADD COLUMN key_id   text;

ALTER TABLE event_log
  ADD CONSTRAINT event_log_agent_id_check CHECK (agent_id <> ''),
  ADD CONSTRAINT event_log_link_alg_check CHECK (
    (link_alg = '${LINK_V1}' AND key_id IS NULL) OR (link_alg = '${LINK_V2}' AND key_id IS NOT NULL)),
  DROP CONSTRAINT event_log_event_type_vocabulary,
  ADD CONSTRAINT event_log_event_type_vocabulary CHECK (event_type IN (
    'kora.operational_state.transitioned',
    'kora.boot.ready',
    'kora.boot.failed',
    'kora.paused.cost_limit',
    '${CHAIN_GAP_EVENT}'
  ));

-- An agent's own events (what a restart restores from).
CREATE INDEX event_log_agent_idx ON event_log (workspace_id, agent_id, chain_seq);
-- The gap markers verify-chain lists (rare: a small index).
CREATE INDEX event_log_gap_idx ON event_log (workspace_id, chain_seq)
  WHERE event_type = '${CHAIN_GAP_EVENT}';

CREATE OR REPLACE FUNCTION kora_opstate_append_linked(events jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
  ws         text := events->0->>'workspace_id';
  e          jsonb;
  stored     integer := 0;
  head_seq   bigint;
  head_hash  text;
  head_alg   text;
  new_id     uuid;
  new_hash   text;
  cur_type   text;
  cur_agent  text;
  prior      record;
  refused_by text;
BEGIN
  IF ws IS NULL THEN
    RETURN jsonb_build_object('stored', 0);
  END IF;
  -- The same lock a keyed sink takes: both kinds of append serialize on one chain.
  PERFORM pg_advisory_xact_lock(${CHAIN_LOCK_CLASS}, hashtext(ws));
  SELECT l.chain_seq, l.this_event_hash, l.link_alg INTO head_seq, head_hash, head_alg
    FROM event_log l WHERE l.workspace_id = ws ORDER BY l.chain_seq DESC LIMIT 1;
  IF head_alg IS NOT NULL AND head_alg <> '${LINK_V1}' THEN
    RAISE EXCEPTION USING ERRCODE = '23000',
      MESSAGE = format('chain of workspace %s is keyed (head #%s); append with the chain key',
                       to_json(ws)::text, head_seq),
      HINT = 'give the sink the chain key (chainKey, KORA_CHAIN_KEY or --chain-key-file)';
  END IF;
  head_seq := coalesce(head_seq, 0);
  FOR e IN SELECT value FROM jsonb_array_elements(events) LOOP
    cur_type := e->>'event_type';
    cur_agent := coalesce(e->>'agent_id', 'default');
    IF (e->>'workspace_id') IS DISTINCT FROM ws THEN
      RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = format('one append holds one workspace: %L, then %L', ws, e->>'workspace_id');
    END IF;
    new_id := gen_random_uuid();
    new_hash := ${NEW_EVENT_HASH};
    INSERT INTO event_log (event_id, workspace_id, agent_id, instance_id, seq, event_type, payload,
                           occurred_at, chain_seq, prev_event_hash, this_event_hash)
    VALUES (new_id, ws, cur_agent, e->>'instance_id', (e->>'seq')::bigint, cur_type, e->'payload',
            (e->>'occurred_at')::timestamptz, head_seq + 1, head_hash, new_hash)
    ON CONFLICT (instance_id, seq) DO NOTHING;
    IF FOUND THEN
      head_seq := head_seq + 1;
      head_hash := new_hash;
      stored := stored + 1;
    ELSE
      SELECT l.workspace_id, l.agent_id, l.event_type, l.payload, l.occurred_at, l.chain_seq
        INTO prior FROM event_log l
        WHERE l.instance_id = e->>'instance_id' AND l.seq = (e->>'seq')::bigint;
      -- The same event again is a retry (skipped); anything else under that (instance_id,
      -- seq) is another run reusing the instance id: refused, never silently dropped.
      IF (prior.workspace_id, prior.agent_id, prior.event_type, prior.payload, prior.occurred_at)
         IS DISTINCT FROM (ws, cur_agent, cur_type, e->'payload', (e->>'occurred_at')::timestamptz) THEN
        RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'event_log_instance_seq_key',
          MESSAGE = format('instance id reused: instance %s seq %s is already stored as another event (#%s of workspace %s); an instance id must be unique per run',
                           to_json(e->>'instance_id')::text, e->>'seq', prior.chain_seq,
                           to_json(prior.workspace_id)::text);
      END IF;
    END IF;
  END LOOP;
  RETURN jsonb_build_object('stored', stored, 'head_seq', head_seq, 'head_hash', head_hash);
EXCEPTION WHEN check_violation THEN
  -- The constraint's own message does not say which event it refused.
  GET STACKED DIAGNOSTICS refused_by = CONSTRAINT_NAME;
  RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = refused_by,
    MESSAGE = format('event_log refused event type %s (instance %s, seq %s): %s',
                     cur_type, e->>'instance_id', e->>'seq', SQLERRM);
END
$fn$;

CREATE OR REPLACE FUNCTION kora_opstate_append(events jsonb) RETURNS integer
LANGUAGE sql
SET search_path FROM CURRENT
AS $fn$ SELECT (kora_opstate_append_linked(events)->>'stored')::integer $fn$;

-- A keyed sink's append in one statement: the links are computed by the sink (it holds
-- the key) against the head it expects; under the chain lock this stores them only if
-- that is still the head and none of their (instance_id, seq) is taken. Otherwise it
-- stores nothing and answers the head and the taken pairs, and the sink relinks and
-- tries again. A taken pair holding another event is refused (23505), as above. (The
-- taken pairs are looked up only after the INSERT met one: the common case is one
-- INSERT, its unique index doing the check.)
CREATE OR REPLACE FUNCTION kora_opstate_append_keyed(
  expected_seq bigint, expected_hash text, link_key_id text, linked jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
  ws        text := linked->0->>'workspace_id';
  head_seq  bigint;
  head_hash text;
  e         jsonb;
  prior     record;
  taken     jsonb := '[]'::jsonb;
  n         integer;
BEGIN
  IF ws IS NULL THEN
    RETURN jsonb_build_object('stored', 0);
  END IF;
  PERFORM pg_advisory_xact_lock(${CHAIN_LOCK_CLASS}, hashtext(ws));
  SELECT l.chain_seq, l.this_event_hash INTO head_seq, head_hash
    FROM event_log l WHERE l.workspace_id = ws ORDER BY l.chain_seq DESC LIMIT 1;
  IF (head_seq, head_hash) IS NOT DISTINCT FROM (expected_seq, expected_hash) THEN
    BEGIN
      INSERT INTO event_log (event_id, workspace_id, agent_id, instance_id, seq, event_type,
                             payload, occurred_at, chain_seq, prev_event_hash, this_event_hash,
                             link_alg, key_id)
      SELECT r.event_id, r.workspace_id, r.agent_id, r.instance_id, r.seq, r.event_type,
             r.payload, r.occurred_at, r.chain_seq, r.prev_event_hash, r.this_event_hash,
             '${LINK_V2}', link_key_id
        FROM jsonb_to_recordset(linked) AS r(event_id uuid, workspace_id text, agent_id text,
          instance_id text, seq bigint, event_type text, payload jsonb, occurred_at timestamptz,
          chain_seq bigint, prev_event_hash text, this_event_hash text);
      GET DIAGNOSTICS n = ROW_COUNT;
      RETURN jsonb_build_object('stored', n);
    EXCEPTION WHEN unique_violation THEN
      -- Rolled back to the block's start: some (instance_id, seq) is taken; see below.
    END;
  END IF;
  -- Nothing stored. Which pairs are taken: the same event (a retry, to be left out) or
  -- another (an instance id reused: refused).
  FOR e IN SELECT value FROM jsonb_array_elements(linked) LOOP
    SELECT l.workspace_id, l.agent_id, l.event_type, l.payload, l.occurred_at, l.chain_seq
      INTO prior FROM event_log l
      WHERE l.instance_id = e->>'instance_id' AND l.seq = (e->>'seq')::bigint;
    CONTINUE WHEN NOT FOUND;
    IF (prior.workspace_id, prior.agent_id, prior.event_type, prior.payload, prior.occurred_at)
       IS DISTINCT FROM (e->>'workspace_id', coalesce(e->>'agent_id', 'default'), e->>'event_type',
                         e->'payload', (e->>'occurred_at')::timestamptz) THEN
      RAISE EXCEPTION USING ERRCODE = 'unique_violation', CONSTRAINT = 'event_log_instance_seq_key',
        MESSAGE = format('instance id reused: instance %s seq %s is already stored as another event (#%s of workspace %s); an instance id must be unique per run',
                         to_json(e->>'instance_id')::text, e->>'seq', prior.chain_seq,
                         to_json(prior.workspace_id)::text);
    END IF;
    taken := taken || jsonb_build_array(jsonb_build_object('instance_id', e->>'instance_id', 'seq', (e->>'seq')::bigint));
  END LOOP;
  RETURN jsonb_build_object('stored', 0, 'head_seq', head_seq, 'head_hash', head_hash, 'taken', taken);
END
$fn$;
`;
