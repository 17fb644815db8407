/** Migration 5 of the package's SQL (see `../migrations.ts`): never edit it once applied. */

/**
 * Migration 5: the fleet registry (SPEC §12). One row per agent of a workspace
 * (`workspace_id`, `agent_id`): the run that holds it (`instance_id`, version, pid, host,
 * status URL, start), its state as of its last write, its last transition, and
 * `last_seen`, which the agent moves on every write (on start, after each committed
 * transition, and every `heartbeat_ms`). Times are the database's (`now()`), so agents on
 * several hosts are compared on one clock. A reader calls a row gone when `last_seen` is
 * older than a few of its own heartbeats (see `src/fleet/sql.ts`), stopped when
 * `stopped_at` is set (a graceful stop). A new run of the agent takes the row over once
 * the old run is stopped or gone.
 */
export const FLEET_AGENTS = `
CREATE TABLE kora_opstate_fleet_agents (
  workspace_id        text        NOT NULL CHECK (workspace_id <> ''),
  agent_id            text        NOT NULL CHECK (agent_id <> ''),
  instance_id         text        NOT NULL CHECK (instance_id <> ''),
  version             text        NOT NULL,
  pid                 integer,
  host                text,
  url                 text,
  started_at          timestamptz NOT NULL,
  registered_at       timestamptz NOT NULL DEFAULT now(),
  last_seen           timestamptz NOT NULL DEFAULT now(),
  heartbeat_ms        integer     NOT NULL CHECK (heartbeat_ms > 0),
  stopped_at          timestamptz,
  primary_state       text        NOT NULL,
  claim_permission    text        NOT NULL,
  degradation_reasons jsonb       NOT NULL DEFAULT '[]'::jsonb
                                  CHECK (jsonb_typeof(degradation_reasons) = 'array'),
  last_seq            integer,
  last_event          text,
  last_from_state     text,
  last_trigger        text,
  last_transition_at  timestamptz,
  PRIMARY KEY (workspace_id, agent_id)
);
`;
