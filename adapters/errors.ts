/**
 * Damselfly's own error types. Every error that crosses a module boundary is one of these, with a
 * stable `code` that callers, HTTP handlers and gRPC interceptors switch on. Driver errors (pg,
 * ioredis, AWS SDK, Firestore, sqlite) are translated into these at the adapter edge and never leak.
 */
export type ErrorCode =
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'UNAVAILABLE'
  | 'INVALID'
  | 'CONFIG'
  | 'INTEGRITY'
  | 'TIMEOUT'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'RATE_LIMITED'
  | 'SOURCE'
  | 'RANGE'
  | 'INTERNAL';

/** Every code, for tests that check a transport's map covers them all. */
export const ERROR_CODES: readonly ErrorCode[] = ['NOT_FOUND', 'CONFLICT', 'UNAVAILABLE', 'INVALID', 'CONFIG', 'INTEGRITY', 'TIMEOUT', 'UNAUTHORIZED', 'FORBIDDEN', 'RATE_LIMITED', 'SOURCE', 'RANGE', 'INTERNAL'];

export class DamselflyError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options?.details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

/** The thing asked for does not exist. */
export class NotFoundError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('NOT_FOUND', message, options);
  }
}

/** A conditional write lost (create-if-absent on an existing key, compare-and-set on a stale version). */
export class ConflictError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('CONFLICT', message, options);
  }
}

/** A backend, peer or origin could not be reached in time; the operation may be retried. */
export class UnavailableError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('UNAVAILABLE', message, options);
  }
}

/** The caller's input is wrong; `details.fields` names what and why when known. */
export class InvalidError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('INVALID', message, options);
  }
}

/** A configuration file or option is wrong; the message names the file and key. */
export class ConfigError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('CONFIG', message, options);
  }
}

/** Bytes did not hash to the digest they were promised to have. */
export class IntegrityError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('INTEGRITY', message, options);
  }
}

/** An operation ran past its deadline. */
export class TimeoutError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('TIMEOUT', message, options);
  }
}

/** A byte range asked for lies outside the content (HTTP 416, gRPC OUT_OF_RANGE). */
export class RangeNotSatisfiableError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('RANGE', message, options);
  }
}

export function isDamselflyError(err: unknown): err is DamselflyError {
  return err instanceof DamselflyError;
}

/** Returns the stable code of an error, `INTERNAL` for anything that is not ours. */
export function errorCode(err: unknown): ErrorCode {
  return err instanceof DamselflyError ? err.code : 'INTERNAL';
}

/**
 * The code a transport answers with: an error's own code, except that an origin's 404/410 is the
 * thing asked for not existing (`NOT_FOUND` on every transport) and an origin's 401/403 is access
 * refused (`FORBIDDEN`). adapters/http-status.ts and scheduler/protocol/grpc-status.ts both start here.
 */
export function transportCode(err: unknown): ErrorCode {
  if (err instanceof SourceError) {
    if (err.status === 404 || err.status === 410) return 'NOT_FOUND';
    if (err.status === 401 || err.status === 403) return 'FORBIDDEN';
  }
  return errorCode(err);
}

/** A one-line human reason for an error, for CLI exits and logs. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * The origin (registry, HTTP server, object store) answered with a non-success status. `status`,
 * `headers` (with credentials removed) and a short `body` let a proxy pass the answer through
 * unchanged (a 401 with its WWW-Authenticate challenge, a 404 with the registry's error JSON).
 */
export class SourceError extends DamselflyError {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;

  constructor(message: string, status: number, headers: Record<string, string> = {}, body: Buffer = Buffer.alloc(0), options?: { cause?: unknown }) {
    super('SOURCE', message, { cause: options?.cause, details: { status } });
    this.status = status;
    this.headers = headers;
    this.body = body;
  }
}
