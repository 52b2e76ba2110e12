/**
 * The key-value port. The manager keeps all of its state behind this interface; each backend
 * (memory, sqlite, postgres, redis, dynamodb, firestore) implements it in its own file and is
 * checked by the one conformance suite in `test/adapters/kv-conformance.ts`.
 *
 * Values are JSON. Every record carries a `version` (1 on create, +1 on every write) so that two
 * writers never lose an update: read, modify, then `update(key, value, version)`.
 * Errors: NotFoundError, ConflictError, UnavailableError, InvalidError from `adapters/errors.ts`;
 * driver errors never leave an adapter.
 */
export interface KvRecord<T = unknown> {
  key: string;
  value: T;
  version: number;
  /** Epoch milliseconds after which the record no longer exists, if it has a TTL. */
  expiresAt?: number;
}

export interface WriteOptions {
  /** Time to live in milliseconds; the record disappears for readers once it passes. */
  ttlMs?: number;
}

export interface ListOptions {
  /** Page size; backends cap it (default 100, max 1000). */
  limit?: number;
  /** Opaque cursor from the previous page; pages come in ascending key order. */
  cursor?: string;
}

export interface ListPage<T = unknown> {
  items: KvRecord<T>[];
  /** Present when more records may follow. */
  cursor?: string;
}

export type KvOp =
  | { type: 'put'; key: string; value: unknown; ttlMs?: number }
  | { type: 'create'; key: string; value: unknown; ttlMs?: number }
  | { type: 'update'; key: string; value: unknown; expectedVersion: number; ttlMs?: number }
  | { type: 'delete'; key: string; expectedVersion?: number };

export interface KvStore {
  readonly kind: string;
  /** Returns the record, or undefined when absent or expired. Throws UnavailableError. */
  get<T = unknown>(key: string): Promise<KvRecord<T> | undefined>;
  /** Writes unconditionally; returns the new version. Throws UnavailableError. */
  put<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number>;
  /** Creates the record if absent (returns version 1); ConflictError if it exists. */
  create<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number>;
  /**
   * Compare-and-set: writes only if the stored version equals `expectedVersion`; returns the new
   * version. ConflictError on a version mismatch, NotFoundError when absent.
   */
  update<T = unknown>(key: string, value: T, expectedVersion: number, options?: WriteOptions): Promise<number>;
  /** Deletes; with `expectedVersion` only if it matches (ConflictError otherwise). Returns whether it existed. */
  delete(key: string, options?: { expectedVersion?: number }): Promise<boolean>;
  /** Lists records whose key starts with `prefix`, ascending by key, a page at a time. */
  list<T = unknown>(prefix: string, options?: ListOptions): Promise<ListPage<T>>;
  /**
   * Applies every op or none (ConflictError if any condition fails). Atomic on every backend; the
   * per-backend limit on ops is `maxTransactionOps` (InvalidError above it, or when a key appears
   * twice): memory/sqlite/postgres/redis 1000, dynamodb 100, firestore 500.
   */
  transact(ops: KvOp[]): Promise<void>;
  readonly maxTransactionOps: number;
  /** Releases connections. */
  close(): Promise<void>;
}
