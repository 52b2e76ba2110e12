/** One task's files in the piece store (content + metadata), with positional I/O, sealing and re-verification. */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { IntegrityError, NotFoundError } from '../../adapters/errors.js';
import type { Logger } from '../../adapters/log.js';
import { pieceBounds, pieceCount } from '../../scheduler/protocol/task-id.js';
import { directEligible, O_DIRECT } from './direct-io.js';
import { DiskFullError, isDiskFull, SEAL_MTIME_S, type TaskMetadata } from './metadata.js';
import type { PieceCache, PieceLease } from './piece-cache.js';

const METADATA_FLUSH_MS = 1_000;

/** What a StoredTask needs of the store that holds it (PieceStore implements it). */
export interface StoreContext {
  readonly dir: string;
  readonly logger: Logger;
  readonly cache: PieceCache;
  readonly directIO: boolean;
  readonly stats: { directWrites: number; directReads: number; droppedPieces: number };
  disableDirectIO(reason: string): void;
  contentPath(taskId: string): string;
  isDeleted(taskId: string): boolean;
  writeMeta(meta: TaskMetadata): Promise<void>;
}

/** Writes `chunks` at `position`, going on after short writes. */
export async function writevAll(fh: fs.FileHandle, chunks: Buffer[], position: number): Promise<void> {
  let bufs = chunks;
  let pos = position;
  let left = bufs.reduce((n, b) => n + b.length, 0);
  while (left > 0) {
    const { bytesWritten } = await fh.writev(bufs, pos);
    left -= bytesWritten;
    pos += bytesWritten;
    if (left === 0) break;
    // A short write: drop what went out and go on with the rest.
    let skip = bytesWritten;
    const rest: Buffer[] = [];
    for (const b of bufs) {
      if (skip >= b.length) skip -= b.length;
      else {
        rest.push(skip > 0 ? b.subarray(skip) : b);
        skip = 0;
      }
    }
    bufs = rest;
  }
}

/** One task's files. Pieces are written and read with positional I/O on a shared handle. */
export class StoredTask {
  private fh?: fs.FileHandle;
  private opening?: Promise<fs.FileHandle>;
  /** The same file opened with O_DIRECT (undefined: not tried yet; null: not available). */
  private directFh?: fs.FileHandle | null;
  private directOpening?: Promise<fs.FileHandle | null>;
  private flushTimer?: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private dirty = false;
  /** Finished piece numbers in the order they finished; the piece server's long-poll cursor indexes it. */
  readonly order: number[] = [];
  private listeners = new Set<() => void>();
  inUse = 0;

  constructor(readonly store: StoreContext, public meta: TaskMetadata) {
    for (const n of Object.keys(meta.pieces)) this.order.push(Number(n));
    this.order.sort((a, b) => a - b);
  }

  get taskId(): string {
    return this.meta.taskId;
  }
  get pieceCount(): number {
    return this.meta.contentLength < 0 ? -1 : pieceCount(this.meta.contentLength, this.meta.pieceLength);
  }
  has(n: number): boolean {
    return this.meta.pieces[n] !== undefined;
  }
  get finishedCount(): number {
    return this.order.length;
  }

  private handle(): Promise<fs.FileHandle> {
    if (this.fh) return Promise.resolve(this.fh);
    this.opening ??= (async () => {
      const file = this.store.contentPath(this.taskId);
      await fs.mkdir(path.dirname(file), { recursive: true });
      // 'a+' would force appends; open r+ and create when missing so positional writes land where asked.
      let fh: fs.FileHandle;
      try {
        fh = await fs.open(file, 'r+');
      } catch {
        fh = await fs.open(file, 'w+');
      }
      this.fh = fh;
      return fh;
    })();
    return this.opening;
  }

  /** The O_DIRECT handle, or null when the store does not use direct I/O or the file system refuses it. */
  private directHandle(): Promise<fs.FileHandle | null> {
    if (this.directFh !== undefined) return Promise.resolve(this.directFh);
    if (!this.store.directIO) return Promise.resolve(null);
    this.directOpening ??= (async () => {
      await this.handle(); // creates the file
      try {
        this.directFh = await fs.open(this.store.contentPath(this.taskId), fs.constants.O_RDWR | O_DIRECT);
      } catch (err) {
        this.store.disableDirectIO(`cannot open content with O_DIRECT: ${(err as Error).message}`);
        this.directFh = null;
      }
      return this.directFh;
    })();
    return this.directOpening;
  }

  /**
   * Writes `buf` at `offset` (or reads into it) with O_DIRECT; false when it cannot go direct (the
   * caller then writes or reads through the page cache; a refused write is redone there whole).
   */
  private async direct(op: 'write' | 'read', buf: Buffer, offset: number): Promise<boolean> {
    if (!this.store.directIO || !directEligible(buf, offset, buf.length)) return false;
    const dfh = await this.directHandle();
    if (!dfh) return false;
    let done = 0;
    try {
      while (done < buf.length) {
        const n =
          op === 'write'
            ? (await dfh.write(buf, done, buf.length - done, offset + done)).bytesWritten
            : (await dfh.read(buf, done, buf.length - done, offset + done)).bytesRead;
        if (n === 0 && op === 'read') throw new NotFoundError(`content of task ${this.taskId} is shorter than expected`);
        if (n <= 0 || n % 512 !== 0) throw Object.assign(new Error(`short direct ${op} (${n} bytes)`), { code: 'EINVAL' });
        done += n;
      }
      if (op === 'write') this.store.stats.directWrites++;
      else this.store.stats.directReads++;
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      this.store.disableDirectIO(`direct ${op} refused: ${(err as Error).message}`);
      return false;
    }
  }

  /** Sets length facts learned from the origin, the scheduler or a parent. */
  setContent(contentLength: number, pieceLength: number, headers?: Record<string, string>): void {
    if (this.meta.contentLength < 0 && contentLength >= 0) this.meta.contentLength = contentLength;
    if (pieceLength > 0 && this.order.length === 0) this.meta.pieceLength = pieceLength;
    if (headers && Object.keys(headers).length > 0 && Object.keys(this.meta.responseHeaders).length === 0) this.meta.responseHeaders = headers;
    this.markDirty();
  }

  /**
   * Writes a verified piece (one buffer or the chunks it arrived in) at its offset and records it.
   * `pooled` (the BufferPool buffer the data lives in) is taken over whatever happens: cached, or
   * given back to the pool. Throws on I/O errors.
   */
  async writePiece(n: number, data: Buffer | Buffer[], digest: string, pooled?: Buffer): Promise<void> {
    const key = `${this.taskId}:${n}`;
    const giveBack = () => {
      if (pooled) this.store.cache.dropPooled(key, pooled);
    };
    if (this.has(n)) return giveBack();
    const { offset, length } = pieceBounds(n, this.meta.contentLength, this.meta.pieceLength);
    const chunks = Array.isArray(data) ? data : [data];
    const size = chunks.reduce((a, b) => a + b.length, 0);
    if (size !== length) {
      giveBack();
      throw new IntegrityError(`piece ${n} has ${size} bytes, expected ${length}`);
    }
    try {
      const fh = await this.handle();
      if (!(chunks.length === 1 && (await this.direct('write', chunks[0]!, offset)))) await writevAll(fh, chunks, offset);
    } catch (err) {
      giveBack();
      throw isDiskFull(err) ? new DiskFullError(this.store.dir, err) : err;
    }
    if (this.has(n)) return giveBack();
    this.store.cache.set(key, chunks, size, pooled);
    this.meta.pieces[n] = digest;
    this.order.push(n);
    this.meta.updatedAt = Date.now();
    this.markDirty();
    for (const l of [...this.listeners]) l();
  }

  /** Reads piece `n`; throws NotFoundError when it is not held and verified. */
  async readPiece(n: number): Promise<Buffer> {
    if (!this.has(n)) throw new NotFoundError(`piece ${n} of task ${this.taskId} is not held`);
    const { offset, length } = pieceBounds(n, this.meta.contentLength, this.meta.pieceLength);
    return this.readRange(offset, length);
  }

  /**
   * Leases piece `n` as chunks, from the memory cache when recent, else read from the file into a
   * pooled buffer and cached. The bytes stay valid until `release()`. Throws NotFoundError when the
   * piece is not held and verified.
   */
  async leasePiece(n: number): Promise<PieceLease> {
    if (!this.has(n)) throw new NotFoundError(`piece ${n} of task ${this.taskId} is not held`);
    const key = `${this.taskId}:${n}`;
    const cache = this.store.cache;
    const hit = cache.lease(key);
    if (hit) return hit;
    const { offset, length } = pieceBounds(n, this.meta.contentLength, this.meta.pieceLength);
    const pooled = cache.pool.take(this.meta.pieceLength);
    let buf: Buffer;
    try {
      buf = await this.readRange(offset, length, pooled.subarray(0, length));
      this.checkPiece(n, buf);
    } catch (err) {
      cache.pool.give(pooled);
      if (err instanceof NotFoundError && this.has(n)) this.dropPiece(n, 'content file is shorter than the piece');
      throw err;
    }
    // Another reader may have cached it meanwhile; this copy then replaces it (same verified bytes).
    return cache.setLeased(key, [buf], length, pooled);
  }

  /**
   * Hashes piece `n` as read back from the file against the digest it was verified with; on a
   * mismatch the piece is dropped (fetched again by whoever wants it) and IntegrityError thrown.
   */
  checkPiece(n: number, buf: Buffer): void {
    const want = this.meta.pieces[n];
    if (want === undefined) throw new NotFoundError(`piece ${n} of task ${this.taskId} is not held`);
    const got = 'sha256:' + createHash('sha256').update(buf).digest('hex');
    if (got === want) return;
    this.dropPiece(n, 'digest mismatch at rest');
    throw new IntegrityError(`piece ${n} of task ${this.taskId} changed on disk (want ${want}, got ${got}); dropped`);
  }

  /** Forgets piece `n` (its bytes on disk are not what was verified): the task is no longer complete. */
  dropPiece(n: number, reason: string): void {
    if (!this.has(n)) return;
    delete this.meta.pieces[n];
    const i = this.order.indexOf(n);
    if (i >= 0) this.order.splice(i, 1);
    this.meta.complete = false;
    this.meta.seal = undefined;
    this.store.cache.delete(`${this.taskId}:${n}`);
    this.store.stats.droppedPieces++;
    this.store.logger.warn('dropping a piece that is not what was verified', { taskId: this.taskId, piece: n, reason });
    this.markDirty();
    for (const l of [...this.listeners]) l();
  }

  /**
   * Seals the complete content file: its bytes durable, its mtime fixed, its stat recorded (see the
   * header). Readers of the whole file then trust it as long as sealIntact() holds.
   */
  async seal(): Promise<void> {
    const fh = await this.handle();
    await fh.datasync();
    await fh.utimes(Date.now() / 1000, SEAL_MTIME_S);
    const st = await fh.stat({ bigint: true });
    this.meta.seal = { ino: String(st.ino), size: Number(st.size), ctimeNs: String(st.ctimeNs) };
    this.markDirty();
  }

  /** Whether the content file is still exactly as sealed (one stat; false when not sealed). */
  async sealIntact(): Promise<boolean> {
    const seal = this.meta.seal;
    if (!seal || !this.meta.complete) return false;
    try {
      const st = await fs.stat(this.store.contentPath(this.taskId), { bigint: true });
      return String(st.ino) === seal.ino && Number(st.size) === seal.size && seal.size === this.meta.contentLength && String(st.ctimeNs) === seal.ctimeNs && st.mtimeNs === BigInt(SEAL_MTIME_S) * 1_000_000_000n;
    } catch {
      return false;
    }
  }

  /**
   * Makes sure a complete task's file can be trusted whole: true at once when its seal holds; else
   * every piece is read and hashed, the ones that differ are dropped, and an unchanged file is
   * sealed again (a `touch` or chmod is no corruption). False when pieces were dropped.
   */
  async proveComplete(): Promise<boolean> {
    if (await this.sealIntact()) return true;
    if (!this.meta.complete) return false;
    this.store.logger.warn('content file differs from its seal; verifying every piece', { taskId: this.taskId });
    for (const n of [...this.order]) {
      const { offset, length } = pieceBounds(n, this.meta.contentLength, this.meta.pieceLength);
      try {
        this.checkPiece(n, await this.readRange(offset, length));
      } catch (err) {
        if (err instanceof NotFoundError) this.dropPiece(n, 'content file is shorter than the piece');
        else if (!(err instanceof IntegrityError)) throw err;
      }
    }
    if (!this.meta.complete) return false;
    await this.seal();
    return true;
  }

  /** Reads `length` bytes at `offset` of the content file (into `into` when given). */
  async readRange(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    if (into && (await this.direct('read', into.subarray(0, length), offset))) return into.subarray(0, length);
    const fh = await this.handle();
    const buf = into ?? Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new NotFoundError(`content of task ${this.taskId} is shorter than expected`);
      done += bytesRead;
    }
    return buf;
  }

  /** Times this host started sending each piece to a child (the piece server's queue order). */
  readonly uploadCounts = new Map<number, number>();
  /** True while this host reads the task from the origin (the piece server then sends each piece once). */
  readingFromOrigin = false;

  /** Bumped whenever a piece starts arriving with a verified block (see blocks.ts); long polls compare it. */
  partialVersion = 0;

  /** A piece arriving here has its first verified block: wakes the long polls of this task's children. */
  announcePartial(): void {
    this.partialVersion++;
    for (const l of [...this.listeners]) l();
  }

  /** Calls `fn` whenever a piece finishes; returns the unsubscribe function. */
  onPiece(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolves when a piece finishes after this call or after `ms`. */
  waitPiece(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const off = this.onPiece(done);
      function done() {
        clearTimeout(t);
        off();
        resolve();
      }
    });
  }

  touch(): void {
    this.meta.accessedAt = Date.now();
    this.markDirty();
  }

  private markDirty(): void {
    this.dirty = true;
    // Batch metadata writes (each one fdatasyncs the content first): a piece lost by a crash inside
    // this window is merely fetched again.
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush().catch((err) => this.store.logger.warn('metadata flush failed', { taskId: this.taskId, err }));
    }, METADATA_FLUSH_MS);
  }

  /** Persists metadata now: fdatasync the content, then atomically replace the JSON. */
  flush(): Promise<void> {
    if (this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    this.flushing = this.flushing.then(async () => {
      if (!this.dirty || this.store.isDeleted(this.taskId)) return;
      this.dirty = false;
      if (this.fh) await this.fh.datasync();
      await this.store.writeMeta(this.meta);
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    await this.flush();
    const fh = this.fh;
    this.fh = undefined;
    this.opening = undefined;
    await fh?.close();
    const dfh = await this.directOpening;
    this.directFh = undefined;
    this.directOpening = undefined;
    await dfh?.close();
  }

  /** Bytes this task occupies on disk (approximately: the verified pieces). */
  get size(): number {
    if (this.meta.contentLength <= 0) return 0;
    let s = 0;
    for (const n of this.order) s += pieceBounds(n, this.meta.contentLength, this.meta.pieceLength).length;
    return s;
  }
}
