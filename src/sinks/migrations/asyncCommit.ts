/** Migration 4 of the package's SQL (see `../migrations.ts`): never edit it once applied. */

/**
 * Migration 4: appends that let go of the chain lock without waiting for the WAL flush.
 *
 * The chain lock is a transaction lock: held until the commit, and a synchronous commit
 * waits for its WAL flush — so every writer of a workspace waited for every other's
 * fsync, one after another. These wrappers make their transaction commit asynchronously
 * (`synchronous_commit = off`, for this transaction only): the commit is visible, and the
 * lock free, at once. The sink then waits for durability outside the lock with a
 * synchronous commit of its own (a WAL barrier), which concurrent writers' flushes share
 * (Postgres's group commit). The WAL is flushed in order, so a crash before the flush
 * loses an unacknowledged suffix of the chain, never a link in its middle.
 */
export const ASYNC_COMMIT = `
CREATE OR REPLACE FUNCTION kora_opstate_append_linked_async(events jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  RETURN kora_opstate_append_linked(events);
END
$fn$;

CREATE OR REPLACE FUNCTION kora_opstate_append_keyed_async(
  expected_seq bigint, expected_hash text, link_key_id text, linked jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  RETURN kora_opstate_append_keyed(expected_seq, expected_hash, link_key_id, linked);
END
$fn$;
`;
