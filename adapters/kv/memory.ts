/**
 * In-process KV store: a first-class backend for single-process use and the test double for code
 * built on the KV port. Nothing survives the process.
 *
 * transact: atomic (checks then applies synchronously, no await in between); limit 1000 ops.
 * TTL: enforced on read (expired records are invisible and purged when touched or listed).
 */
import { ConflictError, InvalidError, NotFoundError } from '../errors.js';
import { checkKey, checkOps, checkTtl, decodeCursor, encodeCursor, pageSize, toJson } from './common.js';
import type { KvOp, KvRecord, KvStore, ListOptions, ListPage, WriteOptions } from './port.js';

interface Entry {
  json: string;
  version: number;
  expiresAt?: number;
}

export class MemoryKvStore implements KvStore {
  readonly kind = 'memory';
  readonly maxTransactionOps = 1_000;
  private readonly map = new Map<string, Entry>();
  private closed = false;

  /** `now` is injectable so TTL logic can be tested with controlled time. */
  constructor(private readonly now: () => number = Date.now) {}

  private live(key: string): Entry | undefined {
    const e = this.map.get(key);
    if (e && e.expiresAt !== undefined && e.expiresAt <= this.now()) {
      this.map.delete(key);
      return undefined;
    }
    return e;
  }

  private open(): void {
    if (this.closed) throw new InvalidError('memory KV store is closed');
  }

  private record<T>(key: string, e: Entry): KvRecord<T> {
    return { key, value: JSON.parse(e.json) as T, version: e.version, ...(e.expiresAt !== undefined ? { expiresAt: e.expiresAt } : {}) };
  }

  private entry(json: string, version: number, ttlMs: number | undefined): Entry {
    return { json, version, ...(ttlMs !== undefined ? { expiresAt: this.now() + ttlMs } : {}) };
  }

  async get<T = unknown>(key: string): Promise<KvRecord<T> | undefined> {
    this.open();
    checkKey(key);
    const e = this.live(key);
    return e ? this.record<T>(key, e) : undefined;
  }

  async put<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    this.open();
    checkKey(key);
    checkTtl(options?.ttlMs);
    const json = toJson(value);
    const version = (this.live(key)?.version ?? 0) + 1;
    this.map.set(key, this.entry(json, version, options?.ttlMs));
    return version;
  }

  async create<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    this.open();
    checkKey(key);
    checkTtl(options?.ttlMs);
    const json = toJson(value);
    if (this.live(key)) throw new ConflictError(`key ${key} already exists`);
    this.map.set(key, this.entry(json, 1, options?.ttlMs));
    return 1;
  }

  async update<T = unknown>(key: string, value: T, expectedVersion: number, options?: WriteOptions): Promise<number> {
    this.open();
    checkKey(key);
    checkTtl(options?.ttlMs);
    const json = toJson(value);
    const e = this.live(key);
    if (!e) throw new NotFoundError(`key ${key} not found`);
    if (e.version !== expectedVersion) throw new ConflictError(`key ${key} is at version ${e.version}, not ${expectedVersion}`);
    this.map.set(key, this.entry(json, e.version + 1, options?.ttlMs));
    return e.version + 1;
  }

  async delete(key: string, options?: { expectedVersion?: number }): Promise<boolean> {
    this.open();
    checkKey(key);
    const e = this.live(key);
    if (!e) {
      if (options?.expectedVersion !== undefined) throw new ConflictError(`key ${key} is absent, not at version ${options.expectedVersion}`);
      return false;
    }
    if (options?.expectedVersion !== undefined && e.version !== options.expectedVersion) {
      throw new ConflictError(`key ${key} is at version ${e.version}, not ${options.expectedVersion}`);
    }
    this.map.delete(key);
    return true;
  }

  async list<T = unknown>(prefix: string, options?: ListOptions): Promise<ListPage<T>> {
    this.open();
    const limit = pageSize(options?.limit);
    const after = decodeCursor(options?.cursor, prefix);
    const keys = [...this.map.keys()].filter((k) => k.startsWith(prefix) && (after === undefined || compareKeys(k, after) > 0)).sort(compareKeys);
    const items: KvRecord<T>[] = [];
    for (const k of keys) {
      const e = this.live(k);
      if (!e) continue;
      if (items.length === limit) return { items, cursor: encodeCursor(items[items.length - 1].key) };
      items.push(this.record<T>(k, e));
    }
    return { items };
  }

  async transact(ops: KvOp[]): Promise<void> {
    this.open();
    checkOps(ops, this.maxTransactionOps);
    for (const op of ops) {
      const e = this.live(op.key);
      if (op.type === 'create' && e) throw new ConflictError(`transaction: key ${op.key} already exists`);
      if (op.type === 'update' && (!e || e.version !== op.expectedVersion)) throw new ConflictError(`transaction: key ${op.key} is not at version ${op.expectedVersion}`);
      if (op.type === 'delete' && op.expectedVersion !== undefined && (!e || e.version !== op.expectedVersion)) {
        throw new ConflictError(`transaction: key ${op.key} is not at version ${op.expectedVersion}`);
      }
    }
    for (const op of ops) {
      if (op.type === 'delete') this.map.delete(op.key);
      else this.map.set(op.key, this.entry(toJson(op.value), (this.live(op.key)?.version ?? 0) + 1, op.ttlMs));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Byte-wise (UTF-8) key order, which is what SQL `COLLATE "C"`, Redis ZRANGEBYLEX and DynamoDB use. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
