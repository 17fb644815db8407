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
// Sink contract (chain events).
export type {
  ChainEvent,
  DurableEventSink,
  EventSink,
  SinkStats,
  StoredChainEvent,
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
  DEGRADATION_REASONS,
  DegradationReason,
  isDegraded,
  MAX_TRIGGER_LENGTH,
  makeOperationalState,
  NO_CLAIM_STATES,
  type OperationalState,
  OperationalStateInputError,
  PAUSE_CAUSES,
  PauseCause,
  PRIMARY_STATES,
  PrimaryState,
} from './vocabulary.js';
