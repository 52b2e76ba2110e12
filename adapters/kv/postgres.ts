/**
 * PostgreSQL KV store (pg). Records live in `<schema>.kv` (jsonb values, keys in "C" collation so
 * range scans follow byte order); the queue tables of adapters/queue/postgres.ts live in the same
 * schema. Migrations run once per schema under an advisory lock. Time is the server's clock.
 *
 * transact: atomic (one READ COMMITTED transaction whose every op is a conditional statement; a
 * lost condition, deadlock or serialization failure rolls back → ConflictError); limit 1000 ops.
 * CAS: `UPDATE … WHERE version = $expected` — concurrent writers re-check the row after the
 * winner commits, so exactly one wins. TTL: `expires_at` filtered on every read, pruned by `prune()`.
 * Timeouts: connect, statement and client-side query timeouts all equal `timeoutMs` → UnavailableError.
 */
import pg from 'pg';
import { ConflictError, InvalidError, NotFoundError, UnavailableError, isDamselflyError } from '../errors.js';
import type { PostgresKvConfig } from '../store-config.js';
import { checkKey, checkOps, checkTtl, decodeCursor, encodeCursor, isNetworkError, pageSize, prefixEnd, toJson } from './common.js';
import { withTimeout } from '../clock.js';
import type { KvOp, KvRecord, KvStore, ListOptions, ListPage, WriteOptions } from './port.js';

/** Schema history, applied in order once per schema. `S` is replaced by the quoted schema name. */
const MIGRATIONS: string[] = [
  `CREATE OR REPLACE FUNCTION S.now_ms() RETURNS bigint LANGUAGE sql VOLATILE AS
     $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
   CREATE TABLE S.kv (key text COLLATE "C" PRIMARY KEY, value jsonb NOT NULL, version bigint NOT NULL, expires_at bigint);
   CREATE INDEX kv_expires ON S.kv (expires_at) WHERE expires_at IS NOT NULL;
   CREATE TABLE S.queue_messages (id uuid PRIMARY KEY, queue text NOT NULL, body jsonb NOT NULL, sent_at bigint NOT NULL,
     visible_at bigint NOT NULL, receive_count integer NOT NULL DEFAULT 0, receipt text, seq bigserial);
   CREATE INDEX queue_messages_due ON S.queue_messages (queue, visible_at, seq);
   CREATE TABLE S.queue_dedup (queue text NOT NULL, dedup_id text NOT NULL, id uuid NOT NULL, until bigint NOT NULL,
     PRIMARY KEY (queue, dedup_id));`,
];

/** Translates a pg / socket error into ours; driver errors never leave the adapter. */
export function pgError(err: unknown, what: string): Error {
  if (isDamselflyError(err)) return err;
  const code = (err as { code?: unknown }).code;
  const message = (err as Error)?.message ?? String(err);
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    if (code === '40001' || code === '40P01' || code === '23505') return new ConflictError(`${what}: ${message}`, { details: { driverCode: code } });
    if (code.startsWith('22') || code === '54000') return new InvalidError(`${what}: ${message}`, { details: { driverCode: code } });
    // 08 connection, 53 resources, 57 operator intervention (shutdown, statement timeout), 58 system errors.
    return new UnavailableError(`${what}: ${message}`, { details: { driverCode: code } });
  }
  if (isNetworkError(err) || /timeout|terminated|Connection|ended/i.test(message)) return new UnavailableError(`${what}: ${message}`);
  return new UnavailableError(`${what}: ${message}`);
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Opens a pool on `url` with every wait bounded by `timeoutMs`; the URL (with any password) is never logged. */
export function openPool(url: string, timeoutMs: number, max: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    statement_timeout: timeoutMs,
    idle_in_transaction_session_timeout: timeoutMs * 2,
    keepAlive: true,
  });
  // An idle client whose server went away emits here; the pool drops it and connects anew later.
  pool.on('error', () => {});
  return pool;
}

/**
 * Runs `body` between BEGIN and COMMIT on `client` and releases it; rolls back and rethrows when
 * anything throws. `exec` sends BEGIN and COMMIT (so callers keep their timeouts and error
 * translation). After a failure the client is destroyed unless `sound(err)` says the connection is
 * fine (a lost condition, say), since a timed-out or broken client must not return to the pool.
 */
export async function inTransaction<T>(client: pg.PoolClient, exec: (sql: string) => Promise<unknown>, body: () => Promise<T>, sound: (err: unknown) => boolean = () => false): Promise<T> {
  let failure: unknown;
  try {
    await exec('BEGIN');
    const result = await body();
    await exec('COMMIT');
    return result;
  } catch (err) {
    failure = err;
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release(failure === undefined || sound(failure) ? undefined : failure instanceof Error ? failure : new Error(String(failure)));
  }
}

/** Creates the schema and applies pending migrations, serialised across processes by an advisory lock. */
export async function migrate(pool: pg.Pool, schema: string, timeoutMs: number): Promise<void> {
  const s = quoteIdent(schema);
  await withTimeout(
    (async () => {
      const client = await pool.connect();
      await inTransaction(client, (sql) => client.query(sql), async () => {
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`damselfly-migrate:${schema}`]);
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
        await client.query(`CREATE TABLE IF NOT EXISTS ${s}.damselfly_migrations (id integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
        const done = new Set((await client.query(`SELECT id FROM ${s}.damselfly_migrations`)).rows.map((r: { id: number }) => r.id));
        for (const [id, sql] of MIGRATIONS.entries()) {
          if (done.has(id)) continue;
          await client.query(sql.replace(/\bS\./g, `${s}.`));
          await client.query(`INSERT INTO ${s}.damselfly_migrations (id) VALUES ($1)`, [id]);
        }
      });
    })().catch((err) => {
      throw pgError(err, `postgres migrate schema ${schema}`);
    }),
    timeoutMs * 3,
    `postgres migrate schema ${schema}`, 'UNAVAILABLE',
  );
}

interface Row {
  key: string;
  value: unknown;
  version: string;
  expires_at: string | null;
}

function toRecord<T>(r: Row): KvRecord<T> {
  return { key: r.key, value: r.value as T, version: Number(r.version), ...(r.expires_at !== null ? { expiresAt: Number(r.expires_at) } : {}) };
}

type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;

export class PostgresKvStore implements KvStore {
  readonly kind = 'postgres';
  readonly maxTransactionOps = 1_000;
  private readonly sql;
  private closed = false;

  private constructor(private readonly pool: pg.Pool, private readonly timeoutMs: number, schema: string) {
    const s = quoteIdent(schema);
    const live = `(expires_at IS NULL OR expires_at > ${s}.now_ms())`;
    const exp = `CASE WHEN $3::bigint IS NULL THEN NULL ELSE ${s}.now_ms() + $3::bigint END`;
    this.sql = {
      get: `SELECT key, value, version, expires_at FROM ${s}.kv WHERE key = $1 AND ${live}`,
      put: `INSERT INTO ${s}.kv AS kv (key, value, version, expires_at) VALUES ($1, $2::jsonb, 1, ${exp})
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at,
              version = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= ${s}.now_ms() THEN 1 ELSE kv.version + 1 END
            RETURNING version`,
      create: `INSERT INTO ${s}.kv AS kv (key, value, version, expires_at) VALUES ($1, $2::jsonb, 1, ${exp})
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, version = 1
               WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ${s}.now_ms()
               RETURNING version`,
      update: `UPDATE ${s}.kv SET value = $2::jsonb, version = version + 1, expires_at = ${exp}
               WHERE key = $1 AND version = $4 AND ${live} RETURNING version`,
      del: `DELETE FROM ${s}.kv WHERE key = $1 AND ${live} AND ($2::bigint IS NULL OR version = $2::bigint) RETURNING version`,
      pruneOne: `DELETE FROM ${s}.kv WHERE key = $1 AND expires_at IS NOT NULL AND expires_at <= ${s}.now_ms()`,
      list: `SELECT key, value, version, expires_at FROM ${s}.kv
             WHERE key >= $1 AND ($2::text IS NULL OR key < $2::text) AND ($3::text IS NULL OR key > $3::text) AND ${live}
             ORDER BY key LIMIT $4`,
      prune: `DELETE FROM ${s}.kv WHERE expires_at IS NOT NULL AND expires_at <= ${s}.now_ms()`,
    };
  }

  /** Connects, creates the schema if needed; UnavailableError when the server does not answer in time. */
  static async open(config: Pick<PostgresKvConfig, 'url' | 'schema' | 'poolSize' | 'timeoutMs'>): Promise<PostgresKvStore> {
    const pool = openPool(config.url, config.timeoutMs, config.poolSize);
    try {
      await migrate(pool, config.schema, config.timeoutMs);
    } catch (err) {
      await pool.end().catch(() => {});
      throw err;
    }
    return new PostgresKvStore(pool, config.timeoutMs, config.schema);
  }

  private async q<R>(what: string, text: string, params: unknown[], on: Queryable = this.pool): Promise<R[]> {
    if (this.closed) throw new InvalidError('postgres KV store is closed');
    try {
      const res = await withTimeout(on.query(text, params), this.timeoutMs + 500, `postgres kv ${what}`, 'UNAVAILABLE');
      return res.rows as R[];
    } catch (err) {
      throw pgError(err, `postgres kv ${what}`);
    }
  }

  async get<T = unknown>(key: string): Promise<KvRecord<T> | undefined> {
    checkKey(key);
    const [row] = await this.q<Row>('get', this.sql.get, [key]);
    return row ? toRecord<T>(row) : undefined;
  }

  async put<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    const [row] = await this.q<{ version: string }>('put', this.sql.put, [key, toJson(value), options?.ttlMs ?? null]);
    return Number(row.version);
  }

  async create<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    const rows = await this.q('create', this.sql.create, [key, toJson(value), options?.ttlMs ?? null]);
    if (rows.length === 0) throw new ConflictError(`key ${key} already exists`);
    return 1;
  }

  async update<T = unknown>(key: string, value: T, expectedVersion: number, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    const [row] = await this.q<{ version: string }>('update', this.sql.update, [key, toJson(value), options?.ttlMs ?? null, expectedVersion]);
    if (row) return Number(row.version);
    const [cur] = await this.q<Row>('update', this.sql.get, [key]);
    if (!cur) throw new NotFoundError(`key ${key} not found`);
    throw new ConflictError(`key ${key} is at version ${cur.version}, not ${expectedVersion}`);
  }

  async delete(key: string, options?: { expectedVersion?: number }): Promise<boolean> {
    checkKey(key);
    const expected = options?.expectedVersion ?? null;
    const rows = await this.q('delete', this.sql.del, [key, expected]);
    if (rows.length > 0) return true;
    await this.q('delete', this.sql.pruneOne, [key]);
    if (expected !== null) throw new ConflictError(`key ${key} is not at version ${expected}`);
    return false;
  }

  async list<T = unknown>(prefix: string, options?: ListOptions): Promise<ListPage<T>> {
    const limit = pageSize(options?.limit);
    const after = decodeCursor(options?.cursor, prefix) ?? null;
    const rows = await this.q<Row>('list', this.sql.list, [prefix, prefixEnd(prefix) ?? null, after, limit + 1]);
    const items = rows.slice(0, limit).map((r) => toRecord<T>(r));
    return rows.length > limit ? { items, cursor: encodeCursor(items[items.length - 1].key) } : { items };
  }

  async transact(ops: KvOp[]): Promise<void> {
    checkOps(ops, this.maxTransactionOps);
    if (this.closed) throw new InvalidError('postgres KV store is closed');
    // Rows are locked in key order so that two transactions over the same keys cannot deadlock.
    const sorted = [...ops].sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    let client: pg.PoolClient;
    try {
      client = await withTimeout(this.pool.connect(), this.timeoutMs + 500, 'postgres kv transact', 'UNAVAILABLE');
    } catch (err) {
      throw pgError(err, 'postgres kv transact');
    }
    const exec = (sql: string) => this.q('transact', sql, [], client);
    // A lost condition leaves the connection sound; any other failure may not have.
    await inTransaction(client, exec, async () => {
      for (const op of sorted) {
        if (op.type === 'put') await this.q('transact', this.sql.put, [op.key, toJson(op.value), op.ttlMs ?? null], client);
        else if (op.type === 'create') {
          if ((await this.q('transact', this.sql.create, [op.key, toJson(op.value), op.ttlMs ?? null], client)).length === 0) {
            throw new ConflictError(`transaction: key ${op.key} already exists`);
          }
        } else if (op.type === 'update') {
          if ((await this.q('transact', this.sql.update, [op.key, toJson(op.value), op.ttlMs ?? null, op.expectedVersion], client)).length === 0) {
            throw new ConflictError(`transaction: key ${op.key} is not at version ${op.expectedVersion}`);
          }
        } else {
          const rows = await this.q('transact', this.sql.del, [op.key, op.expectedVersion ?? null], client);
          if (rows.length === 0 && op.expectedVersion !== undefined) throw new ConflictError(`transaction: key ${op.key} is not at version ${op.expectedVersion}`);
        }
      }
    }, (err) => err instanceof ConflictError);
  }

  /** Deletes expired rows; returns how many. */
  async prune(): Promise<number> {
    const rows = await this.q('prune', `${this.sql.prune} RETURNING 1`, []);
    return rows.length;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end().catch(() => {});
  }
}
