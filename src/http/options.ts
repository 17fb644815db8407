/**
 * The options of the status app ({@link StatusAppOptions}): all optional, resolved over
 * defaults and validated once, on creation; a bad value is an
 * {@link OperationalStateInputError} quoting it.
 */
import { Registry } from 'prom-client';
import type { ControlDb } from '../fleet/control.js';
import type { FleetSource } from '../fleet/types.js';
import { getHolder, OperationalStateHolder } from '../holder.js';
import type { Logger } from '../logger.js';
import type { ChainKey } from '../sinks/keyed.js';
import { OperationalStateInputError, quote } from '../vocabulary.js';
import { type CockpitOptions, type CockpitSources, resolveCockpit } from './cockpitOptions.js';
import { createHostCheck, type HostCheck } from './hosts.js';
import { type ProbeOptions, type ResolvedProbeOptions, resolveProbeOptions } from './probes.js';
import type { EmitterLike, SinkLike } from './status.js';

/**
 * Options of `createStatusApp` / `createStatusHandler`; all optional. The cockpit's
 * (`agent`, `coordinator`, `poller`, `queue`, `boot`, `now`: see {@link CockpitOptions})
 * add the panel's keys to the status payload.
 */
export interface StatusAppOptions extends CockpitOptions {
  /**
   * The instance to serve (what `createOpstate()` returns). Its `sink` and `chain` (the
   * emit listener), when it has them (duck-typed: anything with a `stats` object),
   * stand in for the `sink` and `emitter` options not given; they are read when used, so
   * a sink connected after the app was made shows up. Without it (nor `holder`)
   * the app asks `getHolder()` until that returns a holder, keeps that one, and serves the
   * stub payload (SPEC §7) meanwhile.
   */
  opstate?: OperationalStateHolder;
  /**
   * The seed's name for `opstate`; also takes a function, asked (like `getHolder`) until it
   * returns a holder.
   */
  holder?: OperationalStateHolder | (() => OperationalStateHolder | undefined);
  /**
   * A durable sink: its outbox depth, drops and append failures show in the status and
   * metrics; one that can also `tail()` and `verifyChain()` (the shipped Postgres and PGlite
   * sinks) is served read-only at `/api/operational-state/chain` and `…/chain/verify`.
   */
  sink?: SinkLike;
  /**
   * The chain-event emit listener: its emitted/failure counts show too (default: the
   * `opstate`'s own `chain`, which `createOpstate({ sink })` makes).
   */
  emitter?: EmitterLike;
  /** Enables `POST /api/operational-state/transitions` with `Authorization: Bearer <token>`. */
  operatorToken?: string;
  /** SSE heartbeat comment interval (default 15000 ms). */
  heartbeatMs?: number;
  /** prom-client registry for `/metrics` (default: a fresh one per app). */
  registry?: Registry;
  /** Default `console`. */
  logger?: Logger;
  /** The panel's title (default `kora-opstate`). */
  title?: string;
  /**
   * Host names served besides `localhost`, `*.localhost` and IP addresses: `example.org`
   * exactly, `.example.org` for it and its subdomains. Any other `Host` gets 421 (DNS
   * rebinding protection; `/livez` and `/readyz` answer any Host). `['*']` turns the
   * check off. Default `[]`; `startStatusServer` adds the host name it binds.
   */
  allowedHosts?: readonly string[];
  /**
   * Without an `operatorToken`, `GET …/chain/verify` is answered from a result at most
   * this old (ms; default 30000; 0 = a fresh verification each time). Verifications run
   * one at a time, and requests that arrive meanwhile share the running one.
   */
  verifyCacheMs?: number;
  /**
   * Where `GET /api/fleet` and the `/fleet` page read the fleet: a registry on a shared
   * Postgres (`createFleetRegistry`). Default: the served instance alone.
   */
  fleet?: FleetSource;
  /**
   * Fleet control from the `/fleet` page (`POST /api/fleet/commands`, behind the operator
   * token): the shared Postgres (a `pg.Pool`), the workspace and its chain key. Without it
   * that route answers 501 and the page offers no controls.
   */
  fleetControl?: FleetControlOptions;
  /**
   * The probes' status codes (`successStatus`, default 200; `failureStatus`, default 503)
   * and the `draining` flag that fails `/readyz` once the process shuts down.
   */
  probes?: ProbeOptions;
  /**
   * Steps of the actor the offline inspector (`GET /inspector`, `GET /api/inspector`)
   * keeps, the newest (default 500; 1–10000).
   */
  inspectorSteps?: number;
}

/**
 * Where the panel's fleet controls write commands (see `issueCommand`).
 *
 * @example
 * createStatusApp({ opstate, fleet, operatorToken,
 *   fleetControl: { db: pool, workspaceId: 'ws', chainKey: process.env.KORA_CHAIN_KEY } });
 */
export interface FleetControlOptions {
  readonly db: ControlDb;
  readonly workspaceId: string;
  readonly chainKey: string | Uint8Array | ChainKey;
  /** How long an agent that is down may still apply a command (default 10 minutes). */
  readonly ttlMs?: number;
}

/** The seed's name of {@link StatusAppOptions}. */
export type StatusHandlerOptions = StatusAppOptions;

/** @internal The options after validation. */
export interface ResolvedStatusOptions {
  /** The given holder, or where to ask for one until it exists. */
  readonly holder: OperationalStateHolder | (() => OperationalStateHolder | undefined);
  /** Given in the options; else the holder's own, read when used (see `StatusCore`). */
  readonly sink: SinkLike | undefined;
  readonly emitter: EmitterLike | undefined;
  readonly operatorToken: string | undefined;
  readonly heartbeatMs: number;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly title: string;
  readonly hosts: HostCheck;
  readonly verifyCacheMs: number;
  readonly cockpit: CockpitSources;
  readonly fleet: FleetSource | undefined;
  readonly fleetControl: FleetControlOptions | undefined;
  readonly probes: ResolvedProbeOptions;
  readonly inspectorSteps: number;
}

/** @internal */
export function invalid(
  field: string,
  value: unknown,
  expected: string,
): OperationalStateInputError {
  return new OperationalStateInputError(
    field,
    value,
    `${field} must be ${expected}, got ${quote(value)}`,
  );
}

/**
 * @internal Shaped like a sink or an emit listener: has a `stats` object (the emit listener
 * itself is a function with `stats`: what `makeEmitListener` returns).
 */
export function hasStats(v: unknown): v is { stats: object } {
  return (
    (typeof v === 'object' || typeof v === 'function') &&
    v !== null &&
    typeof (v as { stats?: unknown }).stats === 'object' &&
    (v as { stats?: unknown }).stats !== null
  );
}

function checkToken(token: unknown): string | undefined {
  if (token === undefined) return undefined;
  if (typeof token !== 'string' || token.length === 0 || /\s/.test(token)) {
    // Never echo a token, not even a malformed one.
    throw new OperationalStateInputError(
      'operatorToken',
      '[redacted]',
      `operatorToken must be a non-empty string without whitespace, got ${typeof token === 'string' ? `a string of length ${token.length}` : typeof token}`,
    );
  }
  return token;
}

function checkLogger(logger: unknown): Logger {
  const log = logger as Partial<Logger> | null;
  if (
    log === null ||
    typeof log !== 'object' ||
    typeof log.error !== 'function' ||
    typeof log.warn !== 'function' ||
    typeof log.info !== 'function'
  ) {
    throw invalid('logger', logger, 'a console-compatible logger (error, warn, info)');
  }
  return log as Logger;
}

/** `opstate` or `holder` (not two different ones); `getHolder` when neither. */
function pickHolder(options: StatusAppOptions): ResolvedStatusOptions['holder'] {
  const { opstate, holder } = options;
  if (opstate !== undefined && !(opstate instanceof OperationalStateHolder)) {
    throw invalid('opstate', opstate, 'the instance createOpstate() returns');
  }
  if (
    holder !== undefined &&
    !(holder instanceof OperationalStateHolder) &&
    typeof holder !== 'function'
  ) {
    throw invalid('holder', holder, 'an OperationalStateHolder or a function returning one');
  }
  if (opstate !== undefined && holder !== undefined && opstate !== holder) {
    throw invalid('holder', holder, 'left out when opstate is given (holder is its old name)');
  }
  return opstate ?? holder ?? getHolder;
}

/** @internal Validates `options` over the defaults. */
export function resolveStatusOptions(options: StatusAppOptions): ResolvedStatusOptions {
  if (options === null || typeof options !== 'object') {
    throw invalid('options', options, 'an object');
  }
  const holder = pickHolder(options);
  const { sink, emitter } = options;
  for (const [field, v] of [
    ['sink', sink],
    ['emitter', emitter],
  ] as const) {
    if (v !== undefined && !hasStats(v)) {
      throw invalid(field, v, 'an object (or the emit listener) with a `stats` object');
    }
  }
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  if (!Number.isInteger(heartbeatMs) || heartbeatMs < 1) {
    throw invalid('heartbeatMs', heartbeatMs, 'a positive integer (ms)');
  }
  if (options.registry !== undefined && !(options.registry instanceof Registry)) {
    throw invalid('registry', options.registry, 'a prom-client Registry');
  }
  const title = options.title ?? 'kora-opstate';
  if (typeof title !== 'string') throw invalid('title', title, 'a string');
  const verifyCacheMs = options.verifyCacheMs ?? 30_000;
  if (!Number.isInteger(verifyCacheMs) || verifyCacheMs < 0 || verifyCacheMs > 86_400_000) {
    throw invalid('verifyCacheMs', verifyCacheMs, 'an integer from 0 to 86400000 (ms)');
  }
  const fleet = options.fleet;
  if (fleet !== undefined && typeof (fleet as Partial<FleetSource> | null)?.list !== 'function') {
    throw invalid('fleet', fleet, 'a fleet source (createFleetRegistry) with a list() method');
  }
  const fleetControl = options.fleetControl;
  if (fleetControl !== undefined) {
    const fc = fleetControl as Partial<FleetControlOptions> | null;
    // Never quote the whole object: it holds the chain key.
    if (typeof fc?.db?.query !== 'function') {
      throw invalid('fleetControl.db', typeof fc?.db, 'a pg.Pool (the shared Postgres)');
    }
    if (typeof fc.workspaceId !== 'string' || fc.workspaceId === '') {
      throw invalid('fleetControl.workspaceId', fc.workspaceId, 'a workspace id');
    }
    if (fc.chainKey === undefined || fc.chainKey === null) {
      throw invalid('fleetControl.chainKey', fc.chainKey, "the workspace's chain key");
    }
    if (fc.ttlMs !== undefined && (!Number.isInteger(fc.ttlMs) || fc.ttlMs < 1)) {
      throw invalid('fleetControl.ttlMs', fc.ttlMs, 'a positive integer (ms)');
    }
  }
  const inspectorSteps = options.inspectorSteps ?? 500;
  if (!Number.isInteger(inspectorSteps) || inspectorSteps < 1 || inspectorSteps > 10_000) {
    throw invalid('inspectorSteps', inspectorSteps, 'an integer from 1 to 10000');
  }
  return {
    holder,
    sink,
    emitter,
    operatorToken: checkToken(options.operatorToken),
    heartbeatMs,
    registry: options.registry ?? new Registry(),
    logger: checkLogger(options.logger ?? console),
    title,
    hosts: createHostCheck(options.allowedHosts ?? []),
    verifyCacheMs,
    cockpit: resolveCockpit(options),
    fleet,
    fleetControl,
    probes: resolveProbeOptions(options.probes),
    inspectorSteps,
  };
}
