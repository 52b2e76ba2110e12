// In-process agents against a real scheduler (scheduler/server.ts) and a real local origin, all on
// 127.0.0.1 port 0: back-to-source, the scheduler-unreachable fallback, a small swarm with a seed
// peer, restart/resume, ranges, digests and origin errors.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../adapters/log.js';
import { createScheduler, type Scheduler } from '../scheduler/server.js';
import { schedulerConfig } from '../scheduler/config.js';
import { startOrigin, MiB, type Origin } from '../test/support/origin.js';
import { createAgent, type Agent } from './agent.js';
import { parseAgentConfig } from './config.js';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../scheduler/protocol/loader.js';

const dirs: string[] = [];
const agents: Agent[] = [];
let origin: Origin;

function tmp(prefix: string): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
}

async function startAgent(name: string, schedulers: string[], opts: { seed?: boolean; dir?: string; over?: Record<string, unknown> } = {}): Promise<Agent> {
  const dir = opts.dir ?? tmp(`damselfly-agent-${name}-`);
  const any = { ip: '127.0.0.1', port: 0 };
  const config = parseAgentConfig({
    host: { hostname: name, ip: '127.0.0.1' },
    seedPeer: { enable: opts.seed ?? false },
    storage: { dir: path.join(dir, 'storage') },
    scheduler: { addrs: schedulers, announceInterval: '5s', scheduleTimeout: '10s' },
    upload: { server: any, pieceServer: any },
    download: { server: { socket: path.join(dir, 'agent.sock') }, pieceTimeout: '10s' },
    proxy: { server: any },
    metrics: { server: any },
    ...opts.over,
  });
  const a = createAgent(config, silentLogger);
  await a.start();
  agents.push(a);
  return a;
}

async function stopAgent(a: Agent): Promise<void> {
  agents.splice(agents.indexOf(a), 1);
  await a.stop();
}

async function sha(body: Readable): Promise<{ digest: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const c of body) {
    h.update(c as Buffer);
    bytes += (c as Buffer).length;
  }
  return { digest: 'sha256:' + h.digest('hex'), bytes };
}

async function metric(a: Agent, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await a.metricsRegistry.getSingleMetric(name)?.get();
  return (m?.values ?? []).filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
}

// A port nothing listens on: the scheduler is "unreachable".
const DEAD_SCHEDULER = '127.0.0.1:1';

beforeAll(async () => {
  origin = await startOrigin();
});

afterAll(async () => {
  for (const a of agents.splice(0)) await a.stop().catch(() => undefined);
  await origin?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('agent alone (scheduler unreachable)', () => {
  it('downloads from the origin, then serves the next download from its cache', async () => {
    const a = await startAgent('alone', [DEAD_SCHEDULER]);
    const url = origin.add('/alone.bin', { size: 9 * MiB + 123, seed: 'alone' });
    origin.resetStats();
    const s = await a.taskManager.download({ url });
    expect(s.contentLength).toBe(9 * MiB + 123);
    expect(s.fromCache).toBe(false);
    expect(await sha(s.body)).toEqual({ digest: origin.sha256('/alone.bin'), bytes: 9 * MiB + 123 });
    expect(origin.stats().bytes).toBe(9 * MiB + 123);
    const again = await a.taskManager.download({ url });
    expect(again.fromCache).toBe(true);
    expect((await sha(again.body)).digest).toBe(origin.sha256('/alone.bin'));
    expect(origin.stats().bytes).toBe(9 * MiB + 123);
    const localPeerBytes = async (): Promise<number> =>
      ((await a.metricsRegistry.getSingleMetric('dragonfly_client_download_traffic')!.get()).values.find((v) => v.labels.type === 'LOCAL_PEER')?.value ?? 0);
    await new Promise((r) => setImmediate(r)); // the body's 'close' (where the hit is counted) follows its end
    expect(await localPeerBytes()).toBe(9 * MiB + 123);
    // A reader of the content file itself (the proxy) reports what it sent through `file.done`.
    const third = await a.taskManager.download({ url, range: { start: 100, end: 199 } });
    expect(third.file).toMatchObject({ start: 100, end: 199 });
    third.file!.done(100);
    expect(await localPeerBytes()).toBe(9 * MiB + 123 + 100);
    expect(a.taskManager.stat(s.taskId)).toEqual({ contentLength: 9 * MiB + 123, finishedPieces: 3, pieceCount: 3, complete: true });
    await stopAgent(a);
  });

  it('joins concurrent downloads of one URL into one task', async () => {
    const a = await startAgent('join', [DEAD_SCHEDULER]);
    const url = origin.add('/join.bin', { size: 6 * MiB, seed: 'join' });
    origin.resetStats();
    const [x, y] = await Promise.all([a.taskManager.download({ url }), a.taskManager.download({ url })]);
    expect(x.peerId).toBe(y.peerId);
    const [hx, hy] = await Promise.all([sha(x.body), sha(y.body)]);
    expect(hx.digest).toBe(origin.sha256('/join.bin'));
    expect(hy.digest).toBe(origin.sha256('/join.bin'));
    expect(origin.stats().bytes).toBe(6 * MiB);
    await stopAgent(a);
  });

  it('a range downloads only the pieces covering it', async () => {
    const a = await startAgent('range', [DEAD_SCHEDULER]);
    const url = origin.add('/range.bin', { size: 64 * MiB, seed: 'range' });
    origin.resetStats();
    const start = 5 * MiB + 7;
    const end = 6 * MiB + 99;
    const s = await a.taskManager.download({ url, range: { start, end } });
    expect(s.range).toEqual({ start, end });
    const chunks: Buffer[] = [];
    for await (const c of s.body) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(origin.slice('/range.bin', start, end + 1))).toBe(true);
    // The length was unknown, so the origin is read from 0, but only until piece 1 (4..8 MiB) is in.
    const st = a.taskManager.stat(s.taskId)!;
    expect(st.complete).toBe(false);
    expect(st.finishedPieces).toBe(2);
    expect(origin.stats().bytes).toBeLessThan(32 * MiB); // read-ahead and socket buffers let the origin write a little ahead
    // Now that the length is known, another range reads just its piece with a Range request.
    await origin.idle(); // the first read was cut off; its last chunk may still be on its way out
    origin.resetStats();
    const t = await a.taskManager.download({ url, range: { start: 13 * MiB, end: 13 * MiB + 9 } });
    for await (const _ of t.body) void _;
    expect(origin.stats().bytes).toBe(4 * MiB);
    expect(a.taskManager.stat(s.taskId)!.finishedPieces).toBe(3);
    await stopAgent(a);
  });

  it('a wrong whole-content digest fails the body and drops the task', async () => {
    const a = await startAgent('digest', [DEAD_SCHEDULER]);
    const url = origin.add('/digest.bin', { size: 5 * MiB, seed: 'digest' });
    const s = await a.taskManager.download({ url, digest: 'sha256:' + '0'.repeat(64) });
    await expect(sha(s.body)).rejects.toMatchObject({ code: 'INTEGRITY' });
    await new Promise((r) => setTimeout(r, 50));
    expect(a.taskManager.stat(s.taskId)).toBeUndefined();
    const ok = await a.taskManager.download({ url, digest: origin.sha256('/digest.bin') });
    expect((await sha(ok.body)).digest).toBe(origin.sha256('/digest.bin'));
    await stopAgent(a);
  });

  it('paces a background prefetch by proxy.prefetchRateLimit until a foreground download wants the rest', async () => {
    const a = await startAgent('prefetch', [DEAD_SCHEDULER], { over: { proxy: { server: { ip: '127.0.0.1', port: 0 }, prefetchRateLimit: '4MiB' } } });
    const url = origin.add('/prefetch.bin', { size: 40 * MiB, seed: 'prefetch' });
    // A ranged read (nydusd-style) of the first piece, then the proxy's prefetch of the whole blob.
    const head = await a.taskManager.download({ url, range: { start: 0, end: 1023 } });
    expect((await sha(head.body)).bytes).toBe(1024);
    a.taskManager.prefetch({ url });
    await new Promise((r) => setTimeout(r, 1500));
    // 1.5 s at 4 MiB/s (+ a burst of 0.4 MiB) is under two more 4 MiB pieces; unpaced, the local
    // origin would have sent all ten.
    const paced = a.taskManager.stat(head.taskId)!;
    expect(paced.finishedPieces).toBeGreaterThanOrEqual(1);
    expect(paced.finishedPieces).toBeLessThanOrEqual(3);
    // A client that wants the whole blob must not wait on the prefetch pace (~8 s more).
    const t0 = performance.now();
    const full = await a.taskManager.download({ url });
    expect(await sha(full.body)).toEqual({ digest: origin.sha256('/prefetch.bin'), bytes: 40 * MiB });
    expect(performance.now() - t0).toBeLessThan(5000);
    await stopAgent(a);
  });

  it('passes an origin 404 through as SourceError', async () => {
    const a = await startAgent('missing', [DEAD_SCHEDULER]);
    await expect(a.taskManager.download({ url: `${origin.base}/does-not-exist` })).rejects.toMatchObject({ code: 'SOURCE', status: 404 });
    await stopAgent(a);
  });

  it('after a restart keeps what it verified and fetches only the rest', async () => {
    const dir = tmp('damselfly-restart-');
    const url = origin.add('/restart.bin', { size: 20 * MiB, seed: 'restart' });
    const a = await startAgent('restart', [DEAD_SCHEDULER], { dir });
    const part = await a.taskManager.download({ url, range: { start: 0, end: 8 * MiB - 1 } });
    await sha(part.body);
    const held = a.taskManager.stat(part.taskId)!.finishedPieces;
    expect(held).toBeGreaterThanOrEqual(2);
    await stopAgent(a);

    const b = await startAgent('restart', [DEAD_SCHEDULER], { dir });
    expect(b.taskManager.stat(part.taskId)).toMatchObject({ finishedPieces: held, complete: false });
    origin.resetStats();
    const full = await b.taskManager.download({ url });
    expect((await sha(full.body)).digest).toBe(origin.sha256('/restart.bin'));
    expect(origin.stats().bytes).toBe(20 * MiB - held * 4 * MiB);
    expect(b.taskManager.stat(part.taskId)!.complete).toBe(true);
    await stopAgent(b);
  });
});

describe('Dfdaemon gRPC service', () => {
  it('DownloadTask fills the cache and streams progress; StatTask and DeleteTask see it', async () => {
    const a = await startAgent('dfdaemon', [DEAD_SCHEDULER]);
    const url = origin.add('/dfdaemon.bin', { size: 9 * MiB, seed: 'dfdaemon' });
    const { Dfdaemon } = loadProto();
    const client = new Dfdaemon(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown> & grpc.Client;
    try {
      const progress: { task_id: string; is_finished: boolean; piece_count: number; finished_piece_count: number; host_id: string }[] = [];
      await new Promise<void>((resolve, reject) => {
        const call = client.DownloadTask({ download: { url, need_back_to_source: true } }) as grpc.ClientReadableStream<(typeof progress)[number]>;
        call.on('data', (m) => progress.push(m));
        call.on('error', reject);
        call.on('end', resolve);
      });
      const last = progress[progress.length - 1];
      expect(last).toMatchObject({ is_finished: true, piece_count: 3, finished_piece_count: 3, host_id: a.hostId });
      const unary = (method: string, req: unknown) =>
        new Promise<Record<string, unknown>>((resolve, reject) => client[method](req, (err: grpc.ServiceError | null, res: Record<string, unknown>) => (err ? reject(err) : resolve(res))));
      expect(await unary('StatTask', { task_id: last.task_id })).toMatchObject({ content_length: 9 * MiB, piece_count: 3, finished_piece_count: 3, is_finished: true });
      await unary('DeleteTask', { task_id: last.task_id });
      await expect(unary('StatTask', { task_id: last.task_id })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
      await expect(unary('DeleteTask', { task_id: last.task_id })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
      // An origin 404 ends the stream with NOT_FOUND.
      await expect(
        new Promise<void>((resolve, reject) => {
          const call = client.DownloadTask({ download: { url: `${origin.base}/missing-for-dfdaemon` } }) as grpc.ClientReadableStream<unknown>;
          call.on('data', () => undefined);
          call.on('error', reject);
          call.on('end', resolve);
        }),
      ).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    } finally {
      client.close();
      await stopAgent(a);
    }
  });
});

describe('small swarm with a real scheduler and a seed peer', () => {
  let scheduler: Scheduler;
  let addr: string;

  beforeAll(async () => {
    scheduler = createScheduler(schedulerConfig({ server: { ip: '127.0.0.1', port: 0 }, metrics: { enable: false }, scheduling: { retryInterval: '100ms' } }), silentLogger);
    addr = (await scheduler.start()).grpc;
  });
  afterAll(async () => {
    await scheduler?.stop();
  });

  it('three agents get a file while the seed reads it once from the origin', async () => {
    const seed = await startAgent('seed', [addr], { seed: true });
    const peers = await Promise.all(['p1', 'p2', 'p3'].map((n) => startAgent(n, [addr])));
    const SIZE = 24 * MiB + 5;
    const url = origin.add('/swarm.bin', { size: SIZE, seed: 'swarm' });
    origin.resetStats();
    origin.setRate(48 * MiB); // the seed is still reading while children fetch from it
    try {
      const results = await Promise.all(peers.map(async (p) => sha((await p.taskManager.download({ url })).body)));
      for (const r of results) expect(r).toEqual({ digest: origin.sha256('/swarm.bin'), bytes: SIZE });
    } finally {
      origin.setRate(0);
    }
    expect(origin.stats().bytes).toBeGreaterThanOrEqual(SIZE);
    expect(origin.stats().bytes).toBeLessThanOrEqual(SIZE + 4 * MiB);
    let fromPeers = 0;
    for (const p of peers) fromPeers += await metric(p, 'dragonfly_client_download_traffic', { type: 'REMOTE_PEER' });
    expect(fromPeers).toBeGreaterThanOrEqual(2 * SIZE);
    expect(await metric(seed, 'dragonfly_client_upload_traffic')).toBeGreaterThan(0);
    // A latecomer is served entirely by the swarm.
    const late = await startAgent('late', [addr]);
    origin.resetStats();
    const r = await sha((await late.taskManager.download({ url })).body);
    expect(r.digest).toBe(origin.sha256('/swarm.bin'));
    expect(origin.stats().bytes).toBe(0);
  });

  it('task IDs from blob digests: the seed peer computes the same ID, and the same blob by another URL is the same task', async () => {
    const seed = await startAgent('seed-blob', [addr], { seed: true });
    const a = await startAgent('blob-a', [addr]);
    const b = await startAgent('blob-b', [addr]);
    const SIZE = 9 * MiB + 7;
    origin.add('/tmp-blob.bin', { size: SIZE, seed: 'blob-digest' });
    const digest = origin.sha256('/tmp-blob.bin');
    const url1 = origin.add(`/v2/library/app/blobs/${digest}`, { size: SIZE, seed: 'blob-digest' });
    const url2 = origin.add(`/v2/mirror/library/app/blobs/${digest}`, { size: SIZE, seed: 'blob-digest' });
    origin.resetStats();
    const s1 = await a.taskManager.download({ url: url1, enableTaskIdBasedBlobDigest: true, digest });
    expect(s1.taskId).toBe(digest.slice('sha256:'.length));
    expect((await sha(s1.body)).digest).toBe(digest);
    // The seed peer read the origin for the peer's task: it holds the task under the same ID.
    expect(seed.taskManager.stat(s1.taskId)).toMatchObject({ complete: true });
    const fromOrigin = origin.stats().bytes;
    expect(fromOrigin).toBeLessThanOrEqual(SIZE + 4 * MiB);
    // Another repository path (another registry, a mirror) with the same digest: one task, no new origin bytes.
    const s2 = await b.taskManager.download({ url: url2, enableTaskIdBasedBlobDigest: true, digest });
    expect(s2.taskId).toBe(s1.taskId);
    expect((await sha(s2.body)).digest).toBe(digest);
    expect(origin.stats().bytes).toBe(fromOrigin);
    for (const x of [a, b, seed]) await stopAgent(x);
  });

  it('honours Dragonfly priorities for a task nobody holds: LEVEL1/2 fail without back-to-source, LEVEL3 reads the origin itself', async () => {
    const seed = await startAgent('seed-prio', [addr], { seed: true });
    const a = await startAgent('prio', [addr]);
    const url = origin.add('/prio.bin', { size: 5 * MiB, seed: 'prio' });
    // LEVEL1 (forbidden) and LEVEL2 (not found) with back-to-source disabled: the download fails.
    await expect(a.taskManager.download({ url, priority: 1, disableBackToSource: true })).rejects.toThrow();
    await expect(a.taskManager.download({ url: `${url}?second`, priority: 2, disableBackToSource: true })).rejects.toThrow();
    // LEVEL3: this peer goes to the origin itself; the seed peer is not asked.
    origin.resetStats();
    const s = await a.taskManager.download({ url: `${url}?third`, priority: 3 });
    expect((await sha(s.body)).digest).toBe(origin.sha256('/prio.bin'));
    expect(origin.stats().bytes).toBe(5 * MiB);
    expect(await metric(seed, 'dragonfly_client_download_traffic', { type: 'BACK_TO_SOURCE' })).toBe(0);
    await stopAgent(a);
    await stopAgent(seed);
  });
});
