/**
 * Redis KV store (ioredis). Each record is a hash `<prefix>kv:<key>` {v: JSON, ver, exp}; TTL uses
 * Redis's own PEXPIREAT (exact: an expired key is never returned). A sorted set `<prefix>kvidx`
 * (all scores 0) indexes keys so ZRANGEBYLEX lists a prefix in byte order; entries whose record
 * expired are dropped from it lazily while listing. Every write is one Lua script, so conditional
 * writes are atomic without WATCH retries; time comes from the server (TIME).
 *
 * transact: atomic (one Lua script checks every condition, then applies every op); limit 1000 ops.
 * Single Redis node (or a cluster with one hash slot for the prefix, e.g. `{damselfly}:`): the
 * scripts touch keys that share only the prefix.
 * Timeouts: connect and per-command timeouts equal `timeoutMs`; commands that timed out are not
 * replayed after a reconnect.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { ConflictError, InvalidError, NotFoundError, UnavailableError, isDamselflyError } from '../errors.js';
import type { RedisKvConfig } from '../store-config.js';
import { checkKey, checkOps, checkTtl, decodeCursor, encodeCursor, pageSize, prefixEnd, toJson } from './common.js';
import { withTimeout } from '../clock.js';
import type { KvOp, KvRecord, KvStore, ListOptions, ListPage, WriteOptions } from './port.js';

/** ioredis options for a client whose every wait is bounded by `timeoutMs`. */
export function redisOptions(timeoutMs: number): RedisOptions {
  return {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 1,
    autoResendUnfulfilledCommands: false,
    enableReadyCheck: false,
    retryStrategy: (times) => Math.min(times * 100, 1_000),
  };
}

/** Translates an ioredis error; driver errors never leave the adapter. */
export function redisError(err: unknown, what: string): Error {
  if (isDamselflyError(err)) return err;
  const message = (err as Error)?.message ?? String(err);
  return new UnavailableError(`${what}: ${message}`, { details: { driver: 'redis' } });
}

/** Connects a client; UnavailableError when the server does not answer a PING within `timeoutMs`. */
export async function connectRedis(url: string, timeoutMs: number, what: string): Promise<Redis> {
  const r = new Redis(url, redisOptions(timeoutMs));
  // Connection errors surface through the commands that fail; the event only needs a listener.
  r.on('error', () => {});
  try {
    await withTimeout(r.connect().then(() => r.ping()), timeoutMs + 500, what, 'UNAVAILABLE');
    return r;
  } catch (err) {
    r.disconnect();
    throw redisError(err, what);
  }
}

const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;
/** Writes record KEYS[1] with json, version and optional ttl (ms), and indexes `key` in KEYS[2]. */
const WRITE_FN = `
local function write(rec, idx, key, json, ver, ttl, now)
  redis.call('HSET', rec, 'v', json, 'ver', ver)
  if ttl and ttl ~= '' and tonumber(ttl) then
    local exp = now + tonumber(ttl)
    redis.call('HSET', rec, 'exp', exp)
    redis.call('PEXPIREAT', rec, exp)
  else
    redis.call('HDEL', rec, 'exp')
    redis.call('PERSIST', rec)
  end
  redis.call('ZADD', idx, 0, key)
end`;

const SCRIPTS = {
  // KEYS: rec, idx. ARGV: key, json, ttl, mode ('put' | 'create' | 'update'), expected. Returns version, 0 conflict, -1 not found.
  kvWrite: `${NOW}
${WRITE_FN}
local cur = redis.call('HGET', KEYS[1], 'ver')
local mode = ARGV[4]
if mode == 'create' then
  if cur then return 0 end
  write(KEYS[1], KEYS[2], ARGV[1], ARGV[2], 1, ARGV[3], now)
  return 1
elseif mode == 'update' then
  if not cur then return -1 end
  if tonumber(cur) ~= tonumber(ARGV[5]) then return 0 end
end
local ver = (tonumber(cur) or 0) + 1
write(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ver, ARGV[3], now)
return ver`,
  // KEYS: rec, idx. ARGV: key, expected or ''. Returns 1 deleted, 0 absent, -2 version mismatch.
  kvDelete: `
local cur = redis.call('HGET', KEYS[1], 'ver')
if not cur then
  redis.call('ZREM', KEYS[2], ARGV[1])
  if ARGV[2] ~= '' then return -2 end
  return 0
end
if ARGV[2] ~= '' and tonumber(cur) ~= tonumber(ARGV[2]) then return -2 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`,
  // KEYS: idx. ARGV: min, max, limit, record key prefix. Returns flat [key, v, ver, exp|''...].
  kvList: `
local out = {}
local n = 0
local min = ARGV[1]
local need = tonumber(ARGV[3])
while n < need do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], min, ARGV[2], 'LIMIT', 0, need - n)
  if #batch == 0 then break end
  for _, k in ipairs(batch) do
    local h = redis.call('HMGET', ARGV[4] .. k, 'v', 'ver', 'exp')
    if h[1] then
      table.insert(out, k); table.insert(out, h[1]); table.insert(out, h[2]); table.insert(out, h[3] or '')
      n = n + 1
    else
      redis.call('ZREM', KEYS[1], k)
    end
  end
  min = '(' .. batch[#batch]
end
return out`,
  // KEYS: idx. ARGV[1]: JSON ops [{t, k, v, ttl, ev}], ARGV[2]: record key prefix. Returns 1, or 0 with the failed key.
  kvTransact: `${NOW}
${WRITE_FN}
local ops = cjson.decode(ARGV[1])
local p = ARGV[2]
for _, op in ipairs(ops) do
  local cur = redis.call('HGET', p .. op.k, 'ver')
  if op.t == 'create' and cur then return {0, op.k} end
  if op.t == 'update' and ((not cur) or tonumber(cur) ~= op.ev) then return {0, op.k} end
  if op.t == 'delete' and op.ev and ((not cur) or tonumber(cur) ~= op.ev) then return {0, op.k} end
end
for _, op in ipairs(ops) do
  local rec = p .. op.k
  if op.t == 'delete' then
    redis.call('DEL', rec)
    redis.call('ZREM', KEYS[1], op.k)
  else
    local cur = redis.call('HGET', rec, 'ver')
    local ttl = ''
    if op.ttl then ttl = tostring(op.ttl) end
    write(rec, KEYS[1], op.k, op.v, (tonumber(cur) or 0) + 1, ttl, now)
  end
end
return {1}`,
} as const;

type Scripted = Redis & {
  kvWrite(rec: string, idx: string, key: string, json: string, ttl: string, mode: string, expected: string): Promise<number>;
  kvDelete(rec: string, idx: string, key: string, expected: string): Promise<number>;
  kvList(idx: string, min: string, max: string, limit: number, recPrefix: string): Promise<string[]>;
  kvTransact(idx: string, ops: string, recPrefix: string): Promise<[number, string?]>;
};

export class RedisKvStore implements KvStore {
  readonly kind = 'redis';
  readonly maxTransactionOps = 1_000;
  private closed = false;
  private readonly rec: string;
  private readonly idx: string;

  private constructor(private readonly r: Scripted, private readonly timeoutMs: number, prefix: string) {
    this.rec = `${prefix}kv:`;
    this.idx = `${prefix}kvidx`;
  }

  /** Connects; UnavailableError when Redis does not answer within the timeout. */
  static async open(config: Pick<RedisKvConfig, 'url' | 'prefix' | 'timeoutMs'>): Promise<RedisKvStore> {
    const r = await connectRedis(config.url, config.timeoutMs, 'redis kv connect');
    r.defineCommand('kvWrite', { numberOfKeys: 2, lua: SCRIPTS.kvWrite });
    r.defineCommand('kvDelete', { numberOfKeys: 2, lua: SCRIPTS.kvDelete });
    r.defineCommand('kvList', { numberOfKeys: 1, lua: SCRIPTS.kvList });
    r.defineCommand('kvTransact', { numberOfKeys: 1, lua: SCRIPTS.kvTransact });
    return new RedisKvStore(r as Scripted, config.timeoutMs, config.prefix);
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new InvalidError('redis KV store is closed');
    try {
      return await withTimeout(fn(), this.timeoutMs + 500, `redis kv ${what}`, 'UNAVAILABLE');
    } catch (err) {
      throw redisError(err, `redis kv ${what}`);
    }
  }

  async get<T = unknown>(key: string): Promise<KvRecord<T> | undefined> {
    checkKey(key);
    const [v, ver, exp] = await this.call('get', () => this.r.hmget(this.rec + key, 'v', 'ver', 'exp'));
    if (v === null || ver === null) return undefined;
    return { key, value: JSON.parse(v) as T, version: Number(ver), ...(exp ? { expiresAt: Number(exp) } : {}) };
  }

  private async write(what: string, key: string, value: unknown, ttlMs: number | undefined, expected?: number): Promise<number> {
    checkKey(key);
    checkTtl(ttlMs);
    const json = toJson(value);
    return this.call(what, () =>
      this.r.kvWrite(this.rec + key, this.idx, key, json, ttlMs === undefined ? '' : String(Math.ceil(ttlMs)), what, expected === undefined ? '' : String(expected)),
    );
  }

  async put<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    return this.write('put', key, value, options?.ttlMs);
  }

  async create<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    const v = await this.write('create', key, value, options?.ttlMs);
    if (v === 0) throw new ConflictError(`key ${key} already exists`);
    return v;
  }

  async update<T = unknown>(key: string, value: T, expectedVersion: number, options?: WriteOptions): Promise<number> {
    const v = await this.write('update', key, value, options?.ttlMs, expectedVersion);
    if (v === -1) throw new NotFoundError(`key ${key} not found`);
    if (v === 0) throw new ConflictError(`key ${key} is not at version ${expectedVersion}`);
    return v;
  }

  async delete(key: string, options?: { expectedVersion?: number }): Promise<boolean> {
    checkKey(key);
    const expected = options?.expectedVersion;
    const res = await this.call('delete', () => this.r.kvDelete(this.rec + key, this.idx, key, expected === undefined ? '' : String(expected)));
    if (res === -2) throw new ConflictError(`key ${key} is not at version ${expected}`);
    return res === 1;
  }

  async list<T = unknown>(prefix: string, options?: ListOptions): Promise<ListPage<T>> {
    const limit = pageSize(options?.limit);
    const after = decodeCursor(options?.cursor, prefix);
    const end = prefixEnd(prefix);
    const flat = await this.call('list', () =>
      this.r.kvList(this.idx, after !== undefined ? `(${after}` : prefix === '' ? '-' : `[${prefix}`, end !== undefined ? `(${end}` : '+', limit + 1, this.rec),
    );
    const all: KvRecord<T>[] = [];
    for (let i = 0; i < flat.length; i += 4) {
      all.push({ key: flat[i], value: JSON.parse(flat[i + 1]) as T, version: Number(flat[i + 2]), ...(flat[i + 3] ? { expiresAt: Number(flat[i + 3]) } : {}) });
    }
    const items = all.slice(0, limit);
    return all.length > limit ? { items, cursor: encodeCursor(items[items.length - 1].key) } : { items };
  }

  async transact(ops: KvOp[]): Promise<void> {
    checkOps(ops, this.maxTransactionOps);
    const encoded = JSON.stringify(
      ops.map((op) =>
        op.type === 'delete'
          ? { t: 'delete', k: op.key, ...(op.expectedVersion !== undefined ? { ev: op.expectedVersion } : {}) }
          : {
              t: op.type, k: op.key, v: toJson(op.value),
              ...(op.ttlMs !== undefined ? { ttl: Math.ceil(op.ttlMs) } : {}),
              ...(op.type === 'update' ? { ev: op.expectedVersion } : {}),
            },
      ),
    );
    const [ok, failedKey] = await this.call('transact', () => this.r.kvTransact(this.idx, encoded, this.rec));
    if (ok !== 1) throw new ConflictError(`transaction: condition on key ${failedKey} does not hold`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.r.quit().catch(() => this.r.disconnect());
  }
}
