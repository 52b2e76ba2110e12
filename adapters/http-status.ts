/**
 * The one map from our error codes to HTTP statuses, used by every HTTP server we run (the manager
 * API, the agent's local API). Exhaustive: a new ErrorCode does not compile until it has a status.
 */
import { SourceError, transportCode, type ErrorCode } from './errors.js';

export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  INVALID: 400,
  CONFIG: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  RANGE: 416,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  // The origin answered an error, or its (or a peer's) bytes did not match their digest: a bad gateway.
  SOURCE: 502,
  INTEGRITY: 502,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
};

/** The HTTP status for `err` (anything not ours is 500). */
export function httpStatus(err: unknown): number {
  return HTTP_STATUS[transportCode(err)];
}

/** Headers that go with the status: the origin's own status when the origin answered the error. */
export function httpErrorHeaders(err: unknown): Record<string, string> {
  return err instanceof SourceError ? { 'x-damselfly-source-status': String(err.status) } : {};
}
