/** What a boot came to. */
import type { RestoredPause } from '../restore.js';
import type { GateResult } from './gates.js';

export type BootResult = 'ready' | 'paused' | 'stopped' | 'error';

/** What a boot came to. */
export interface BootSummary {
  readonly result: BootResult;
  /** The gates that ran, in order (gates after a failure do not run). */
  readonly gates: readonly GateResult[];
  /** The gate that stopped or paused the boot. */
  readonly failedGate?: GateResult;
  /** For `result: 'error'`: what went wrong. */
  readonly error?: string;
  /** The persisting pause a restart restored (result `paused`), see `restore`. */
  readonly restored?: RestoredPause;
}
