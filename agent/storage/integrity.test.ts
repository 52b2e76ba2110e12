/**
 * Integrity at rest (issue 13): a piece read back from disk is hashed before it is handed out, a
 * complete task's file is trusted whole only while its seal holds, and load drops what the disk no
 * longer backs (truncated files, content without metadata). Real files on the real file system.
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync, writeSync, readSync, utimesSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../adapters/log.js';
import { sha256Digest } from '../../scheduler/protocol/task-id.js';
import { PieceStore, SEAL_MTIME_S, type StoredTask } from './store.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'damselfly-integrity-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const ID = 'b'.repeat(64);
const PIECE = 64 * 1024;
const init = () => ({ taskId: ID, peerId: 'p1', url: 'http://o/x', contentLength: -1, pieceLength: 0, responseHeaders: {} });

/** A complete, sealed task of `pieces` pieces (the last one short), as the download engine leaves it. */
async function completeTask(dir: string, pieces = 3): Promise<{ store: PieceStore; t: StoredTask; bytes: Buffer }> {
  const store = new PieceStore(dir, silentLogger, 0); // no memory cache: every read goes to the file
  store.load(true);
  const t = store.open(ID, init);
  const bytes = Buffer.alloc(PIECE * (pieces - 1) + 1000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + 7) & 0xff;
  t.setContent(bytes.length, PIECE);
  for (let n = 0; n < pieces; n++) {
    const p = bytes.subarray(n * PIECE, Math.min(bytes.length, (n + 1) * PIECE));
    await t.writePiece(n, Buffer.from(p), sha256Digest(p));
  }
  t.meta.complete = true;
  await t.seal();
  await t.flush();
  return { store, t, bytes };
}

function flipByte(file: string, at: number): void {
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0xff;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

describe('piece store integrity at rest', () => {
  it('a sealed file carries the seal mtime and passes; a flipped byte breaks the seal, and proving it drops exactly that piece', async () => {
    const { store, t } = await completeTask(tmp());
    const file = store.contentPath(ID);
    expect(statSync(file).mtimeMs).toBe(SEAL_MTIME_S * 1000);
    expect(await t.sealIntact()).toBe(true);
    expect(await t.proveComplete()).toBe(true);
    flipByte(file, PIECE + 5);
    expect(await t.sealIntact()).toBe(false);
    expect(await t.proveComplete()).toBe(false);
    expect(t.meta.complete).toBe(false);
    expect([t.has(0), t.has(1), t.has(2)]).toEqual([true, false, true]);
    await store.close();
  });

  it('a write that restores the seal mtime afterwards (touch -d) still breaks the seal: ctime moved', async () => {
    const { store, t } = await completeTask(tmp());
    const file = store.contentPath(ID);
    flipByte(file, 10);
    utimesSync(file, new Date(), new Date(SEAL_MTIME_S * 1000));
    expect(statSync(file).mtimeMs).toBe(SEAL_MTIME_S * 1000);
    expect(await t.sealIntact()).toBe(false);
    expect(await t.proveComplete()).toBe(false);
    expect(t.has(0)).toBe(false);
    await store.close();
  });

  it('a metadata-only change (chmod) breaks the seal but proving finds every piece intact and seals again', async () => {
    const { store, t } = await completeTask(tmp());
    const { chmodSync } = await import('node:fs');
    chmodSync(store.contentPath(ID), 0o600);
    expect(await t.sealIntact()).toBe(false);
    expect(await t.proveComplete()).toBe(true);
    expect(await t.sealIntact()).toBe(true);
    await store.close();
  });

  it('a piece read back from disk is hashed: a flipped byte is an IntegrityError and the piece is dropped', async () => {
    const { store, t, bytes } = await completeTask(tmp());
    const ok = await t.leasePiece(2);
    expect(Buffer.concat(ok.chunks)).toEqual(bytes.subarray(2 * PIECE));
    ok.release();
    flipByte(store.contentPath(ID), 3);
    await expect(t.leasePiece(0)).rejects.toMatchObject({ code: 'INTEGRITY' });
    expect(t.has(0)).toBe(false);
    expect(t.meta.complete).toBe(false);
    await store.close();
  });

  it('after a restart: a changed file is caught by its seal, a truncated one loses the pieces it no longer holds', async () => {
    const dir = tmp();
    const a = await completeTask(dir);
    await a.store.close();
    flipByte(a.store.contentPath(ID), 2 * PIECE + 1);
    const s2 = new PieceStore(dir, silentLogger, 0);
    s2.load(true);
    const t2 = s2.get(ID)!;
    expect(t2.meta.complete).toBe(true); // not re-read at load...
    expect(await t2.proveComplete()).toBe(false); // ...but at the first read
    expect([t2.has(0), t2.has(1), t2.has(2)]).toEqual([true, true, false]);
    await s2.close();

    truncateSync(s2.contentPath(ID), PIECE + 10);
    const s3 = new PieceStore(dir, silentLogger, 0);
    s3.load(true);
    const t3 = s3.get(ID)!;
    expect([t3.has(0), t3.has(1), t3.has(2)]).toEqual([true, false, false]);
    expect(t3.meta.complete).toBe(false);
    await s3.close();

    truncateSync(s3.contentPath(ID), 0);
    const s4 = new PieceStore(dir, silentLogger, 0);
    s4.load(true);
    expect(s4.get(ID)).toBeUndefined(); // nothing left: the task is dropped, files and all
    expect(readdirSync(path.join(dir, 'metadata', 'tasks'))).toEqual([]);
    await s4.close();
  });

  it('content files without metadata are removed at load; a task with its metadata stays', async () => {
    const dir = tmp();
    const a = await completeTask(dir);
    await a.store.close();
    const orphan = 'c'.repeat(64);
    mkdirSync(path.dirname(a.store.contentPath(orphan)), { recursive: true });
    writeFileSync(a.store.contentPath(orphan), Buffer.alloc(4096, 1));
    const s2 = new PieceStore(dir, silentLogger, 0);
    s2.load(true);
    expect(s2.stats.orphansRemoved).toBe(1);
    expect(() => statSync(s2.contentPath(orphan))).toThrow();
    expect(s2.get(ID)?.meta.complete).toBe(true);
    expect(await s2.get(ID)!.sealIntact()).toBe(true);
    await s2.close();
  });
});
