/**
 * @kora/opstate — the operational state machine for long-running agent processes.
 *
 * Every public export is named here: about thirty values, each documented with an
 * `@example` where it is defined, and the types they take and return. Everything else
 * is internal.
 */

// The statechart (pure) and the facts it emits.
export {
  type OperationalContext,
  type OperationalEvent,
  type OperationalEventType,
  type OperationalFact,
  type OperationalFactType,
  type OperationalInput,
  type OperationalStateMachine,
  operationalStateMachine,
  type TransitionedFact,
} from '../machines/operationalState.machine.js';
// Boot gates (ST3): on an explicit instance, or the seed's singleton wire-in.
export {
  type BootOptions,
  type BootResult,
  type BootSummary,
  bootOpstate,
  type Gate,
  type GateCheckResult,
  GateClass,
  type GateResult,
  type GateRetryOptions,
  type WireOptions,
  wireOperationalState,
} from './boot.js';
// The chain key (SPEC §10).
export { type ResolveChainKeyOptions, type ResolvedChainKey, resolveChainKey } from './chainKey.js';
// Claims, ticket pollers and graceful shutdown (ST4).
export {
  type ClaimContext,
  type ClaimCoordinator,
  type ClaimCoordinatorOptions,
  type ClaimOutcome,
  type ClaimTicket,
  createClaimCoordinator,
  type WithClaimOptions,
} from './claims/coordinator.js';
export { costHardStop, creditRefresh } from './claims/cost.js';
export {
  createTicketPoller,
  type TicketPoller,
  type TicketPollerOptions,
} from './claims/poller.js';
export { installShutdownHandlers, type ShutdownOptions } from './claims/shutdown.js';
export {
  createMemoryTicketSource,
  type MemoryTicketSource,
  type MemoryTicketSourceOptions,
} from './claims/sources/memory.js';
export {
  createPostgresTicketSource,
  type PostgresTicketSource,
  type PostgresTicketSourceOptions,
} from './claims/sources/postgres.js';
export type { NewTicket, Ticket, TicketSource } from './claims/types.js';
// The statechart as Mermaid.
export { toMermaid } from './diagram.js';
// Chain events (ST2).
export {
  type ChainEventType,
  type EmitListener,
  type EmitListenerOptions,
  type EmitOptions,
  EVENT_VOCABULARY,
  emitStateTransition,
  makeEmitListener,
  OperationalStateEmitError,
  type TransitionPayload,
} from './emit.js';
// The fleet (SPEC §12): agents on one Postgres register and heartbeat; control commands.
export {
  type ControlAction,
  type ControlCommand,
  type ControlOutcome,
  type IssueCommandOptions,
  issueCommand,
} from './fleet/control.js';
export {
  type ControlReceiver,
  type ControlReceiverOptions,
  createControlReceiver,
} from './fleet/controlReceiver.js';
export {
  createFleetRegistry,
  type FleetRegistry,
  type FleetRegistryOptions,
} from './fleet/registry.js';
export type { FleetAgent, FleetSource, FleetView } from './fleet/types.js';
// The instance (ST1, SPEC §11).
export {
  type AddListenerOptions,
  createOperationalStateHolder,
  createOpstate,
  getHolder,
  type HolderStats,
  InvalidStateTransitionError,
  initHolder,
  type OperationalStateHolder,
  type OperationalStateHolderOptions,
  type Opstate,
  type OpstateOptions,
  type StateListener,
  type TransitionOptions,
  type TransitionRecord,
} from './holder.js';
// The status API, probes, metrics and panel (ST5): a Hono app, its fetch handler, a server.
export { createStatusApp, type StatusApp } from './http/app.js';
export {
  createStatusHandler,
  type StatusHandler,
  type StatusHandlerOptions,
} from './http/handler.js';
export {
  type RunningStatusServer,
  type StatusServerOptions,
  startStatusServer,
} from './http/node.js';
export type { ProbeOptions } from './http/probes.js';
export type { StatusPayload, ValidNextState } from './http/status.js';
export {
  applyStreamMessage,
  type StreamChangeMessage,
  type StreamMessage,
  type StreamSnapshotMessage,
} from './http/stream.js';
// The Stately inspector (opt-in; `@statelyai/inspect` is an optional peer).
export {
  createLocalInspector,
  type LocalInspector,
  type LocalInspectorOptions,
} from './inspect.js';
export type { Logger } from './logger.js';
// A restart restores the agent's standing pause (SPEC §10).
export { type RestoredPause, readPersistingPause } from './restore.js';
export type { PgClientLike, PgliteLike, PgPoolLike } from './sinks/drivers.js';
export type { DurableChainSink, DurableSinkOptions } from './sinks/durable.js';
// Sinks: in-memory, Postgres, PGlite (the embedded default).
export { createMemorySink, type MemoryEventSink, type MemorySinkOptions } from './sinks/memory.js';
export { createPgliteSink, type PgliteSinkOptions } from './sinks/pglite.js';
export { createPostgresSink, type PostgresSinkOptions } from './sinks/postgres.js';
export { SpoolOverflowError } from './sinks/spool.js';
export type {
  ChainEvent,
  DurableEventSink,
  EventSink,
  StoredChainEvent,
  VerifyChainResult,
} from './sinks/types.js';
// The derived §9.1 table.
export { TRANSITION_TABLE, type TransitionRow, transitionsFrom } from './table.js';
// The vocabulary.
export {
  type ClaimPermission,
  type DegradationReason,
  type OperationalState,
  OperationalStateInputError,
  type PauseCause,
  type PrimaryState,
} from './vocabulary.js';
