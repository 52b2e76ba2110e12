/**
 * In-process queue: a first-class backend for single-process use and the test double for code
 * built on the queue port. Messages live in maps; long polls are woken directly by send().
 * Dead-lettering: a message that has been delivered `maxReceives` times and comes due again moves
 * to `<queue>-dlq` instead (a dead-letter queue itself never dead-letters).
 */
import { randomUUID } from 'node:crypto';
import { InvalidError, NotFoundError } from '../errors.js';
import { toJson } from '../kv/common.js';
import {
  DEDUP_WINDOW_MS, Waiters, checkQueueName, checkVisibility, longPoll, resolveReceive, resolveSend, type QueueOptions,
} from './common.js';
import { deadLetterName, type Queue, type QueueMessage, type ReceiveOptions, type SendOptions } from './port.js';

interface Stored {
  id: string;
  json: string;
  sentAt: number;
  visibleAt: number;
  receiveCount: number;
  receipt?: string;
  seq: number;
}

export class MemoryQueue implements Queue {
  readonly kind = 'memory';
  private readonly queues = new Map<string, Map<string, Stored>>();
  private readonly dedup = new Map<string, { id: string; until: number }>();
  private readonly waiters = new Waiters();
  private seq = 0;
  private closed = false;

  constructor(private readonly options: QueueOptions = { maxReceives: 5, visibilityMs: 30_000 }) {}

  private q(name: string): Map<string, Stored> {
    let m = this.queues.get(name);
    if (!m) this.queues.set(name, (m = new Map()));
    return m;
  }

  private open(): void {
    if (this.closed) throw new InvalidError('memory queue is closed');
  }

  async send<T = unknown>(queue: string, body: T, options?: SendOptions): Promise<string> {
    this.open();
    checkQueueName(queue);
    const { delayMs, dedupId } = resolveSend(options);
    const json = toJson(body);
    const now = Date.now();
    if (dedupId !== undefined) {
      const d = this.dedup.get(`${queue}\n${dedupId}`);
      if (d && d.until > now) return d.id;
    }
    const id = randomUUID();
    this.q(queue).set(id, { id, json, sentAt: now, visibleAt: now + delayMs, receiveCount: 0, seq: this.seq++ });
    if (dedupId !== undefined) this.dedup.set(`${queue}\n${dedupId}`, { id, until: now + DEDUP_WINDOW_MS });
    if (delayMs === 0) this.waiters.notify(queue);
    return id;
  }

  private take<T>(queue: string, max: number, visibilityMs: number): QueueMessage<T>[] {
    const now = Date.now();
    const m = this.q(queue);
    const due = [...m.values()].filter((s) => s.visibleAt <= now).sort((a, b) => a.visibleAt - b.visibleAt || a.seq - b.seq);
    const out: QueueMessage<T>[] = [];
    const isDlq = queue.endsWith('-dlq');
    for (const s of due) {
      if (out.length === max) break;
      if (!isDlq && s.receiveCount >= this.options.maxReceives) {
        m.delete(s.id);
        const dlq = deadLetterName(queue);
        this.q(dlq).set(s.id, { ...s, receiveCount: 0, visibleAt: now, receipt: undefined, seq: this.seq++ });
        this.waiters.notify(dlq);
        continue;
      }
      s.receiveCount += 1;
      s.visibleAt = now + visibilityMs;
      s.receipt = `${s.id}.${randomUUID()}`;
      out.push({ id: s.id, body: JSON.parse(s.json) as T, receipt: s.receipt, receiveCount: s.receiveCount, sentAt: s.sentAt });
    }
    return out;
  }

  async receive<T = unknown>(queue: string, options?: ReceiveOptions): Promise<QueueMessage<T>[]> {
    this.open();
    checkQueueName(queue);
    const r = resolveReceive(options, this.options.visibilityMs);
    return longPoll(async () => this.take<T>(queue, r.max, r.visibilityMs), this.waiters, queue, r, 50, () => this.closed);
  }

  private byReceipt(queue: string, receipt: string): Stored {
    const id = receipt.split('.')[0];
    const s = this.q(queue).get(id);
    if (!s || s.receipt !== receipt) throw new NotFoundError(`no message in ${queue} holds receipt ${receipt.slice(0, 16)}…`);
    return s;
  }

  async ack(queue: string, receipt: string): Promise<void> {
    this.open();
    checkQueueName(queue);
    const s = this.byReceipt(queue, receipt);
    this.q(queue).delete(s.id);
  }

  async extend(queue: string, receipt: string, visibilityMs: number): Promise<void> {
    this.open();
    checkQueueName(queue);
    checkVisibility(visibilityMs);
    const s = this.byReceipt(queue, receipt);
    s.visibleAt = Date.now() + visibilityMs;
    if (visibilityMs === 0) this.waiters.notify(queue);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.waiters.notifyAll();
  }
}
