/**
 * Garbage collection of the piece store: tasks idle longer than taskTTL go, and when disk usage
 * reaches diskHighThresholdPercent idle partial tasks, then the least recently used finished tasks go until usage is at or
 * below diskLowThresholdPercent. Tasks in use (downloading or being read/uploaded) are never evicted.
 * Usage comes from statfs of storage.dir, or from our own bytes (tasks, and the scratch files of
 * exports in progress) against gc.diskThreshold.
 */
import fs from 'node:fs/promises';
import type { Logger } from '../adapters/log.js';
import type { PieceStore } from './storage/store.js';

export interface DiskUsage {
  total: number;
  used: number;
}

export interface GcOptions {
  store: PieceStore;
  taskTTL: number;
  highPercent: number;
  lowPercent: number;
  diskThreshold?: number;
  /** Evicts one task (store delete + leave_peer to the scheduler). */
  evict: (taskId: string) => Promise<unknown>;
  logger: Logger;
  now?: () => number;
  /** Disk usage; defaults to statfs of the store dir or our own bytes against diskThreshold. */
  usage?: () => Promise<DiskUsage>;
  onUsage?: (u: DiskUsage) => void;
}

/** Disk usage of the file system holding `dir`. */
export async function statfsUsage(dir: string): Promise<DiskUsage> {
  const s = await fs.statfs(dir);
  return { total: s.blocks * s.bsize, used: (s.blocks - s.bfree) * s.bsize };
}

/** Runs one GC pass; returns the evicted task IDs. Never throws for a single task's failure. */
export async function gcOnce(o: GcOptions): Promise<string[]> {
  const now = (o.now ?? Date.now)();
  const evicted: string[] = [];
  for (const t of [...o.store.tasks.values()]) {
    if (t.inUse > 0) continue;
    if (now - t.meta.accessedAt > o.taskTTL) {
      o.logger.info('evicting expired task', { taskId: t.taskId, idleMs: now - t.meta.accessedAt });
      await o.evict(t.taskId).catch((err) => o.logger.warn('evict failed', { taskId: t.taskId, err }));
      evicted.push(t.taskId);
    }
  }
  // Outputs written while their task downloads take as much again until they are linked into place.
  const ours = () => [...o.store.tasks.values()].reduce((s, t) => s + t.size, 0) + o.store.exportBytes();
  const usage = o.usage ?? (async () => (o.diskThreshold ? { total: o.diskThreshold, used: ours() } : statfsUsage(o.store.dir)));
  let u = await usage();
  o.onUsage?.(u);
  if (u.total <= 0 || (u.used / u.total) * 100 < o.highPercent) return evicted;
  // Evict total × (usage% − low%) bytes, least recently used first (Dragonfly's rule).
  let toFree = u.used - (u.total * o.lowPercent) / 100;
  // Partial tasks nobody is downloading go first (a download that failed or was given up, e.g. on a
  // full disk: they would otherwise hold their space until taskTTL), then complete ones by LRU.
  const candidates = [...o.store.tasks.values()].filter((t) => t.inUse === 0).sort((a, b) => Number(a.meta.complete) - Number(b.meta.complete) || a.meta.accessedAt - b.meta.accessedAt);
  for (const t of candidates) {
    if (toFree <= 0) break;
    const size = t.size;
    o.logger.info('evicting task for disk space', { taskId: t.taskId, bytes: size });
    await o.evict(t.taskId).catch((err) => o.logger.warn('evict failed', { taskId: t.taskId, err }));
    evicted.push(t.taskId);
    toFree -= size;
  }
  u = await usage();
  o.onUsage?.(u);
  return evicted;
}

/** Starts periodic GC; returns stop(). */
export function startGc(o: GcOptions, intervalMs: number): () => void {
  let running = false;
  const t = setInterval(() => {
    if (running) return;
    running = true;
    gcOnce(o)
      .catch((err) => o.logger.warn('gc pass failed', { err }))
      .finally(() => (running = false));
  }, intervalMs);
  t.unref();
  return () => clearInterval(t);
}
