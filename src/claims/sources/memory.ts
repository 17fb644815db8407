/**
 * The in-memory ticket source: the same lease rules as the Postgres source, in one
 * process. For tests and demos — nothing survives the process.
 */
import { randomUUID } from 'node:crypto';
import { positiveInt } from '../../options.js';
import { OperationalStateInputError, quote } from '../../vocabulary.js';
import {
  type ClaimNextOptions,
  type NewTicket,
  TICKET_RESOLUTIONS,
  type Ticket,
  type TicketResolution,
  type TicketSource,
} from '../types.js';

/** A ticket's stored row, as the in-memory source keeps it. */
export interface MemoryTicketRow {
  readonly id: string;
  readonly payload: unknown;
  readonly critical: boolean;
  status: 'queued' | 'claimed' | 'done' | 'failed';
  attempts: number;
  leaseOwner?: string;
  leaseToken?: string;
  leaseExpiresAt?: number;
  resolution?: TicketResolution;
  resolvedBy?: string;
  resolvedAt?: number;
  detail?: string;
  readonly createdAt: number;
}

export interface MemoryTicketSourceOptions {
  /** Clock for leases (default `Date.now`). */
  now?: () => number;
}

/** An in-memory {@link TicketSource} with its rows open to inspection. */
export interface MemoryTicketSource extends TicketSource {
  /** Adds tickets to the queue; returns their ids (an existing id is left as it is). */
  enqueue(tickets: readonly NewTicket[]): string[];
  /** Every ticket, in queue order. */
  readonly rows: readonly MemoryTicketRow[];
  /** Ends a lease now, as if the worker had vanished (tests). */
  expireLease(id: string): void;
}

function check(field: string, ok: boolean, value: unknown, message: string): void {
  if (!ok) throw new OperationalStateInputError(field, value, `${message}, got ${quote(value)}`);
}

/** @internal Shared validation of `claimNext` options. */
export function checkClaimOptions(o: ClaimNextOptions): void {
  check('options', o !== null && typeof o === 'object', o, 'options must be an object');
  check(
    'workerId',
    typeof o.workerId === 'string' && o.workerId !== '',
    o.workerId,
    'workerId must be a non-empty string',
  );
  positiveInt(o.leaseMs, 'leaseMs');
}

/** @internal */
export function checkResolution(resolution: unknown): asserts resolution is TicketResolution {
  check(
    'resolution',
    TICKET_RESOLUTIONS.includes(resolution as TicketResolution),
    resolution,
    `resolution must be one of ${TICKET_RESOLUTIONS.join(', ')}`,
  );
}

/**
 * Creates an in-memory ticket source.
 *
 * @example
 * const source = createMemoryTicketSource();
 * source.enqueue([{ id: 't-1', payload: { repo: 'kora' } }, { id: 't-2', critical: true }]);
 * const ticket = await source.claimNext({ workerId: 'w1', leaseMs: 30_000 });
 * await source.release(ticket!, 'done');
 */
export function createMemoryTicketSource(
  options: MemoryTicketSourceOptions = {},
): MemoryTicketSource {
  const now = options.now ?? Date.now;
  const rows: MemoryTicketRow[] = [];
  const byId = new Map<string, MemoryTicketRow>();
  const owns = (ticket: Ticket) => {
    const row = byId.get(ticket.id);
    return row?.status === 'claimed' && row.leaseToken === ticket.lease.token ? row : undefined;
  };
  return {
    rows,
    enqueue(tickets) {
      check('tickets', Array.isArray(tickets), tickets, 'tickets must be an array');
      return tickets.map((t) => {
        const id = t.id ?? randomUUID();
        check(
          'id',
          typeof id === 'string' && id !== '',
          id,
          'ticket id must be a non-empty string',
        );
        if (!byId.has(id)) {
          const row: MemoryTicketRow = {
            id,
            payload: t.payload ?? {},
            critical: t.critical === true,
            status: 'queued',
            attempts: 0,
            createdAt: now(),
          };
          rows.push(row);
          byId.set(id, row);
        }
        return id;
      });
    },
    async claimNext(o) {
      checkClaimOptions(o);
      const t = now();
      const claimable = (r: MemoryTicketRow) =>
        (r.status === 'queued' || (r.status === 'claimed' && (r.leaseExpiresAt ?? 0) < t)) &&
        (!o.critical || r.critical);
      // Critical first, then queue order — as the Postgres source.
      const row = rows.find((r) => r.critical && claimable(r)) ?? rows.find(claimable);
      if (!row) return undefined;
      row.status = 'claimed';
      row.attempts++;
      row.leaseOwner = o.workerId;
      row.leaseToken = randomUUID();
      row.leaseExpiresAt = t + o.leaseMs;
      return {
        id: row.id,
        critical: row.critical,
        payload: row.payload,
        attempts: row.attempts,
        lease: {
          owner: o.workerId,
          token: row.leaseToken,
          ms: o.leaseMs,
          expiresAt: new Date(row.leaseExpiresAt),
        },
      };
    },
    async heartbeat(ticket) {
      const row = owns(ticket);
      if (!row) return false;
      row.leaseExpiresAt = now() + ticket.lease.ms;
      return true;
    },
    async release(ticket, resolution, detail) {
      checkResolution(resolution);
      const row = owns(ticket);
      if (!row) return false;
      row.leaseOwner = undefined;
      row.leaseToken = undefined;
      row.leaseExpiresAt = undefined;
      row.detail = detail;
      // `abandoned` puts the ticket back in the queue; the resolution says what the last claim did.
      row.status = resolution === 'abandoned' ? 'queued' : resolution;
      row.resolution = resolution;
      row.resolvedBy = ticket.lease.owner;
      row.resolvedAt = now();
      return true;
    },
    expireLease(id) {
      const row = byId.get(id);
      if (row?.status === 'claimed') row.leaseExpiresAt = now() - 1;
    },
  };
}
