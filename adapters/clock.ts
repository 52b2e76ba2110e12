/**
 * Time as an injectable dependency (scheduling waits, GC and rate limits are tested with a fake
 * clock, test/support/fake-clock.ts), and the one `sleep` and `withTimeout` every role uses.
 */
import { TimeoutError, UnavailableError } from './errors.js';

export interface Clock {
  now(): number;
  /** Resolves after `ms`; resolves early (not rejects) when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  random(): number;
}

/** Sleeps `ms`, waking early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep,
  random: () => Math.random(),
};

/**
 * Races `work` against `ms`. On expiry throws a TimeoutError naming `what`, or an UnavailableError
 * with `as: 'UNAVAILABLE'` (a store that does not answer is unavailable: callers retry those). The
 * work itself is not cancelled (drivers are told separately through their own timeouts / abort
 * signals).
 */
export async function withTimeout<T>(work: Promise<T>, ms: number, what: string, as: 'TIMEOUT' | 'UNAVAILABLE' = 'TIMEOUT'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const message = `${what}: no answer within ${ms} ms`;
      reject(as === 'UNAVAILABLE' ? new UnavailableError(message, { details: { timeoutMs: ms } }) : new TimeoutError(message, { details: { timeoutMs: ms } }));
    }, ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
