/**
 * The piece store: one sparse content file per task at {dir}/content/tasks/{id[0..3]}/{id}, pieces
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
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { IntegrityError, NotFoundError, UnavailableError } from '../../adapters/errors.js';
import type { Logger } from '../../adapters/log.js';
import { pieceBounds, pieceCount } from '../../scheduler/protocol/task-id.js';
import { allocAligned, directEligible, O_DIRECT } from './direct-io.js';

export interface TaskMetadata {
  taskId: string;
  peerId: string;
  url: string; // without credentials
  tag?: string;
  application?: string;
  contentLength: number; // -1 while unknown
  pieceLength: number;
  responseHeaders: Record<string, string>;
  /** piece number → "sha256:<hex>" of the verified bytes on disk */
  pieces: Record<string, string>;
  complete: boolean;
  /** The complete content file as the agent left it (see seal()); absent while not sealed. */
  seal?: Seal;
  /** Whole-content "sha256:<hex>": asked by the first downloader, proven once digestVerified is set. */
  digest?: string;
  digestVerified?: boolean;
  createdAt: number;
  updatedAt: number;
  accessedAt: number;
}

/** inode, size and ctime (ns, as a decimal string) of a sealed content file. */
export interface Seal {
  ino: string;
  size: number;
  ctimeNs: string;
}

/**
 * The mtime a sealed content file carries (2000-01-01T00:00:00Z): any write stamps "now" over it,
 * also one within the same clock tick as the seal, which ctime alone (coarse on most kernels) misses.
 */
export const SEAL_MTIME_S = 946_684_800;

/** The piece store's file system is full: the task that hit it is freed, and GC runs. */
export class DiskFullError extends UnavailableError {
  constructor(dir: string, cause: unknown) {
    super(`no space left on device for storage.dir ${dir} (${(cause as Error).message})`, { cause, details: { reason: 'disk_full', dir } });
  }
}

/** Whether `err` is the file system running out of space (or quota). */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Removes userinfo from a URL before it is stored or logged. */
export function stripCredentials(url: string): string {
  return url.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/@?#]*@/, '$1');
}

/**
 * Reused piece-sized buffers. Pieces arrive from parents straight into one of these
 * (agent/piece-client.ts) and stay in the PieceCache until evicted, then come back here: memory that
 * is already mapped costs no page faults and no garbage collection when the next piece lands in it.
 * Idle buffers beyond `maxIdleBytes` are left to the collector.
 */
export class BufferPool {
  private free = new Map<number, Buffer[]>();
  private idleBytes = 0;
  /** Buffers allocated so far (not taken from the pool). */
  allocations = 0;
  /** `aligned`: allocate page-aligned buffers, which direct I/O can use (direct-io.ts). */
  constructor(
    private readonly maxIdleBytes = 64 * 1024 * 1024,
    readonly aligned = false,
  ) {}

  /** A buffer of exactly `size` bytes (contents undefined). */
  take(size: number): Buffer {
    const b = this.free.get(size)?.pop();
    if (b) {
      this.idleBytes -= size;
      return b;
    }
    return this.alloc(size);
  }

  private alloc(size: number): Buffer {
    this.allocations++;
    return (this.aligned ? allocAligned(size) : undefined) ?? Buffer.allocUnsafeSlow(size);
  }

  /**
   * Allocates `count` buffers of `size` bytes, touches every page and keeps them idle, so the first
   * downloads do not pay for mapping fresh memory (a page fault per 4 KiB, taken by the kernel's
   * copy from the socket and again by the hash that reads the bytes: ~70 ms per 12 MiB on a VM).
   * Returns how many were added (the idle limit caps them).
   */
  prefill(size: number, count: number): number {
    let added = 0;
    for (let i = 0; i < count && this.idleBytes + size <= this.maxIdleBytes; i++) {
      this.give(this.alloc(size).fill(0));
      added++;
    }
    return added;
  }

  /** Returns a buffer from take() (the whole one, not a subarray); nobody may use it afterwards. */
  give(buf: Buffer): void {
    if (this.idleBytes + buf.length > this.maxIdleBytes) return;
    let list = this.free.get(buf.length);
    if (!list) this.free.set(buf.length, (list = []));
    list.push(buf);
    this.idleBytes += buf.length;
  }

  get idle(): number {
    return this.idleBytes;
  }
}

/** A piece's bytes lent out; `release()` (idempotent) must be called once the bytes are no longer read. */
export interface PieceLease {
  chunks: Buffer[];
  release(): void;
}

interface CacheEntry {
  chunks: Buffer[];
  size: number;
  /** Leases not yet released; a pooled buffer goes back to the pool only when none is left. */
  refs: number;
  /** The BufferPool buffer `chunks` live in, if any. */
  pooled?: Buffer;
  evicted: boolean;
  /** Set while the piece is still arriving (blocks.ts): how much of it is verified. */
  partial?: PartialState;
}

/** A piece still arriving, as its readers see it: the verified prefix grows until done or failed. */
export interface PartialState {
  readonly length: number;
  /** Bytes from the piece's start whose blocks are verified. */
  verified: number;
  failed: boolean;
  /** Resolves at the next change (more verified bytes, completion, failure) or after `ms`. */
  changed(ms: number): Promise<void>;
}

class Partial implements PartialState {
  verified = 0;
  failed = false;
  private waiters = new Set<() => void>();
  constructor(readonly length: number) {}
  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }
  notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** The receiver's side of a partial piece: report verified bytes, or fail it. */
export interface PartialHandle {
  advance(verified: number): void;
  /** The piece will not complete here: readers stop; the buffer is recycled once they let go. */
  fail(): void;
}

/** A lease of a piece still arriving (PieceCache.leasePartial). */
export interface PartialLease extends PieceLease {
  partial: PartialState;
}

/**
 * Recently written or served pieces kept in memory (as the chunk lists they arrived in), so an upload
 * that follows right after a piece lands costs no file read. Readers lease an entry; an entry evicted
 * while leased returns its pooled buffer when the last lease ends. Small on purpose: the kernel's page
 * cache already holds every recent piece of the content file (a read from it is one copy), while each
 * MiB here is process memory that must be faulted in before first use. On bench:swarm (16 agents, each
 * a fresh process) a 64 MiB cache cost 28 CPU-seconds against 20.5 with 4-8 MiB, and finished later.
 */
export const PIECE_CACHE_BYTES = 8 * 1024 * 1024;
const METADATA_FLUSH_MS = 1_000;

export class PieceCache {
  private map = new Map<string, CacheEntry>();
  /** Pieces still arriving, by key; not counted against the capacity, never evicted. */
  private partials = new Map<string, CacheEntry>();
  private bytes = 0;
  constructor(
    private readonly capacity = PIECE_CACHE_BYTES,
    readonly pool = new BufferPool(),
  ) {}

  /**
   * Maps, ahead of the first download, the buffers a download uses: enough `pieceLength` pieces to
   * fill the cache, plus one arriving. Returns how many buffers were added to the pool.
   */
  prefill(pieceLength: number): number {
    return this.pool.prefill(pieceLength, Math.ceil(this.capacity / pieceLength) + 1);
  }

  /** Leases the cached piece (and marks it recently used); undefined when not cached. */
  lease(key: string): PieceLease | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    this.map.set(key, e);
    return this.leaseOf(e);
  }

  private leaseOf(e: CacheEntry): PieceLease {
    e.refs++;
    let done = false;
    return {
      chunks: e.chunks,
      release: () => {
        if (done) return;
        done = true;
        e.refs--;
        if (e.evicted && e.refs === 0) this.recycle(e);
      },
    };
  }

  private recycle(e: CacheEntry): void {
    if (e.pooled) {
      const b = e.pooled;
      e.pooled = undefined;
      this.pool.give(b);
    }
  }

  /**
   * Caches a piece. `pooled`, the BufferPool buffer the chunks live in, is owned by the cache from
   * here on, also when the piece is too large to cache (it goes straight back to the pool).
   */
  set(key: string, chunks: Buffer[], size: number, pooled?: Buffer): void {
    this.setLeased(key, chunks, size, pooled)?.release();
  }

  /**
   * Registers a piece that is arriving into `pooled` (its first `length` bytes), so its verified
   * prefix can be served before it is complete. The cache owns `pooled` from here on: set() with
   * the same buffer completes the entry; fail() drops it.
   */
  beginPartial(key: string, pooled: Buffer, length: number): PartialHandle {
    this.failPartial(key);
    const partial = new Partial(length);
    const e: CacheEntry = { chunks: [pooled.subarray(0, length)], size: length, refs: 0, pooled, evicted: false, partial };
    this.partials.set(key, e);
    return {
      advance: (verified) => {
        if (e.partial !== partial || partial.failed || verified <= partial.verified) return;
        partial.verified = verified;
        partial.notify();
      },
      fail: () => {
        if (this.partials.get(key) === e) this.failPartial(key);
      },
    };
  }

  /** Leases a piece still arriving (with at least one verified byte); undefined when there is none. */
  leasePartial(key: string): PartialLease | undefined {
    const e = this.partials.get(key);
    if (!e?.partial || e.partial.failed || e.partial.verified <= 0) return undefined;
    return { ...this.leaseOf(e), partial: e.partial };
  }

  /** Numbers of the task's pieces still arriving with a verified prefix to serve. */
  partialPieces(taskId: string): number[] {
    const out: number[] = [];
    for (const [k, e] of this.partials) if (k.startsWith(taskId) && e.partial && !e.partial.failed && e.partial.verified > 0) out.push(Number(k.slice(k.lastIndexOf(':') + 1)));
    return out;
  }

  private failPartial(key: string): void {
    const e = this.partials.get(key);
    if (!e) return;
    this.partials.delete(key);
    const p = e.partial as Partial | undefined;
    e.partial = undefined;
    if (p) {
      p.failed = true;
      p.notify();
    }
    e.evicted = true;
    if (e.refs === 0) this.recycle(e);
  }

  /**
   * Takes back a pooled buffer that did not become a cached piece: through the partial entry that
   * holds it (its readers may still be sending from it), else straight to the pool.
   */
  dropPooled(key: string, pooled: Buffer): void {
    const e = this.partials.get(key);
    if (e && e.pooled === pooled) this.failPartial(key);
    else this.pool.give(pooled);
  }

  /** set(), then a lease of what was stored (or of the uncached bytes, recycled on release). */
  setLeased(key: string, chunks: Buffer[], size: number, pooled?: Buffer): PieceLease {
    const arriving = this.partials.get(key);
    if (arriving && pooled && arriving.pooled === pooled) {
      // The piece that was arriving is complete: the same entry (and its readers' leases) moves
      // into the cache, and its readers see the whole piece verified.
      this.partials.delete(key);
      const p = arriving.partial as Partial | undefined;
      arriving.partial = undefined;
      arriving.chunks = chunks;
      arriving.size = size;
      if (p) {
        p.verified = p.length;
        p.notify();
      }
      return this.insert(key, arriving);
    }
    const e: CacheEntry = { chunks, size, refs: 0, pooled, evicted: false };
    return this.insert(key, e);
  }

  private insert(key: string, e: CacheEntry): PieceLease {
    const size = e.size;
    if (size > this.capacity) {
      e.evicted = true;
      return this.leaseOf(e);
    }
    this.delete(key);
    this.map.set(key, e);
    this.bytes += size;
    const lease = this.leaseOf(e);
    for (const [k, old] of this.map) {
      if (this.bytes <= this.capacity) break;
      this.evict(k, old);
    }
    return lease;
  }

  private evict(key: string, e: CacheEntry): void {
    this.map.delete(key);
    this.bytes -= e.size;
    e.evicted = true;
    if (e.refs === 0) this.recycle(e);
  }

  delete(key: string): void {
    const e = this.map.get(key);
    if (e) this.evict(key, e);
  }
  deleteTask(taskId: string): void {
    for (const [k, e] of [...this.map]) if (k.startsWith(taskId)) this.evict(k, e);
  }

  /** Fails the task's pieces still arriving (the task was deleted). */
  failPartials(taskId: string): void {
    for (const k of [...this.partials.keys()]) if (k.startsWith(taskId)) this.failPartial(k);
  }
}

async function writevAll(fh: fs.FileHandle, chunks: Buffer[], position: number): Promise<void> {
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

  constructor(readonly store: PieceStore, public meta: TaskMetadata) {
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

export class PieceStore {
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
