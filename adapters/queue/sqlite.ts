/**
 * SQLite queue, in the same database file as the SQLite KV store (tables from its migrations).
 * receive() takes due messages inside an IMMEDIATE transaction, so two processes never take the
 * same message; long polls in this process are woken by send(), other processes poll every 50 ms.
 */
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { InvalidError, NotFoundError } from '../errors.js';
import { toJson } from '../kv/common.js';
import { openSqlite, sqliteError } from '../kv/sqlite.js';
import type { SqliteQueueConfig } from '../store-config.js';
import { DEDUP_WINDOW_MS, Waiters, checkQueueName, checkVisibility, longPoll, resolveReceive, resolveSend, type QueueOptions } from './common.js';
import { deadLetterName, type Queue, type QueueMessage, type ReceiveOptions, type SendOptions } from './port.js';

/** How often a long poll re-checks the file for messages sent by other processes. */
const POLL_MS = 50;

interface Row {
  id: string;
  body: string;
  sent_at: number;
  receive_count: number;
}

export class SqliteQueue implements Queue {
  readonly kind = 'sqlite';
  private readonly waiters = new Waiters();
  private readonly stmts;
  private seq = 0;

  private constructor(private readonly db: Database.Database, private readonly options: QueueOptions) {
    const p = (sql: string) => db.prepare(sql);
    this.stmts = {
      dedupGet: p('SELECT id FROM queue_dedup WHERE queue = ? AND dedup_id = ? AND until > ?'),
      dedupPut: p('INSERT OR REPLACE INTO queue_dedup (queue, dedup_id, id, until) VALUES (?, ?, ?, ?)'),
      dedupPrune: p('DELETE FROM queue_dedup WHERE until <= ?'),
      insert: p('INSERT INTO queue_messages (id, queue, body, sent_at, visible_at, receive_count, seq) VALUES (?, ?, ?, ?, ?, 0, ?)'),
      due: p('SELECT id, body, sent_at, receive_count FROM queue_messages WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, seq LIMIT ?'),
      deadLetter: p('UPDATE queue_messages SET queue = ?, receive_count = 0, visible_at = ?, receipt = NULL WHERE id = ?'),
      lease: p('UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = ?, receipt = ? WHERE id = ?'),
      ack: p('DELETE FROM queue_messages WHERE queue = ? AND id = ? AND receipt = ?'),
      extend: p('UPDATE queue_messages SET visible_at = ? WHERE queue = ? AND id = ? AND receipt = ?'),
    };
  }

  /** Opens the database file (migrating it); throws UnavailableError when it cannot. */
  static open(config: Pick<SqliteQueueConfig, 'path' | 'timeoutMs' | 'maxReceives' | 'visibilityMs'>): SqliteQueue {
    return new SqliteQueue(openSqlite(config.path, config.timeoutMs), { maxReceives: config.maxReceives, visibilityMs: config.visibilityMs });
  }

  private run<T>(what: string, fn: () => T): T {
    if (!this.db.open) throw new InvalidError('sqlite queue is closed');
    try {
      return fn();
    } catch (err) {
      throw sqliteError(err, `sqlite queue ${what}`);
    }
  }

  async send<T = unknown>(queue: string, body: T, options?: SendOptions): Promise<string> {
    checkQueueName(queue);
    const { delayMs, dedupId } = resolveSend(options);
    const json = toJson(body);
    const id = this.run('send', () =>
      this.db
        .transaction(() => {
          const now = Date.now();
          if (dedupId !== undefined) {
            const prior = this.stmts.dedupGet.get(queue, dedupId, now) as { id: string } | undefined;
            if (prior) return prior.id;
          }
          const newId = randomUUID();
          // seq orders messages sent in the same millisecond; time-based so other processes interleave sensibly.
          this.stmts.insert.run(newId, queue, json, now, now + delayMs, now * 1000 + (this.seq++ % 1000));
          if (dedupId !== undefined) {
            this.stmts.dedupPut.run(queue, dedupId, newId, now + DEDUP_WINDOW_MS);
            if (this.seq % 100 === 0) this.stmts.dedupPrune.run(now);
          }
          return newId;
        })
        .immediate(),
    );
    if (delayMs === 0) this.waiters.notify(queue);
    return id;
  }

  private take<T>(queue: string, max: number, visibilityMs: number): QueueMessage<T>[] {
    const isDlq = queue.endsWith('-dlq');
    return this.run('receive', () =>
      this.db
        .transaction(() => {
          const out: QueueMessage<T>[] = [];
          const now = Date.now();
          for (;;) {
            const rows = this.stmts.due.all(queue, now, max - out.length) as Row[];
            let moved = 0;
            for (const r of rows) {
              if (!isDlq && r.receive_count >= this.options.maxReceives) {
                this.stmts.deadLetter.run(deadLetterName(queue), now, r.id);
                moved++;
                continue;
              }
              const receipt = `${r.id}.${randomUUID()}`;
              this.stmts.lease.run(now + visibilityMs, receipt, r.id);
              out.push({ id: r.id, body: JSON.parse(r.body) as T, receipt, receiveCount: r.receive_count + 1, sentAt: r.sent_at });
            }
            if (moved === 0 || out.length >= max) return out;
          }
        })
        .immediate(),
    );
  }

  async receive<T = unknown>(queue: string, options?: ReceiveOptions): Promise<QueueMessage<T>[]> {
    checkQueueName(queue);
    const r = resolveReceive(options, this.options.visibilityMs);
    return longPoll(async () => this.take<T>(queue, r.max, r.visibilityMs), this.waiters, queue, r, POLL_MS, () => !this.db.open);
  }

  async ack(queue: string, receipt: string): Promise<void> {
    checkQueueName(queue);
    const changes = this.run('ack', () => this.stmts.ack.run(queue, receipt.split('.')[0], receipt).changes);
    if (changes === 0) throw new NotFoundError(`no message in ${queue} holds that receipt`);
  }

  async extend(queue: string, receipt: string, visibilityMs: number): Promise<void> {
    checkQueueName(queue);
    checkVisibility(visibilityMs);
    const changes = this.run('extend', () => this.stmts.extend.run(Date.now() + visibilityMs, queue, receipt.split('.')[0], receipt).changes);
    if (changes === 0) throw new NotFoundError(`no message in ${queue} holds that receipt`);
    if (visibilityMs === 0) this.waiters.notify(queue);
  }

  async close(): Promise<void> {
    this.waiters.notifyAll();
    if (this.db.open) this.db.close();
  }
}
