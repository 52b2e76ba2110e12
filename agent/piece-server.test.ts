import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../adapters/log.js';
import { createAgentMetrics } from './metrics.js';
import { startPieceServer, type PieceServer } from './piece-server.js';
import { TokenBucket } from './ratelimit.js';
import { PieceStore } from './storage/store.js';
import { sha256Digest } from './task-id.js';

const ID = 'd'.repeat(64);
let dir: string;
let store: PieceStore;
let server: PieceServer;
let base: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-pieces-'));
  store = new PieceStore(dir, silentLogger);
  store.load(true);
  const t = store.open(ID, () => ({ taskId: ID, peerId: 'p', url: 'u', contentLength: -1, pieceLength: 0, responseHeaders: { 'content-type': 'x/y' } }));
  t.setContent(10, 4);
  await t.writePiece(1, Buffer.from('4567'), sha256Digest(Buffer.from('4567')));
  server = await startPieceServer({ ip: '127.0.0.1', port: 0, store, limiter: new TokenBucket(0), concurrentLimit: 10, metrics: createAgentMetrics(), logger: silentLogger });
  base = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('piece server', () => {
  it('serves a verified piece with its digest', async () => {
    const res = await request(`${base}/v1/tasks/${ID}/pieces/1`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-damselfly-piece-digest']).toBe(sha256Digest(Buffer.from('4567')));
    expect(await res.body.text()).toBe('4567');
  });

  it('never serves a piece it does not hold verified (even if bytes sit in the file)', async () => {
    const t = store.get(ID)!;
    // bytes at piece 0's offset without a verified record
    await (t as unknown as { handle(): Promise<import('node:fs/promises').FileHandle> }).handle().then((fh) => fh.write(Buffer.from('0123'), 0, 4, 0));
    const res = await request(`${base}/v1/tasks/${ID}/pieces/0`);
    expect(res.statusCode).toBe(404);
    await res.body.dump();
    const other = await request(`${base}/v1/tasks/${'e'.repeat(64)}/pieces/0`);
    expect(other.statusCode).toBe(404);
    await other.body.dump();
  });

  it('lists finished pieces and long-polls for new ones', async () => {
    const first = await request(`${base}/v1/tasks/${ID}/pieces?from=0`);
    const j = (await first.body.json()) as { pieces: number[]; next: number; contentLength: number; pieceLength: number; headers: Record<string, string>; complete: boolean };
    expect(j).toMatchObject({ pieces: [1], next: 1, contentLength: 10, pieceLength: 4, complete: false, headers: { 'content-type': 'x/y' } });
    const t0 = Date.now();
    const pending = request(`${base}/v1/tasks/${ID}/pieces?from=1&wait_ms=5000`);
    setTimeout(() => void store.get(ID)!.writePiece(2, Buffer.from('89'), sha256Digest(Buffer.from('89'))), 200);
    const res = await pending;
    const k = (await res.body.json()) as { pieces: number[]; next: number };
    expect(k).toMatchObject({ pieces: [2], next: 2 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(Date.now() - t0).toBeLessThan(4000);
  });
});
