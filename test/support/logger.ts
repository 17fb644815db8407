import type { Logger } from '../../src/holder.js';

/** A console-compatible logger that keeps what it was told. */
export interface RecordingLogger extends Logger {
  readonly lines: { level: 'error' | 'warn' | 'info' | 'debug'; text: string; args: unknown[] }[];
  /** Lines at `level` whose text contains `needle`. */
  find(level: 'error' | 'warn' | 'info' | 'debug', needle?: string): string[];
  /** The first line at `level` containing `needle`: told already, or when it is told. */
  once(level: 'error' | 'warn' | 'info' | 'debug', needle: string): Promise<string>;
}

export function recordingLogger(): RecordingLogger {
  const lines: RecordingLogger['lines'] = [];
  const waiters = new Set<(line: RecordingLogger['lines'][number]) => boolean>();
  const at =
    (level: 'error' | 'warn' | 'info' | 'debug') =>
    (...args: unknown[]) => {
      const line = {
        level,
        text: args
          .map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a)))
          .join(' '),
        args,
      };
      lines.push(line);
      for (const w of waiters) if (w(line)) waiters.delete(w);
    };
  const find: RecordingLogger['find'] = (level, needle = '') =>
    lines.filter((l) => l.level === level && l.text.includes(needle)).map((l) => l.text);
  return {
    lines,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    find,
    once: (level, needle) => {
      const told = find(level, needle)[0];
      if (told !== undefined) return Promise.resolve(told);
      return new Promise((resolve) => {
        waiters.add((l) => {
          if (l.level !== level || !l.text.includes(needle)) return false;
          resolve(l.text);
          return true;
        });
      });
    },
  };
}
