/**
 * The CLI's small parts without a process: which store errors end the boot (and the line
 * they print), password masking, the one-line logger, parse-error lines and help columns.
 * The end-to-end behaviour is in cli.test.ts.
 */
import { parseArgs } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { alignOptions, parseErrorText } from '../src/cli/main.js';
import { cliLogger, maskUrl, storeFault } from '../src/cli/storeFault.js';

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('storeFault: what no retry can fix', () => {
  const url = 'postgres://app:s3cret@db.internal:5432/ops';

  it.each([
    ['28P01', 'password authentication failed for user "app"', 'check the user name and password'],
    ['28000', 'role "app" does not exist', 'pg_hba.conf lets it connect'],
    ['3D000', 'database "ops" does not exist', 'create that database (createdb)'],
    ['42501', 'permission denied for schema public', 'grant the user CREATE and USAGE'],
  ])('%s → one line: masked URL, the refusal, what to do', (code, message, todo) => {
    const fault = storeFault(pgError(code, message), url);
    expect(fault).toMatchObject({ code, detail: `${message} (${code})` });
    expect(fault!.line).toBe(
      `cannot use the store postgres://app:***@db.internal:5432/ops: ${message} (${code}); ${fault!.line.split('; ').at(-1)}`,
    );
    expect(fault!.line).toContain(todo);
    expect(fault!.line).not.toContain('s3cret');
  });

  it.each([
    [
      'refused',
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
    ],
    ['timed out', new Error('timeout exceeded when trying to connect')],
    ['starting up (57P03)', pgError('57P03', 'the database system is starting up')],
    ['too many connections (53300)', pgError('53300', 'sorry, too many clients already')],
    ['not an error', 'boom'],
  ])('%s → undefined: the boot gate retries it', (_name, err) => {
    expect(storeFault(err, url)).toBeUndefined();
  });
});

describe('maskUrl', () => {
  it('replaces the password only; a URL without one is unchanged', () => {
    expect(maskUrl('postgres://u:p%40ss@h:1/d?sslmode=require')).toBe(
      'postgres://u:***@h:1/d?sslmode=require',
    );
    expect(maskUrl('postgres://u@h/d')).toBe('postgres://u@h/d');
  });

  it('masks the password of a string the URL parser refuses', () => {
    expect(maskUrl('postgres://u:secret@host:notaport/d')).toBe('postgres://u:***@host:notaport/d');
  });
});

describe('cliLogger', () => {
  afterEach(() => vi.restoreAllMocks());

  it('an Error is its message on the same line; one already quoted is not repeated', () => {
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    const logger = cliLogger({});
    const cause = new Error('connect ECONNREFUSED 127.0.0.1:1');
    logger.error('[tag] append failed; retrying', cause);
    logger.error('[tag] append failed (connect ECONNREFUSED 127.0.0.1:1)', cause);
    expect(err.mock.calls).toEqual([
      ['[tag] append failed; retrying: connect ECONNREFUSED 127.0.0.1:1'],
      ['[tag] append failed (connect ECONNREFUSED 127.0.0.1:1)'],
    ]);
  });

  it('KORA_DEBUG=1: the console itself (stacks included)', () => {
    expect(cliLogger({ KORA_DEBUG: '1' })).toBe(console);
  });
});

describe('parse errors and help', () => {
  const options = {
    port: { type: 'string' },
    inspect: { type: 'boolean' },
    'data-dir': { type: 'string' },
  } as const;
  const errorOf = (args: string[]) => {
    try {
      parseArgs({ args, options, strict: true, allowPositionals: true });
    } catch (err) {
      return parseErrorText(err, options);
    }
    throw new Error('no parse error');
  };

  it('names the flag in one line, with the nearest known flag', () => {
    expect(errorOf(['--bogus'])).toBe('unknown option --bogus');
    expect(errorOf(['--data-dri', 'x'])).toBe(
      'unknown option --data-dri (did you mean --data-dir?)',
    );
    expect(errorOf(['--port'])).toBe('--port needs a value');
    expect(errorOf(['--inspect=1'])).toBe('--inspect takes no value');
  });

  it('alignOptions puts every description, and its continuation lines, in one column', () => {
    const usage = [
      '[options]',
      '',
      'Options:',
      '  --port N      the port',
      '  --ticket-every-ms MS   one more ticket',
      '                         every MS',
      '  -h, --help  this help',
    ].join('\n');
    expect(alignOptions(usage).split('\n')).toEqual([
      '[options]',
      '',
      'Options:',
      '  --port N              the port',
      '  --ticket-every-ms MS  one more ticket',
      '                        every MS',
      '  -h, --help            this help',
    ]);
  });
});
