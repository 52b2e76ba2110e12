/**
 * Helpers every store adapter (KV and queue) shares: bounded waits, cursors, input checks.
 * Kept beside the KV port because the queue adapters import the same pieces.
 */
import { InvalidError, UnavailableError, isDamselflyError } from '../errors.js';
import type { KvOp } from './port.js';

/** Default bound on one backend operation, so a dead server yields UnavailableError rather than a hang. */
export const DEFAULT_TIMEOUT_MS = 5_000;
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1_000;
/** Longest key any backend accepts (DynamoDB's sort key limit is 1024 bytes; Firestore ids 1500). */
export const MAX_KEY_BYTES = 1_024;

/** Throws InvalidError unless `key` is a non-empty string of at most MAX_KEY_BYTES bytes. */
export function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new InvalidError('key must be a non-empty string');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new InvalidError(`key longer than ${MAX_KEY_BYTES} bytes`, { details: { key: key.slice(0, 64) } });
}

/** Serialises a value as JSON; InvalidError when it is not JSON-representable. */
export function toJson(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new InvalidError(`value is not JSON-serialisable: ${(err as Error).message}`);
  }
  if (text === undefined) throw new InvalidError('value is not JSON-serialisable (undefined or a function)');
  return text;
}

/** Throws InvalidError unless `ttlMs` is absent or a positive finite number. */
export function checkTtl(ttlMs: number | undefined): void {
  if (ttlMs === undefined) return;
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new InvalidError('ttlMs must be a positive number of milliseconds');
}

/** The page size to use for `limit`. */
export function pageSize(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_PAGE;
  if (!Number.isInteger(limit) || limit < 1) throw new InvalidError('limit must be a positive integer');
  return Math.min(limit, MAX_PAGE);
}

/** Cursors are the last key returned, base64url-encoded so callers treat them as opaque. */
export function encodeCursor(lastKey: string): string {
  return Buffer.from(lastKey, 'utf8').toString('base64url');
}

/** Decodes a cursor from encodeCursor; InvalidError when it is not one. */
export function decodeCursor(cursor: string | undefined, prefix: string): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!key.startsWith(prefix)) throw new InvalidError('cursor does not belong to this prefix');
  return key;
}

/** Checks a transaction's ops: count within `max`, each key valid and used once. */
export function checkOps(ops: KvOp[], max: number): void {
  if (ops.length > max) throw new InvalidError(`transaction has ${ops.length} ops; this backend allows at most ${max}`);
  const seen = new Set<string>();
  for (const op of ops) {
    checkKey(op.key);
    if (seen.has(op.key)) throw new InvalidError(`transaction names key ${op.key} more than once`);
    seen.add(op.key);
    if (op.type !== 'delete') {
      toJson(op.value);
      checkTtl(op.ttlMs);
    }
  }
}

/** Network-level error codes that mean "the server is not there (now)". */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED',
]);

/** True when `err` (or its cause chain) is a socket-level failure. */
export function isNetworkError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.some((x) => isNetworkError(x))) return true;
  }
  return false;
}

/** Passes our own errors through; wraps anything else as UnavailableError (the safe default: retryable). */
export function unavailable(err: unknown, what: string): Error {
  if (isDamselflyError(err)) return err;
  // The driver's error is reduced to its message and code: driver types never leave an adapter.
  const code = (err as { code?: unknown })?.code;
  return new UnavailableError(`${what}: ${(err as Error)?.message ?? String(err)}`, {
    details: typeof code === 'string' || typeof code === 'number' ? { driverCode: code } : undefined,
  });
}

/**
 * The smallest string greater than every string that starts with `prefix` (in code-point order,
 * which is UTF-8 byte order), or undefined for the empty prefix. Lets `list` use a key range.
 */
export function prefixEnd(prefix: string): string | undefined {
  const cps = [...prefix];
  while (cps.length > 0) {
    const cp = cps.pop()!.codePointAt(0)!;
    if (cp < 0x10ffff) {
      const next = cp + 1 === 0xd800 ? 0xe000 : cp + 1;
      return cps.join('') + String.fromCodePoint(next);
    }
  }
  return undefined;
}
