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
import { sha256Digest } from '../scheduler/protocol/task-id.js';

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

  it('serves a piece still arriving block by block as it is verified, and cuts the response when it fails', async () => {
    const t = store.get(ID)!;
    // piece 0 (bytes 0-3) arrives into a pooled buffer; 2 bytes verified so far
    const buf = store.cache.pool.take(4);
    const h = store.cache.beginPartial(`${ID}:0`, buf, 4);
    buf.write('01');
    h.advance(2);
    const before = t.partialVersion;
    t.announcePartial();
    const list = (await (await request(`${base}/v1/tasks/${ID}/pieces?from=0&wait_ms=3000&pv=${before}`)).body.json()) as { partial: number[]; partialVersion: number };
    expect(list.partial).toEqual([0]); // answered at once: the partial version changed
    expect(list.partialVersion).toBe(before + 1);
    const t0 = Date.now();
    const res = await request(`${base}/v1/tasks/${ID}/pieces/0`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBe('4');
    setTimeout(() => {
      buf.write('23', 2);
      h.advance(4);
    }, 150);
    expect(await res.body.text()).toBe('0123');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100); // the last block was sent when it was verified
    h.fail();

    // a piece that fails while being sent: the child gets a truncated body, never unverified bytes
    const buf2 = store.cache.pool.take(4);
    const h2 = store.cache.beginPartial(`${ID}:0`, buf2, 4);
    buf2.write('01XX');
    h2.advance(2);
    const res2 = await request(`${base}/v1/tasks/${ID}/pieces/0`);
    setTimeout(() => h2.fail(), 100);
    const got: Buffer[] = [];
    await expect(
      (async () => {
        for await (const c of res2.body) got.push(c as Buffer);
      })(),
    ).rejects.toThrow();
    expect(Buffer.concat(got).toString()).toBe('01');
    // failed and gone: 404 again
    const res3 = await request(`${base}/v1/tasks/${ID}/pieces/0`);
    expect(res3.statusCode).toBe(404);
    await res3.body.dump();
  });
});

describe('piece server under an upload rate limit', () => {
  it('queues a piece it never sent before a repeat, and pushes a queued repeat out for it', async () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'damselfly-pieces-q-'));
    const st = new PieceStore(d, silentLogger);
    st.load(true);
    const PL = 256 * 1024;
    const t = st.open(ID, () => ({ taskId: ID, peerId: 'p', url: 'u', contentLength: -1, pieceLength: 0, responseHeaders: {} }));
    t.setContent(4 * PL, PL);
    for (let n = 0; n < 4; n++) {
      const b = Buffer.alloc(PL, n);
      await t.writePiece(n, b, sha256Digest(b));
    }
    // 1 MiB/s: each 256 KiB piece takes ~250 ms once the burst is spent
    const srv = await startPieceServer({ ip: '127.0.0.1', port: 0, store: st, limiter: new TokenBucket(1024 * 1024), concurrentLimit: 10, metrics: createAgentMetrics(), logger: silentLogger });
    const b = `http://127.0.0.1:${srv.port}`;
    try {
      const order: string[] = [];
      const get = (n: number, tag: string) =>
        request(`${b}/v1/tasks/${ID}/pieces/${n}`).then(async (r) => {
          await r.body.dump();
          order.push(`${tag}:${r.statusCode}`);
        });
      await get(0, 'first0'); // piece 0 has been sent once now
      const busy = get(1, 'p1'); // takes the slot
      await new Promise((r) => setTimeout(r, 30));
      const rep1 = get(0, 'repeat0a'); // queued (a repeat)
      const rep2 = get(0, 'repeat0b'); // queued (a repeat), queue now full
      await new Promise((r) => setTimeout(r, 30));
      const fresh = get(2, 'p2'); // never sent: pushes the last repeat out and goes first
      await Promise.all([busy, rep1, rep2, fresh]);
      expect(order).toContain('repeat0b:429');
      expect(order.indexOf('p2:200')).toBeLessThan(order.indexOf('repeat0a:200'));

      // While this host reads the task from the origin, a piece goes out once: a repeat is declined
      // even with the slot free; a new piece is not; after the read, repeats are served again.
      await new Promise((r) => setTimeout(r, 300)); // let the bucket refill
      t.readingFromOrigin = true;
      order.length = 0;
      await get(1, 'repeat1');
      await get(3, 'new3');
      t.readingFromOrigin = false;
      await get(1, 'repeat1-after');
      expect(order).toEqual(['repeat1:429', 'new3:200', 'repeat1-after:200']);
    } finally {
      await srv.close();
      await st.close();
      rmSync(d, { recursive: true, force: true });
    }
  });
});
