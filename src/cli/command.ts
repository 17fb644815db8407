/**
 * What every `kora-opstate` command shares: the command shape, its I/O, the usage error
 * and the flag readers. Imports flow one way — `main.ts` → the commands → this module —
 * so main can load a command on demand and no command needs main.
 */
import type { ParseArgsConfig } from 'node:util';
import { quote } from '../vocabulary.js';

/** @internal A command's `parseArgs` options. */
export type CommandOptions = NonNullable<ParseArgsConfig['options']>;

/** @internal The parsed flag values a command gets. */
export type CommandValues = Record<string, string | boolean | string[] | boolean[] | undefined>;

/** @internal What a CLI command reads and writes; tests pass their own. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
  cwd: string;
}

/** @internal One sub-command. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Usage text after the command name, and option lines. */
  readonly usage: string;
  readonly options: CommandOptions;
  run(values: CommandValues, positionals: string[], io: CliIo): Promise<number>;
}

/** @internal A usage error: the message is printed with the command's help, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** @internal A usage error for the first positional argument, when there is one. */
export function noPositionals(positionals: readonly string[]): void {
  if (positionals.length) {
    throw new UsageError(`unexpected argument ${quote(positionals[0])}`);
  }
}

/** @internal A whole-number flag within bounds, or a usage error naming the value. */
export function intFlag(name: string, value: unknown, min: number, max: number): number {
  return wholeNumber(`--${name}`, value, min, max);
}

/**
 * @internal A whole-number setting from its flag, else its environment variable, else
 * `fallback`; a bad value is named by where it came from (`invalid KORA_PORT "abc"`).
 */
export function intSetting(
  values: Record<string, unknown>,
  env: Record<string, string | undefined>,
  flag: string,
  envName: string,
  fallback: string,
  min: number,
  max: number,
): number {
  if (values[flag] !== undefined) return intFlag(flag, values[flag], min, max);
  const fromEnv = env[envName];
  if (fromEnv !== undefined) return wholeNumber(envName, fromEnv, min, max);
  return intFlag(flag, fallback, min, max);
}

function wholeNumber(label: string, value: unknown, min: number, max: number): number {
  const text = String(value);
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(
      `invalid ${label} ${quote(value)}: expected a whole number from ${min} to ${max}`,
    );
  }
  return Number(text);
}

/** SIGINT/SIGTERM end a command's `--watch` or `--follow` cleanly (exit 0). */
export function untilSignal() {
  let stopped = false;
  let wake: (() => void) | undefined;
  const onSignal = () => {
    stopped = true;
    wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    /** Waits `ms`; true once a signal came. */
    wait(ms: number): Promise<boolean> {
      if (stopped) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(stopped), ms);
        wake = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
    },
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
