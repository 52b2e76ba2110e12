/**
 * SQLite KV store (better-sqlite3). The KV table and the queue tables (adapters/queue/sqlite.ts)
 * live in one database file, created by the migrations below. WAL mode plus `busy_timeout` make it
 * safe for several processes on one machine: writers serialise on the file lock, readers never block.
 *
 * transact: atomic (one IMMEDIATE transaction); limit 1000 ops. Single ops are single statements.
 * TTL: `expires_at` is checked on every read; expired rows are overwritten in place or pruned
 * by `delete`/`prune`. A lock held longer than `timeoutMs` by another process → UnavailableError.
 */
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { ConflictError, InvalidError, NotFoundError, UnavailableError, isDamselflyError } from '../errors.js';
import type { SqliteKvConfig } from '../store-config.js';
import { checkKey, checkOps, checkTtl, decodeCursor, encodeCursor, pageSize, prefixEnd, toJson } from './common.js';
import type { KvOp, KvRecord, KvStore, ListOptions, ListPage, WriteOptions } from './port.js';

type Db = Database.Database;

/** Schema history; each entry runs once per database file, in order, inside a transaction. */
const MIGRATIONS: string[] = [
  `CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL, expires_at INTEGER) WITHOUT ROWID;
   CREATE TABLE queue_messages (id TEXT PRIMARY KEY, queue TEXT NOT NULL, body TEXT NOT NULL, sent_at INTEGER NOT NULL,
     visible_at INTEGER NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT, seq INTEGER NOT NULL);
   CREATE INDEX queue_messages_due ON queue_messages (queue, visible_at, seq);
   CREATE TABLE queue_dedup (queue TEXT NOT NULL, dedup_id TEXT NOT NULL, id TEXT NOT NULL, until INTEGER NOT NULL,
     PRIMARY KEY (queue, dedup_id)) WITHOUT ROWID;`,
];

/** Translates a better-sqlite3 error: lock contention past the timeout is Unavailable, the rest Unavailable too unless ours. */
export function sqliteError(err: unknown, what: string): Error {
  if (isDamselflyError(err)) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new UnavailableError(`${what}: database is locked by another writer`, { details: { driverCode: code } });
  }
  if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') return new ConflictError(`${what}: already exists`);
  return new UnavailableError(`${what}: ${(err as Error).message}`, { details: { driverCode: code } });
}

/**
 * The store holds the JWT signing key, password hashes and queued jobs: a directory we create is
 * 0700, the database 0600 before SQLite first opens it (SQLite gives its -wal and -shm files the
 * database's mode), and files left 0644 by an older version are narrowed.
 */
function restrictFiles(file: string): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
  if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) {
    if (existsSync(f)) chmodSync(f, 0o600);
  }
}

/**
 * Opens (creating if needed) the database file with WAL and runs pending migrations. Throws
 * UnavailableError when the file cannot be opened or stays locked past `timeoutMs`.
 */
export function openSqlite(file: string, timeoutMs: number): Db {
  try {
    if (file !== ':memory:') restrictFiles(file);
    const db = new Database(file, { timeout: timeoutMs });
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    // Deleted rows (acked job messages, revoked tokens) are zeroed, not left in free pages.
    db.pragma('secure_delete = ON');
    db.pragma(`busy_timeout = ${Math.floor(timeoutMs)}`);
    db.exec('CREATE TABLE IF NOT EXISTS damselfly_migrations (id INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    const applied = db.prepare('SELECT 1 FROM damselfly_migrations WHERE id = ?');
    const mark = db.prepare('INSERT INTO damselfly_migrations (id, applied_at) VALUES (?, ?)');
    MIGRATIONS.forEach((sql, id) => {
      db.transaction(() => {
        // Checked inside the IMMEDIATE transaction: two processes opening at once apply it once.
        if (applied.get(id)) return;
        db.exec(sql);
        mark.run(id, Date.now());
      }).immediate();
    });
    return db;
  } catch (err) {
    throw sqliteError(err, `sqlite ${file}`);
  }
}

interface Row {
  key: string;
  value: string;
  version: number;
  expires_at: number | null;
}

function toRecord<T>(r: Row): KvRecord<T> {
  return { key: r.key, value: JSON.parse(r.value) as T, version: r.version, ...(r.expires_at !== null ? { expiresAt: r.expires_at } : {}) };
}

const LIVE = '(expires_at IS NULL OR expires_at > @now)';

export class SqliteKvStore implements KvStore {
  readonly kind = 'sqlite';
  readonly maxTransactionOps = 1_000;
  private readonly stmts;

  private constructor(private readonly db: Db, private readonly file: string) {
    const p = (sql: string) => db.prepare(sql);
    this.stmts = {
      get: p(`SELECT key, value, version, expires_at FROM kv WHERE key = @key AND ${LIVE}`),
      put: p(`INSERT INTO kv (key, value, version, expires_at) VALUES (@key, @value, 1, @exp)
              ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at,
                version = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= @now THEN 1 ELSE kv.version + 1 END
              RETURNING version`),
      create: p(`INSERT INTO kv (key, value, version, expires_at) VALUES (@key, @value, 1, @exp)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, version = 1
                 WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= @now
                 RETURNING version`),
      update: p(`UPDATE kv SET value = @value, version = version + 1, expires_at = @exp
                 WHERE key = @key AND version = @expected AND ${LIVE} RETURNING version`),
      del: p(`DELETE FROM kv WHERE key = @key AND ${LIVE} AND (@expected IS NULL OR version = @expected) RETURNING version`),
      pruneOne: p('DELETE FROM kv WHERE key = @key AND expires_at IS NOT NULL AND expires_at <= @now'),
      listFrom: p(`SELECT key, value, version, expires_at FROM kv
                   WHERE key >= @from AND (@to IS NULL OR key < @to) AND (@after IS NULL OR key > @after) AND ${LIVE}
                   ORDER BY key LIMIT @limit`),
      prune: p('DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= @now'),
    };
  }

  /** Opens the store; see openSqlite for what it throws. */
  static open(config: Pick<SqliteKvConfig, 'path' | 'timeoutMs'>): SqliteKvStore {
    return new SqliteKvStore(openSqlite(config.path, config.timeoutMs), config.path);
  }

  private run<T>(what: string, fn: () => T): T {
    if (!this.db.open) throw new InvalidError('sqlite KV store is closed');
    try {
      return fn();
    } catch (err) {
      throw sqliteError(err, `sqlite kv ${what}`);
    }
  }

  async get<T = unknown>(key: string): Promise<KvRecord<T> | undefined> {
    checkKey(key);
    const row = this.run('get', () => this.stmts.get.get({ key, now: Date.now() }) as Row | undefined);
    return row ? toRecord<T>(row) : undefined;
  }

  async put<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    const json = toJson(value);
    return this.run('put', () => this.putSync(key, json, options?.ttlMs, Date.now()));
  }

  private putSync(key: string, value: string, ttlMs: number | undefined, now: number): number {
    return (this.stmts.put.get({ key, value, exp: ttlMs !== undefined ? now + ttlMs : null, now }) as { version: number }).version;
  }

  async create<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    const json = toJson(value);
    return this.run('create', () => {
      const now = Date.now();
      const row = this.stmts.create.get({ key, value: json, exp: options?.ttlMs !== undefined ? now + options.ttlMs : null, now });
      if (!row) throw new ConflictError(`key ${key} already exists`);
      return 1;
    });
  }

  async update<T = unknown>(key: string, value: T, expectedVersion: number, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    const json = toJson(value);
    return this.run('update', () => {
      const now = Date.now();
      const row = this.stmts.update.get({ key, value: json, expected: expectedVersion, exp: options?.ttlMs !== undefined ? now + options.ttlMs : null, now }) as
        | { version: number }
        | undefined;
      if (row) return row.version;
      const cur = this.stmts.get.get({ key, now }) as Row | undefined;
      if (!cur) throw new NotFoundError(`key ${key} not found`);
      throw new ConflictError(`key ${key} is at version ${cur.version}, not ${expectedVersion}`);
    });
  }

  async delete(key: string, options?: { expectedVersion?: number }): Promise<boolean> {
    checkKey(key);
    return this.run('delete', () => {
      const now = Date.now();
      const expected = options?.expectedVersion ?? null;
      const row = this.stmts.del.get({ key, now, expected });
      if (row) return true;
      this.stmts.pruneOne.run({ key, now });
      if (expected !== null) throw new ConflictError(`key ${key} is not at version ${expected}`);
      return false;
    });
  }

  async list<T = unknown>(prefix: string, options?: ListOptions): Promise<ListPage<T>> {
    const limit = pageSize(options?.limit);
    const after = decodeCursor(options?.cursor, prefix) ?? null;
    const rows = this.run(
      'list',
      () => this.stmts.listFrom.all({ from: prefix, to: prefixEnd(prefix) ?? null, after, now: Date.now(), limit: limit + 1 }) as Row[],
    );
    const items = rows.slice(0, limit).map((r) => toRecord<T>(r));
    return rows.length > limit ? { items, cursor: encodeCursor(items[items.length - 1].key) } : { items };
  }

  async transact(ops: KvOp[]): Promise<void> {
    checkOps(ops, this.maxTransactionOps);
    this.run('transact', () =>
      this.db
        .transaction(() => {
          const now = Date.now();
          for (const op of ops) {
            const exp = op.type !== 'delete' && op.ttlMs !== undefined ? now + op.ttlMs : null;
            if (op.type === 'put') this.putSync(op.key, toJson(op.value), op.ttlMs, now);
            else if (op.type === 'create') {
              if (!this.stmts.create.get({ key: op.key, value: toJson(op.value), exp, now })) throw new ConflictError(`transaction: key ${op.key} already exists`);
            } else if (op.type === 'update') {
              if (!this.stmts.update.get({ key: op.key, value: toJson(op.value), expected: op.expectedVersion, exp, now })) {
                throw new ConflictError(`transaction: key ${op.key} is not at version ${op.expectedVersion}`);
              }
            } else {
              const row = this.stmts.del.get({ key: op.key, now, expected: op.expectedVersion ?? null });
              if (!row && op.expectedVersion !== undefined) throw new ConflictError(`transaction: key ${op.key} is not at version ${op.expectedVersion}`);
            }
          }
        })
        .immediate(),
    );
  }

  /** Deletes expired rows; returns how many. */
  async prune(): Promise<number> {
    return this.run('prune', () => this.stmts.prune.run({ now: Date.now() }).changes);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  toString(): string {
    return `SqliteKvStore(${this.file})`;
  }
}
