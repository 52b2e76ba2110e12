/**
 * The queue port: at-least-once delivery with visibility timeouts. A received message is hidden
 * from other consumers until its visibility timeout passes; if it is not acknowledged by then it is
 * delivered again (receiveCount + 1). After `maxReceives` deliveries without an ack it moves to the
 * queue's dead-letter queue (`deadLetterName(queue)`). Consumers must be idempotent by message id.
 * Each backend implements it in its own file and is checked by `test/adapters/queue-conformance.ts`.
 * Errors: UnavailableError, NotFoundError (unknown receipt), InvalidError.
 */
export interface QueueMessage<T = unknown> {
  /** Stable across redeliveries; use it for idempotency. */
  id: string;
  body: T;
  /** Identifies this delivery; needed to ack or extend. */
  receipt: string;
  /** 1 on first delivery. */
  receiveCount: number;
  /** Epoch milliseconds when it was sent. */
  sentAt: number;
}

export interface SendOptions {
  /** Not deliverable before this many milliseconds have passed. */
  delayMs?: number;
  /** A second send with the same id within the dedup window (5 min) is dropped; returns the first id. */
  dedupId?: string;
}

export interface ReceiveOptions {
  /** At most this many messages (default 1, max 10). */
  max?: number;
  /** Long-poll up to this long for a message (default 0, max 20 000). */
  waitMs?: number;
  /** Hide received messages this long (default 30 000). */
  visibilityMs?: number;
  /** Aborts the long poll early, returning what was received (possibly nothing). */
  signal?: AbortSignal;
}

export interface Queue {
  readonly kind: string;
  /** Sends a message; returns its id. */
  send<T = unknown>(queue: string, body: T, options?: SendOptions): Promise<string>;
  /** Receives up to `max` messages, waiting up to `waitMs` for the first one. */
  receive<T = unknown>(queue: string, options?: ReceiveOptions): Promise<QueueMessage<T>[]>;
  /**
   * Acknowledges (deletes) a delivered message. A stale receipt (the message was redelivered since)
   * is a NotFoundError on every backend but SQS, where it may still delete the message.
   */
  ack(queue: string, receipt: string): Promise<void>;
  /** Extends (or with 0, ends) the visibility of a delivered message. */
  extend(queue: string, receipt: string, visibilityMs: number): Promise<void>;
  /** Releases connections and ends pending long polls. */
  close(): Promise<void>;
}

/** The dead-letter queue a queue's exhausted messages move to. */
export function deadLetterName(queue: string): string {
  return `${queue}-dlq`;
}
