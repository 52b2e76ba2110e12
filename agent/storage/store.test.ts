import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../adapters/log.js';
import { sha256Digest } from '../../scheduler/protocol/task-id.js';
import { BufferPool, PieceCache, PieceStore, stripCredentials } from './store.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'damselfly-store-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const ID = 'a'.repeat(64);
const init = () => ({ taskId: ID, peerId: 'p1', url: 'http://o/x', contentLength: -1, pieceLength: 0, responseHeaders: {} });

describe('PieceStore', () => {
  it('writes pieces at their offsets and keeps them across a restart', async () => {
    const dir = tmp();
    const s1 = new PieceStore(dir, silentLogger);
    s1.load(true);
    const t = s1.open(ID, init);
    t.setContent(10, 4, { 'content-type': 'x/y' });
    const p2 = Buffer.from('89');
    const p0 = Buffer.from('0123');
    await t.writePiece(2, p2, sha256Digest(p2));
    await t.writePiece(0, p0, sha256Digest(p0));
    await expect(t.readPiece(1)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await s1.close();

    const s2 = new PieceStore(dir, silentLogger);
    s2.load(true);
    const r = s2.get(ID)!;
    expect(r).toBeDefined();
    expect(r.has(0) && r.has(2) && !r.has(1)).toBe(true);
    expect((await r.readPiece(2)).toString()).toBe('89');
    expect(r.meta.responseHeaders).toEqual({ 'content-type': 'x/y' });
    // resume: the missing piece is written later and the task is whole
    const p1 = Buffer.from('4567');
    await r.writePiece(1, p1, sha256Digest(p1));
    expect((await r.readRange(0, 10)).toString()).toBe('0123456789');
    await s2.close();
  });

  it('rejects a piece of the wrong size', async () => {
    const s = new PieceStore(tmp(), silentLogger);
    s.load(true);
    const t = s.open(ID, init);
    t.setContent(10, 4);
    await expect(t.writePiece(0, Buffer.from('012'), 'sha256:x')).rejects.toMatchObject({ code: 'INTEGRITY' });
    expect(t.has(0)).toBe(false);
    await s.close();
  });

  it('drops a task whose metadata is corrupted, and leftover temp files', () => {
    const dir = tmp();
    const s = new PieceStore(dir, silentLogger);
    s.load(true);
    const bad = 'b'.repeat(64);
    writeFileSync(s.metaPath(bad), '{not json');
    writeFileSync(s.metaPath(ID) + '.123.tmp', 'partial');
    const outOfRange = 'c'.repeat(64);
    writeFileSync(s.metaPath(outOfRange), JSON.stringify({ taskId: outOfRange, pieces: { 9: 'sha256:x' }, pieceLength: 4, contentLength: 10 }));
    const s2 = new PieceStore(dir, silentLogger);
    s2.load(true);
    expect(s2.get(bad)).toBeUndefined();
    expect(s2.get(outOfRange)).toBeUndefined();
    expect(existsSync(s.metaPath(bad))).toBe(false);
    expect(existsSync(s.metaPath(ID) + '.123.tmp')).toBe(false);
  });

  it('storage.keep=false wipes the cache on start', async () => {
    const dir = tmp();
    const s = new PieceStore(dir, silentLogger);
    s.load(true);
    const t = s.open(ID, init);
    t.setContent(4, 4);
    await t.writePiece(0, Buffer.from('abcd'), sha256Digest(Buffer.from('abcd')));
    await s.close();
    const s2 = new PieceStore(dir, silentLogger);
    s2.load(false);
    expect(s2.tasks.size).toBe(0);
  });

  it('delete removes content and metadata', async () => {
    const s = new PieceStore(tmp(), silentLogger);
    s.load(true);
    const t = s.open(ID, init);
    t.setContent(4, 4);
    await t.writePiece(0, Buffer.from('abcd'), sha256Digest(Buffer.from('abcd')));
    await t.flush();
    expect(existsSync(s.contentPath(ID))).toBe(true);
    expect(await s.delete(ID)).toBe(true);
    expect(existsSync(s.contentPath(ID)) || existsSync(s.metaPath(ID))).toBe(false);
    expect(await s.delete(ID)).toBe(false);
  });

  it('strips credentials from stored URLs', () => {
    expect(stripCredentials('https://user:pw@host/p?q')).toBe('https://host/p?q');
    expect(stripCredentials('https://host/p@x')).toBe('https://host/p@x');
  });
});

describe('PieceCache and BufferPool', () => {
  it('a pooled buffer comes back to the pool when its piece is evicted, not before', () => {
    const pool = new BufferPool();
    const cache = new PieceCache(8, pool);
    const a = pool.take(4);
    const b = pool.take(4);
    expect(pool.allocations).toBe(2);
    cache.set('t:0', [a], 4, a);
    cache.set('t:1', [b], 4, b);
    expect(pool.idle).toBe(0);
    const lease = cache.lease('t:0')!; // t:0 becomes the most recent, t:1 the oldest
    const c = pool.take(4);
    cache.set('t:2', [c], 4, c); // evicts t:1 (not leased): its buffer is reusable at once
    expect(pool.idle).toBe(4);
    expect(pool.take(4)).toBe(b);
    expect(pool.allocations).toBe(3);
    const d = Buffer.alloc(4);
    cache.set('t:3', [d], 4); // evicts t:0, which is leased: its buffer must not be handed out yet
    expect(pool.idle).toBe(0);
    expect(lease.chunks[0]).toBe(a);
    lease.release();
    lease.release(); // idempotent
    expect(pool.idle).toBe(4);
    expect(pool.take(4)).toBe(a);
    expect(cache.lease('t:0')).toBeUndefined();
  });

  it('prefill maps the buffers a download takes (cache full of pieces plus one arriving), within the idle limit', () => {
    const pool = new BufferPool(64);
    const cache = new PieceCache(8, pool);
    expect(cache.prefill(4)).toBe(3);
    expect(pool.allocations).toBe(3);
    expect(pool.idle).toBe(12);
    const taken = [pool.take(4), pool.take(4), pool.take(4)];
    expect(taken.every((b) => b.length === 4 && b.every((x) => x === 0))).toBe(true);
    expect(pool.allocations).toBe(3); // the download's buffers came from the prefill
    pool.take(4);
    expect(pool.allocations).toBe(4);
    expect(new BufferPool(10).prefill(4, 5)).toBe(2); // 10 idle bytes hold two 4-byte buffers
  });

  it('a piece larger than the cache is lent once and recycled on release; deleteTask frees a task', () => {
    const pool = new BufferPool();
    const cache = new PieceCache(4, pool);
    const big = pool.take(8);
    const lease = cache.setLeased('t:0', [big], 8, big);
    expect(cache.lease('t:0')).toBeUndefined();
    expect(pool.idle).toBe(0);
    lease.release();
    expect(pool.idle).toBe(8);
    const x = pool.take(4);
    cache.set('u:0', [x], 4, x);
    cache.deleteTask('u');
    expect(cache.lease('u:0')).toBeUndefined();
    expect(pool.take(4)).toBe(x);
  });

  it('leasePiece reads an uncached piece from the file into a pooled buffer; writePiece hands its buffer to the cache', async () => {
    const s = new PieceStore(tmp(), silentLogger, 4);
    s.load(true);
    const t = s.open(ID, init);
    t.setContent(8, 4);
    const p0 = s.cache.pool.take(4);
    p0.write('abcd');
    await t.writePiece(0, p0, sha256Digest(p0), p0);
    const l0 = await t.leasePiece(0);
    expect(l0.chunks[0]).toBe(p0); // from the cache, no read
    l0.release();
    await t.writePiece(1, Buffer.from('efgh'), sha256Digest(Buffer.from('efgh'))); // evicts piece 0
    expect(s.cache.pool.idle).toBe(4);
    const again = await t.leasePiece(0);
    expect(Buffer.concat(again.chunks).toString()).toBe('abcd');
    expect(again.chunks[0]!.buffer).toBe(p0.buffer); // read into the recycled buffer
    again.release();
    await expect(t.leasePiece(5)).rejects.toThrow(/not held/);
    await s.close();
  });
});

describe('direct I/O', () => {
  const PL = 64 * 1024; // aligned piece length
  const bytes = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

  it('aligned pieces are written and read with O_DIRECT; an odd last piece through the page cache; all read back right, also after a restart', async () => {
    const dir = tmp();
    const s = new PieceStore(dir, silentLogger, PL, true);
    s.load(true);
    expect(s.directIO).toBe(true);
    const t = s.open(ID, init);
    const len = 2 * PL + 1000;
    t.setContent(len, PL);
    const want = Buffer.concat([bytes(PL, 1), bytes(PL, 2), bytes(1000, 3)]);
    for (let n = 0; n < 3; n++) {
      const size = n < 2 ? PL : 1000;
      const pooled = s.cache.pool.take(PL);
      want.copy(pooled, 0, n * PL, n * PL + size);
      const piece = pooled.subarray(0, size);
      await t.writePiece(n, piece, sha256Digest(piece), pooled);
    }
    expect(s.stats.directWrites).toBe(2); // pieces 0 and 1; piece 2 (1000 bytes) is not aligned
    // Buffered reads see what went around the page cache.
    expect((await t.readRange(0, len)).equals(want)).toBe(true);
    // Piece 0 was evicted from the 1-piece cache: leasing it reads it back directly into a pooled buffer.
    const reads = s.stats.directReads;
    const l0 = await t.leasePiece(0);
    expect(Buffer.concat(l0.chunks).equals(want.subarray(0, PL))).toBe(true);
    l0.release();
    expect(s.stats.directReads).toBe(reads + 1);
    await t.flush();
    await s.close();
    const s2 = new PieceStore(dir, silentLogger, PL, true);
    s2.load(true);
    expect((await s2.get(ID)!.readRange(0, len)).equals(want)).toBe(true);
    await s2.close();
  });

  it('plain (unaligned) buffers and a store whose direct I/O was refused use the page cache', async () => {
    const s = new PieceStore(tmp(), silentLogger, PL, true);
    s.load(true);
    const t = s.open(ID, init);
    t.setContent(2 * PL, PL);
    const a = bytes(PL, 4);
    await t.writePiece(0, a, sha256Digest(a)); // a Buffer not from the aligned pool
    expect(s.stats.directWrites).toBe(0);
    s.disableDirectIO('test');
    expect(s.directIO).toBe(false);
    const pooled = s.cache.pool.take(PL);
    const b = bytes(PL, 5);
    b.copy(pooled);
    await t.writePiece(1, pooled, sha256Digest(b), pooled);
    expect(s.stats.directWrites).toBe(0);
    expect((await t.readRange(0, 2 * PL)).equals(Buffer.concat([a, b]))).toBe(true);
    await s.close();
  });

  it('off by configuration: the pool hands out plain buffers', () => {
    const s = new PieceStore(tmp(), silentLogger, PL, false);
    expect(s.directIO).toBe(false);
    expect(s.cache.pool.aligned).toBe(false);
  });
});

describe('pieces still arriving (PieceCache partials)', () => {
  it('readers see the verified prefix grow; completing keeps their lease valid; the buffer is recycled only after them', async () => {
    const pool = new BufferPool();
    const cache = new PieceCache(64, pool);
    const buf = pool.take(8);
    const h = cache.beginPartial('t:0', buf, 8);
    expect(cache.leasePartial('t:0')).toBeUndefined(); // nothing verified yet
    expect(cache.partialPieces('t')).toEqual([]);
    buf.write('abcd');
    h.advance(4);
    expect(cache.partialPieces('t')).toEqual([0]);
    const lease = cache.leasePartial('t:0')!;
    expect(lease.partial.verified).toBe(4);
    const waited = lease.partial.changed(5_000);
    buf.write('efgh', 4);
    h.advance(8);
    await waited;
    expect(lease.partial.verified).toBe(8);
    // complete: the same buffer becomes the cached piece
    cache.set('t:0', [buf.subarray(0, 8)], 8, buf);
    expect(cache.partialPieces('t')).toEqual([]);
    expect(lease.partial.verified).toBe(8);
    cache.delete('t:0');
    expect(pool.idle).toBe(0); // still leased
    lease.release();
    expect(pool.idle).toBe(8);
  });

  it('a failed partial wakes its readers, leaves the listing, and recycles the buffer after the last reader', async () => {
    const pool = new BufferPool();
    const cache = new PieceCache(64, pool);
    const buf = pool.take(8);
    const h = cache.beginPartial('t:1', buf, 8);
    h.advance(4);
    const lease = cache.leasePartial('t:1')!;
    const waited = lease.partial.changed(5_000);
    h.fail();
    await waited;
    expect(lease.partial.failed).toBe(true);
    expect(cache.partialPieces('t')).toEqual([]);
    expect(cache.leasePartial('t:1')).toBeUndefined();
    expect(pool.idle).toBe(0);
    lease.release();
    expect(pool.idle).toBe(8);
    // dropPooled on a buffer that was never registered goes straight back
    const other = pool.take(8); // the recycled one
    expect(pool.idle).toBe(0);
    cache.dropPooled('t:2', other);
    expect(pool.idle).toBe(8);
  });
});
