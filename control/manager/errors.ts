/** HTTP-facing errors the manager raises besides adapters/errors.ts; mapped to status in app.onError. */
import { DamselflyError } from '../../adapters/errors.js';

/** No or bad credentials (401). */
export class UnauthorizedError extends DamselflyError {
  constructor(message = 'Unauthorized') {
    super('UNAUTHORIZED', message);
  }
}

/** Credentials fine, permission missing (403). */
export class ForbiddenError extends DamselflyError {
  constructor(message = 'Forbidden') {
    super('FORBIDDEN', message);
  }
}

/** Too many requests for this cluster right now (429). */
export class RateLimitedError extends DamselflyError {
  constructor(message = 'rate limit exceeded') {
    super('RATE_LIMITED', message);
  }
}
