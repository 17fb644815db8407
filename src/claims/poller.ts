/**
 * The ticket poller: a loop that takes tickets off a {@link TicketSource} and works them
 * through the {@link ClaimCoordinator} — so every claim is a ready → active → ready in the
 * holder's history and chain, and nothing is claimed unless the state allows it. The
 * lease is kept alive by heartbeats while the work runs; when it is lost, the work's
 * signal aborts.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import type { OperationalStateHolder } from '../holder.js';
import { errorText, LOG_TAGS, type Logger, report } from '../logger.js';
import {
  functionSchema,
  loggerSchema,
  nonEmptyStringSchema,
  objectWithSchema,
  parseOptions,
  positiveIntSchema,
} from '../options.js';
import { quote } from '../vocabulary.js';
import { type ClaimContext, type ClaimCoordinator, holderLogger } from './coordinator.js';
import type { Ticket, TicketResolution, TicketSource } from './types.js';

/** The reason a work's signal aborts with when its lease was lost. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
  constructor(
    readonly ticketId: string,
    why: string,
  ) {
    super(`lease on ticket ${quote(ticketId)} lost: ${why}`);
  }
}

export interface TicketPollerOptions {
  source: TicketSource;
  coordinator: ClaimCoordinator;
  /** The instance the coordinator claims on (what `createOpstate` returns). */
  holder: OperationalStateHolder;
  /** Works one ticket; should stop when `ctx.signal` aborts (lease lost). Throwing = `failed`. */
  handle: (ticket: Ticket, ctx: ClaimContext) => Promise<void>;
  /** Lease owner and `resolved_by` (default `host:pid`). */
  workerId?: string;
  /** Lease length (default 30,000 ms). */
  leaseMs?: number;
  /** Heartbeat period while working (default a third of `leaseMs`). */
  heartbeatMs?: number;
  /** Wait when there is nothing to claim, or claims are not allowed (default 1,000 ms). */
  idleDelayMs?: number;
  /** The idle wait (default a timer); `stop()` and a return to ready cut it short either way. */
  sleep?: (ms: number) => Promise<void>;
  logger?: Logger;
}

/** Counters of one poller. */
export interface PollerStats {
  claimed: number;
  completed: number;
  failed: number;
  /** Tickets put back: the claim was refused after the ticket was taken. */
  abandoned: number;
  leaseLost: number;
  /** Source errors (claim, heartbeat, release). */
  errors: number;
}

/** A started-on-demand loop; see {@link createTicketPoller}. */
export interface TicketPoller {
  /** Starts the loop (idempotent). */
  start(): void;
  /** Ends the loop after the current ticket; resolves once it has ended. Takes no new tickets. */
  stop(): Promise<void>;
  readonly running: boolean;
  readonly workerId: string;
  readonly stats: Readonly<PollerStats>;
}

const REQUIRED = 'is required';

const pollerOptions = z
  .object({
    source: objectWithSchema<TicketSource>(['claimNext', 'release'], REQUIRED),
    coordinator: objectWithSchema<ClaimCoordinator>(['withClaim'], REQUIRED),
    holder: objectWithSchema<OperationalStateHolder>(['addListener'], REQUIRED),
    handle: functionSchema<TicketPollerOptions['handle']>(REQUIRED),
    workerId: nonEmptyStringSchema(),
    leaseMs: positiveIntSchema(),
    heartbeatMs: positiveIntSchema(),
    idleDelayMs: positiveIntSchema(),
    sleep: functionSchema<(ms: number) => Promise<void>>().optional(),
    logger: loggerSchema(),
  })
  .superRefine((o, ctx) => {
    if (o.heartbeatMs >= o.leaseMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['heartbeatMs'],
        message: `must be shorter than leaseMs (${o.leaseMs})`,
      });
    }
  });

/** Defaults; the heartbeat's follows the lease given (a third of it). */
function pollerDefaults(given: Record<string, unknown>) {
  const leaseMs = given.leaseMs ?? 30_000;
  return {
    ...holderLogger(given),
    workerId: `${hostname()}:${process.pid}`,
    leaseMs: 30_000,
    heartbeatMs: typeof leaseMs === 'number' ? Math.max(1, Math.floor(leaseMs / 3)) : 1,
    idleDelayMs: 1000,
  };
}

/**
 * Creates a ticket poller. Nothing runs until `start()`.
 *
 * @example
 * const opstate = createOpstate({ sink });
 * await bootOpstate(opstate, { gates });
 * const coordinator = createClaimCoordinator({ holder: opstate });
 * const poller = createTicketPoller({
 *   source, coordinator, holder: opstate,
 *   handle: async (ticket, { signal }) => runAgent(ticket.payload, { signal }),
 * });
 * poller.start();
 * // later: await poller.stop();
 */
export function createTicketPoller(options: TicketPollerOptions): TicketPoller {
  const o = parseOptions(pollerOptions, options, pollerDefaults);
  const { source, coordinator, holder, handle, workerId, leaseMs, heartbeatMs, idleDelayMs } = o;
  const stats: PollerStats = {
    claimed: 0,
    completed: 0,
    failed: 0,
    abandoned: 0,
    leaseLost: 0,
    errors: 0,
  };
  let loop: Promise<void> | undefined;
  let stopping = false;
  let wake: (() => void) | undefined;
  let unsubscribe: (() => void) | undefined;

  const log = (level: 'error' | 'warn' | 'info', message: string, err?: unknown) =>
    report(o.logger, level, LOG_TAGS.poller, message, err);

  /** Waits `idleDelayMs`, or less when woken (stop, or the holder back in ready). */
  const idle = async () => {
    const woken = new Promise<void>((resolve) => {
      wake = resolve;
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const slept = o.sleep
      ? o.sleep(idleDelayMs)
      : new Promise<void>((resolve) => {
          timer = setTimeout(resolve, idleDelayMs);
        });
    try {
      await Promise.race([woken, slept]);
    } finally {
      if (timer) clearTimeout(timer);
      wake = undefined;
    }
  };

  /** Keeps the lease alive; calls `onLost` once when it is gone. */
  const keepLease = (ticket: Ticket, onLost: (why: string) => void) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    let lastOk = Date.now();
    const beat = async () => {
      if (stopped) return;
      let why: string | undefined;
      try {
        if (await source.heartbeat(ticket)) lastOk = Date.now();
        else why = 'taken over or resolved elsewhere';
      } catch (err) {
        stats.errors++;
        log('warn', `heartbeat for ticket ${quote(ticket.id)} failed: ${errorText(err)}`);
        // Unreachable for a whole lease: another worker may have it by now.
        if (Date.now() - lastOk >= leaseMs) why = `no heartbeat for ${leaseMs} ms`;
      }
      if (stopped) return;
      if (why) {
        stopped = true;
        onLost(why);
        return;
      }
      timer = setTimeout(beat, heartbeatMs);
    };
    timer = setTimeout(beat, heartbeatMs);
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  };

  const resolveTicket = async (ticket: Ticket, resolution: TicketResolution, detail?: string) => {
    try {
      const recorded = await source.release(ticket, resolution, detail);
      if (!recorded) {
        stats.leaseLost++;
        log(
          'warn',
          `ticket ${quote(ticket.id)}: lease lost before its ${resolution} was recorded; the new owner finishes it`,
        );
      }
    } catch (err) {
      stats.errors++;
      log('error', `ticket ${quote(ticket.id)}: recording ${resolution} failed`, err);
    }
  };

  const work = async (ticket: Ticket) => {
    stats.claimed++;
    const lease = new AbortController();
    let lost = false;
    const stopLease = keepLease(ticket, (why) => {
      lost = true;
      log('warn', `ticket ${quote(ticket.id)}: lease lost (${why}); aborting the work`);
      lease.abort(new LeaseLostError(ticket.id, why));
    });
    const outcome = await coordinator.withClaim(
      ticket,
      async (ctx) => {
        let error: unknown;
        let failed = false;
        try {
          await handle(ticket, ctx);
        } catch (err) {
          failed = true;
          error = err;
        } finally {
          stopLease();
        }
        // Resolved while the claim is still held: once `claim.released` shows, the
        // ticket's end is on record (§9.6 "claim already safe-released").
        if (lost) stats.leaseLost++;
        else
          await resolveTicket(
            ticket,
            failed ? 'failed' : 'done',
            failed ? errorText(error) : undefined,
          );
        if (failed) throw error;
      },
      { signal: lease.signal },
    );
    if (outcome.status === 'refused') {
      stopLease();
      stats.claimed--;
      stats.abandoned++;
      await resolveTicket(ticket, 'abandoned', `claim refused: ${outcome.reason}`);
      return;
    }
    if (outcome.status === 'completed') stats.completed++;
    else {
      stats.failed++;
      log('warn', `ticket ${quote(ticket.id)} failed: ${errorText(outcome.error)}`);
    }
  };

  const run = async () => {
    while (!stopping) {
      try {
        const state = holder.current;
        if (state.primaryState === 'stopped') {
          log('info', 'the holder is stopped; the poller ends');
          break;
        }
        // A critical ticket is the most any state allows: if even that is refused, wait.
        if (coordinator.refusal({ critical: true })) {
          await idle();
          continue;
        }
        const ticket = await source.claimNext({
          workerId,
          leaseMs,
          critical: state.claimPermission === 'critical_only',
        });
        if (!ticket) {
          await idle();
          continue;
        }
        if (stopping) {
          await resolveTicket(ticket, 'abandoned', 'poller stopping');
          stats.abandoned++;
          break;
        }
        await work(ticket);
      } catch (err) {
        stats.errors++;
        log('error', `poll failed: ${errorText(err)}`, err);
        await idle();
      }
    }
  };

  return {
    workerId,
    get running() {
      return loop !== undefined;
    },
    get stats() {
      return { ...stats };
    },
    start() {
      if (loop) return;
      stopping = false;
      unsubscribe = holder.addListener(
        (_old, next) => {
          if (next.primaryState === 'ready' || next.primaryState === 'stopped') wake?.();
        },
        { name: 'kora.operational_state.poller', requestsTransitions: false },
      );
      loop = run().finally(() => {
        unsubscribe?.();
        unsubscribe = undefined;
        loop = undefined;
      });
    },
    async stop() {
      stopping = true;
      wake?.();
      await loop;
    },
  };
}
