/** Option checks and defaults shared by every queue adapter. */
import { InvalidError } from '../errors.js';
import type { ReceiveOptions, SendOptions } from './port.js';

export const DEFAULT_VISIBILITY_MS = 30_000;
export const MAX_RECEIVE_BATCH = 10;
export const MAX_WAIT_MS = 20_000;
/** A dedup id is remembered this long (SQS FIFO uses the same 5-minute window). */
export const DEDUP_WINDOW_MS = 5 * 60_000;
/** Longest queue name: SQS allows 80 characters and the `-dlq` suffix needs 4 of them. */
export const MAX_QUEUE_NAME = 76;

export interface ResolvedReceive {
  max: number;
  waitMs: number;
  visibilityMs: number;
  signal?: AbortSignal;
}

/** Throws InvalidError unless `name` is 1–76 characters of [A-Za-z0-9_-]. */
export function checkQueueName(name: string): void {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_-]{1,76}$/.test(name)) {
    throw new InvalidError(`queue name "${String(name).slice(0, 100)}" must be 1-${MAX_QUEUE_NAME} characters of A-Z a-z 0-9 _ -`);
  }
}

/** Applies defaults and bounds to receive options; InvalidError on nonsense. */
export function resolveReceive(options: ReceiveOptions | undefined, defaultVisibilityMs: number): ResolvedReceive {
  const max = options?.max ?? 1;
  const waitMs = options?.waitMs ?? 0;
  const visibilityMs = options?.visibilityMs ?? defaultVisibilityMs;
  if (!Number.isInteger(max) || max < 1 || max > MAX_RECEIVE_BATCH) throw new InvalidError(`max must be an integer 1-${MAX_RECEIVE_BATCH}`);
  if (!Number.isFinite(waitMs) || waitMs < 0 || waitMs > MAX_WAIT_MS) throw new InvalidError(`waitMs must be 0-${MAX_WAIT_MS}`);
  if (!Number.isFinite(visibilityMs) || visibilityMs < 0 || visibilityMs > 12 * 3_600_000) throw new InvalidError('visibilityMs must be 0-43200000');
  return { max, waitMs, visibilityMs, signal: options?.signal };
}

/** Checks send options; returns the delay in ms (0 when absent). */
export function resolveSend(options: SendOptions | undefined): { delayMs: number; dedupId?: string } {
  const delayMs = options?.delayMs ?? 0;
  if (!Number.isFinite(delayMs) || delayMs < 0 || delayMs > 900_000) throw new InvalidError('delayMs must be 0-900000 (15 minutes)');
  const dedupId = options?.dedupId;
  if (dedupId !== undefined && (typeof dedupId !== 'string' || dedupId.length === 0 || dedupId.length > 128)) {
    throw new InvalidError('dedupId must be 1-128 characters');
  }
  return { delayMs, dedupId };
}

/** Checks a visibility extension. */
export function checkVisibility(visibilityMs: number): void {
  if (!Number.isFinite(visibilityMs) || visibilityMs < 0 || visibilityMs > 12 * 3_600_000) throw new InvalidError('visibilityMs must be 0-43200000');
}

/** Options every queue backend takes. */
export interface QueueOptions {
  /** Deliveries without an ack before a message moves to the dead-letter queue (K). */
  maxReceives: number;
  /** Visibility timeout when receive() names none. */
  visibilityMs: number;
}

/**
 * Wakes long pollers in this process when a message is sent to a queue; backends that can also
 * wake other processes (PostgreSQL NOTIFY, Redis pub/sub) feed their notifications in here too.
 */
export class Waiters {
  private readonly waiting = new Map<string, Set<() => void>>();

  /** Resolves after `ms`, when `queue` is notified, or when `signal` aborts, whichever is first. */
  wait(queue: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted || ms <= 0) return resolve();
      let set = this.waiting.get(queue);
      if (!set) this.waiting.set(queue, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        set!.delete(done);
        if (set!.size === 0 && this.waiting.get(queue) === set) this.waiting.delete(queue);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  /**
   * Wakes the longest-waiting poller on `queue`: one new message can go to one consumer only, and
   * waking them all would make every consumer query the backend for it (a thundering herd).
   * Anyone not woken still re-checks within the backend's poll interval.
   */
  notify(queue: string): void {
    const first = this.waiting.get(queue)?.values().next();
    if (first && !first.done) first.value();
  }

  /** Wakes everyone (on close). */
  notifyAll(): void {
    for (const set of [...this.waiting.values()]) for (const w of [...set]) w();
  }
}

/**
 * The long-poll loop every polling backend uses: try, and while nothing came back and time is
 * left, wait for a wake-up (or `pollMs`, since delayed messages and expired visibilities notify
 * no one) and try again.
 */
export async function longPoll<M>(
  attempt: () => Promise<M[]>,
  waiters: Waiters,
  queue: string,
  r: ResolvedReceive,
  pollMs: number,
  isClosed: () => boolean,
): Promise<M[]> {
  const deadline = Date.now() + r.waitMs;
  for (;;) {
    const got = await attempt();
    if (got.length > 0) return got;
    const left = deadline - Date.now();
    if (left <= 0 || r.signal?.aborted || isClosed()) return [];
    await waiters.wait(queue, Math.min(left, pollMs), r.signal);
  }
}
