/**
 * The store configuration: a union discriminated on `kind` for a KV store or a queue. Each kind has
 * its own strict options; an unknown kind or a missing/unknown option is a ConfigError naming it.
 * The backends take their option types from here; adapters/stores.ts builds them.
 *
 * Endpoints: `endpoint` overrides, else AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_SQS (the AWS
 * SDK reads those itself), else AWS. Firestore: `emulatorHost`, else FIRESTORE_EMULATOR_HOST.
 */
import { z } from 'zod';
import { formatZodIssues } from './config.js';
import { ConfigError } from './errors.js';

const timeoutMs = z.number().int().positive().max(600_000).default(5_000);
const queueCommon = {
  /** Deliveries without an ack before a message is dead-lettered (K). */
  maxReceives: z.number().int().min(1).max(1_000).default(5),
  /** Default visibility timeout of receive(). */
  visibilityMs: z.number().int().min(0).max(43_200_000).default(30_000),
  timeoutMs,
};
const sqlName = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier');

const memory = z.strictObject({ kind: z.literal('memory') });
const sqlite = z.strictObject({ kind: z.literal('sqlite'), path: z.string().min(1), timeoutMs });
const postgres = z.strictObject({
  kind: z.literal('postgres'),
  url: z.string().min(1),
  schema: sqlName.default('damselfly'),
  poolSize: z.number().int().min(1).max(100).default(10),
  timeoutMs,
});
const redis = z.strictObject({ kind: z.literal('redis'), url: z.string().min(1), prefix: z.string().default('damselfly:'), timeoutMs });
const dynamodb = z.strictObject({
  kind: z.literal('dynamodb'),
  table: z.string().regex(/^[A-Za-z0-9_.-]{3,255}$/, 'must be 3-255 characters of A-Z a-z 0-9 _ . -'),
  region: z.string().min(1).default('us-east-1'),
  endpoint: z.string().url().optional(),
  timeoutMs,
});
const firestore = z.strictObject({
  kind: z.literal('firestore'),
  projectId: z.string().min(1),
  collectionPrefix: z.string().regex(/^[A-Za-z0-9_]*$/, 'must be A-Z a-z 0-9 _').default('damselfly_'),
  emulatorHost: z.string().optional(),
  timeoutMs,
});
const sqs = z.strictObject({
  kind: z.literal('sqs'),
  region: z.string().min(1).default('us-east-1'),
  endpoint: z.string().url().optional(),
  queuePrefix: z.string().regex(/^[A-Za-z0-9_-]*$/, 'must be A-Z a-z 0-9 _ -').default('damselfly-'),
  ...queueCommon,
});

const kvSchemas = { memory, sqlite, postgres, redis, dynamodb, firestore } as const;
const queueSchemas = {
  memory: memory.extend(queueCommon),
  sqlite: sqlite.extend(queueCommon),
  postgres: postgres.extend(queueCommon),
  redis: redis.extend(queueCommon),
  sqs,
  firestore: firestore.extend(queueCommon),
} as const;

/** KV backend configuration: `kind: memory | sqlite | postgres | redis | dynamodb | firestore`. */
export const kvConfigSchema = z.discriminatedUnion('kind', [memory, sqlite, postgres, redis, dynamodb, firestore]);
/** Queue backend configuration: `kind: memory | sqlite | postgres | redis | sqs | firestore`. */
export const queueConfigSchema = z.discriminatedUnion('kind', [
  queueSchemas.memory, queueSchemas.sqlite, queueSchemas.postgres, queueSchemas.redis, queueSchemas.sqs, queueSchemas.firestore,
]);
export type KvConfig = z.output<typeof kvConfigSchema>;
export type KvConfigInput = z.input<typeof kvConfigSchema>;
export type QueueConfig = z.output<typeof queueConfigSchema>;
export type QueueConfigInput = z.input<typeof queueConfigSchema>;

function parseKind<M extends Record<string, z.ZodType>>(schemas: M, raw: unknown, where: string): z.output<M[keyof M]> {
  const kinds = Object.keys(schemas);
  const kind = (raw as { kind?: unknown } | null)?.kind;
  if (typeof kind !== 'string' || !kinds.includes(kind)) {
    throw new ConfigError(`${where}.kind: ${kind === undefined ? 'missing' : `unknown kind "${String(kind)}"`} (expected one of ${kinds.join(', ')})`, {
      details: { key: `${where}.kind` },
    });
  }
  const result = schemas[kind].safeParse(raw);
  if (!result.success) {
    const lines = formatZodIssues(result.error).map((l) => `${where}.${l}`);
    throw new ConfigError(`${where} (kind ${kind}): ${lines.join('; ')}`, { details: { issues: lines } });
  }
  return result.data as z.output<M[keyof M]>;
}

/** Validates a KV config; ConfigError names the bad key (`where` prefixes it, e.g. `store.kv`). */
export function parseKvConfig(raw: unknown, where = 'kv'): KvConfig {
  return parseKind(kvSchemas, raw, where) as KvConfig;
}

/** Validates a queue config; ConfigError names the bad key. */
export function parseQueueConfig(raw: unknown, where = 'queue'): QueueConfig {
  return parseKind(queueSchemas, raw, where) as QueueConfig;
}

/** Option types per kind, for the backends' `open`. */
export type SqliteKvConfig = z.output<typeof sqlite>;
export type PostgresKvConfig = z.output<typeof postgres>;
export type RedisKvConfig = z.output<typeof redis>;
export type DynamoKvConfig = z.output<typeof dynamodb>;
export type FirestoreKvConfig = z.output<typeof firestore>;
export type SqliteQueueConfig = z.output<typeof queueSchemas.sqlite>;
export type PostgresQueueConfig = z.output<typeof queueSchemas.postgres>;
export type RedisQueueConfig = z.output<typeof queueSchemas.redis>;
export type SqsQueueConfig = z.output<typeof sqs>;
export type FirestoreQueueConfig = z.output<typeof queueSchemas.firestore>;
