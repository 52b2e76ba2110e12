/**
 * Redis queue (ioredis): a sorted set per queue `<prefix>q:<queue>` scored by the time each
 * message becomes visible, and a hash per message `<prefix>qm:<id>` {body, sentAt, rc, receipt, queue}.
 * receive() is one Lua script: take due ids, re-score them to now + visibility (that is the lease),
 * bump the receive count and mint a receipt; a message due again after `maxReceives` deliveries
 * moves to the dead-letter queue's set instead. An unacked message is thus redelivered when its
 * score passes. send() PUBLISHes on `<prefix>qwake` to wake long polls at once (other waits re-check
 * every 200 ms). Dedup ids are `SET NX PX 300000` keys. Time comes from the server (TIME).
 * Single node, or a cluster with one hash slot for the prefix (`{damselfly}:`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { InvalidError, NotFoundError } from '../errors.js';
import { toJson } from '../kv/common.js';
import { withTimeout } from '../clock.js';
import { connectRedis, redisError } from '../kv/redis.js';
import type { RedisQueueConfig } from '../store-config.js';
import { DEDUP_WINDOW_MS, Waiters, checkQueueName, checkVisibility, longPoll, resolveReceive, resolveSend, type QueueOptions } from './common.js';
import { deadLetterName, type Queue, type QueueMessage, type ReceiveOptions, type SendOptions } from './port.js';

const POLL_MS = 200;
const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const SCRIPTS = {
  // KEYS: set, msg, dedup. ARGV: id, body, delay, queue, channel, useDedup. Returns the (first) id.
  qSend: `${NOW}
if ARGV[6] == '1' then
  local prior = redis.call('GET', KEYS[3])
  if prior then return prior end
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ${DEDUP_WINDOW_MS})
end
redis.call('HSET', KEYS[2], 'body', ARGV[2], 'sentAt', now, 'rc', 0, 'queue', ARGV[4])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
if tonumber(ARGV[3]) == 0 then redis.call('PUBLISH', ARGV[5], ARGV[4]) end
return ARGV[1]`,
  // KEYS: set, dlq set. ARGV: max, visibility, maxReceives (0 = never), msg prefix, receipt nonce, dlq name, channel.
  // Returns flat [id, body, rc, receipt, sentAt, ...].
  qReceive: `${NOW}
local out = {}
local n = 0
local max = tonumber(ARGV[1])
local k = tonumber(ARGV[3])
local moved = 0
while n < max do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max - n)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local m = ARGV[4] .. id
    local h = redis.call('HMGET', m, 'rc', 'body', 'sentAt')
    if not h[1] then
      redis.call('ZREM', KEYS[1], id)
    elseif k > 0 and tonumber(h[1]) >= k then
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZADD', KEYS[2], now, id)
      redis.call('HSET', m, 'rc', 0, 'queue', ARGV[6])
      redis.call('HDEL', m, 'receipt')
      moved = moved + 1
    else
      local rc = tonumber(h[1]) + 1
      local receipt = id .. '.' .. ARGV[5] .. n
      redis.call('HSET', m, 'rc', rc, 'receipt', receipt)
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
      table.insert(out, id); table.insert(out, h[2]); table.insert(out, rc); table.insert(out, receipt); table.insert(out, h[3])
      n = n + 1
    end
  end
end
if moved > 0 then redis.call('PUBLISH', ARGV[7], ARGV[6]) end
return out`,
  // KEYS: set, msg. ARGV: id, receipt, queue, mode ('ack' | 'extend'), visibility, channel. Returns 1 or 0 (stale receipt).
  qSettle: `${NOW}
local h = redis.call('HMGET', KEYS[2], 'receipt', 'queue')
if h[1] ~= ARGV[2] or h[2] ~= ARGV[3] then return 0 end
if ARGV[4] == 'ack' then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[5]), ARGV[1])
  if tonumber(ARGV[5]) == 0 then redis.call('PUBLISH', ARGV[6], ARGV[3]) end
end
return 1`,
} as const;

type Scripted = Redis & {
  qSend(set: string, msg: string, dedup: string, id: string, body: string, delay: number, queue: string, channel: string, useDedup: string): Promise<string>;
  qReceive(set: string, dlq: string, max: number, vis: number, k: number, msgPrefix: string, nonce: string, dlqName: string, channel: string): Promise<(string | number)[]>;
  qSettle(set: string, msg: string, id: string, receipt: string, queue: string, mode: string, vis: number, channel: string): Promise<number>;
};

export class RedisQueue implements Queue {
  readonly kind = 'redis';
  private readonly waiters = new Waiters();
  private sub?: Redis;
  private subscribing?: Promise<void>;
  private closed = false;
  private readonly channel: string;

  private constructor(
    private readonly r: Scripted,
    private readonly prefix: string,
    private readonly timeoutMs: number,
    private readonly options: QueueOptions,
  ) {
    this.channel = `${prefix}qwake`;
  }

  /** Connects; UnavailableError when Redis does not answer within the timeout. */
  static async open(config: Pick<RedisQueueConfig, 'url' | 'prefix' | 'timeoutMs' | 'maxReceives' | 'visibilityMs'>): Promise<RedisQueue> {
    const r = await connectRedis(config.url, config.timeoutMs, 'redis queue connect');
    r.defineCommand('qSend', { numberOfKeys: 3, lua: SCRIPTS.qSend });
    r.defineCommand('qReceive', { numberOfKeys: 2, lua: SCRIPTS.qReceive });
    r.defineCommand('qSettle', { numberOfKeys: 2, lua: SCRIPTS.qSettle });
    return new RedisQueue(r as Scripted, config.prefix, config.timeoutMs, { maxReceives: config.maxReceives, visibilityMs: config.visibilityMs });
  }

  private set(queue: string): string {
    return `${this.prefix}q:${queue}`;
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new InvalidError('redis queue is closed');
    try {
      return await withTimeout(fn(), this.timeoutMs + 500, `redis queue ${what}`, 'UNAVAILABLE');
    } catch (err) {
      throw redisError(err, `redis queue ${what}`);
    }
  }

  /** Subscribes (once) to wake-ups; failures are ignored because polling works without them. */
  private subscribe(): Promise<void> {
    if (this.subscribing) return this.subscribing;
    const sub = this.r.duplicate();
    sub.on('error', () => {});
    sub.on('message', (_channel: string, queue: string) => this.waiters.notify(queue));
    this.sub = sub;
    this.subscribing = withTimeout(sub.subscribe(this.channel).then(() => undefined), this.timeoutMs, 'redis queue subscribe', 'UNAVAILABLE').catch(() => {
      sub.disconnect();
      this.sub = undefined;
      this.subscribing = undefined;
    });
    return this.subscribing;
  }

  async send<T = unknown>(queue: string, body: T, options?: SendOptions): Promise<string> {
    checkQueueName(queue);
    const { delayMs, dedupId } = resolveSend(options);
    const json = toJson(body);
    const id = randomUUID();
    return this.call('send', () =>
      this.r.qSend(this.set(queue), `${this.prefix}qm:${id}`, `${this.prefix}qd:${queue}:${dedupId ?? ''}`, id, json, Math.ceil(delayMs), queue, this.channel, dedupId === undefined ? '0' : '1'),
    );
  }

  private async take<T>(queue: string, max: number, visibilityMs: number): Promise<QueueMessage<T>[]> {
    const isDlq = queue.endsWith('-dlq');
    const dlq = deadLetterName(queue);
    const flat = await this.call('receive', () =>
      this.r.qReceive(this.set(queue), this.set(dlq), max, Math.ceil(visibilityMs), isDlq ? 0 : this.options.maxReceives, `${this.prefix}qm:`, randomBytes(8).toString('hex'), dlq, this.channel),
    );
    const out: QueueMessage<T>[] = [];
    for (let i = 0; i < flat.length; i += 5) {
      out.push({ id: String(flat[i]), body: JSON.parse(String(flat[i + 1])) as T, receiveCount: Number(flat[i + 2]), receipt: String(flat[i + 3]), sentAt: Number(flat[i + 4]) });
    }
    return out;
  }

  async receive<T = unknown>(queue: string, options?: ReceiveOptions): Promise<QueueMessage<T>[]> {
    checkQueueName(queue);
    const r = resolveReceive(options, this.options.visibilityMs);
    if (r.waitMs > 0) await this.subscribe();
    return longPoll(() => this.take<T>(queue, r.max, r.visibilityMs), this.waiters, queue, r, POLL_MS, () => this.closed);
  }

  private async settle(queue: string, receipt: string, mode: 'ack' | 'extend', visibilityMs = 0): Promise<void> {
    checkQueueName(queue);
    const id = receipt.split('.')[0];
    const ok = await this.call(mode, () => this.r.qSettle(this.set(queue), `${this.prefix}qm:${id}`, id, receipt, queue, mode, Math.ceil(visibilityMs), this.channel));
    if (ok !== 1) throw new NotFoundError(`no message in ${queue} holds that receipt`);
  }

  async ack(queue: string, receipt: string): Promise<void> {
    await this.settle(queue, receipt, 'ack');
  }

  async extend(queue: string, receipt: string, visibilityMs: number): Promise<void> {
    checkVisibility(visibilityMs);
    await this.settle(queue, receipt, 'extend', visibilityMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.waiters.notifyAll();
    this.sub?.disconnect();
    await this.r.quit().catch(() => this.r.disconnect());
  }
}
