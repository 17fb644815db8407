/** Migration 2 of the package's SQL (see `../migrations.ts`): never edit it once applied. */

/**
 * Migration 2: the ticket queue of the claim pollers (`src/claims/sources/postgres.ts`).
 *
 * A claim leases a row (`lease_token`, `lease_expires_at`, the database's clock); a lease
 * that runs out makes the ticket claimable again. `position` keeps the queue order;
 * `resolution` is the last claim's end (`abandoned` leaves the ticket queued).
 */
export const TICKETS = `
CREATE TABLE IF NOT EXISTS tickets (
  id               text        NOT NULL PRIMARY KEY CHECK (id <> ''),
  position         bigint      GENERATED ALWAYS AS IDENTITY,
  queue            text        NOT NULL DEFAULT 'default',
  payload          jsonb       NOT NULL DEFAULT '{}'::jsonb,
  critical         boolean     NOT NULL DEFAULT false,
  status           text        NOT NULL DEFAULT 'queued',
  attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  lease_owner      text,
  lease_token      uuid,
  lease_expires_at timestamptz,
  resolution       text,
  resolved_by      text,
  resolved_at      timestamptz,
  detail           text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT tickets_status_check CHECK (status IN ('queued', 'claimed', 'done', 'failed')),
  CONSTRAINT tickets_resolution_check CHECK (resolution IN ('done', 'failed', 'abandoned')),
  CONSTRAINT tickets_lease_check CHECK (
    (status = 'claimed') = (lease_token IS NOT NULL AND lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

CREATE INDEX IF NOT EXISTS tickets_claimable_idx
  ON tickets (queue, critical DESC, position) WHERE status IN ('queued', 'claimed');
`;
