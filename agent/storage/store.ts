/**
 * The piece store (this file: PieceStore, load and delete; its parts: metadata.ts, piece-cache.ts,
 * stored-task.ts): one sparse content file per task at {dir}/content/tasks/{id[0..3]}/{id}, pieces
 * written at their offsets, and one JSON metadata file per task at {dir}/metadata/tasks/{id}.json
 * (written to a temp file, fsynced, renamed). Content is fdatasynced before metadata claims a piece,
 * so after a crash or restart every piece the metadata lists is one that was verified and written.
 *
 * Integrity at rest: nothing leaves the store unverified. A piece read back from the file is hashed
 * against its digest before anyone gets it (leasePiece); a mismatch drops the piece, which the
 * download engine then fetches again. A complete task is "sealed" (StoredTask.seal): its file gets a
 * fixed mtime, and its inode, size and ctime are recorded in the metadata. Any write through the file
 * system (an editor, dd, truncate, a stray hard link's owner) sets mtime and ctime to "now", and ctime
 * cannot be set back by a process, so a file whose stat still matches its seal holds the bytes that
 * were verified when it was sealed; whole-file readers (mirror, `get`) check the seal before they
 * start and again before their last byte, and a file that fails it is re-verified piece by piece.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../adapters/log.js';
import { pieceBounds } from '../../scheduler/protocol/task-id.js';
import { O_DIRECT } from './direct-io.js';
import type { TaskMetadata } from './metadata.js';
import { BufferPool, PIECE_CACHE_BYTES, PieceCache } from './piece-cache.js';
import { StoredTask, type StoreContext } from './stored-task.js';

// The store's one import surface: its parts live beside it (metadata.ts, piece-cache.ts, stored-task.ts).
export * from './metadata.js';
export * from './piece-cache.js';
export { StoredTask } from './stored-task.js';

export class PieceStore implements StoreContext {
  readonly tasks = new Map<string, StoredTask>();
  /** Recent pieces in memory, and the pool of piece buffers they live in. */
  readonly cache: PieceCache;
  private deleted = new Set<string>();

  /** Whether piece writes and reads use O_DIRECT where they can (storage.directIO; off after a refusal). */
  directIO: boolean;
  /** Pieces written and read with O_DIRECT so far. */
  readonly stats = { directWrites: 0, directReads: 0, droppedPieces: 0, droppedTasks: 0, orphansRemoved: 0 };

  /** `cacheBytes`: memory for recent pieces (storage.pieceCacheSize); `directIO`: storage.directIO. */
  constructor(
    readonly dir: string,
    readonly logger: Logger,
    cacheBytes = PIECE_CACHE_BYTES,
    directIO = false,
  ) {
    this.directIO = directIO && O_DIRECT !== 0;
    this.cache = new PieceCache(cacheBytes, new BufferPool(undefined, this.directIO));
  }

  /** Turns direct I/O off for this store (the file system refused it); pieces go through the page cache. */
  disableDirectIO(reason: string): void {
    if (!this.directIO) return;
    this.directIO = false;
    this.logger.warn('direct I/O unavailable; using the page cache', { dir: this.dir, reason });
  }

  contentPath(taskId: string): string {
    return path.join(this.dir, 'content', 'tasks', taskId.slice(0, 3), taskId);
  }
  /**
   * Where outputs being written while their task downloads live until they are complete and linked
   * into place (agent/download/export.ts); emptied at load, so a crash leaves nothing half-written.
   */
  get exportsDir(): string {
    return path.join(this.dir, 'content', 'exports');
  }
  /** Bytes the exports being written hold on disk (their scratch files, allocated blocks). */
  exportBytes(): number {
    let n = 0;
    try {
      for (const name of readdirSync(this.exportsDir)) {
        try {
          n += statSync(path.join(this.exportsDir, name)).blocks * 512;
        } catch {
          /* linked into place and removed meanwhile */
        }
      }
    } catch {
      /* not loaded yet */
    }
    return n;
  }
  metaPath(taskId: string): string {
    return path.join(this.dir, 'metadata', 'tasks', `${taskId}.json`);
  }
  isDeleted(taskId: string): boolean {
    return this.deleted.has(taskId);
  }

  /**
   * Loads every task's metadata; unreadable or inconsistent metadata drops that task's files, a
   * content file shorter than its pieces or changed since its seal drops the pieces it no longer
   * holds (a complete task whose seal broke is re-verified at its first read), and content files no
   * metadata describes (a crash, or a disk that filled before the metadata was written) are removed.
   * `keep:false` wipes.
   */
  load(keep: boolean): void {
    if (!keep) {
      rmSync(path.join(this.dir, 'content'), { recursive: true, force: true });
      rmSync(path.join(this.dir, 'metadata'), { recursive: true, force: true });
    }
    const metaDir = path.join(this.dir, 'metadata', 'tasks');
    mkdirSync(metaDir, { recursive: true });
    mkdirSync(path.join(this.dir, 'content', 'tasks'), { recursive: true });
    rmSync(this.exportsDir, { recursive: true, force: true }); // outputs a crash left unfinished
    mkdirSync(this.exportsDir, { recursive: true });
    for (const name of readdirSync(metaDir)) {
      if (!name.endsWith('.json')) {
        rmSync(path.join(metaDir, name), { force: true }); // leftover temp file of an interrupted write
        continue;
      }
      const id = name.slice(0, -5);
      try {
        const meta = JSON.parse(readFileSync(path.join(metaDir, name), 'utf8')) as TaskMetadata;
        if (meta.taskId !== id || typeof meta.pieces !== 'object' || typeof meta.pieceLength !== 'number') throw new Error('inconsistent metadata');
        if (meta.contentLength >= 0) for (const n of Object.keys(meta.pieces)) pieceBounds(Number(n), meta.contentLength, meta.pieceLength);
        let size = -1;
        try {
          size = statSync(this.contentPath(id)).size;
        } catch {
          /* no content file: every piece it listed is gone */
        }
        const t = new StoredTask(this, meta);
        const short = meta.contentLength < 0 ? [] : t.order.filter((n) => { const b = pieceBounds(n, meta.contentLength, meta.pieceLength); return b.offset + b.length > size; });
        if (meta.contentLength > 0 && short.length === t.order.length && t.order.length > 0) throw new Error(`content file ${size < 0 ? 'is missing' : `has ${size} of ${meta.contentLength} bytes`}`);
        for (const n of short) t.dropPiece(n, `content file has ${size} bytes`);
        this.tasks.set(id, t);
      } catch (err) {
        this.stats.droppedTasks++;
        this.logger.warn('dropping task at load', { taskId: id, reason: (err as Error).message });
        rmSync(path.join(metaDir, name), { force: true });
        rmSync(this.contentPath(id), { force: true });
      }
    }
    const contentDir = path.join(this.dir, 'content', 'tasks');
    for (const prefix of readdirSync(contentDir)) {
      let names: string[];
      try {
        names = readdirSync(path.join(contentDir, prefix));
      } catch {
        continue;
      }
      for (const id of names) {
        if (this.tasks.has(id)) continue;
        this.stats.orphansRemoved++;
        this.logger.warn('removing content file without metadata', { taskId: id });
        rmSync(path.join(contentDir, prefix, id), { force: true, recursive: true });
      }
    }
  }

  get(taskId: string): StoredTask | undefined {
    return this.tasks.get(taskId);
  }

  /** Returns the task's store entry, creating it with `init` when absent. */
  open(taskId: string, init: () => Omit<TaskMetadata, 'pieces' | 'complete' | 'createdAt' | 'updatedAt' | 'accessedAt'>): StoredTask {
    let t = this.tasks.get(taskId);
    if (!t) {
      const now = Date.now();
      this.deleted.delete(taskId);
      t = new StoredTask(this, { ...init(), pieces: {}, complete: false, createdAt: now, updatedAt: now, accessedAt: now });
      this.tasks.set(taskId, t);
    }
    return t;
  }

  async writeMeta(meta: TaskMetadata): Promise<void> {
    const file = this.metaPath(meta.taskId);
    const tmp = `${file}.${process.pid}.tmp`;
    const fh = await fs.open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(meta));
      await fh.sync();
    } catch (err) {
      await fh.close();
      await fs.rm(tmp, { force: true });
      throw err;
    } finally {
      await fh.close().catch(() => undefined);
    }
    try {
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    // The rename itself is durable only once the directory is.
    const dir = await fs.open(path.dirname(file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /** Removes a task's content and metadata. Returns false when absent. */
  async delete(taskId: string): Promise<boolean> {
    const t = this.tasks.get(taskId);
    if (!t) return false;
    this.tasks.delete(taskId);
    this.deleted.add(taskId);
    this.cache.deleteTask(taskId);
    this.cache.failPartials(taskId);
    await t.close().catch(() => undefined);
    await fs.rm(this.metaPath(taskId), { force: true });
    await fs.rm(this.contentPath(taskId), { force: true });
    return true;
  }

  async close(): Promise<void> {
    await Promise.all([...this.tasks.values()].map((t) => t.close().catch(() => undefined)));
  }
}
