/**
 * The claim coordinator (ST4, SPEC §6): the one door through which a ticket poller mints
 * a claim. It claims only in `ready` with a permission that allows the ticket, moves the
 * holder ready → active (`claim.acquired`) before the work and always sends
 * `claim.released` after it — so every claim shows in the history and the chain.
 */
import { z } from 'zod';
import type { OperationalStateHolder } from '../holder.js';
import { isLogger, LOG_TAGS, type Logger, report } from '../logger.js';
import { loggerSchema, objectWithSchema, parseOptions } from '../options.js';
import { type OperationalState, OperationalStateInputError, quote } from '../vocabulary.js';

/** What a claim is about; `critical` tickets may be claimed under `critical_only`. */
export interface ClaimTicket {
  readonly id: string;
  readonly critical?: boolean;
}

/** Why a claim was refused. */
export const ClaimRefusal = {
  NOT_READY: 'not ready',
  PAUSED: 'paused',
  STOPPED: 'stopped',
  PERMISSION_NONE: 'permission none',
  CRITICAL_ONLY: 'critical only',
  CLAIM_HELD: 'claim held',
} as const;
export type ClaimRefusal = (typeof ClaimRefusal)[keyof typeof ClaimRefusal];

/** What the work gets: `signal` aborts when the claim's lease is lost (or the caller aborts). */
export interface ClaimContext {
  readonly ticket: ClaimTicket;
  readonly signal: AbortSignal;
}

/** A claim's outcome: refused (nothing ran), or the work's value or error. */
export type ClaimOutcome<T> =
  | { readonly status: 'refused'; readonly reason: ClaimRefusal; readonly state: OperationalState }
  | {
      readonly status: 'completed';
      readonly value: T;
      /** `claim.released` committed (false: the holder was stopped meanwhile, or refused it). */
      readonly released: boolean;
    }
  | { readonly status: 'failed'; readonly error: unknown; readonly released: boolean };

export interface WithClaimOptions {
  /** Aborting it aborts the work's `ctx.signal` (the poller's lease watch uses this). */
  signal?: AbortSignal;
}

export interface ClaimCoordinatorOptions {
  /** The instance whose state gates the claims (what `createOpstate` returns). */
  holder: OperationalStateHolder;
  /** Default: the holder's logger. */
  logger?: Logger;
}

const coordinatorOptions = z.object({
  holder: objectWithSchema<OperationalStateHolder>(['send'], 'must be an OperationalStateHolder', [
    'current',
  ]),
  logger: loggerSchema(),
});

/**
 * @internal The default logger of a part that works on a holder: the holder's, or the
 * console for a holder without one (a test double).
 */
export function holderLogger(given: Record<string, unknown>): { logger: Logger } {
  const logger = (given.holder as { logger?: unknown } | null | undefined)?.logger;
  return { logger: isLogger(logger) ? logger : console };
}

/** Counters of one coordinator. */
export interface ClaimStats {
  acquired: number;
  refused: number;
  completed: number;
  failed: number;
  /** Releases that could not be committed (holder stopped or refused). */
  releaseSkipped: number;
}

/**
 * Why `ticket` cannot be claimed in `state` with `held` set, or `undefined` when it can.
 *
 * @example
 * refusalFor({ primaryState: 'ready', claimPermission: 'critical_only', degradationReasons: [] }, { id: 't1' }, false);
 * // 'critical only'
 */
export function refusalFor(
  state: OperationalState,
  ticket: { critical?: boolean },
  held: boolean,
): ClaimRefusal | undefined {
  switch (state.primaryState) {
    case 'booting':
      return ClaimRefusal.NOT_READY;
    case 'paused':
      return ClaimRefusal.PAUSED;
    case 'stopped':
      return ClaimRefusal.STOPPED;
    case 'active':
      return ClaimRefusal.CLAIM_HELD;
  }
  if (held) return ClaimRefusal.CLAIM_HELD;
  if (state.claimPermission === 'none') return ClaimRefusal.PERMISSION_NONE;
  if (state.claimPermission === 'critical_only' && !ticket.critical) {
    return ClaimRefusal.CRITICAL_ONLY;
  }
  return undefined;
}

/**
 * Gates one process's claims on its holder. One claim at a time (the §9.1 `active` state
 * is one claim).
 */
export class ClaimCoordinator {
  readonly #holder: OperationalStateHolder;
  readonly #logger: Logger;
  #held: ClaimTicket | undefined;
  #idle: (() => void)[] = [];
  readonly #stats: ClaimStats = {
    acquired: 0,
    refused: 0,
    completed: 0,
    failed: 0,
    releaseSkipped: 0,
  };

  /** @internal Use `createClaimCoordinator`. */
  constructor(options: ClaimCoordinatorOptions) {
    const o = parseOptions(coordinatorOptions, options, holderLogger);
    this.#holder = o.holder;
    this.#logger = o.logger;
  }

  /** The ticket whose claim is held, if any. */
  get held(): ClaimTicket | undefined {
    return this.#held;
  }

  get stats(): Readonly<ClaimStats> {
    return { ...this.#stats };
  }

  /**
   * Why `ticket` cannot be claimed now (`undefined`: it can). Pollers ask before taking a
   * ticket off the queue.
   */
  refusal(ticket: { critical?: boolean } = {}): ClaimRefusal | undefined {
    return refusalFor(this.#holder.current, ticket, this.#held !== undefined);
  }

  /**
   * Claims `ticket`, runs `work`, releases. Refused (work not run) unless the holder is
   * `ready` with permission for the ticket and no claim is held. `claim.released` is sent
   * after the work whatever happened: it threw, the process was paused meanwhile (the
   * state stays paused; only the held flag clears), or the lease was lost. After a stop
   * nothing can change any more: the release is logged instead.
   *
   * @example
   * const outcome = await coordinator.withClaim({ id: 't-42' }, async ({ signal }) => {
   *   return runTicket('t-42', { signal });
   * });
   * if (outcome.status === 'refused') console.log(`not now: ${outcome.reason}`);
   */
  async withClaim<T>(
    ticket: ClaimTicket,
    work: (ctx: ClaimContext) => Promise<T>,
    options: WithClaimOptions = {},
  ): Promise<ClaimOutcome<T>> {
    if (ticket === null || typeof ticket !== 'object' || typeof ticket.id !== 'string') {
      throw new OperationalStateInputError(
        'ticket',
        ticket,
        `ticket must be an object with a string id, got ${quote(ticket)}`,
      );
    }
    if (typeof work !== 'function') {
      throw new OperationalStateInputError(
        'work',
        work,
        `work must be a function, got ${quote(work)}`,
      );
    }
    const refused = (reason: ClaimRefusal): ClaimOutcome<T> => {
      this.#stats.refused++;
      return { status: 'refused', reason, state: this.#holder.current };
    };
    const reason = this.refusal(ticket);
    if (reason) return refused(reason);

    // Held from here, synchronously: a concurrent withClaim sees it.
    this.#held = ticket;
    const critical = ticket.critical === true;
    try {
      // The commit is synchronous inside send(); awaiting waits for the listeners (the emit).
      await this.#holder.send({
        type: 'claim.acquired',
        trigger: `claim acquired: ticket ${quote(ticket.id)}`,
        details: { ticket_id: ticket.id, critical },
      });
    } catch (err) {
      // Only a state change between the check and the send gets here.
      this.#clear();
      this.#log('warn', `claim on ticket ${quote(ticket.id)} refused by the holder`, err);
      return refused(this.refusal(ticket) ?? ClaimRefusal.NOT_READY);
    }
    this.#stats.acquired++;

    const controller = new AbortController();
    const external = options.signal;
    const onAbort = () => controller.abort(external?.reason);
    if (external?.aborted) onAbort();
    else external?.addEventListener('abort', onAbort, { once: true });

    let outcome: { ok: true; value: T } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await work({ ticket, signal: controller.signal }) };
    } catch (error) {
      outcome = { ok: false, error };
    } finally {
      external?.removeEventListener('abort', onAbort);
    }
    const result = outcome.ok ? 'done' : controller.signal.aborted ? 'aborted' : 'failed';
    const released = await this.#release(ticket, result);
    this.#clear();
    if (outcome.ok) {
      this.#stats.completed++;
      return { status: 'completed', value: outcome.value, released };
    }
    this.#stats.failed++;
    return { status: 'failed', error: outcome.error, released };
  }

  /**
   * Resolves `true` once no claim is held, `false` if `timeoutMs` passes first.
   *
   * @example
   * await opstate.send({ type: 'pause', cause: 'stop_kora', trigger: 'shutdown: SIGTERM' });
   * const idle = await coordinator.waitForIdle(30_000);
   */
  waitForIdle(timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    if (!this.#held) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        if (timer) clearTimeout(timer);
        resolve(true);
      };
      this.#idle.push(done);
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(
          () => {
            this.#idle = this.#idle.filter((fn) => fn !== done);
            resolve(false);
          },
          Math.max(0, timeoutMs),
        );
      }
    });
  }

  async #release(ticket: ClaimTicket, result: string): Promise<boolean> {
    const state = this.#holder.current.primaryState;
    if (state === 'stopped') {
      this.#stats.releaseSkipped++;
      // Stopped is final: the machine takes no claim.released, but the end of the work is news.
      this.#log(
        'warn',
        `claim on ticket ${quote(ticket.id)} ended (${result}) after the process stopped; state not changed`,
      );
      return false;
    }
    try {
      await this.#holder.send({
        type: 'claim.released',
        trigger: `claim released: ticket ${quote(ticket.id)} (${result})`,
        details: { ticket_id: ticket.id, result },
      });
      return true;
    } catch (err) {
      this.#stats.releaseSkipped++;
      this.#log('error', `claim.released for ticket ${quote(ticket.id)} was refused`, err);
      return false;
    }
  }

  #clear(): void {
    this.#held = undefined;
    const waiters = this.#idle;
    this.#idle = [];
    for (const fn of waiters) fn();
  }

  #log(level: 'error' | 'warn' | 'info', message: string, err?: unknown): void {
    report(this.#logger, level, LOG_TAGS.claims, message, err);
  }
}

/**
 * Creates a claim coordinator for `holder`. It starts nothing.
 *
 * @example
 * const opstate = createOpstate({ sink });
 * await bootOpstate(opstate, { gates });
 * const coordinator = createClaimCoordinator({ holder: opstate });
 * await coordinator.withClaim({ id: 't-1', critical: true }, async ({ signal }) => work(signal));
 */
export function createClaimCoordinator(options: ClaimCoordinatorOptions): ClaimCoordinator {
  return new ClaimCoordinator(options);
}
