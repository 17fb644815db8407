/** Migration 7 of the package's SQL (see `../migrations.ts`): never edit it once applied. */
import { CHAIN_LOCK_CLASS, LINK_V2 } from '../sql.js';

const LOCK = `${CHAIN_LOCK_CLASS}, hashtext(ws)`;

/**
 * Migration 7: several keyed writers on one chain link together (SPEC §10, issue 12).
 *
 * Only a client holds the chain key, so a keyed writer links onto the head it knows and
 * writers of one chain take turns. When a writer finds the head moved (another writer
 * appended), it offers its events instead: `kora_opstate_offer` puts them in
 * `event_offer` (committed, so others see them) and queues on the chain lock (a session
 * lock). Whoever gets the lock and still finds its own offer open leads: it is answered
 * the head and every open offer of the workspace, links them all with the key and stores
 * them with `kora_opstate_link_offers` — one commit, then the lock goes. The writers
 * queued behind it find their offers linked (or refused, with the reason) and leave at
 * once, without a round trip. Appends that arrive while one batch is being linked make
 * the next batch: the more writers, the bigger the batches.
 *
 * - An offer carries an HMAC of its events with the chain key: the leader links only
 *   offers that verify, so a database writer without the key cannot get an event linked
 *   through this table (it is refused, and no one waits for it).
 * - Offers are linked whole or refused whole; one refused offer (a CHECK of `event_log`,
 *   an instance id reused) never stops the others.
 * - A leader that dies (or errs) holds its lock only as long as its connection: the
 *   lock is a session lock, and the client drops a connection it may have left holding it.
 * - The table is UNLOGGED: an offer is not the record. A writer's append has not
 *   resolved while its offer is open; after a crash the writer (or its next run, from its
 *   spool) appends again, and an offer linked before the crash is then found stored.
 *
 * Both run with the caller's search_path (a procedure that commits cannot set its own),
 * as the sink's other statements do.
 */
export const GROUP_LINK = `
CREATE UNLOGGED TABLE event_offer (
  offer_id     bigserial   PRIMARY KEY,
  workspace_id text        NOT NULL,
  events       text        NOT NULL, -- the JSON the writer signed, byte for byte
  mac          text        NOT NULL,
  state        text        NOT NULL DEFAULT 'offered' CHECK (state IN ('offered', 'linked', 'refused')),
  result       jsonb,
  offered_at   timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);
CREATE INDEX event_offer_workspace_idx ON event_offer (workspace_id, offer_id);

-- Offers (committed), then waits for the chain lock. Answers {state: 'linked'|'refused',
-- result} when a leader took the offer (lock released), {state: 'lost'} when the offer is
-- gone (a crash emptied the table: offer again), else {state: 'lead', offer_id, head_seq,
-- head_hash, offers, taken} holding the lock: the caller links and calls
-- kora_opstate_link_offers, or drops its connection.
CREATE PROCEDURE kora_opstate_offer(ws text, offered text, offer_mac text, barrier boolean,
                                    INOUT r jsonb DEFAULT NULL)
LANGUAGE plpgsql
AS $fn$
DECLARE
  own       bigint;
  own_state text;
  own_res   jsonb;
  head_seq  bigint;
  head_hash text;
  open      jsonb;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  INSERT INTO event_offer (workspace_id, events, mac) VALUES (ws, offered, offer_mac)
    RETURNING offer_id INTO own;
  COMMIT;
  PERFORM pg_advisory_lock(${LOCK});
  SELECT o.state, o.result INTO own_state, own_res FROM event_offer o WHERE o.offer_id = own;
  IF own_state IS DISTINCT FROM 'offered' THEN
    DELETE FROM event_offer WHERE offer_id = own;
    PERFORM pg_advisory_unlock(${LOCK});
    IF barrier THEN
      -- The leader let the lock go before its commit was flushed: this commit waits for
      -- the flush (WAL is flushed in order), with no lock held.
      PERFORM pg_logical_emit_message(true, 'kora-opstate', '');
    END IF;
    r := jsonb_build_object('state', coalesce(own_state, 'lost'), 'result', own_res);
    RETURN;
  END IF;
  SELECT l.chain_seq, l.this_event_hash INTO head_seq, head_hash
    FROM event_log l WHERE l.workspace_id = ws ORDER BY l.chain_seq DESC LIMIT 1;
  SELECT coalesce(jsonb_agg(jsonb_build_object('offer_id', o.offer_id, 'events', o.events, 'mac', o.mac)
                            ORDER BY o.offer_id), '[]'::jsonb)
    INTO open
    FROM (SELECT * FROM event_offer
           -- Open offers are recent: the window keeps each read off the dead rows before
           -- it (a queue table's bloat). An older open offer is not lost: its writer
           -- finds it open when its turn comes, and leads it.
           WHERE workspace_id = ws AND state = 'offered' AND offer_id > own - 1024
           ORDER BY offer_id LIMIT 256) o;
  r := jsonb_build_object('state', 'lead', 'offer_id', own, 'head_seq', head_seq,
    'head_hash', head_hash, 'offers', open,
    'taken', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'instance_id', l.instance_id, 'seq', l.seq, 'chain_seq', l.chain_seq,
                'workspace_id', l.workspace_id, 'agent_id', l.agent_id,
                'event_type', l.event_type, 'payload', l.payload,
                'occurred_at', to_char(l.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))), '[]'::jsonb)
                FROM (SELECT DISTINCT e->>'instance_id' AS instance_id, (e->>'seq')::bigint AS seq
                        FROM jsonb_array_elements(open) AS x(o), jsonb_array_elements((x.o->>'events')::jsonb) AS y(e)) k,
                     -- One index probe per pair, never a scan of the chain.
                     LATERAL (SELECT * FROM event_log s
                               WHERE s.instance_id = k.instance_id AND s.seq = k.seq LIMIT 1) l));
END
$fn$;

-- The leader's store: the linked events, each other offer's outcome (its own offer is
-- deleted), one commit, then the lock goes (with barrier: the commit is asynchronous, and
-- a synchronous one after the unlock makes it durable). An event that event_log refuses
-- stores nothing and is answered {refused: {detail, code, constraint, message}} (the lock
-- still held): the leader refuses that event's offer, relinks the rest and calls again.
CREATE PROCEDURE kora_opstate_link_offers(ws text, own bigint, link_key_id text, linked jsonb,
                                          outcomes jsonb, barrier boolean,
                                          INOUT r jsonb DEFAULT NULL)
LANGUAGE plpgsql
AS $fn$
DECLARE
  failed text;
  code   text;
  cons   text;
  msg    text;
  n      integer;
BEGIN
  BEGIN
    INSERT INTO event_log (event_id, workspace_id, agent_id, instance_id, seq, event_type,
                           payload, occurred_at, chain_seq, prev_event_hash, this_event_hash,
                           link_alg, key_id)
    SELECT e.event_id, e.workspace_id, e.agent_id, e.instance_id, e.seq, e.event_type,
           e.payload, e.occurred_at, e.chain_seq, e.prev_event_hash, e.this_event_hash,
           '${LINK_V2}', link_key_id
      FROM jsonb_to_recordset(linked) AS e(event_id uuid, workspace_id text, agent_id text,
        instance_id text, seq bigint, event_type text, payload jsonb, occurred_at timestamptz,
        chain_seq bigint, prev_event_hash text, this_event_hash text);
    GET DIAGNOSTICS n = ROW_COUNT;
  EXCEPTION WHEN integrity_constraint_violation OR data_exception THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, cons = CONSTRAINT_NAME, msg = MESSAGE_TEXT,
                            failed = PG_EXCEPTION_DETAIL;
    r := jsonb_build_object('refused', jsonb_build_object(
      'detail', failed, 'code', code, 'constraint', cons, 'message', msg));
    RETURN;
  END;
  UPDATE event_offer o SET state = x.state, result = x.result
    FROM jsonb_to_recordset(outcomes) AS x(offer_id bigint, state text, result jsonb)
   WHERE o.offer_id = x.offer_id AND o.workspace_id = ws;
  DELETE FROM event_offer WHERE offer_id = own;
  -- Outcomes nobody came for (a writer that died waiting) do not pile up: looked for now
  -- and then, not on every batch.
  IF own % 512 = 0 THEN
    DELETE FROM event_offer
     WHERE workspace_id = ws AND state <> 'offered' AND offered_at < now() - interval '10 minutes';
  END IF;
  IF barrier THEN
    PERFORM set_config('synchronous_commit', 'off', true);
  END IF;
  COMMIT;
  PERFORM pg_advisory_unlock(${LOCK});
  IF barrier THEN
    -- Visible, and the lock free, at once; durable when this commit's flush covers it.
    PERFORM pg_logical_emit_message(true, 'kora-opstate', '');
  END IF;
  r := jsonb_build_object('stored', n);
END
$fn$;
`;
