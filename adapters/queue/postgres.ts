/**
 * PostgreSQL queue (pg), in the same schema as the PostgreSQL KV store. receive() takes due rows
 * with `FOR UPDATE SKIP LOCKED`, so concurrent consumers never take the same message; send()
 * NOTIFYs `damselfly_queue`, and one LISTEN connection per client wakes its long polls at once
 * (a 250 ms re-check covers delays and expired visibilities, which notify no one). Dead-lettering
 * happens in the same statement as the take. Time is the server's clock.
 */
import type pg from 'pg';
import pgModule from 'pg';
import { InvalidError, NotFoundError } from '../errors.js';
import { toJson } from '../kv/common.js';
import { withTimeout } from '../clock.js';
import { inTransaction, migrate, openPool, pgError, quoteIdent } from '../kv/postgres.js';
import type { PostgresQueueConfig } from '../store-config.js';
import { DEDUP_WINDOW_MS, Waiters, checkQueueName, checkVisibility, longPoll, resolveReceive, resolveSend, type QueueOptions } from './common.js';
import { deadLetterName, type Queue, type QueueMessage, type ReceiveOptions, type SendOptions } from './port.js';

const CHANNEL = 'damselfly_queue';
const POLL_MS = 250;
/** "Never dead-letter": used for dead-letter queues themselves. */
const NO_LIMIT = 2_147_483_647;

interface TakeRow {
  kind: 'take' | 'dead';
  id: string;
  body: unknown;
  sent_at: string | null;
  receive_count: number | null;
  receipt: string | null;
}

export class PostgresQueue implements Queue {
  readonly kind = 'postgres';
  private readonly waiters = new Waiters();
  private readonly sql;
  private listener?: pg.Client;
  private listening?: Promise<void>;
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly url: string,
    private readonly schema: string,
    private readonly timeoutMs: number,
    private readonly options: QueueOptions,
  ) {
    const s = quoteIdent(schema);
    this.sql = {
      dedupClaim: `INSERT INTO ${s}.queue_dedup AS d (queue, dedup_id, id, until) VALUES ($1, $2, $3, ${s}.now_ms() + ${DEDUP_WINDOW_MS})
                   ON CONFLICT (queue, dedup_id) DO UPDATE SET id = EXCLUDED.id, until = EXCLUDED.until WHERE d.until <= ${s}.now_ms()
                   RETURNING id`,
      dedupGet: `SELECT id FROM ${s}.queue_dedup WHERE queue = $1 AND dedup_id = $2`,
      dedupPrune: `DELETE FROM ${s}.queue_dedup WHERE until <= ${s}.now_ms()`,
      insert: `WITH m AS (INSERT INTO ${s}.queue_messages (id, queue, body, sent_at, visible_at)
                 VALUES ($1, $2, $3::jsonb, ${s}.now_ms(), ${s}.now_ms() + $4::bigint) RETURNING id)
               SELECT m.id, CASE WHEN $4::bigint = 0 THEN pg_notify('${CHANNEL}', $5) END FROM m`,
      take: `WITH due AS (
               SELECT id, receive_count FROM ${s}.queue_messages WHERE queue = $1 AND visible_at <= ${s}.now_ms()
               ORDER BY visible_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED),
             dead AS (
               UPDATE ${s}.queue_messages m SET queue = $4, receive_count = 0, visible_at = ${s}.now_ms(), receipt = NULL
               FROM due WHERE m.id = due.id AND due.receive_count >= $5 RETURNING m.id),
             taken AS (
               UPDATE ${s}.queue_messages m SET receive_count = m.receive_count + 1, visible_at = ${s}.now_ms() + $3::bigint,
                 receipt = m.id::text || '.' || gen_random_uuid()::text
               FROM due WHERE m.id = due.id AND due.receive_count < $5
               RETURNING m.id, m.body, m.sent_at, m.receive_count, m.receipt, m.seq)
             SELECT 'take' AS kind, id, body, sent_at, receive_count, receipt FROM (SELECT * FROM taken ORDER BY seq) t
             UNION ALL SELECT 'dead', id, NULL, NULL, NULL, NULL FROM dead`,
      notify: `SELECT pg_notify('${CHANNEL}', $1)`,
      ack: `DELETE FROM ${s}.queue_messages WHERE id = $1::uuid AND queue = $2 AND receipt = $3 RETURNING 1`,
      extend: `UPDATE ${s}.queue_messages SET visible_at = ${s}.now_ms() + $4::bigint WHERE id = $1::uuid AND queue = $2 AND receipt = $3 RETURNING 1`,
    };
  }

  /** Connects and migrates the schema; UnavailableError when the server does not answer in time. */
  static async open(config: Pick<PostgresQueueConfig, 'url' | 'schema' | 'poolSize' | 'timeoutMs' | 'maxReceives' | 'visibilityMs'>): Promise<PostgresQueue> {
    const pool = openPool(config.url, config.timeoutMs, config.poolSize);
    try {
      await migrate(pool, config.schema, config.timeoutMs);
    } catch (err) {
      await pool.end().catch(() => {});
      throw err;
    }
    return new PostgresQueue(pool, config.url, config.schema, config.timeoutMs, { maxReceives: config.maxReceives, visibilityMs: config.visibilityMs });
  }

  private channelKey(queue: string): string {
    return `${this.schema}:${queue}`;
  }

  private async q<R>(what: string, text: string, params: unknown[], on: Pick<pg.Pool, 'query'> = this.pool): Promise<R[]> {
    if (this.closed) throw new InvalidError('postgres queue is closed');
    try {
      return (await withTimeout(on.query(text, params), this.timeoutMs + 500, `postgres queue ${what}`, 'UNAVAILABLE')).rows as R[];
    } catch (err) {
      throw pgError(err, `postgres queue ${what}`);
    }
  }

  /** Starts (once) the LISTEN connection; failures are swallowed because polling still works without it. */
  private listen(): Promise<void> {
    if (this.listening) return this.listening;
    const client = new pgModule.Client({ connectionString: this.url, connectionTimeoutMillis: this.timeoutMs, keepAlive: true });
    const reset = () => {
      if (this.listener === client) this.listener = undefined;
      this.listening = undefined;
      client.end().catch(() => {});
    };
    client.on('error', reset);
    client.on('end', reset);
    client.on('notification', (n) => {
      const payload = n.payload ?? '';
      const prefix = `${this.schema}:`;
      if (payload.startsWith(prefix)) this.waiters.notify(payload.slice(prefix.length));
    });
    this.listener = client;
    this.listening = withTimeout(
      (async () => {
        await client.connect();
        await client.query(`LISTEN ${CHANNEL}`);
      })(),
      this.timeoutMs,
      'postgres queue listen', 'UNAVAILABLE',
    ).catch(() => reset());
    return this.listening;
  }

  async send<T = unknown>(queue: string, body: T, options?: SendOptions): Promise<string> {
    checkQueueName(queue);
    const { delayMs, dedupId } = resolveSend(options);
    const json = toJson(body);
    const id = crypto.randomUUID();
    if (dedupId === undefined) {
      await this.q('send', this.sql.insert, [id, queue, json, Math.ceil(delayMs), this.channelKey(queue)]);
      return id;
    }
    let client: pg.PoolClient;
    try {
      client = await withTimeout(this.pool.connect(), this.timeoutMs + 500, 'postgres queue send', 'UNAVAILABLE');
    } catch (err) {
      throw pgError(err, 'postgres queue send');
    }
    const sent = await inTransaction(client, (sql) => this.q('send', sql, [], client), async () => {
      const claimed = await this.q('send', this.sql.dedupClaim, [queue, dedupId, id], client);
      if (claimed.length === 0) {
        // A send with this dedup id won within the window: answer its id, send nothing.
        const [prior] = await this.q<{ id: string }>('send', this.sql.dedupGet, [queue, dedupId], client);
        return prior.id;
      }
      await this.q('send', this.sql.insert, [id, queue, json, Math.ceil(delayMs), this.channelKey(queue)], client);
      return id;
    });
    if (sent !== id) return sent;
    if (Math.random() < 0.01) await this.q('send', this.sql.dedupPrune, []).catch(() => {});
    return id;
  }

  private async take<T>(queue: string, max: number, visibilityMs: number): Promise<QueueMessage<T>[]> {
    const out: QueueMessage<T>[] = [];
    const limit = queue.endsWith('-dlq') ? NO_LIMIT : this.options.maxReceives;
    for (;;) {
      const rows = await this.q<TakeRow>('receive', this.sql.take, [queue, max - out.length, Math.ceil(visibilityMs), deadLetterName(queue), limit]);
      let dead = 0;
      for (const r of rows) {
        if (r.kind === 'dead') dead++;
        else out.push({ id: r.id, body: r.body as T, receipt: r.receipt!, receiveCount: r.receive_count!, sentAt: Number(r.sent_at) });
      }
      if (dead > 0) await this.q('receive', this.sql.notify, [this.channelKey(deadLetterName(queue))]);
      if (dead === 0 || out.length >= max) return out;
    }
  }

  async receive<T = unknown>(queue: string, options?: ReceiveOptions): Promise<QueueMessage<T>[]> {
    checkQueueName(queue);
    const r = resolveReceive(options, this.options.visibilityMs);
    if (r.waitMs > 0) await this.listen();
    return longPoll(() => this.take<T>(queue, r.max, r.visibilityMs), this.waiters, queue, r, POLL_MS, () => this.closed);
  }

  private static idOf(receipt: string): string {
    const id = receipt.split('.')[0];
    if (!/^[0-9a-f-]{36}$/.test(id)) throw new NotFoundError('not a receipt of this queue');
    return id;
  }

  async ack(queue: string, receipt: string): Promise<void> {
    checkQueueName(queue);
    const rows = await this.q('ack', this.sql.ack, [PostgresQueue.idOf(receipt), queue, receipt]);
    if (rows.length === 0) throw new NotFoundError(`no message in ${queue} holds that receipt`);
  }

  async extend(queue: string, receipt: string, visibilityMs: number): Promise<void> {
    checkQueueName(queue);
    checkVisibility(visibilityMs);
    const rows = await this.q('extend', this.sql.extend, [PostgresQueue.idOf(receipt), queue, receipt, Math.ceil(visibilityMs)]);
    if (rows.length === 0) throw new NotFoundError(`no message in ${queue} holds that receipt`);
    if (visibilityMs === 0) await this.q('extend', this.sql.notify, [this.channelKey(queue)]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.waiters.notifyAll();
    await this.listener?.end().catch(() => {});
    await this.pool.end().catch(() => {});
  }
}
