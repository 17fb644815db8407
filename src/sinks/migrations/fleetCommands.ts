/** Migration 6 of the package's SQL (see `../migrations.ts`): never edit it once applied. */
import { CHAIN_GAP_EVENT } from '../sql.js';

/**
 * Migration 6: fleet control (SPEC §12).
 *
 * `kora_opstate_fleet_commands`: one row per command an operator issued (`kora-opstate
 * control`), to one agent (`target_agent`) or to every agent of the workspace (NULL).
 * `command_id` comes from a sequence, taken under a per-workspace advisory lock by the
 * issuer, so a workspace's commands commit in id order — the order agents apply them in.
 * `mac` is an HMAC with the chain key over the whole command (see `src/fleet/controlAuth.ts`):
 * the key never enters the database, so a row a writer without it inserted or altered
 * does not verify, and the agent refuses it. Inserting a row notifies `kora_control`
 * (Kora's row 11 channel) with `{ workspace_id, command_id, target_agent }`.
 *
 * `kora_opstate_fleet_outcomes`: what each agent did with a command — one row per
 * (command, agent): `applied`, `refused` (with the 409 reason, or why the row did not
 * verify) or `expired` (the agent came back after the command's TTL); `mac` keyed the same
 * way. The chain holds the same outcome: the applied transition's trigger names the
 * command, and a refusal or expiry is a `kora.control.refused` event, added here to the
 * event log's vocabulary.
 */
export const FLEET_COMMANDS = `
CREATE SEQUENCE kora_opstate_fleet_command_id_seq;

CREATE TABLE kora_opstate_fleet_commands (
  command_id   bigint      NOT NULL PRIMARY KEY CHECK (command_id >= 1),
  workspace_id text        NOT NULL CHECK (workspace_id <> ''),
  target_agent text        CHECK (target_agent <> ''),
  action       text        NOT NULL,
  args         jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(args) = 'object'),
  issued_by    text        NOT NULL,
  issued_at    timestamptz NOT NULL,
  expires_at   timestamptz NOT NULL,
  key_id       text        NOT NULL,
  mac          text        NOT NULL,
  recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX kora_opstate_fleet_commands_ws_idx
  ON kora_opstate_fleet_commands (workspace_id, command_id);

CREATE TABLE kora_opstate_fleet_outcomes (
  command_id  bigint      NOT NULL REFERENCES kora_opstate_fleet_commands ON DELETE CASCADE,
  agent_id    text        NOT NULL CHECK (agent_id <> ''),
  instance_id text        NOT NULL,
  outcome     text        NOT NULL CHECK (outcome IN ('applied', 'refused', 'expired')),
  reason      text,
  from_state  text,
  to_state    text,
  mac         text        NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (command_id, agent_id)
);

CREATE FUNCTION kora_opstate_fleet_command_notify() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
  PERFORM pg_notify('kora_control', json_build_object(
    'workspace_id', NEW.workspace_id,
    'command_id', NEW.command_id,
    'target_agent', NEW.target_agent)::text);
  RETURN NULL;
END
$fn$;

CREATE TRIGGER kora_opstate_fleet_command_notify
  AFTER INSERT ON kora_opstate_fleet_commands
  FOR EACH ROW EXECUTE FUNCTION kora_opstate_fleet_command_notify();

ALTER TABLE event_log
  DROP CONSTRAINT event_log_event_type_vocabulary,
  ADD CONSTRAINT event_log_event_type_vocabulary CHECK (event_type IN (
    'kora.operational_state.transitioned',
    'kora.boot.ready',
    'kora.boot.failed',
    'kora.paused.cost_limit',
    '${CHAIN_GAP_EVENT}',
    'kora.control.refused'
  ));
`;
