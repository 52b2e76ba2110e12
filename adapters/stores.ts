/**
 * The one factory for stores: a config (adapters/store-config.ts) builds a KV store or a queue.
 * Drivers are imported lazily, so a deployment on SQLite never loads the AWS SDK. Schema/table
 * creation happens inside each backend's open, idempotently.
 */
import type { KvStore } from './kv/port.js';
import type { Queue } from './queue/port.js';
import { parseKvConfig, parseQueueConfig, type KvConfig, type KvConfigInput, type QueueConfig, type QueueConfigInput } from './store-config.js';

/**
 * Builds and opens a KV store (creating tables/schemas as needed). Throws ConfigError for a bad
 * config, UnavailableError when the backend cannot be reached within its timeout.
 */
export async function createKvStore(config: KvConfigInput | KvConfig): Promise<KvStore> {
  const c = parseKvConfig(config);
  switch (c.kind) {
    case 'memory':
      return new (await import('./kv/memory.js')).MemoryKvStore();
    case 'sqlite':
      return (await import('./kv/sqlite.js')).SqliteKvStore.open(c);
    case 'postgres':
      return (await import('./kv/postgres.js')).PostgresKvStore.open(c);
    case 'redis':
      return (await import('./kv/redis.js')).RedisKvStore.open(c);
    case 'dynamodb':
      return (await import('./kv/dynamodb.js')).DynamoKvStore.open(c);
    case 'firestore':
      return (await import('./kv/firestore.js')).FirestoreKvStore.open(c);
  }
}

/**
 * Builds and opens a queue client. Throws ConfigError for a bad config, UnavailableError when the
 * backend cannot be reached within its timeout.
 */
export async function createQueue(config: QueueConfigInput | QueueConfig): Promise<Queue> {
  const c = parseQueueConfig(config);
  switch (c.kind) {
    case 'memory':
      return new (await import('./queue/memory.js')).MemoryQueue(c);
    case 'sqlite':
      return (await import('./queue/sqlite.js')).SqliteQueue.open(c);
    case 'postgres':
      return (await import('./queue/postgres.js')).PostgresQueue.open(c);
    case 'redis':
      return (await import('./queue/redis.js')).RedisQueue.open(c);
    case 'sqs':
      return (await import('./queue/sqs.js')).SqsQueue.open(c);
    case 'firestore':
      return (await import('./queue/firestore.js')).FirestoreQueue.open(c);
  }
}
