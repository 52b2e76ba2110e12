import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../adapters/log.js';
import { gcOnce } from './gc.js';
import { PieceStore } from './storage/store.js';
import { sha256Digest } from '../scheduler/protocol/task-id.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function storeWith(tasks: { id: string; size: number; accessedAt: number; complete?: boolean; inUse?: number }[]) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-gc-'));
  dirs.push(dir);
  const store = new PieceStore(dir, silentLogger);
  store.load(true);
  for (const t of tasks) {
    const st = store.open(t.id, () => ({ taskId: t.id, peerId: 'p', url: 'u', contentLength: -1, pieceLength: 0, responseHeaders: {} }));
    st.setContent(t.size, t.size);
    const b = Buffer.alloc(t.size, 1);
    await st.writePiece(0, b, sha256Digest(b));
    st.meta.accessedAt = t.accessedAt;
    st.meta.complete = t.complete ?? true;
    st.inUse = t.inUse ?? 0;
  }
  return store;
}

const id = (c: string) => c.repeat(64);

describe('gc', () => {
  it('evicts tasks idle past the TTL, never those in use', async () => {
    const store = await storeWith([
      { id: id('a'), size: 10, accessedAt: 0 },
      { id: id('b'), size: 10, accessedAt: 0, inUse: 1 },
      { id: id('c'), size: 10, accessedAt: 9_000 },
    ]);
    const evicted: string[] = [];
    const out = await gcOnce({
      store,
      taskTTL: 5_000,
      highPercent: 80,
      lowPercent: 60,
      evict: async (t) => {
        evicted.push(t);
        await store.delete(t);
      },
      logger: silentLogger,
      now: () => 10_000,
      usage: async () => ({ total: 1000, used: 10 }),
    });
    expect(out).toEqual([id('a')]);
    expect(evicted).toEqual([id('a')]);
    await store.close();
  });

  it('above the high watermark evicts idle partial tasks, then least recently used finished ones, down to the low one', async () => {
    const store = await storeWith([
      { id: id('a'), size: 100, accessedAt: 3 },
      { id: id('b'), size: 100, accessedAt: 1 },
      { id: id('c'), size: 100, accessedAt: 2 },
      { id: id('d'), size: 100, accessedAt: 9, complete: false }, // a download given up (e.g. disk full): goes first
      { id: id('e'), size: 100, accessedAt: 0, complete: false, inUse: 1 }, // still downloading: never evicted
    ]);
    const out = await gcOnce({
      store,
      taskTTL: 1e12,
      highPercent: 80,
      lowPercent: 60,
      diskThreshold: 550, // our 500 bytes of 550 = 91% ≥ 80% → free down to 330
      evict: (t) => store.delete(t),
      logger: silentLogger,
      now: () => 10,
    });
    expect(out).toEqual([id('d'), id('b')]);
    expect([...store.tasks.keys()].sort()).toEqual([id('a'), id('c'), id('e')]);
    await store.close();
  });

  it('counts the scratch files of exports in progress against diskThreshold', async () => {
    const store = await storeWith([
      { id: id('a'), size: 100, accessedAt: 1 },
      { id: id('b'), size: 100, accessedAt: 2 },
    ]);
    const opts = { store, taskTTL: 1e12, highPercent: 80, lowPercent: 60, diskThreshold: 100_000, evict: (t: string) => store.delete(t), logger: silentLogger, now: () => 10 };
    // 200 bytes of 100 kB: nothing to do. An output being written beside its task takes 90 kB more.
    expect(await gcOnce(opts)).toEqual([]);
    writeFileSync(path.join(store.exportsDir, 'scratch-1'), Buffer.alloc(90_000, 1));
    expect(store.exportBytes()).toBeGreaterThanOrEqual(90_000);
    let seen = 0;
    expect(await gcOnce({ ...opts, onUsage: (u) => (seen = Math.max(seen, u.used)) })).toEqual([id('a'), id('b')]);
    expect(seen).toBeGreaterThanOrEqual(90_200);
    await store.close();
  });

  it('does nothing below the high watermark', async () => {
    const store = await storeWith([{ id: id('a'), size: 100, accessedAt: 0 }]);
    const out = await gcOnce({ store, taskTTL: 1e12, highPercent: 80, lowPercent: 60, diskThreshold: 1000, evict: (t) => store.delete(t), logger: silentLogger, now: () => 1 });
    expect(out).toEqual([]);
    await store.close();
  });
});
