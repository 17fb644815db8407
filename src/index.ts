/**
 * @kora/opstate — the operational state machine for long-running agent processes.
 *
 * Every public export is named here.
 */

// The statechart (pure).
export {
  DEFAULT_RETRY_BUDGET,
  EVENT_TYPES,
  type EventCommon,
  type OperationalContext,
  type OperationalEvent,
  type OperationalEventType,
  type OperationalInput,
  type OperationalStateMachine,
  operationalStateMachine,
  type RowMeta,
} from '../machines/operationalState.machine.js';
// Boot gates and the wire-in (ST3).
export {
  type BootResult,
  type BootSummary,
  GATE_CLASSES,
  type Gate,
  type GateCheckResult,
  GateClass,
  type GateOutcome,
  type GateResult,
  type GateRetryOptions,
  getWiredEmitter,
  MAX_GATE_DETAIL_LENGTH,
  MAX_GATE_ID_LENGTH,
  WIRE_IN_LOG_TAG,
  type WireOptions,
  wireOperationalState,
} from './boot.js';
// The chain key (SPEC §10): where an agent's key comes from.
export {
  type ResolveChainKeyOptions,
  type ResolvedChainKey,
  resolveChainKey,
} from './chainKey.js';
// Claims, ticket pollers and graceful shutdown (ST4).
export {
  type ClaimContext,
  ClaimCoordinator,
  type ClaimCoordinatorOptions,
  type ClaimOutcome,
  ClaimRefusal,
  type ClaimStats,
  type ClaimTicket,
  createClaimCoordinator,
  type WithClaimOptions,
} from './claims/coordinator.js';
export {
  type CostHardStopOptions,
  type CreditRefreshOptions,
  costHardStop,
  creditRefresh,
} from './claims/cost.js';
export {
  createTicketPoller,
  LeaseLostError,
  type PollerStats,
  type TicketPoller,
  type TicketPollerOptions,
} from './claims/poller.js';
export {
  type FlushableSink,
  type GracefulShutdownOptions,
  gracefulShutdown,
  installShutdownHandlers,
  type ShutdownOptions,
  type SignalSource,
} from './claims/shutdown.js';
export {
  createMemoryTicketSource,
  type MemoryTicketRow,
  type MemoryTicketSource,
  type MemoryTicketSourceOptions,
} from './claims/sources/memory.js';
export {
  createPostgresTicketSource,
  type PostgresTicketSource,
  type PostgresTicketSourceOptions,
  type TicketCounts,
} from './claims/sources/postgres.js';
export {
  type ClaimNextOptions,
  type NewTicket,
  TICKET_RESOLUTIONS,
  type Ticket,
  type TicketLease,
  TicketResolution,
  type TicketSource,
} from './claims/types.js';
// The statechart as Mermaid.
export { toMermaid } from './diagram.js';
// Chain events (ST2): vocabulary, payloads, the emit listener.
export {
  BOOT_FAILED_EVENT,
  BOOT_READY_EVENT,
  type ChainEventType,
  type EmitListener,
  type EmitListenerOptions,
  type EmitOptions,
  EVENT_TYPE_PATTERN,
  EVENT_VOCABULARY,
  emitStateTransition,
  type GateResultPayload,
  GENERIC_TRANSITION_EVENT,
  makeEmitListener,
  OperationalStateEmitError,
  PAUSED_COST_LIMIT_EVENT,
  type TransitionPayload,
} from './emit.js';
// Validation of domain events.
export { parseEvent } from './events.js';
// The holder (ST1).
export {
  type AddListenerOptions,
  createOperationalStateHolder,
  getHolder,
  type HolderStats,
  InvalidStateTransitionError,
  initHolder,
  type Logger,
  OperationalStateHolder,
  type OperationalStateHolderOptions,
  resetHolderForTests,
  type StateListener,
  type TransitionOptions,
  type TransitionRecord,
} from './holder.js';
// The status API, probes, metrics and panel (ST5).
export {
  createStatusHandler,
  HTTP_LOG_TAG,
  type StatusHandler,
  type StatusHandlerOptions,
} from './http/handler.js';
export {
  createNodeServer,
  type FetchHandler,
  type ListeningAddress,
  type ListenOptions,
  type NodeHttpServer,
  type NodeServerOptions,
  type RunningStatusServer,
  type StatusServerOptions,
  serve,
  startStatusServer,
} from './http/node.js';
export { renderStatechartSvg, type StatechartSvgOptions } from './http/panel.js';
export {
  type ChainHealth,
  HOLDER_NOT_INITIALIZED,
  type StatusPayload,
  type ValidNextState,
} from './http/status.js';
export type { StreamMessage } from './http/stream.js';
// The Stately inspector (opt-in).
export {
  createLocalInspector,
  type LocalInspector,
  type LocalInspectorAddress,
  type LocalInspectorOptions,
} from './inspect.js';
export {
  type AgentChainReader,
  findPersistingPause,
  PERSISTING_PAUSE_CAUSES,
  type RestoredPause,
  readPersistingPause,
} from './restore.js';
// Sinks: in-memory, Postgres, PGlite (the embedded default), and their migrations.
export type {
  PgClientLike,
  PgliteLike,
  PgliteTransactionLike,
  PgPoolLike,
  SqlRows,
} from './sinks/drivers.js';
export type { DurableChainSink, DurableSinkOptions, SpooledSinkStats } from './sinks/durable.js';
export { createMemorySink, type MemoryEventSink, type MemorySinkOptions } from './sinks/memory.js';
export { applyMigrations, MIGRATIONS, type Migration } from './sinks/migrations.js';
export { OutboxOverflowError } from './sinks/outbox.js';
export { createPgliteSink, DEFAULT_PGLITE_DIR, type PgliteSinkOptions } from './sinks/pglite.js';
export { createPostgresSink, type PostgresSinkOptions } from './sinks/postgres.js';
export { SpoolOverflowError, type SpoolStats } from './sinks/spool.js';
export type { DurableSinkStats, PositionedChainEvent } from './sinks/sql.js';
// Sink contract (chain events).
export type {
  ChainEvent,
  ChainGap,
  ChainHead,
  DurableEventSink,
  EventSink,
  SinkStats,
  StoredChainEvent,
  TailOptions,
  VerifyChainOptions,
  VerifyChainResult,
} from './sinks/types.js';
// The derived §9.1 table.
export {
  isValidTransition,
  TRANSITION_TABLE,
  type TransitionRow,
  transitionsFrom,
  transitionsTo,
} from './table.js';
// The vocabulary.
export {
  CLAIM_PERMISSIONS,
  ClaimPermission,
  checkText,
  DEGRADATION_REASONS,
  DegradationReason,
  isDegraded,
  MAX_DETAILS_BYTES,
  MAX_DETAILS_DEPTH,
  MAX_TRIGGER_LENGTH,
  makeOperationalState,
  NO_CLAIM_STATES,
  type OperationalState,
  OperationalStateInputError,
  PAUSE_CAUSES,
  PauseCause,
  PRIMARY_STATES,
  PrimaryState,
  parseDetails,
  sanitizeText,
} from './vocabulary.js';
