/**
 * Placing a task in the caller's file while it downloads (export.ts): a scratch file in the store is
 * written piece by piece as pieces are verified and linked to the output only when complete; the
 * output is a file of its own holding exactly the content, and nothing is left on any failure, when
 * the caller goes away, or after a crash (load empties the scratch folder). Real files, a real agent
 * and a rate-limited origin.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../adapters/log.js';
import { sha256Digest } from '../../scheduler/protocol/task-id.js';
import { MiB, fileSha256, startOrigin, type Origin } from '../../test/support/origin.js';
import { schedulerlessAgent } from '../../test/support/local-agent.js';
import type { Agent } from '../agent.js';
import { PieceStore } from '../storage/store.js';
import { PieceExport } from './export.js';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'damselfly-export-'));
  dirs.push(d);
  return d;
};
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const ID = 'e'.repeat(64);
const PIECE = 64 * 1024;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A store with a task of `pieces` pieces (the last short) whose length is known and nothing held. */
function emptyTask(dir: string, pieces: number, cacheBytes?: number) {
  const store = new PieceStore(path.join(dir, 'storage'), silentLogger, cacheBytes, true);
  store.load(true);
  const t = store.open(ID, () => ({ taskId: ID, peerId: 'p', url: 'http://o/x', contentLength: -1, pieceLength: 0, responseHeaders: {} }));
  const bytes = Buffer.alloc(PIECE * (pieces - 1) + 777);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 193 + 11) & 0xff;
  t.setContent(bytes.length, PIECE);
  const piece = (n: number) => bytes.subarray(n * PIECE, Math.min(bytes.length, (n + 1) * PIECE));
  /** Writes piece n the way the engine does: verified bytes in a page-aligned pool buffer. */
  const write = async (n: number) => {
    const p = piece(n);
    const pooled = store.cache.pool.take(PIECE);
    p.copy(pooled);
    await t.writePiece(n, pooled.subarray(0, p.length), sha256Digest(p), pooled);
  };
  return { store, t, bytes, piece, write };
}

const tick = () => new Promise((r) => setTimeout(r, 50));

describe('PieceExport', () => {
  it('writes pieces as they finish (held before, out of order, the short tail), into a file of its own that equals the content', async () => {
    const dir = tmp();
    const { store, t, bytes, piece, write } = emptyTask(dir, 5);
    await write(0); // held before the export starts
    const out = path.join(dir, 'out.bin');
    const ex = await PieceExport.start(t, out, store.exportsDir, store.directIO);
    await write(3);
    await write(1);
    await tick();
    // Piece 3 is in the scratch file already, before the task is complete; the output is not there yet.
    expect(existsSync(out)).toBe(false);
    const [part] = readdirSync(store.exportsDir);
    const fd = openSync(path.join(store.exportsDir, part!), 'r');
    const got = Buffer.alloc(PIECE);
    readSync(fd, got, 0, PIECE, 3 * PIECE);
    closeSync(fd);
    expect(sha(got)).toBe(sha(piece(3)));
    await write(4);
    await write(2);
    await ex.finish();
    expect(readFileSync(out).equals(bytes)).toBe(true);
    expect(statSync(out).nlink).toBe(1);
    expect(readdirSync(store.exportsDir), 'the scratch file is gone').toEqual([]);
    expect(statSync(out).ino).not.toBe(statSync(store.contentPath(ID)).ino);
    if (store.directIO) expect(ex.stats.directBytes, 'full pieces go O_DIRECT from the pool buffers').toBe(4 * PIECE);
    expect(ex.stats.directBytes + ex.stats.bufferedBytes).toBe(bytes.length);
    // Editing the output leaves the cache as it was.
    const w = openSync(out, 'r+');
    writeSync(w, Buffer.from('edited'), 0, 6, 10);
    closeSync(w);
    expect((await t.readPiece(0)).equals(piece(0))).toBe(true);
  });

  it('a piece that no longer matches its digest on disk is never written out: finish throws, abort leaves no file, and the store drops the piece', async () => {
    const dir = tmp();
    const { store, t, write } = emptyTask(dir, 3, 0); // no memory cache: every piece is read back from the file
    for (let n = 0; n < 3; n++) await write(n);
    const file = store.contentPath(ID);
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.from([0x5a ^ 0xff]), 0, 1, PIECE + 5);
    closeSync(fd);
    const out = path.join(dir, 'out.bin');
    const ex = await PieceExport.start(t, out, store.exportsDir, true);
    await expect(ex.finish()).rejects.toThrow(/piece 1/);
    await ex.abort();
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(store.exportsDir)).toEqual([]);
    expect(t.has(1)).toBe(false);
    expect(t.has(0) && t.has(2)).toBe(true);
  });

  it('never overwrites: an output that appeared meanwhile is EEXIST and stays as it was', async () => {
    const dir = tmp();
    const { t, store, write } = emptyTask(dir, 2);
    const out = path.join(dir, 'taken.bin');
    const ex = await PieceExport.start(t, out, store.exportsDir, store.directIO);
    await write(0);
    await write(1);
    writeFileSync(out, 'mine');
    await expect(ex.finish()).rejects.toMatchObject({ code: 'EEXIST' });
    await ex.abort();
    expect(readFileSync(out, 'utf8')).toBe('mine');
    expect(readdirSync(store.exportsDir)).toEqual([]);
  });

  it('a crash mid-export (the process gone, nothing cleaned) leaves its scratch file only in the store, which load removes', async () => {
    const dir = tmp();
    const { store, t, write } = emptyTask(dir, 3);
    const out = path.join(dir, 'crash.bin');
    await PieceExport.start(t, out, store.exportsDir, store.directIO); // never finished nor aborted
    await write(0);
    await tick();
    expect(readdirSync(store.exportsDir)).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
    await t.flush(); // the task's own metadata was written; the export has none
    const again = new PieceStore(store.dir, silentLogger);
    again.load(true);
    expect(readdirSync(again.exportsDir)).toEqual([]);
    expect(again.get(ID)?.has(0)).toBe(true);
  });
});

describe('exportTo while the task downloads', () => {
  async function agentWithOrigin(): Promise<{ agent: Agent; origin: Origin; dir: string; socket: string }> {
    const dir = tmp();
    const origin = await startOrigin({ rate: 8 * MiB, startEmpty: true });
    const socket = path.join(dir, 'agent.sock');
    const agent = schedulerlessAgent('export-test', dir, socket);
    await agent.start();
    cleanups.push(async () => {
      await agent.stop();
      await origin.close();
    });
    return { agent, origin, dir, socket };
  }

  it('the output is written while the origin is still sending (in the store), appears only complete, and equals the content', async () => {
    const { agent, origin, dir } = await agentWithOrigin();
    const url = origin.add('/x/grow.bin', { size: 24 * MiB + 3, seed: 'grow' });
    const out = path.join(dir, 'grow.bin');
    const done = agent.taskManager.exportTo({ url }, out);
    const exports = path.join(dir, 'storage', 'content', 'exports');
    let seenWhileRunning = 0;
    for (let i = 0; i < 100 && seenWhileRunning === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const st = agent.taskManager.stat(agent.taskManager.taskIdOf({ url }));
      const part = readdirSync(exports)[0];
      if (st && !st.complete && part) {
        seenWhileRunning = statSync(path.join(exports, part)).size;
        expect(existsSync(out), 'no partial output in the caller\'s directory').toBe(false);
      }
    }
    expect(seenWhileRunning, 'bytes written out before the task completed').toBeGreaterThan(0);
    await done;
    expect(readdirSync(exports)).toEqual([]);
    expect(await fileSha256(out)).toBe(origin.sha256('/x/grow.bin'));
    expect(statSync(out).nlink).toBe(1);
  }, 30_000);

  it('a caller that goes away mid-download leaves no file behind; the task goes on in the cache', async () => {
    const { agent, origin, dir, socket } = await agentWithOrigin();
    const url = origin.add('/x/gone.bin', { size: 16 * MiB, seed: 'gone' });
    const out = path.join(dir, 'gone.bin');
    const q = new URLSearchParams({ url, output: out });
    const req = http.get({ socketPath: socket, path: `/v1/download?${q}` });
    const closed = new Promise((r) => req.once('close', r));
    req.on('error', () => undefined);
    const exports = path.join(dir, 'storage', 'content', 'exports');
    const part = () => readdirSync(exports)[0];
    for (let i = 0; i < 100 && !(part() && statSync(path.join(exports, part()!)).size > 0); i++) await new Promise((r) => setTimeout(r, 50));
    expect(part(), 'the agent had started writing the output').toBeDefined();
    req.destroy();
    await closed;
    for (let i = 0; i < 100 && part(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(readdirSync(exports)).toEqual([]);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('gone'))).toEqual([]);
    // The download itself was not the caller's to stop: it completes in the cache.
    const id = agent.taskManager.taskIdOf({ url });
    for (let i = 0; i < 200 && !agent.taskManager.stat(id)?.complete; i++) await new Promise((r) => setTimeout(r, 50));
    expect(agent.taskManager.stat(id)?.complete).toBe(true);
  }, 30_000);
});
