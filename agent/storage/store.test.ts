import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../adapters/log.js';
import { sha256Digest } from '../task-id.js';
import { PieceStore, stripCredentials } from './store.js';

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
