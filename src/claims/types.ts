/**
 * The contract between a ticket poller and its queue: lease-based claims, so a crashed
 * worker's ticket goes back to the others once its lease runs out.
 */

/** A ticket taken off a queue, with the lease this worker holds on it. */
export interface Ticket {
  readonly id: string;
  /** Claimable under claim permission `critical_only`. */
  readonly critical: boolean;
  readonly payload: unknown;
  /** Claims so far, this one included (> 1: an earlier worker lost its lease). */
  readonly attempts: number;
  readonly lease: TicketLease;
}

/** Which worker holds a ticket, until when. */
export interface TicketLease {
  readonly owner: string;
  /** Unique per claim: a lease taken over by another worker no longer matches. */
  readonly token: string;
  readonly ms: number;
  readonly expiresAt: Date;
}

/** How a claim ended: `done`/`failed` are final; `abandoned` puts the ticket back in the queue. */
export const TicketResolution = {
  DONE: 'done',
  FAILED: 'failed',
  ABANDONED: 'abandoned',
} as const;
export type TicketResolution = (typeof TicketResolution)[keyof typeof TicketResolution];
export const TICKET_RESOLUTIONS: readonly TicketResolution[] = Object.freeze(
  Object.values(TicketResolution),
);

export interface ClaimNextOptions {
  /** Recorded as the lease owner and `resolved_by`. */
  workerId: string;
  /** Lease length; the worker extends it with `heartbeat`. */
  leaseMs: number;
  /** Only critical tickets (claim permission `critical_only`). */
  critical?: boolean;
}

/** A ticket to put in a queue. */
export interface NewTicket {
  /** Default: a random UUID. */
  id?: string;
  payload?: unknown;
  critical?: boolean;
}

/** A queue of tickets shared by workers. */
export interface TicketSource {
  /**
   * Takes the next claimable ticket — queued, or claimed under a lease that has expired —
   * leasing it to `workerId`; `undefined` when there is none.
   */
  claimNext(options: ClaimNextOptions): Promise<Ticket | undefined>;
  /** Extends the lease by its length; `false` when the lease is lost (taken over or resolved). */
  heartbeat(ticket: Ticket): Promise<boolean>;
  /**
   * Records how the claim ended; `false` when the lease was lost meanwhile (then nothing is
   * recorded — the ticket belongs to whoever took it over).
   */
  release(ticket: Ticket, resolution: TicketResolution, detail?: string): Promise<boolean>;
}
