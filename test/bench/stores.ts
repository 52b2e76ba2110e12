/**
 * bench:stores — one JSON line per store backend, all measured in one run on this machine:
 * KV get / put / compare-and-set latency (p50, p99, ms) and throughput (ops/s) with 16 concurrent
 * callers; queue send→receive latency (p50, p99, ms) with one message in flight and a consumer
 * already long-polling, and saturated messages/s with 16 senders and 4 long-polling consumers
 * (plus the send→receive latency under that load). Servers: the shared PostgreSQL and Redis on loopback (unique schema and
 * key prefix, removed afterwards), and DynamoDB Local, fauxqs and the Firestore emulator started
 * here and stopped at the end. A backend whose server is missing prints {"backend":…,"skipped":reason}.
 *
 *   npm run bench:stores          (or: node dist-test/test/bench/stores.js [backend ...])
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { KvStore } from '../../adapters/kv/port.js';
import type { Queue } from '../../adapters/queue/port.js';
import { createKvStore, createQueue } from '../../adapters/stores.js';
import { type KvConfigInput, type QueueConfigInput } from '../../adapters/store-config.js';
import { dynamoBackend, firestoreBackend, postgresBackend, redisBackend, sqsBackend, type Backend } from '../support/servers.js';

/** Concurrent callers for the KV phases (the figure). */
const CALLERS = 16;
/** Each KV phase stops at this many ops or after PHASE_MS, whichever comes first. */
const KV_OPS = 3_200;
const PHASE_MS = 4_000;
const QUEUE_MSGS = 800;
const QUEUE_MS = 8_000;
const CONSUMERS = 4;
const LATENCY_ROUNDS = 200;
const TIMEOUT_MS = 10_000;

interface Stats {
  n: number;
  p50: number;
  p99: number;
  perSec: number;
}

function stats(samples: number[], wallMs: number): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { n: s.length, p50: r(q(0.5)), p99: r(q(0.99)), perSec: Math.round((s.length / wallMs) * 1000) };
}

/** Runs `op(caller, i)` from CALLERS concurrent callers until KV_OPS ops or PHASE_MS; returns latency stats. */
async function phase(op: (caller: number, i: number) => Promise<unknown>): Promise<Stats> {
  const samples: number[] = [];
  const t0 = performance.now();
  let issued = 0;
  await Promise.all(
    Array.from({ length: CALLERS }, async (_, caller) => {
      for (let i = 0; issued < KV_OPS && performance.now() - t0 < PHASE_MS; i++) {
        issued++;
        const s = performance.now();
        await op(caller, i);
        samples.push(performance.now() - s);
      }
    }),
  );
  return stats(samples, performance.now() - t0);
}

async function benchKv(kv: KvStore): Promise<Record<string, Stats>> {
  const value = (i: number) => ({ i, name: `record-${i}`, tags: ['a', 'b', 'c'], pad: 'x'.repeat(200) });
  const versions = new Map<number, number>();
  const put = await phase((c, i) => kv.put(`bench/${c}/${i % 50}`, value(i)));
  const get = await phase((c, i) => kv.get(`bench/${(c + i) % CALLERS}/${i % 50}`));
  const cas = await phase(async (c, i) => {
    const k = `bench/cas/${c}`;
    let v = versions.get(c);
    if (v === undefined) {
      v = await kv.put(k, value(i));
    }
    versions.set(c, await kv.update(k, value(i), v));
  });
  return { get, put, cas };
}

/** Idle send→receive latency: one message in flight, a consumer already long-polling. */
async function queueLatency(q: Queue, name: string): Promise<Stats> {
  const samples: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < LATENCY_ROUNDS && performance.now() - t0 < PHASE_MS; i++) {
    const pending = q.receive<{ i: number }>(name, { waitMs: 5_000, visibilityMs: 30_000 });
    await new Promise((r) => setTimeout(r, 2)); // let the long poll start
    const s = performance.now();
    await q.send(name, { i });
    const [m] = await pending;
    samples.push(performance.now() - s);
    if (!m || m.body.i !== i) throw new Error(`latency round ${i}: expected message ${i}, got ${JSON.stringify(m?.body)}`);
    await q.ack(name, m.receipt);
  }
  return stats(samples, performance.now() - t0);
}

/** Saturated throughput: 16 senders, 4 consumers (max 10 per receive), every message acked once. */
async function queueThroughput(q: Queue, name: string): Promise<Stats & { lost: number }> {
  const latencies: number[] = [];
  const seen = new Set<number>();
  const t0 = performance.now();
  let sent = 0;
  let done = false;
  const consumers = Array.from({ length: CONSUMERS }, async () => {
    while (!done) {
      const got = await q.receive<{ n: number; at: number }>(name, { max: 10, waitMs: 1_000, visibilityMs: 30_000 });
      const now = performance.timeOrigin + performance.now();
      for (const m of got) {
        if (!seen.has(m.body.n)) latencies.push(now - m.body.at);
        seen.add(m.body.n);
        await q.ack(name, m.receipt);
      }
    }
  });
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      while (sent < QUEUE_MSGS && performance.now() - t0 < QUEUE_MS) {
        const n = sent++;
        await q.send(name, { n, at: performance.timeOrigin + performance.now() });
      }
    }),
  );
  const deadline = performance.now() + 20_000;
  while (seen.size < sent && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const wall = performance.now() - t0;
  done = true;
  await Promise.all(consumers);
  return { ...stats(latencies, wall), lost: sent - seen.size };
}

async function benchQueue(q: Queue): Promise<Record<string, unknown>> {
  const name = `bench-${Date.now().toString(36)}`;
  const latency = await queueLatency(q, `${name}-lat`);
  const loaded = await queueThroughput(q, `${name}-tput`);
  return {
    sendToReceiveMs: { n: latency.n, p50: latency.p50, p99: latency.p99 },
    throughput: { messages: loaded.n, perSec: loaded.perSec, lost: loaded.lost, loadedP50Ms: loaded.p50, loadedP99Ms: loaded.p99 },
  };
}

async function run(name: string, kvConfig: KvConfigInput | undefined, queueConfig: QueueConfigInput | undefined): Promise<Record<string, unknown>> {
  const line: Record<string, unknown> = { backend: name };
  if (kvConfig) {
    const kv = await createKvStore(kvConfig);
    try {
      line.kv = await benchKv(kv);
    } finally {
      await kv.close();
    }
  }
  if (queueConfig) {
    const q = await createQueue(queueConfig);
    try {
      line.queue = await benchQueue(q);
    } finally {
      await q.close();
    }
  }
  return line;
}

async function main(): Promise<number> {
  const only = new Set(process.argv.slice(2));
  const want = (n: string) => only.size === 0 || only.has(n);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-bench-'));
  const common = { callers: CALLERS, consumers: CONSUMERS };
  let failed = 0;
  const emit = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ ...line, ...common })}\n`);
  const inProcess: [string, KvConfigInput, QueueConfigInput][] = [
    ['memory', { kind: 'memory' }, { kind: 'memory', maxReceives: 5 }],
    ['sqlite', { kind: 'sqlite', path: path.join(dir, 'bench.db'), timeoutMs: TIMEOUT_MS }, { kind: 'sqlite', path: path.join(dir, 'bench.db'), timeoutMs: TIMEOUT_MS, maxReceives: 5 }],
  ];
  const servers: [string, () => Promise<Backend>][] = [
    ['postgres', () => postgresBackend({ direct: true, maxReceives: 5, timeoutMs: TIMEOUT_MS })],
    ['redis', () => redisBackend({ direct: true, maxReceives: 5, timeoutMs: TIMEOUT_MS })],
    ['dynamodb', () => dynamoBackend({ direct: true, timeoutMs: TIMEOUT_MS })],
    ['sqs', () => sqsBackend({ direct: true, maxReceives: 5, timeoutMs: TIMEOUT_MS })],
    ['firestore', () => firestoreBackend({ direct: true, maxReceives: 5, timeoutMs: TIMEOUT_MS })],
  ];
  try {
    for (const [name, kv, q] of inProcess) if (want(name)) emit(await run(name, kv, q));
    for (const [name, start] of servers) {
      if (!want(name)) continue;
      const b = await start();
      try {
        if (!b.ok) {
          emit({ backend: name, skipped: `${b.what}: ${b.reason}` });
          continue;
        }
        emit(await run(name, b.kv, b.queue));
      } catch (err) {
        failed++;
        emit({ backend: name, error: (err as Error).message });
      } finally {
        await b.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench:stores failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
