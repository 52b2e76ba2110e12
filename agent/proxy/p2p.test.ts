/**
 * The proxy serving complete cached tasks: the agent's TaskManager hands those out as a ReadStream
 * over the task's content file (agent/download/manager.ts), and the proxy sends that file with its own
 * reused buffers. A task manager returning exactly that (a real file, a real fs.ReadStream) stands
 * in for the agent's; the proxy, the origin and the client are real.
 * These tests are about streaming, so the registry access check (agent/proxy/access.ts, tested in
 * test/mirror/private.test.ts) is off here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { createLogger } from '../../adapters/log.js';
import { proxyConfigSchema } from '../proxy-config.js';
import { FILE_CHUNK, type DownloadOptions, type ProxyTaskManager, type TaskStream } from './p2p.js';
import { startProxy, type RunningProxy } from './server.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Serves one file as a complete cached task, the way the agent's TaskManager does (body + file). */
class FileTaskManager implements ProxyTaskManager {
  readonly bodies: ReadStream[] = [];
  /** Bytes reported by each file.done() call, in order. */
  readonly done: number[] = [];
  constructor(
    private readonly file: string,
    private readonly length: number,
  ) {}
  async download(o: DownloadOptions): Promise<TaskStream> {
    const len = this.length;
    const start = o.range?.start ?? 0;
    const end = Math.min(o.range?.end ?? len - 1, len - 1);
    const body = createReadStream(this.file, { start, end, highWaterMark: FILE_CHUNK });
    this.bodies.push(body);
    const file = { path: this.file, start, end, done: (bytes: number) => { this.done.push(bytes); body.destroy(); }, intact: async () => true };
    return { taskId: 't1', peerId: 'p1', contentLength: len, range: o.range ? { start, end } : undefined, responseHeaders: { 'content-type': 'application/octet-stream' }, fromCache: true, body, file };
  }
  prefetch(): void {}
}

describe('proxy: complete cached task served from its file', () => {
  // Not a multiple of the chunk size, so the last read is a short one.
  const blob = Buffer.alloc(5 * FILE_CHUNK + 12_345);
  for (let i = 0; i + 4 <= blob.length; i += 4) blob.writeUInt32LE((i * 2654435761) >>> 0, i);
  const digest = sha(blob);
  let dir: string;
  let file: string;
  let origin: http.Server;
  let originGets = 0;
  let proxy: RunningProxy;
  let tm: FileTaskManager;
  let metrics: Registry;
  let base: string;
  const blobPath = `/v2/lib/app/blobs/${digest}`;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'damselfly-p2p-file-'));
    file = path.join(dir, 'content');
    await writeFile(file, blob);
    origin = http.createServer((req, res) => {
      originGets++;
      res.writeHead(200, { 'content-length': String(blob.length) }).end(blob);
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    tm = new FileTaskManager(file, blob.length);
    metrics = new Registry();
    const config = proxyConfigSchema.parse({ server: { ip: '127.0.0.1', port: 0 }, registryMirror: { addr: `http://127.0.0.1:${(origin.address() as AddressInfo).port}`, checkAccess: false } });
    proxy = await startProxy({ config: { proxy: config }, taskManager: tm, logger: createLogger({}, { write: () => undefined }), metricsRegistry: metrics });
    base = `http://127.0.0.1:${proxy.port}`;
  });
  afterAll(async () => {
    await proxy?.close();
    origin?.closeAllConnections();
    origin?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const closed = (s: ReadStream) => s.destroyed && s.closed;
  async function bytesMetric(): Promise<number> {
    const m = await metrics.getSingleMetric('dragonfly_client_proxy_traffic_bytes_total')!.get();
    return m.values.find((v) => v.labels.source === 'p2p')?.value ?? 0;
  }

  it('sends the whole file with its headers, counts the bytes and releases the task', async () => {
    const before = await bytesMetric();
    const r = await request(`${base}${blobPath}`);
    const body = Buffer.from(await r.body.arrayBuffer());
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-length']).toBe(String(blob.length));
    expect(r.headers['docker-content-digest']).toBe(digest);
    expect(r.headers['x-dragonfly-task-id']).toBe('t1');
    expect(sha(body)).toBe(digest);
    expect((await bytesMetric()) - before).toBe(blob.length);
    await new Promise((r) => setTimeout(r, 50));
    expect(tm.done).toEqual([blob.length]);
    expect(closed(tm.bodies.at(-1)!)).toBe(true);
    expect(originGets).toBe(0);
  });

  it('answers a range with 206 and exactly those bytes', async () => {
    const r = await request(`${base}${blobPath}`, { headers: { range: 'bytes=1000-3500000' } });
    const body = Buffer.from(await r.body.arrayBuffer());
    expect(r.statusCode).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 1000-3500000/${blob.length}`);
    expect(body.equals(blob.subarray(1000, 3500001))).toBe(true);
  });

  it('many responses at once each get their own bytes (no buffer shared between them)', async () => {
    const ranges = [
      [0, blob.length - 1],
      [7, 4 * FILE_CHUNK + 3],
      [FILE_CHUNK - 1, 3 * FILE_CHUNK + 1],
      [2 * FILE_CHUNK, blob.length - 1],
    ] as const;
    const got = await Promise.all(
      ranges.flatMap(([a, b]) => [0, 1].map(async () => {
        const r = await request(`${base}${blobPath}`, { headers: { range: `bytes=${a}-${b}` } });
        return Buffer.from(await r.body.arrayBuffer());
      })),
    );
    got.forEach((b, i) => {
      const [a, e] = ranges[i >> 1]!;
      expect(b.equals(blob.subarray(a, e + 1))).toBe(true);
    });
  });

  it('a client that goes away mid-body releases the task and leaves the proxy serving', async () => {
    const n = tm.bodies.length;
    const d = tm.done.length;
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`${base}${blobPath}`, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.setTimeout(10_000, () => reject(new Error('no body')));
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(tm.bodies.length).toBe(n + 1);
    expect(tm.done.length).toBe(d + 1);
    expect(closed(tm.bodies.at(-1)!)).toBe(true);
    const r = await request(`${base}${blobPath}`);
    expect(sha(Buffer.from(await r.body.arrayBuffer()))).toBe(digest);
  });

  it('content shorter than the task says: the transfer breaks, never a complete 200', async () => {
    const short = path.join(dir, 'short');
    await writeFile(short, blob);
    await truncate(short, 3 * FILE_CHUNK);
    const liar = new FileTaskManager(short, blob.length);
    const config = proxyConfigSchema.parse({ server: { ip: '127.0.0.1', port: 0 }, registryMirror: { checkAccess: false } });
    const p = await startProxy({ config: { proxy: config }, taskManager: liar, logger: createLogger({}, { write: () => undefined }) });
    try {
      const r = await request(`http://127.0.0.1:${p.port}${blobPath}`, { headers: { 'x-dragonfly-registry': 'http://127.0.0.1:9' } });
      expect(r.statusCode).toBe(200);
      await expect(r.body.arrayBuffer()).rejects.toThrow();
    } finally {
      await p.close();
    }
  });

  it('a file gone before the first byte falls back to the origin (digest-checked, bytes counted)', async () => {
    const gone = new FileTaskManager(path.join(dir, 'missing'), blob.length);
    const config = proxyConfigSchema.parse({ server: { ip: '127.0.0.1', port: 0 }, registryMirror: { checkAccess: false } });
    const reg = new Registry();
    const p = await startProxy({ config: { proxy: config }, taskManager: gone, logger: createLogger({}, { write: () => undefined }), metricsRegistry: reg });
    try {
      const before = originGets;
      const r = await request(`http://127.0.0.1:${p.port}${blobPath}`, { headers: { 'x-dragonfly-registry': `http://127.0.0.1:${(origin.address() as AddressInfo).port}` } });
      expect(r.statusCode).toBe(200);
      expect(sha(Buffer.from(await r.body.arrayBuffer()))).toBe(digest);
      expect(originGets).toBe(before + 1);
      const fb = await reg.getSingleMetric('dragonfly_client_proxy_fallback_total')!.get();
      expect(fb.values.find((v) => v.labels.reason === 'first-byte')?.value).toBe(1);
      // The direct relay verifies the digest and counts the bytes in one stage.
      const traffic = await reg.getSingleMetric('dragonfly_client_proxy_traffic_bytes_total')!.get();
      expect(traffic.values.find((v) => v.labels.source === 'direct')?.value).toBe(blob.length);
    } finally {
      await p.close();
    }
  });
});
