import type { Logger } from '../../src/holder.js';

/** A console-compatible logger that keeps what it was told. */
export interface RecordingLogger extends Logger {
  readonly lines: { level: 'error' | 'warn' | 'info' | 'debug'; text: string; args: unknown[] }[];
  /** Lines at `level` whose text contains `needle`. */
  find(level: 'error' | 'warn' | 'info' | 'debug', needle?: string): string[];
}

export function recordingLogger(): RecordingLogger {
  const lines: RecordingLogger['lines'] = [];
  const at =
    (level: 'error' | 'warn' | 'info' | 'debug') =>
    (...args: unknown[]) => {
      lines.push({
        level,
        text: args
          .map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a)))
          .join(' '),
        args,
      });
    };
  return {
    lines,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    find: (level, needle = '') =>
      lines.filter((l) => l.level === level && l.text.includes(needle)).map((l) => l.text),
  };
}
