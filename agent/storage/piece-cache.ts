/** Piece buffers in memory: the reusable buffer pool, the recent-piece cache and partial pieces in flight. */
import { allocAligned } from './direct-io.js';

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

