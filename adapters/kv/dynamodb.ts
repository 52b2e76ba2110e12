/**
 * DynamoDB KV store (@aws-sdk/client-dynamodb). One table, created on open if absent (on-demand
 * billing): partition key `p` = "kv" for every record and sort key `k` = the record's key, so a
 * Query with begins_with lists a prefix in byte order and pages by ExclusiveStartKey. (One
 * partition value: fine for control-plane state; DynamoDB splits hot sort-key ranges itself.)
 * Attributes: v (JSON text), ver, expMs (ms), ttl (s, the table's TTL attribute).
 *
 * Conditional writes are condition expressions on `ver`. TTL: DynamoDB deletes expired items
 * lazily (within days), so every read filters `expMs` (client clock) and writes treat an expired
 * item as absent. transact: atomic (TransactWriteItems, limit 100 ops); a `put` op inside a
 * transaction continues the version of an expired item instead of restarting at 1.
 */
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
  type AttributeValue,
  type TransactWriteItem,
} from '@aws-sdk/client-dynamodb';
import { ConflictError, InvalidError, NotFoundError, UnavailableError } from '../errors.js';
import type { DynamoKvConfig } from '../store-config.js';
import { awsClientConfig, awsError } from './aws.js';
import { checkKey, checkOps, checkTtl, decodeCursor, encodeCursor, pageSize, toJson } from './common.js';
import { withTimeout } from '../clock.js';
import type { KvOp, KvRecord, KvStore, ListOptions, ListPage, WriteOptions } from './port.js';

const PARTITION = 'kv';
const LIVE = '(attribute_not_exists(expMs) OR expMs > :now)';
type Item = Record<string, AttributeValue>;

function n(x: number): AttributeValue {
  return { N: String(x) };
}

function toRecord<T>(item: Item): KvRecord<T> {
  return {
    key: item.k.S!,
    value: JSON.parse(item.v.S!) as T,
    version: Number(item.ver.N),
    ...(item.expMs ? { expiresAt: Number(item.expMs.N) } : {}),
  };
}

function isLive(item: Item | undefined, now: number): item is Item {
  return item !== undefined && item.k !== undefined && (item.expMs === undefined || Number(item.expMs.N) > now);
}

function conditionFailed(err: unknown): err is ConditionalCheckFailedException {
  return (err as { name?: string })?.name === 'ConditionalCheckFailedException';
}

export class DynamoKvStore implements KvStore {
  readonly kind = 'dynamodb';
  readonly maxTransactionOps = 100;
  private closed = false;

  private constructor(private readonly ddb: DynamoDBClient, private readonly table: string, private readonly timeoutMs: number) {}

  /** Creates the table (and enables TTL) if needed; UnavailableError when DynamoDB does not answer in time. */
  static async open(config: Pick<DynamoKvConfig, 'table' | 'region' | 'endpoint' | 'timeoutMs'>): Promise<DynamoKvStore> {
    const ddb = new DynamoDBClient(awsClientConfig(config.region, config.endpoint, 'AWS_ENDPOINT_URL_DYNAMODB', config.timeoutMs));
    const store = new DynamoKvStore(ddb, config.table, config.timeoutMs);
    try {
      await store.ensureTable();
    } catch (err) {
      ddb.destroy();
      throw err;
    }
    return store;
  }

  private async send<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.closed) throw new InvalidError('dynamodb KV store is closed');
    const ctl = new AbortController();
    try {
      return await withTimeout(fn(ctl.signal), this.timeoutMs + 500, `dynamodb ${what}`, 'UNAVAILABLE');
    } catch (err) {
      ctl.abort();
      throw err;
    }
  }

  private async ensureTable(): Promise<void> {
    const what = `dynamodb table ${this.table}`;
    const describe = () => this.send('describe', (abortSignal) => this.ddb.send(new DescribeTableCommand({ TableName: this.table }), { abortSignal }));
    let status: string | undefined;
    try {
      status = (await describe()).Table?.TableStatus;
    } catch (err) {
      if ((err as { name?: string }).name !== 'ResourceNotFoundException') throw awsError(err, what);
      try {
        await this.send('create', (abortSignal) =>
          this.ddb.send(
            new CreateTableCommand({
              TableName: this.table,
              BillingMode: 'PAY_PER_REQUEST',
              AttributeDefinitions: [{ AttributeName: 'p', AttributeType: 'S' }, { AttributeName: 'k', AttributeType: 'S' }],
              KeySchema: [{ AttributeName: 'p', KeyType: 'HASH' }, { AttributeName: 'k', KeyType: 'RANGE' }],
            }),
            { abortSignal },
          ),
        );
      } catch (e) {
        // Another process created it first: fine.
        if ((e as { name?: string }).name !== 'ResourceInUseException') throw awsError(e, what);
      }
    }
    const deadline = Date.now() + Math.max(this.timeoutMs * 6, 30_000);
    while (status !== 'ACTIVE') {
      if (Date.now() > deadline) throw new UnavailableError(`${what} did not become ACTIVE`);
      await new Promise((r) => setTimeout(r, status === undefined ? 0 : 500));
      status = (await describe().catch((err) => { throw awsError(err, what); })).Table?.TableStatus;
    }
    try {
      await this.send('ttl', (abortSignal) =>
        this.ddb.send(new UpdateTimeToLiveCommand({ TableName: this.table, TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true } }), { abortSignal }),
      );
    } catch (err) {
      // "TimeToLive is already enabled" is a ValidationException; reads filter expiry anyway.
      if ((err as { name?: string }).name !== 'ValidationException') throw awsError(err, what);
    }
  }

  private key(k: string): Item {
    return { p: { S: PARTITION }, k: { S: k } };
  }

  /** SET/REMOVE clauses and values for the expiry attributes. */
  private expiry(ttlMs: number | undefined, now: number): { set: string; remove: string; values: Item } {
    if (ttlMs === undefined) return { set: '', remove: ' REMOVE expMs, #ttl', values: {} };
    const exp = now + Math.ceil(ttlMs);
    return { set: ', expMs = :exp, #ttl = :ttl', remove: '', values: { ':exp': n(exp), ':ttl': n(Math.ceil(exp / 1000)) } };
  }

  async get<T = unknown>(key: string): Promise<KvRecord<T> | undefined> {
    checkKey(key);
    try {
      const res = await this.send('get', (abortSignal) => this.ddb.send(new GetItemCommand({ TableName: this.table, Key: this.key(key), ConsistentRead: true }), { abortSignal }));
      return isLive(res.Item, Date.now()) ? toRecord<T>(res.Item) : undefined;
    } catch (err) {
      throw awsError(err, 'dynamodb get');
    }
  }

  private fresh(key: string, json: string, ttlMs: number | undefined, now: number): Item {
    const item: Item = { ...this.key(key), v: { S: json }, ver: n(1) };
    if (ttlMs !== undefined) {
      const exp = now + Math.ceil(ttlMs);
      item.expMs = n(exp);
      item.ttl = n(Math.ceil(exp / 1000));
    }
    return item;
  }

  private async createItem(key: string, json: string, ttlMs: number | undefined): Promise<boolean> {
    const now = Date.now();
    try {
      await this.send('create', (abortSignal) =>
        this.ddb.send(
          new PutItemCommand({
            TableName: this.table,
            Item: this.fresh(key, json, ttlMs, now),
            ConditionExpression: 'attribute_not_exists(k) OR expMs <= :now',
            ExpressionAttributeValues: { ':now': n(now) },
          }),
          { abortSignal },
        ),
      );
      return true;
    } catch (err) {
      if (conditionFailed(err)) return false;
      throw awsError(err, 'dynamodb create');
    }
  }

  /** Updates a live item (optionally only at `expected`); returns the new version, or the failure's old item. */
  private async updateItem(key: string, json: string, ttlMs: number | undefined, expected?: number): Promise<{ version?: number; old?: Item }> {
    const now = Date.now();
    const e = this.expiry(ttlMs, now);
    try {
      const res = await this.send('update', (abortSignal) =>
        this.ddb.send(
          new UpdateItemCommand({
            TableName: this.table,
            Key: this.key(key),
            UpdateExpression: `SET v = :v, ver = ver + :one${e.set}${e.remove}`,
            ConditionExpression: `attribute_exists(k) AND ${LIVE}${expected !== undefined ? ' AND ver = :ev' : ''}`,
            ExpressionAttributeNames: { '#ttl': 'ttl' },
            ExpressionAttributeValues: { ':v': { S: json }, ':one': n(1), ':now': n(now), ...e.values, ...(expected !== undefined ? { ':ev': n(expected) } : {}) },
            ReturnValues: 'UPDATED_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
          { abortSignal },
        ),
      );
      return { version: Number(res.Attributes!.ver.N) };
    } catch (err) {
      if (conditionFailed(err)) return { old: (err as ConditionalCheckFailedException).Item };
      throw awsError(err, 'dynamodb update');
    }
  }

  async put<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    const json = toJson(value);
    // Update-if-live, else create-if-absent-or-expired; a racing writer makes one of them fail, so retry.
    for (let attempt = 0; attempt < 20; attempt++) {
      const u = await this.updateItem(key, json, options?.ttlMs);
      if (u.version !== undefined) return u.version;
      if (await this.createItem(key, json, options?.ttlMs)) return 1;
    }
    throw new UnavailableError(`dynamodb put ${key}: too much contention`);
  }

  async create<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    if (!(await this.createItem(key, toJson(value), options?.ttlMs))) throw new ConflictError(`key ${key} already exists`);
    return 1;
  }

  async update<T = unknown>(key: string, value: T, expectedVersion: number, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    const u = await this.updateItem(key, toJson(value), options?.ttlMs, expectedVersion);
    if (u.version !== undefined) return u.version;
    if (!isLive(u.old, Date.now())) throw new NotFoundError(`key ${key} not found`);
    throw new ConflictError(`key ${key} is at version ${u.old.ver.N}, not ${expectedVersion}`);
  }

  async delete(key: string, options?: { expectedVersion?: number }): Promise<boolean> {
    checkKey(key);
    const expected = options?.expectedVersion;
    const now = Date.now();
    try {
      await this.send('delete', (abortSignal) =>
        this.ddb.send(
          new DeleteItemCommand({
            TableName: this.table,
            Key: this.key(key),
            ConditionExpression: `attribute_exists(k) AND ${LIVE}${expected !== undefined ? ' AND ver = :ev' : ''}`,
            ExpressionAttributeValues: { ':now': n(now), ...(expected !== undefined ? { ':ev': n(expected) } : {}) },
          }),
          { abortSignal },
        ),
      );
      return true;
    } catch (err) {
      if (!conditionFailed(err)) throw awsError(err, 'dynamodb delete');
      if (expected !== undefined) throw new ConflictError(`key ${key} is not at version ${expected}`);
      return false;
    }
  }

  async list<T = unknown>(prefix: string, options?: ListOptions): Promise<ListPage<T>> {
    const limit = pageSize(options?.limit);
    const after = decodeCursor(options?.cursor, prefix);
    const items: KvRecord<T>[] = [];
    let start: Item | undefined = after !== undefined ? this.key(after) : undefined;
    const now = Date.now();
    try {
      // Collect limit + 1 live items (expired ones are filtered after Limit is applied, so loop).
      while (items.length <= limit) {
        const res = await this.send('list', (abortSignal) =>
          this.ddb.send(
            new QueryCommand({
              TableName: this.table,
              KeyConditionExpression: prefix === '' ? 'p = :p' : 'p = :p AND begins_with(k, :prefix)',
              FilterExpression: LIVE,
              ExpressionAttributeValues: { ':p': { S: PARTITION }, ':now': n(now), ...(prefix === '' ? {} : { ':prefix': { S: prefix } }) },
              ConsistentRead: true,
              Limit: limit + 1 - items.length,
              ...(start ? { ExclusiveStartKey: start } : {}),
            }),
            { abortSignal },
          ),
        );
        for (const it of res.Items ?? []) items.push(toRecord<T>(it));
        start = res.LastEvaluatedKey;
        if (!start) break;
      }
    } catch (err) {
      throw awsError(err, 'dynamodb list');
    }
    const page = items.slice(0, limit);
    return items.length > limit ? { items: page, cursor: encodeCursor(page[page.length - 1].key) } : { items: page };
  }

  async transact(ops: KvOp[]): Promise<void> {
    checkOps(ops, this.maxTransactionOps);
    if (ops.length === 0) return;
    const now = Date.now();
    const items: TransactWriteItem[] = ops.map((op): TransactWriteItem => {
      if (op.type === 'create') {
        return {
          Put: {
            TableName: this.table,
            Item: this.fresh(op.key, toJson(op.value), op.ttlMs, now),
            ConditionExpression: 'attribute_not_exists(k) OR expMs <= :now',
            ExpressionAttributeValues: { ':now': n(now) },
          },
        };
      }
      if (op.type === 'delete') {
        return {
          Delete: {
            TableName: this.table,
            Key: this.key(op.key),
            ...(op.expectedVersion !== undefined
              ? { ConditionExpression: `attribute_exists(k) AND ${LIVE} AND ver = :ev`, ExpressionAttributeValues: { ':now': n(now), ':ev': n(op.expectedVersion) } }
              : {}),
          },
        };
      }
      const e = this.expiry(op.ttlMs, now);
      return {
        Update: {
          TableName: this.table,
          Key: this.key(op.key),
          UpdateExpression: `SET v = :v, ver = if_not_exists(ver, :zero) + :one${e.set}${e.remove}`,
          ...(op.type === 'update' ? { ConditionExpression: `attribute_exists(k) AND ${LIVE} AND ver = :ev` } : {}),
          ExpressionAttributeNames: { '#ttl': 'ttl' },
          ExpressionAttributeValues: {
            ':v': { S: toJson(op.value) }, ':zero': n(0), ':one': n(1), ...e.values,
            ...(op.type === 'update' ? { ':now': n(now), ':ev': n(op.expectedVersion) } : {}),
          },
        },
      };
    });
    try {
      await this.send('transact', (abortSignal) => this.ddb.send(new TransactWriteItemsCommand({ TransactItems: items }), { abortSignal }));
    } catch (err) {
      const name = (err as { name?: string }).name;
      if (name === 'TransactionCanceledException' || name === 'TransactionConflictException') {
        const reasons = ((err as { CancellationReasons?: { Code?: string }[] }).CancellationReasons ?? []).map((r) => r.Code ?? 'None');
        const failed = reasons.findIndex((c) => c !== 'None');
        throw new ConflictError(`transaction cancelled${failed >= 0 ? `: ${reasons[failed]} on key ${ops[failed].key}` : ''}`, { details: { reasons } });
      }
      throw awsError(err, 'dynamodb transact');
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ddb.destroy();
  }
}
