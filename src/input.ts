/**
 * Input errors and the text rules: the error every validation throws (naming the field and
 * quoting the bad value), and what trigger text and `details` may hold — text a store
 * accepts and a reader can see, `details` as a frozen, bounded copy of plain JSON data.
 * It imports nothing (not even zod), so every module — the machine's vocabulary, the
 * option validation — can use it.
 */

/** The longest trigger text accepted (characters). */
export const MAX_TRIGGER_LENGTH = 1000;

/**
 * Thrown for input outside the vocabulary or out of bounds; names the field and the bad
 * value (quoted in the message).
 *
 * @example
 * try {
 *   createTicketPoller({ ...options, leaseMs: 0 });
 * } catch (err) {
 *   if (err instanceof OperationalStateInputError) console.error(err.field, err.message);
 *   // leaseMs leaseMs must be a positive integer, got 0
 * }
 */
export class OperationalStateInputError extends TypeError {
  override readonly name = 'OperationalStateInputError';
  constructor(
    /** The field that was wrong, e.g. `to`, `addReasons[1]`, `trigger`. */
    readonly field: string,
    /** The value as given. */
    readonly value: unknown,
    message: string,
  ) {
    super(message);
  }
}

/** @internal JSON-ish rendering of a bad value for error messages, kept short. */
export function quote(value: unknown): string {
  let text: string;
  try {
    text = escapeC1(String(JSON.stringify(value)));
  } catch {
    text = String(value);
  }
  if (text === undefined || text === 'undefined') text = String(value);
  return text.length > 80 ? `${cutText(text, 77)}...` : text;
}

/**
 * `JSON.stringify(text)` with DEL and C1 controls escaped too (JSON escapes only C0 and
 * lone surrogates): a message or a path that names bad text never carries it raw. (Inside
 * JSON text these characters only occur in strings, where the escape means the same.)
 */
function jsonText(text: string): string {
  return escapeC1(JSON.stringify(text));
}

function escapeC1(json: string): string {
  return json.replace(/[\x7f-\x9f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** @internal The first `max` UTF-16 units of `text`, never ending in half a surrogate pair. */
function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

/** Validates trigger text: a string of at most 1,000 characters. */
export function parseTrigger(value: unknown, field = 'trigger'): string {
  if (typeof value !== 'string') {
    throw new OperationalStateInputError(
      field,
      value,
      `${field} must be a string, got ${quote(value)}`,
    );
  }
  if (value.length > MAX_TRIGGER_LENGTH) {
    throw new OperationalStateInputError(
      field,
      value,
      `${field} is ${value.length} characters, more than ${MAX_TRIGGER_LENGTH}: ${quote(value)}`,
    );
  }
  return checkText(value, field);
}

/** The deepest `details` accepted: `details` itself is level 1, each nested object or array one more. */
export const MAX_DETAILS_DEPTH = 32;

/** The largest `details` accepted, as UTF-8 bytes of its JSON (8 KiB). */
export const MAX_DETAILS_BYTES = 8 * 1024;

/**
 * One pass over `text` from `from`: its JSON size in UTF-8 bytes (quotes included), or
 * `-1 - i` for the first UTF-16 unit `i` a store refuses or a reader should never see:
 * NUL and lone surrogates (PostgreSQL and PGlite cannot store them, in `text` or `jsonb`),
 * and every other control character (Unicode `Cc`: C0, DEL, C1) except tab, LF and CR —
 * storable, but invisible in the panel and able to drive a terminal that prints the chain.
 */
function scanText(text: string, from = 0): number {
  let bytes = 2;
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x7f) {
      if (c >= 0x20)
        bytes += c === 0x22 || c === 0x5c ? 2 : 1; // " and \ are escaped
      else if (c === 0x09 || c === 0x0a || c === 0x0d)
        bytes += 2; // \t \n \r
      else return -1 - i;
    } else if (c < 0xa0) {
      return -1 - i; // DEL, C1
    } else if (c < 0x800) {
      bytes += 2;
    } else if (c < 0xd800 || c > 0xdfff) {
      bytes += 3;
    } else {
      const d = text.charCodeAt(i + 1); // NaN past the end
      if (c > 0xdbff || !(d >= 0xdc00 && d <= 0xdfff)) return -1 - i;
      i++; // a valid pair: one non-BMP character
      bytes += 4;
    }
  }
  return bytes;
}

/** The index of the first refused UTF-16 unit of `text` at or after `from`, or -1. */
function refusedAt(text: string, from = 0): number {
  const r = scanText(text, from);
  return r < 0 ? -1 - r : -1;
}

function unitName(c: number): string {
  if (c === 0) return 'NUL';
  if (c === 0x7f) return 'DEL';
  if (c >= 0xd800 && c <= 0xdbff) return 'lone high surrogate';
  if (c >= 0xdc00 && c <= 0xdfff) return 'lone low surrogate';
  return c < 0x20 ? 'C0 control character' : 'C1 control character';
}

/** `U+0000` for a code unit. */
function codePoint(c: number): string {
  return `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * Returns `text` when every character can be stored and shown, else throws an
 * `OperationalStateInputError` naming the field, the code point and its (UTF-16) index.
 * Refused: NUL, lone surrogates (high or low), and control characters (U+0001–U+001F,
 * DEL U+007F, U+0080–U+009F) other than tab, line feed and carriage return. Every other
 * character, non-BMP ones (emoji, valid surrogate pairs) included, is accepted as is.
 *
 * @example
 * checkText('line 1\nline 2 🚀', 'trigger'); // returned unchanged
 * checkText('nul\u0000byte', 'trigger'); // throws: trigger has a NUL (U+0000) at index 3: ...
 */
export function checkText(text: string, field: string, what = ''): string {
  const at = refusedAt(text);
  if (at < 0) return text;
  const c = text.charCodeAt(at);
  throw new OperationalStateInputError(
    field,
    text,
    `${field}${what} has a ${unitName(c)} (${codePoint(c)}) at index ${at}: ${quote(text)}; ` +
      'text may not contain NUL, lone surrogates or control characters other than tab, LF and CR',
  );
}

/**
 * `value` as text a store accepts and a reader can see: refused characters (see
 * {@link checkText}) become U+FFFD, and text longer than `maxLength` UTF-16 units is cut
 * (never inside a surrogate pair) and ends with `…`. For text from outside — a gate's
 * detail, an error message — that goes into a trigger or `details`. Never throws.
 *
 * @example
 * sanitizeText('bad\u0000byte'); // 'bad\ufffdbyte'
 * sanitizeText('x'.repeat(600), 500).length; // 500
 */
export function sanitizeText(value: unknown, maxLength = MAX_TRIGGER_LENGTH): string {
  let text: string;
  try {
    text = typeof value === 'string' ? value : String(value);
  } catch {
    text = `[unprintable ${typeof value}]`;
  }
  let at = refusedAt(text);
  if (at >= 0) {
    let out = '';
    let from = 0;
    for (; at >= 0; at = refusedAt(text, from)) {
      out += `${text.slice(from, at)}\ufffd`;
      from = at + 1;
    }
    text = out + text.slice(from);
  }
  const max = Math.max(1, Math.floor(maxLength));
  return text.length > max ? `${cutText(text, max - 1)}…` : text;
}

/** `path.key`, or `path["key"]` when the key is not a plain identifier. */
function keyPath(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${jsonText(key)}]`;
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value !== 'object') return `a ${typeof value}`;
  const proto = Object.getPrototypeOf(value);
  const name = proto && typeof proto.constructor === 'function' ? proto.constructor.name : '';
  return name ? `a ${name} instance` : 'an object with a foreign prototype';
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isPlainArray(value: unknown): value is unknown[] {
  return Array.isArray(value) && Object.getPrototypeOf(value) === Array.prototype;
}

/** One container being copied: an object's keys or an array's items, from `next`. */
interface Frame {
  readonly source: Record<string, unknown> | unknown[];
  readonly copy: Record<string, unknown> | unknown[];
  readonly keys: readonly string[] | undefined;
  readonly path: string;
  readonly depth: number;
  next: number;
  /** Members written so far (for the commas). */
  members: number;
}

/**
 * Validates `details` (of an event or `transitionTo`) and returns a deep-frozen JSON copy:
 * what the history keeps can no longer change, whatever the caller does with its object.
 * Accepted: a plain object of plain JSON data — null, booleans, finite numbers, strings
 * (see {@link checkText}, keys too), plain arrays and plain objects — at most
 * {@link MAX_DETAILS_DEPTH} levels deep and {@link MAX_DETAILS_BYTES} bytes as JSON. A
 * property whose value is `undefined` is left out, as `JSON.stringify` does. Anything
 * else (a cycle, a BigInt, a function, a class instance, NaN, `undefined` in an array)
 * throws an `OperationalStateInputError` naming its path, e.g. `details.gates[3].detail`.
 * Iterative: a 5,000-deep object is refused at level 33, not with a stack overflow.
 *
 * @example
 * parseDetails({ gate: 'db', attempts: [1, 2] }); // a frozen copy
 * parseDetails({ at: new Date() }); // throws: details.at is a Date instance, ...
 */
export function parseDetails(value: unknown, field = 'details'): Readonly<Record<string, unknown>> {
  if (!isPlainObject(value)) {
    throw new OperationalStateInputError(
      field,
      value,
      `${field} must be a plain JSON object, got ${kindOf(value)}: ${quote(value)}`,
    );
  }
  try {
    return copyDetails(value, field);
  } catch (err) {
    if (err instanceof OperationalStateInputError) throw err;
    // A throwing getter or proxy: not plain data either.
    throw new OperationalStateInputError(
      field,
      value,
      `${field} could not be read as plain JSON data: ${err instanceof Error ? err.message : quote(err)}`,
    );
  }
}

function copyDetails(root: Record<string, unknown>, field: string): Record<string, unknown> {
  const refuse = (path: string, v: unknown, why: string): never => {
    throw new OperationalStateInputError(path, v, `${path} ${why}`);
  };
  /** The objects on the current path: meeting one again is a cycle (a shared one is fine). */
  const ancestors = new Set<object>();
  let bytes = 0;
  const enter = (source: Frame['source'], path: string, depth: number): Frame => {
    if (depth > MAX_DETAILS_DEPTH) {
      refuse(path, source, `is nested ${depth} levels deep, more than ${MAX_DETAILS_DEPTH}`);
    }
    if (ancestors.has(source)) refuse(path, source, 'is a cycle (it contains itself)');
    ancestors.add(source);
    bytes += 2; // {} or []
    return Array.isArray(source)
      ? { source, copy: [], keys: undefined, path, depth, next: 0, members: 0 }
      : { source, copy: {}, keys: Object.keys(source), path, depth, next: 0, members: 0 };
  };
  const rootFrame = enter(root, field, 1);
  const stack: Frame[] = [rootFrame];
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    const length = f.keys ? f.keys.length : (f.source as unknown[]).length;
    if (f.next >= length) {
      Object.freeze(f.copy);
      ancestors.delete(f.source);
      stack.pop();
      continue;
    }
    const i = f.next++;
    let path: string;
    let child: unknown;
    let key: string | undefined;
    if (f.keys) {
      key = f.keys[i]!;
      child = (f.source as Record<string, unknown>)[key];
      if (child === undefined) continue; // left out, as JSON.stringify does
      path = keyPath(f.path, key);
      const size = scanText(key);
      if (size < 0) checkText(key, path, ' (a key)');
      bytes += size + 1; // "key":
    } else {
      child = (f.source as unknown[])[i];
      path = `${f.path}[${i}]`;
      if (child === undefined) {
        refuse(path, child, 'is undefined (or a hole); JSON has no undefined in an array');
      }
    }
    if (f.members++ > 0) bytes += 1; // ,
    let copy: unknown;
    let frame: Frame | undefined;
    switch (typeof child) {
      case 'string': {
        // At least a byte a unit: a text that long cannot fit, whatever it holds.
        if (bytes + child.length + 2 <= MAX_DETAILS_BYTES) {
          const size = scanText(child);
          if (size < 0) checkText(child, path);
          bytes += size;
        } else bytes += child.length + 2;
        copy = child;
        break;
      }
      case 'number':
        if (!Number.isFinite(child)) refuse(path, child, `is ${child}, not a finite number`);
        copy = child;
        bytes += JSON.stringify(child).length;
        break;
      case 'boolean':
        copy = child;
        bytes += child ? 4 : 5;
        break;
      case 'bigint':
        refuse(path, child, `is a BigInt (${child}n); JSON has none — pass it as a string`);
        break;
      case 'object':
        if (child === null) {
          copy = null;
          bytes += 4;
        } else if (isPlainArray(child) || isPlainObject(child)) {
          frame = enter(child, path, f.depth + 1);
          copy = frame.copy;
        } else {
          refuse(path, child, `is ${kindOf(child)}; only plain objects and arrays are JSON data`);
        }
        break;
      default:
        refuse(path, child, `is ${kindOf(child)}, not JSON data`);
    }
    if (bytes > MAX_DETAILS_BYTES) {
      refuse(
        field,
        root,
        `is more than ${MAX_DETAILS_BYTES} bytes as JSON (the limit is 8 KiB; passed it at ${path})`,
      );
    }
    if (key === undefined) (f.copy as unknown[]).push(copy);
    else if (key === '__proto__') {
      // An own property, as JSON.parse makes it — never the prototype.
      Object.defineProperty(f.copy, key, {
        value: copy,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else (f.copy as Record<string, unknown>)[key] = copy;
    if (frame) stack.push(frame);
  }
  return rootFrame.copy as Record<string, unknown>;
}
