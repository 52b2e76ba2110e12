/**
 * The download engine. One Task per task ID at a time (concurrent downloads of the same URL share
 * it); its run loop asks the scheduler for parents over one AnnouncePeer stream, fetches pieces from
 * several parents in parallel, verifies each against the digest the scheduler relays, and goes back to
 * source when told to, and as the fallback when the scheduler or every parent fails: P2P failing never
 * fails a download. Readers get bytes in order as pieces land.
 *
 * Task lifecycle (Task.state):
 *   running  --all wanted pieces verified-->  done
 *   running  --origin error / integrity / disabled back-to-source-->  failed
 */
import { createHash, randomUUID } from 'node:crypto';
import { constants as fsConstants, createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import { IntegrityError, SourceError, TimeoutError, UnavailableError, errorMessage, isDamselflyError } from '../adapters/errors.js';
import type { Logger } from '../adapters/log.js';
import type { AgentConfig } from './config.js';
import { priorityName } from '../scheduler/protocol/download.js';
import type { AnnouncePeerResponse__Output as AnnouncePeerResponseMsg, Download as DownloadMsg, Host__Output as HostMsg, Peer__Output as PeerMsg, Piece as PieceMsg, TaskInfo__Output as TaskInfoMsg } from '../scheduler/protocol/messages.js';
import type { AgentMetrics } from './metrics.js';
import { taskSizeLevel } from '../scheduler/protocol/task-size.js';
import * as tracing from '../adapters/tracing.js';
import type { TokenBucket } from './ratelimit.js';
import { BlockHasher, BlockVerifier } from './blocks.js';
import type { SecureContext as TlsSecureContext } from 'node:tls';
import { PieceClient } from './piece-client.js';
import type { SchedulerClient } from './scheduler-client.js';
import { interestingHeaders, sourceGet } from './source/client.js';
import { DiskFullError, isDiskFull, stripCredentials, type PartialHandle, type PieceStore, type StoredTask } from './storage/store.js';
import { DEFAULT_FILTERED_QUERY_PARAMS, MIN_PIECE_LENGTH, pieceBounds, pieceCount, pieceLengthFor, piecesCovering, taskIdOf as computeTaskId } from '../scheduler/protocol/task-id.js';

export interface DownloadOptions {
  url: string;
  requestHeaders?: Record<string, string>; // forwarded to the origin (incl. Authorization); never logged
  tag?: string;
  application?: string;
  priority?: number;
  filteredQueryParams?: string[]; // default: DEFAULT_FILTERED_QUERY_PARAMS from scheduler/protocol/task-id.ts
  pieceLength?: number;
  digest?: string; // 'sha256:<hex>' of the whole content
  range?: { start: number; end?: number }; // inclusive end; only pieces covering it are downloaded
  disableBackToSource?: boolean;
  signal?: AbortSignal;
  /** Register with need_back_to_source (the scheduler's seed-peer trigger). */
  needBackToSource?: boolean;
  isPreheat?: boolean;
  /** Task ID = sha256 hex of this string instead of the URL-based ID (Dragonfly's content_for_calculating_task_id). */
  contentForCalculatingTaskId?: string;
  /** An OCI blob URL's task ID is its digest's hex (Dragonfly's enable_task_id_based_blob_digest). */
  enableTaskIdBasedBlobDigest?: boolean;
}

export interface TaskStream {
  taskId: string;
  peerId: string;
  contentLength: number;
  range?: { start: number; end: number };
  responseHeaders: Record<string, string>;
  fromCache: boolean;
  body: Readable;
  /**
   * Set only for a complete task read from the cache (its pieces verified): the content file and the
   * inclusive byte range `body` would yield. A reader may read the file itself instead of consuming
   * `body`; it must then call `done(bytesSent)` exactly once when finished (counts local_peer
   * traffic, lets the task be evicted again) and not read `body`.
   */
  file?: { path: string; start: number; end: number; done(bytes: number): void; intact(): Promise<boolean> };
}

export interface TaskManagerDeps {
  config: AgentConfig;
  store: PieceStore;
  scheduler?: SchedulerClient;
  host: () => HostMsg;
  metrics: AgentMetrics;
  logger: Logger;
  /** `prefetch`: bytes of pieces only a background prefetch wants (proxy.prefetchRateLimit); none = unpaced. */
  limits: { download: TokenBucket; upload: TokenBucket; source: TokenBucket; prefetch?: TokenBucket };
  /** Runs a GC pass now (the disk filled up); optional. */
  gcNow?: () => Promise<unknown>;
  /** mTLS to parents' piece servers (adapters/tls.ts): the current client context; absent = plaintext. */
  pieceTls?: () => TlsSecureContext | undefined;
}

/**
 * The order a peer asks for pieces: rarest first (fewest holders among its parents; ties: lowest
 * number), which spreads pieces through a swarm fastest; but the pieces an in-order reader (a proxy
 * client, `damselfly get` streaming) needs next come first, within `window` (from its position,
 * one download slot per piece), so a reader of a large file is not left waiting for piece k while
 * rare pieces far ahead arrive. Sorts `candidates` in place and returns them.
 */
export function orderPieces<T extends { n: number; holders: readonly unknown[] }>(candidates: T[], window?: { from: number; to: number }): T[] {
  const near = (n: number): boolean => window !== undefined && n >= window.from && n <= window.to;
  return candidates.sort((a, b) => Number(near(b.n)) - Number(near(a.n)) || (near(a.n) ? a.n - b.n : a.holders.length - b.holders.length || a.n - b.n));
}

/** Times one task registers again after a peer session ended normally and new wants arrived. */
const MAX_REREGISTERS = 3;
/** Responses to give up on the scheduler after (Dragonfly's scheduler.maxScheduleCount). */
const MAX_SCHEDULE_COUNT = 5;
/** Long-poll window of a child asking a parent which pieces it holds. */
const PARENT_POLL_WAIT_MS = 1_000;
/** Largest piece list a parent may answer a long poll with (a larger one is a protocol error). */
const MAX_POLL_BODY = 8 * 1024 * 1024;
/** Pause before asking a parent again after a 429 or an empty 404. */
const PARENT_RETRY_MS = 100;
/**
 * The scheduler hands out a few parents per answer; peers that started later hold pieces too. While
 * pieces are missing and this peer has fewer than TARGET_PARENTS usable parents, it asks for a fresh
 * set (an empty reschedule_peer_request) every PARENT_REFRESH_MS and keeps the parents it had.
 */
const PARENT_REFRESH_MS = 1_500;
/** A parent set that delivered within this window is "working". */
const PRODUCTIVE_MS = 3_000;
const TARGET_PARENTS = 12;
/** How long a peer that holds every range asked so far stays registered for the next one. */
const RANGE_LINGER_MS = 3_000;
/**
 * The back-to-source peer retries what an origin may get right a moment later (5xx, 408, 429, a reset
 * or a stalled body): SOURCE_ATTEMPTS reads in all, each resuming with a Range at the first missing
 * piece, SOURCE_BACKOFF_MS doubling up to SOURCE_BACKOFF_MAX_MS between them. Its children meanwhile
 * wait for its pieces instead of each reading the origin.
 */
const SOURCE_ATTEMPTS = 6;
const SOURCE_BACKOFF_MS = 250;
const SOURCE_BACKOFF_MAX_MS = 4_000;
/** An origin body that sends nothing for this long is treated as broken (and resumed elsewhere in time). */
const SOURCE_IDLE_MS = Number(process.env.DAMSELFLY_SOURCE_IDLE_MS) > 0 ? Number(process.env.DAMSELFLY_SOURCE_IDLE_MS) : 10_000;

class Deferred<T = void> {
  promise: Promise<T>;
  resolve!: (v: T) => void;
  reject!: (e: unknown) => void;
  settled = false;
  constructor() {
    this.promise = new Promise<T>((res, rej) => {
      this.resolve = (v) => {
        this.settled = true;
        res(v);
      };
      this.reject = (e) => {
        this.settled = true;
        rej(e);
      };
    });
    this.promise.catch(() => undefined);
  }
}

type TaskState = 'running' | 'done' | 'failed';

class Task {
  state: TaskState = 'running';
  readonly peerId: string;
  readonly contentKnown = new Deferred();
  readonly finished = new Deferred();
  wantAll = false;
  /** The whole task is wanted by a background prefetch only (proxy.prefetch): see prefetchOnly(). */
  prefetchAll = false;
  wantRanges: [number, number][] = [];
  /** piece number → digest announced by the scheduler (pieces read from the origin by some peer). */
  readonly digests = new Map<number, string>();
  /** piece number → its block digests (blocks.ts), when the origin reader published them. */
  readonly blockDigests = new Map<number, Buffer>();
  readonly log: Logger;
  readonly startedAt = Date.now();
  /** Piece each in-order reader of the body (TaskManager.stream) waits for next. */
  readonly readers = new Map<symbol, number>();
  private wake = new Set<() => void>();

  constructor(readonly id: string, readonly stored: StoredTask, readonly opts: DownloadOptions, peerId: string, logger: Logger) {
    this.peerId = peerId;
    this.log = logger.child({ taskId: id, peerId });
    if (stored.meta.contentLength >= 0) this.contentKnown.resolve();
    for (const [n, d] of Object.entries(stored.meta.pieces)) this.digests.set(Number(n), d);
  }

  get contentLength(): number {
    return this.stored.meta.contentLength;
  }
  get pieceLength(): number {
    return this.stored.meta.pieceLength;
  }
  get pieceCount(): number {
    return this.stored.pieceCount;
  }

  /** Adds what a caller wants; `undefined` range = the whole task (for a background prefetch with `prefetch`). */
  want(range?: [number, number], prefetch = false): void {
    if (!range) {
      if (prefetch) this.prefetchAll = true;
      else this.wantAll = true;
    } else this.wantRanges.push(range);
    this.notify();
  }

  wanted(n: number): boolean {
    if (this.wantAll || this.prefetchAll) return true;
    return this.wantRanges.some(([a, b]) => n >= a && n <= b);
  }

  /** Whether piece `n` is wanted only by a background prefetch (its bytes then pay proxy.prefetchRateLimit). */
  prefetchOnly(n: number): boolean {
    return this.prefetchAll && !this.wantAll && !this.wantRanges.some(([a, b]) => n >= a && n <= b);
  }

  /** The lowest piece an in-order reader waits for, if any reader waits. */
  readerFront(): number | undefined {
    let front: number | undefined;
    for (const n of this.readers.values()) if (front === undefined || n < front) front = n;
    return front;
  }

  /** Wanted pieces not yet held; empty also while the content length is unknown and nothing is wanted. */
  missing(): number[] {
    const count = this.pieceCount;
    if (count < 0) return [];
    const out: number[] = [];
    for (let n = 0; n < count; n++) if (this.wanted(n) && !this.stored.has(n)) out.push(n);
    return out;
  }

  /** Whether someone wants something known: the whole task or a range in pieces. */
  hasWants(): boolean {
    return this.wantAll || this.prefetchAll || this.wantRanges.some(([a]) => a >= 0);
  }

  satisfied(): boolean {
    return this.contentLength >= 0 && this.hasWants() && this.missing().length === 0;
  }

  /** Subscribes to changes until the returned function is called. */
  subscribe(fn: () => void): () => void {
    this.wake.add(fn);
    return () => this.wake.delete(fn);
  }

  setContent(contentLength: number, pieceLength: number, headers?: Record<string, string>): void {
    if (contentLength < 0) return;
    this.stored.setContent(contentLength, pieceLength > 0 ? pieceLength : this.opts.pieceLength ?? pieceLengthFor(contentLength), headers);
    if (!this.contentKnown.settled) {
      this.contentKnown.resolve();
      this.log.debug('content length known', { contentLength, pieceLength: this.pieceLength });
    }
    this.notify();
  }

  /** Wakes everything waiting for a change (new want, new content facts, failure). */
  notify(): void {
    for (const w of [...this.wake]) w();
  }
  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const off = this.stored.onPiece(done);
      const self = this;
      this.wake.add(done);
      function done() {
        clearTimeout(t);
        off();
        self.wake.delete(done);
        resolve();
      }
    });
  }

  fail(err: unknown): void {
    if (this.state !== 'running') return;
    this.state = 'failed';
    tracing.unbindTask(this.id);
    if (!this.contentKnown.settled) this.contentKnown.reject(err);
    this.finished.reject(err);
    this.notify();
  }
}

export class TaskManager {
  private tasks = new Map<string, Task>();
  private readonly cfg: AgentConfig;
  private stopping = false;

  constructor(private deps: TaskManagerDeps) {
    this.cfg = deps.config;
  }

  /** Task ID of a download, as Dragonfly computes it. */
  taskIdOf(o: DownloadOptions): string {
    return computeTaskId(o.url, {
      tag: o.tag,
      application: o.application,
      pieceLength: o.pieceLength,
      filteredQueryParams: o.filteredQueryParams ?? DEFAULT_FILTERED_QUERY_PARAMS,
      contentForCalculatingTaskId: o.contentForCalculatingTaskId,
      enableTaskIdBasedBlobDigest: o.enableTaskIdBasedBlobDigest,
    });
  }

  private newPeerId(): string {
    const h = this.deps.host();
    return `${h.ip}-${h.hostname}-${randomUUID()}${this.cfg.seedPeer.enable ? '-seed' : ''}`;
  }

  /** Starts or joins the task; returns it once registered (content length may still be unknown). */
  private ensure(o: DownloadOptions, range?: [number, number], prefetch = false): Task {
    const id = this.taskIdOf(o);
    let task = this.tasks.get(id);
    if (task && task.state === 'running') {
      task.want(range, prefetch);
      return task;
    }
    const peerId = this.newPeerId();
    const stored = this.deps.store.open(id, () => ({
      taskId: id,
      peerId,
      url: stripCredentials(o.url),
      tag: o.tag,
      application: o.application,
      contentLength: -1,
      pieceLength: o.pieceLength ?? 0,
      responseHeaders: {},
      digest: o.digest,
    }));
    stored.meta.peerId = peerId;
    // The task outlives the caller that started it (a proxy client or a scheduler's DownloadTask call
    // may go away): its origin and peer traffic must not be tied to that caller's abort signal.
    // Each caller's signal only ends that caller's own wait (raceAbort below).
    task = new Task(id, stored, { ...o, signal: undefined }, peerId, this.deps.logger);
    tracing.bindTask(id, peerId);
    task.want(range, prefetch);
    this.tasks.set(id, task);
    stored.inUse++;
    this.deps.metrics.concurrentDownloadTaskTotal.inc();
    this.deps.metrics.downloadTaskTotal.inc({ type: 'standard', tag: o.tag ?? '', app: o.application ?? '', priority: String(o.priority ?? 6) });
    void this.run(task).finally(() => {
      stored.inUse--;
      this.deps.metrics.concurrentDownloadTaskTotal.dec();
      if (this.tasks.get(id) === task) this.tasks.delete(id);
    });
    return task;
  }

  /**
   * Starts or joins the download of a task and resolves once the content length is known. Throws
   * SourceError when the origin answers non-2xx, UnavailableError when neither P2P nor the origin can
   * deliver, InvalidError-like RangeError when the range is outside the content.
   */
  /**
   * The stored task when it is complete in the cache, no download of it is running, and its file is
   * proven to hold the verified bytes (its seal holds, or every piece was hashed again; pieces that
   * differ are dropped and the task is then not complete: the caller downloads them again).
   */
  private async finishedInCache(id: string): Promise<StoredTask | undefined> {
    const s = this.deps.store.get(id);
    if (!s?.meta.complete || this.tasks.has(id)) return undefined;
    s.inUse++;
    try {
      return (await s.proveComplete()) && !this.tasks.has(id) ? s : undefined;
    } finally {
      s.inUse--;
    }
  }

  /**
   * Checks a complete task against a whole-content digest a caller asked for: at once when the task
   * already knows its digest, else by hashing its (verified) pieces once and remembering the result.
   * Throws IntegrityError naming the URL when they differ.
   */
  private async checkDigest(s: StoredTask, want: string | undefined, url: string): Promise<void> {
    if (!want) return;
    want = want.toLowerCase();
    if (!s.meta.digest || !s.meta.digestVerified) {
      const h = createHash('sha256');
      for (let n = 0; n < s.pieceCount; n++) {
        const lease = await s.leasePiece(n);
        for (const c of lease.chunks) h.update(c);
        lease.release();
      }
      s.meta.digest = 'sha256:' + h.digest('hex');
      s.meta.digestVerified = true;
      s.touch();
    }
    if (s.meta.digest !== want) throw new IntegrityError(`content of ${stripCredentials(url)} is ${s.meta.digest}, not the digest asked (${want})`);
  }

  async download(o: DownloadOptions): Promise<TaskStream> {
    const id = this.taskIdOf(o);
    const done = await this.finishedInCache(id);
    if (done) {
      await this.checkDigest(done, o.digest, o.url);
      done.touch();
      return this.stream(id, done, undefined, o, true);
    }
    const cached = this.deps.store.get(id);
    // The range is only known in pieces once the content length is; until then want the whole task
    // only if no range was asked (a ranged request must not pull the whole blob).
    let task: Task;
    if (o.range && cached && cached.meta.contentLength >= 0) {
      const len = cached.meta.contentLength;
      const end = Math.min(o.range.end ?? len - 1, len - 1);
      const { first, last } = piecesCovering(o.range.start, end, len, cached.meta.pieceLength);
      if (first <= last && [...Array(last - first + 1).keys()].every((i) => cached.has(first + i)) && (!cached.meta.complete || (await this.finishedInCache(id)))) {
        cached.touch();
        return this.stream(id, cached, undefined, o, true);
      }
      task = this.ensure(o, [first, last]);
    } else {
      task = this.ensure(o, o.range ? [-1, -1] : undefined);
    }
    await raceAbort(task.contentKnown.promise, o.signal);
    if (o.range && task.contentLength >= 0) {
      const len = task.contentLength;
      const end = Math.min(o.range.end ?? len - 1, len - 1);
      const { first, last } = piecesCovering(o.range.start, end, len, task.pieceLength);
      task.want([first, last]);
    }
    return this.stream(id, task.stored, task, o, false);
  }

  /**
   * The whole content of a task complete in the cache, as a TaskStream with `file` set; undefined
   * when it is not complete (never starts a download). The caller must consume `body` or call
   * `file.done()`.
   */
  async cached(o: DownloadOptions): Promise<TaskStream | undefined> {
    const id = this.taskIdOf(o);
    const c = await this.finishedInCache(id);
    if (!c || c.meta.contentLength <= 0) return undefined;
    c.touch();
    return this.stream(id, c, undefined, { ...o, range: undefined }, true);
  }

  /**
   * Starts (or joins) a download of the whole task in the background, e.g. proxy prefetch. Pieces
   * no foreground caller wants are paced by the agent-wide prefetch bucket (proxy.prefetchRateLimit);
   * once a foreground caller wants them they go at the normal rate.
   */
  prefetch(o: DownloadOptions): void {
    const cached = this.deps.store.get(this.taskIdOf(o));
    if (cached?.meta.complete) return;
    const task = this.ensure({ ...o, range: undefined }, undefined, true);
    task.finished.promise.catch((err) => task.log.warn('prefetch failed', { err: errorMessage(err) }));
  }

  /** Downloads the whole task into the cache (Dfdaemon.DownloadTask); `onProgress` after each piece. Throws like download(). */
  async fetchToCache(o: DownloadOptions, onProgress: (t: { taskId: string; peerId: string; contentLength: number; finished: number; count: number; done: boolean }) => void): Promise<void> {
    const id = this.taskIdOf(o);
    const cached = await this.finishedInCache(id);
    if (cached) {
      onProgress({ taskId: id, peerId: cached.meta.peerId, contentLength: cached.meta.contentLength, finished: cached.finishedCount, count: cached.pieceCount, done: true });
      return;
    }
    const task = this.ensure({ ...o, range: undefined });
    const report = () => onProgress({ taskId: id, peerId: task.peerId, contentLength: task.contentLength, finished: task.stored.finishedCount, count: task.pieceCount, done: false });
    const off = task.stored.onPiece(report);
    try {
      await raceAbort(task.finished.promise, o.signal);
    } finally {
      off();
    }
    onProgress({ taskId: id, peerId: task.peerId, contentLength: task.contentLength, finished: task.stored.finishedCount, count: task.pieceCount, done: true });
  }

  /**
   * Downloads the whole task into the cache and places it at `output`, like dfget's output path: no
   * bytes pass through the caller. `output` is a file of its own (a reflink where the file system
   * can, else a copy), never a hard link: editing it must not change the cache. The copy counts only
   * if the cached file still matched its seal after it was made. `onStart` runs once the length is
   * known. Throws like download() (IntegrityError when `o.digest` differs), and the file system's
   * error (EEXIST, ENOENT...) when `output` cannot be created.
   */
  async exportTo(o: DownloadOptions, output: string, onStart?: (info: { taskId: string; peerId: string; contentLength: number; responseHeaders: Record<string, string> }) => void): Promise<{ taskId: string; contentLength: number }> {
    const id = this.taskIdOf(o);
    let started = false;
    for (let attempt = 0; ; attempt++) {
      const cached = await this.finishedInCache(id);
      let stored: StoredTask;
      if (cached) {
        stored = cached;
        if (!started) onStart?.({ taskId: id, peerId: stored.meta.peerId, contentLength: stored.meta.contentLength, responseHeaders: stored.meta.responseHeaders });
        this.deps.metrics.downloadTraffic.inc({ type: 'LOCAL_PEER' }, Math.max(0, stored.meta.contentLength));
      } else {
        const task = this.ensure({ ...o, range: undefined });
        await raceAbort(task.contentKnown.promise, o.signal);
        if (!started) onStart?.({ taskId: id, peerId: task.peerId, contentLength: task.contentLength, responseHeaders: task.stored.meta.responseHeaders });
        await raceAbort(task.finished.promise, o.signal);
        stored = task.stored;
      }
      started = true;
      stored.inUse++;
      try {
        await this.checkDigest(stored, o.digest, o.url);
        stored.touch();
        const src = this.deps.store.contentPath(id);
        if (stored.meta.contentLength === 0) {
          await fs.writeFile(output, '', { flag: 'wx' });
          return { taskId: id, contentLength: 0 };
        }
        await fs.copyFile(src, output, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE);
        if (await stored.sealIntact()) return { taskId: id, contentLength: stored.meta.contentLength };
        // The cached file changed while it was copied: the copy proves nothing; verify and go again.
        await fs.rm(output, { force: true });
        if (attempt >= 2) throw new IntegrityError(`cached content of ${stripCredentials(o.url)} keeps changing on disk`);
      } finally {
        stored.inUse--;
      }
    }
  }

  stat(taskId: string): { contentLength: number; finishedPieces: number; pieceCount: number; complete: boolean } | undefined {
    const s = this.deps.store.get(taskId);
    if (!s) return undefined;
    return { contentLength: s.meta.contentLength, finishedPieces: s.finishedCount, pieceCount: s.pieceCount, complete: s.meta.complete };
  }

  /** Evicts a task (running downloads of it fail). Returns false when absent. */
  async delete(taskId: string): Promise<boolean> {
    const t = this.tasks.get(taskId);
    t?.fail(new UnavailableError(`task ${taskId} was deleted`));
    const s = this.deps.store.get(taskId);
    const peerId = s?.meta.peerId;
    const ok = await this.deps.store.delete(taskId);
    if (ok && peerId) void this.deps.scheduler?.leavePeer(taskId, peerId);
    return ok;
  }

  /**
   * Tells the scheduler at `addr` (restarted, or first met) which complete tasks this host holds, so
   * it can hand them out as parents instead of sending the next peers to the origin: per task one
   * short AnnouncePeer stream that registers the peer and reports every piece with its digest, as a
   * finished read from the origin would. Tasks of another scheduler (hash ring), tasks downloading
   * now (they register themselves) and partial tasks (a peer that never finishes would hold its
   * children) are left out. Never throws.
   */
  async announceHeld(addr: string): Promise<number> {
    const sched = this.deps.scheduler;
    if (!sched || this.stopping) return 0;
    const hostId = this.deps.host().id;
    let n = 0;
    for (const s of [...this.deps.store.tasks.values()]) {
      const m = s.meta;
      if (!m.complete || m.contentLength <= 0 || this.tasks.has(m.taskId) || sched.pick(m.taskId) !== addr || this.stopping) continue;
      try {
        const call = await withTimeout(sched.openPeerStream(addr), 5_000, 'scheduler did not accept the stream');
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(t);
            resolve();
          };
          const t = setTimeout(() => {
            call.cancel();
            done();
          }, 5_000);
          call.on('data', () => undefined);
          call.on('error', done);
          call.on('end', done);
          const base = { host_id: hostId, task_id: m.taskId, peer_id: m.peerId };
          const download: Partial<DownloadMsg> = { url: m.url, digest: m.digestVerified ? (m.digest ?? '') : '', tag: m.tag ?? '', application: m.application ?? '', priority: 'LEVEL6', filtered_query_params: [], request_header: {}, piece_length: m.pieceLength, need_back_to_source: true, disable_back_to_source: false, range: null };
          call.write({ ...base, register_peer_request: { download } });
          call.write({ ...base, download_peer_back_to_source_started_request: { description: 'held', content_length: m.contentLength, piece_length: m.pieceLength } });
          for (const num of s.order) {
            const b = pieceBounds(num, m.contentLength, m.pieceLength);
            call.write({ ...base, download_piece_back_to_source_finished_request: { piece: { number: num, parent_id: '', offset: b.offset, length: b.length, digest: m.pieces[num], traffic_type: 'BACK_TO_SOURCE', cost_ms: 0 } } });
          }
          call.write({ ...base, download_peer_back_to_source_finished_request: { content_length: m.contentLength, piece_count: s.pieceCount } });
          call.end();
        });
        n++;
      } catch (err) {
        this.deps.logger.debug('announcing a held task failed', { taskId: m.taskId, scheduler: addr, err: errorMessage(err) });
      }
    }
    if (n > 0) this.deps.logger.info('announced held tasks to scheduler', { scheduler: addr, tasks: n });
    return n;
  }

  /** Fails running tasks so their readers end; used on shutdown. */
  stop(): void {
    this.stopping = true;
    for (const t of this.tasks.values()) t.fail(new UnavailableError('agent is shutting down'));
  }

  // ---------------------------------------------------------------------------------------------
  // Reading

  private stream(id: string, stored: StoredTask, task: Task | undefined, o: DownloadOptions, fromCache: boolean): TaskStream {
    const len = stored.meta.contentLength;
    let start = 0;
    let end = len - 1;
    let range: { start: number; end: number } | undefined;
    if (o.range) {
      start = o.range.start;
      end = Math.min(o.range.end ?? len - 1, len - 1);
      if (len > 0) piecesCovering(start, end, len, stored.meta.pieceLength); // throws RangeError when outside
      range = { start, end };
    }
    stored.inUse++;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        stored.inUse--;
      }
    };
    const pl = stored.meta.pieceLength;
    const metrics = this.deps.metrics;
    if (fromCache && stored.meta.complete && len > 0) {
      // A complete task is one verified file: stream it like a static file server would (the
      // kernel's read-ahead, 1 MiB reads) instead of piece by piece. Eviction waits for inUse.
      const contentPath = stored.store.contentPath(id);
      const rs = createReadStream(contentPath, { start, end, highWaterMark: 1024 * 1024 });
      // The file was proven unchanged before this stream began (finishedInCache); the last chunk
      // waits for the seal to hold once more, so a file changed mid-way never yields a whole body.
      async function* sealed(): AsyncGenerator<Buffer> {
        let held: Buffer | undefined;
        for await (const c of rs) {
          if (held) yield held;
          held = c as Buffer;
        }
        if (!(await stored.sealIntact())) {
          void stored.proveComplete().catch(() => undefined);
          throw new IntegrityError(`content file of task ${id} changed while it was read`);
        }
        if (held) yield held;
      }
      const body = Readable.from(sealed(), { objectMode: false, highWaterMark: 1024 * 1024 });
      body.on('close', () => rs.destroy());
      let counted = false;
      const count = (bytes: number): void => {
        if (counted) return;
        counted = true;
        metrics.downloadTraffic.inc({ type: 'LOCAL_PEER' }, bytes);
      };
      // Counted once at the end (bytesRead), so nothing flows before someone reads the body.
      body.on('close', () => {
        count(rs.bytesRead);
        release();
      });
      const file = {
        path: contentPath,
        start,
        end,
        done: (bytes: number): void => {
          count(bytes);
          body.destroy();
          release();
        },
        intact: async (): Promise<boolean> => {
          if (await stored.sealIntact()) return true;
          void stored.proveComplete().catch(() => undefined);
          return false;
        },
      };
      return { taskId: id, peerId: stored.meta.peerId, contentLength: len, range, responseHeaders: { ...stored.meta.responseHeaders }, fromCache, body, file };
    }
    const reader = Symbol('reader');
    const tm = this;
    async function* gen(): AsyncGenerator<Buffer> {
      try {
        if (len <= 0) {
          if (task) await task.finished.promise;
          return;
        }
        const first = Math.floor(start / pl);
        const last = Math.floor(end / pl);
        for (let n = first; n <= last; n++) {
          task?.readers.set(reader, n);
          const b = pieceBounds(n, len, pl);
          const s = Math.max(start, b.offset);
          const e = Math.min(end + 1, b.offset + b.length);
          let buf: Buffer | undefined;
          while (!buf) {
            while (!stored.has(n)) {
              if (task?.state === 'done') throw new UnavailableError(`piece ${n} was not downloaded`);
              if (!task || task.state === 'failed') throw task ? await task.finished.promise.then(() => new UnavailableError('task ended without piece')).catch((e: unknown) => e) : new UnavailableError(`piece ${n} missing`);
              await task.changed(5_000);
            }
            // A whole-content reader gets its last bytes only once the task is complete (digest
            // checked, metadata durable): it never receives a full body that does not hash to what
            // was asked, and whoever asks next finds the task in the cache.
            if (n === last && task && !o.range) {
              await task.finished.promise;
              await tm.checkDigest(stored, o.digest, o.url);
            }
            // A piece that just landed is still in the memory cache; one read back from the disk is
            // hashed against its digest first (leasePiece). One that changed on disk was dropped
            // there: a running download fetches it again, and this reader waits for it.
            let lease;
            try {
              lease = await stored.leasePiece(n);
            } catch (err) {
              if (err instanceof IntegrityError && task?.state === 'running') {
                task.notify();
                continue;
              }
              throw err;
            }
            buf = Buffer.allocUnsafe(e - s);
            copyRange(lease.chunks, s - b.offset, buf);
            lease.release();
          }
          if (fromCache) metrics.downloadTraffic.inc({ type: 'LOCAL_PEER' }, buf.length);
          yield buf;
        }
      } finally {
        task?.readers.delete(reader);
        release();
      }
    }
    // One piece of read-ahead: the next piece is read from disk while the reader (a socket) drains
    // the current one. With no read-ahead, disk reads and socket writes take turns.
    const body = Readable.from(gen(), { objectMode: false, highWaterMark: Math.max(pl, 1) });
    body.on('close', release);
    return { taskId: id, peerId: task?.peerId ?? stored.meta.peerId, contentLength: len, range, responseHeaders: { ...stored.meta.responseHeaders }, fromCache, body };
  }

  // ---------------------------------------------------------------------------------------------
  // Running

  private async run(task: Task): Promise<void> {
    const o = task.opts;
    const labels = { type: 'standard', tag: o.tag ?? '', app: o.application ?? '', priority: String(o.priority ?? 6) };
    try {
      let rounds = 0;
      let triedScheduler = false;
      let reRegisters = 0;
      let idleSince = 0;
      // Wants may grow while complete() awaits (a reader joining late); loop until none is left.
      for (;;) {
        while (!this.stopping && task.state === 'running') {
          if (task.satisfied()) break;
          if (task.contentLength >= 0 && !task.hasWants()) {
            // A ranged reader learned the length and is about to say which pieces it wants.
            idleSince ||= Date.now();
            if (Date.now() - idleSince > 5_000) break;
            await task.changed(50);
            continue;
          }
          if (rounds++ > 10) throw new UnavailableError('task made no progress');
          const sched = this.deps.scheduler;
          const addr = sched?.pick(task.id);
          let p2pFailed = !sched || !addr;
          let sessionEnded = false;
          if (sched && addr && !triedScheduler) {
            // One AnnouncePeer stream at a time; after a failed one, later rounds read the origin.
            triedScheduler = true;
            try {
              await new PeerSession(this, task, sched, addr, this.deps).run();
              // It ended normally (its wants were met, or a ranged reader's linger ran out) and
              // wants arrived since (a Range joining while the task completes): register again,
              // a few times, rather than read the origin behind the scheduler's back.
              if (reRegisters++ < MAX_REREGISTERS) {
                triedScheduler = false;
                sessionEnded = true;
                if (!task.satisfied()) task.log.debug('new wants after the peer session ended; registering again');
              }
            } catch (err) {
              if (err instanceof SourceError || err instanceof IntegrityError || err instanceof DiskFullError || task.state !== 'running') throw err;
              p2pFailed = true;
              task.log.warn('P2P download failed; going back to source', { err: errorMessage(err), scheduler: addr });
            }
          }
          if (task.state !== 'running' || task.satisfied() || sessionEnded) continue;
          if (!this.cfg.scheduler.enableBackToSource || o.disableBackToSource) {
            if (p2pFailed) throw new UnavailableError('P2P download failed and back-to-source is disabled');
            continue;
          }
          await this.backToSource(task, undefined);
          task.wantRanges = task.wantRanges.filter(([a]) => a >= 0);
        }
        if (task.state !== 'running') throw await task.finished.promise.then(() => new UnavailableError('stopped')).catch((e: unknown) => e);
        await this.complete(task);
        // Nothing may await between this check and state = 'done': ensure() joins only running tasks.
        if (task.state !== 'running' || this.stopping || task.satisfied() || !task.hasWants()) break;
      }
      this.deps.metrics.downloadTaskDuration.observe({ task_type: 'standard', task_size_level: taskSizeLevel(task.contentLength) }, Date.now() - task.startedAt);
      task.state = 'done';
      task.finished.resolve();
      tracing.unbindTask(task.id);
      task.notify();
    } catch (err) {
      this.deps.metrics.downloadTaskFailureTotal.inc(labels);
      if (task.state === 'running') task.log.warn('download failed', { err: errorMessage(err), code: isDamselflyError(err) ? err.code : undefined });
      task.fail(err);
      if (err instanceof IntegrityError || (err instanceof SourceError && task.stored.finishedCount === 0)) await this.deps.store.delete(task.id).catch(() => undefined);
      if (err instanceof DiskFullError) {
        // A partial task nobody can finish here only takes the space the next download needs.
        await this.delete(task.id).catch(() => undefined);
        void this.deps.gcNow?.().catch(() => undefined);
      }
    }
  }

  /** Marks a fully downloaded task complete after checking the whole-content digest. Throws IntegrityError. */
  private async complete(task: Task): Promise<void> {
    const s = task.stored;
    if (s.finishedCount === s.pieceCount && s.pieceCount >= 0) {
      const want = task.opts.digest ?? s.meta.digest;
      if (want) {
        const [alg, hex] = want.split(':');
        if (alg !== 'sha256') throw new IntegrityError(`unsupported digest algorithm ${alg}`);
        const h = createHash('sha256');
        for (let n = 0; n < s.pieceCount; n++) {
          let lease;
          try {
            lease = await s.leasePiece(n);
          } catch (err) {
            // The piece changed on disk since it was verified and was dropped: fetch it again.
            if (err instanceof IntegrityError && !s.has(n)) return;
            throw err;
          }
          for (const c of lease.chunks) h.update(c);
          lease.release();
        }
        const got = h.digest('hex');
        if (got !== hex?.toLowerCase()) throw new IntegrityError(`content digest mismatch: want sha256:${hex}, got sha256:${got}`);
        s.meta.digest = `sha256:${got}`;
        s.meta.digestVerified = true;
      }
      s.meta.complete = true;
      s.touch();
      await s.seal();
      await s.flush();
      // Memory goes to tasks in flight; a finished task is served from its file (and the page cache).
      this.deps.store.cache.deleteTask(task.id);
      task.log.info('task complete', { contentLength: s.meta.contentLength, pieces: s.pieceCount, ms: Date.now() - task.startedAt, bufferAllocations: this.deps.store.cache.pool.allocations, directWrites: this.deps.store.stats.directWrites });
    } else {
      await s.flush();
    }
  }

  /**
   * Reads the missing wanted pieces from the origin, retrying what may pass (5xx, 408, 429, a reset,
   * a stalled or short body) with bounded exponential backoff; each retry resumes with a Range at
   * the first missing piece, so at most the piece in flight is read twice. The scheduler hears
   * "started" once and "failed" only when the last attempt failed. Throws SourceError (4xx, or
   * a 5xx that persisted), UnavailableError, DiskFullError.
   */
  backToSource(task: Task, reporter: BackToSourceReporter | undefined): Promise<void> {
    return tracing.backToSource(task.id, task.opts.url, reporter ? 'the scheduler sent this peer to the origin' : 'no scheduler or P2P failed', () => this.readOriginRetrying(task, reporter));
  }

  private async readOriginRetrying(task: Task, reporter: BackToSourceReporter | undefined): Promise<void> {
    let started = false;
    const once: BackToSourceReporter | undefined = reporter && {
      started: (len, pl) => {
        if (!started) reporter.started(len, pl);
        started = true;
      },
      piece: (p) => reporter.piece(p),
      finished: (len, count) => reporter.finished(len, count),
      failed: () => undefined,
    };
    for (let attempt = 1; ; attempt++) {
      try {
        await this.backToSourceOnce(task, once);
        return;
      } catch (err) {
        if (attempt >= SOURCE_ATTEMPTS || !retryableSourceError(err) || task.state !== 'running' || this.stopping) {
          reporter?.failed(errorMessage(err));
          throw err;
        }
        const ms = Math.min(SOURCE_BACKOFF_MAX_MS, SOURCE_BACKOFF_MS * 2 ** (attempt - 1));
        task.log.warn('origin read failed; retrying', { attempt, retryInMs: ms, err: errorMessage(err), held: task.stored.finishedCount });
        await sleep(ms);
      }
    }
  }

  private async backToSourceOnce(task: Task, reporter: BackToSourceReporter | undefined): Promise<void> {
    const o = task.opts;
    const known = task.contentLength >= 0;
    let range: { start: number; end?: number } | undefined;
    if (known) {
      const missing = task.missing();
      if (missing.length === 0 && task.contentLength > 0) {
        reporter?.started(task.contentLength, task.pieceLength);
        return;
      }
      if (missing.length > 0) {
        const first = pieceBounds(missing[0], task.contentLength, task.pieceLength);
        const last = pieceBounds(missing[missing.length - 1], task.contentLength, task.pieceLength);
        if (first.offset > 0 || last.offset + last.length < task.contentLength) range = { start: first.offset, end: last.offset + last.length - 1 };
      }
    }
    const scheme = new URL(o.url).protocol.replace(':', '');
    this.deps.metrics.backendRequestTotal.inc({ scheme, method: 'GET' });
    let res;
    try {
      res = await sourceGet(o.url, o.requestHeaders, range, o.signal);
    } catch (err) {
      this.deps.metrics.backendRequestFailureTotal.inc({ scheme, method: 'GET' });
      reporter?.failed(errorMessage(err));
      // A resume the origin refuses as out of range: the body it sent before was shorter than the
      // Content-Length it announced. Say so, rather than pass on a bare 416.
      if (err instanceof SourceError && err.status === 416 && range && range.start > 0) throw new UnavailableError(`origin announced ${task.contentLength} bytes for ${stripCredentials(o.url)} but refuses bytes from ${range.start} on (416): its Content-Length is longer than its body`, { details: { retry: false } });
      throw err;
    }
    const total = res.totalLength >= 0 ? res.totalLength : task.contentLength;
    if (total < 0) {
      res.body.destroy();
      // Without a length there is no piece layout; Dragonfly requires one too.
      throw new UnavailableError('origin did not announce a content length');
    }
    task.setContent(total, o.pieceLength ?? (task.pieceLength > 0 && task.stored.finishedCount > 0 ? task.pieceLength : pieceLengthFor(total)), interestingHeaders(res.headers));
    if (range === undefined && task.pieceLength < MIN_PIECE_LENGTH && !o.pieceLength && task.stored.finishedCount === 0) task.setContent(total, pieceLengthFor(total));
    reporter?.started(total, task.pieceLength);
    const pl = task.pieceLength;
    const count = pieceCount(total, pl);
    if (count === 0) {
      res.body.resume();
      return;
    }
    let pos = res.offset;
    let n = Math.floor(pos / pl);
    let skip = pos - n * pl; // a 206 starting mid-piece cannot happen with our ranges, but be exact
    let want = pieceBounds(n, total, pl).length;
    let parts: Buffer[] = [];
    let hash = createHash('sha256');
    let blockHash = new BlockHasher(pl);
    let fill = 0;
    let t0 = Date.now();
    const src = this.deps.limits.source;
    task.stored.readingFromOrigin = true;
    const prefetchLimit = this.deps.limits.prefetch?.unlimited === false ? this.deps.limits.prefetch : undefined;
    // A body that stalls is cut off here, not after undici's 2-minute body timeout: a retry resumes it.
    let lastChunk = Date.now();
    const idle = setInterval(() => {
      if (Date.now() - lastChunk > SOURCE_IDLE_MS) res.body.destroy(new UnavailableError(`origin sent nothing for ${SOURCE_IDLE_MS} ms`));
    }, Math.min(1_000, SOURCE_IDLE_MS / 2));
    idle.unref();
    try {
      for await (const chunk0 of res.body) {
        lastChunk = Date.now();
        let chunk = chunk0 as Buffer;
        if (!src.unlimited) await src.take(chunk.length);
        if (prefetchLimit && task.prefetchOnly(n)) await prefetchLimit.take(chunk.length);
        this.deps.metrics.downloadTraffic.inc({ type: 'BACK_TO_SOURCE' }, chunk.length);
        while (chunk.length > 0) {
          if (n >= count) {
            chunk = Buffer.alloc(0);
            break;
          }
          if (skip > 0) {
            const k = Math.min(skip, chunk.length);
            skip -= k;
            chunk = chunk.subarray(k);
            continue;
          }
          const k = Math.min(want - fill, chunk.length);
          const part = k === chunk.length ? chunk : chunk.subarray(0, k);
          parts.push(part);
          hash.update(part);
          blockHash.update(part);
          fill += k;
          chunk = chunk.subarray(k);
          if (fill === want) {
            const digest = 'sha256:' + hash.digest('hex');
            const blockDigests = blockHash.digests();
            const b = pieceBounds(n, total, pl);
            if (!task.stored.has(n)) {
              await task.stored.writePiece(n, parts, digest);
              task.digests.set(n, digest);
              task.blockDigests.set(n, blockDigests);
              reporter?.piece({ number: n, parent_id: '', offset: b.offset, length: b.length, digest, traffic_type: 'BACK_TO_SOURCE', cost_ms: Date.now() - t0, block_digests: blockDigests });
              task.log.debug('piece from origin', { piece: n, ms: Date.now() - t0 });
              this.deps.metrics.downloadPieceDuration.observe({ type: 'BACK_TO_SOURCE' }, Date.now() - t0);
            }
            t0 = Date.now();
            n++;
            if (n >= count || (range && b.offset + b.length > (range.end ?? Infinity))) break;
            // A ranged reader that asked before the length was known: stop once its pieces are in.
            if (!task.wantAll && task.satisfied()) {
              res.body.destroy();
              reporter?.finished(total, count);
              return;
            }
            want = pieceBounds(n, total, pl).length;
            parts = [];
            hash = createHash('sha256');
            blockHash = new BlockHasher(pl);
            fill = 0;
          }
        }
        if (task.state !== 'running') {
          res.body.destroy();
          return;
        }
      }
    } catch (err) {
      if (err instanceof DiskFullError || isDiskFull(err)) throw err instanceof DiskFullError ? err : new DiskFullError(task.stored.store.dir, err);
      this.deps.metrics.backendRequestFailureTotal.inc({ scheme, method: 'GET' });
      reporter?.failed(errorMessage(err));
      throw new UnavailableError(`reading ${stripCredentials(o.url)} from the origin failed: ${errorMessage(err)}`, { cause: err });
    } finally {
      clearInterval(idle);
      task.stored.readingFromOrigin = false;
    }
    const lastWanted = range ? Math.floor((range.end ?? total - 1) / pl) : count - 1;
    if (n <= lastWanted) {
      reporter?.failed('origin closed the body early');
      const got = (n < count ? pieceBounds(n, total, pl).offset : total) + fill;
      throw new UnavailableError(`origin closed the body of ${stripCredentials(o.url)} after byte ${got} of ${total} (the length it announced)`);
    }
    reporter?.finished(total, count);
  }
}

export interface BackToSourceReporter {
  started(contentLength: number, pieceLength: number): void;
  piece(p: PieceMsg): void;
  finished(contentLength: number, pieceCount: number): void;
  failed(description: string): void;
}

function raceAbort<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

// -----------------------------------------------------------------------------------------------
// One AnnouncePeer stream: scheduling rounds, P2P piece fetching, back-to-source when told.

interface Parent {
  id: string;
  hostId: string;
  base: string;
  /** Long polls for the pieces it holds, and piece bytes read straight into pooled buffers. */
  pieces: PieceClient;
  has: Set<number>;
  /** Pieces still arriving at the parent with verified blocks it can send already (blocks.ts). */
  partial: Set<number>;
  /** The parent's partialVersion seen in the last poll answer. */
  partialVersion: number;
  cursor: number;
  inflight: number;
  failed: boolean;
  retryAt: number;
}

class PeerSession {
  private call?: grpc.ClientDuplexStream<unknown, unknown>;
  private parents = new Map<string, Parent>();
  private failedParents = new Set<string>();
  private inflight = new Set<number>();
  private done = new Deferred();
  private mode: 'waiting' | 'p2p' | 'source' = 'waiting';
  private startedSent = false;
  private schedules = 0;
  private lastProgress = Date.now();
  private closed = false;
  private timers: NodeJS.Timeout[] = [];
  private hostId: string;
  private linger?: NodeJS.Timeout;
  private refreshPending = false;
  private detached = false;

  constructor(
    private tm: TaskManager,
    private task: Task,
    private sched: SchedulerClient,
    private addr: string,
    private deps: TaskManagerDeps,
  ) {
    this.hostId = deps.host().id;
  }

  private send(req: Record<string, unknown>): void {
    if (this.closed || this.detached || !this.call) return;
    try {
      this.call.write({ host_id: this.hostId, task_id: this.task.id, peer_id: this.task.peerId, ...req });
    } catch {
      /* the stream broke; the 'error' handler decides what happens */
    }
  }

  /** Resolves when the wanted pieces are held; throws when P2P cannot deliver (caller falls back). */
  async run(): Promise<void> {
    const cfg = this.deps.config;
    const o = this.task.opts;
    const call = await withTimeout(tracing.inTask(this.task.id, () => this.sched.openPeerStream(this.addr)), cfg.scheduler.scheduleTimeout, 'scheduler did not accept the stream');
    this.call = call;
    call.on('data', (msg: AnnouncePeerResponseMsg) => this.onResponse(msg));
    const task = this.task;
    const lost = (why: string) => {
      // The scheduler ends the stream after download_peer_finished: that is no loss.
      if (this.closed || this.task.satisfied()) return;
      // A read from the origin already under way needs no scheduler: finish it detached. Failing
      // here would make the caller start a second origin read beside the first.
      if (this.mode === 'source') {
        if (!this.detached) task.log.warn('scheduler stream lost; finishing the origin read without it', { reason: why });
        this.detached = true;
        return;
      }
      // Parents that deliver, with every missing digest known, need no scheduler to finish: keep
      // going detached (the stall watchdog still ends it) rather than re-reading the origin.
      if (this.mode === 'p2p' && this.productive() && this.task.missing().every((n) => this.task.digests.has(n))) {
        if (!this.detached) task.log.warn('scheduler stream lost; finishing from current parents', { reason: why });
        this.detached = true;
        return;
      }
      this.done.reject(new UnavailableError(why));
    };
    call.on('error', (err: Error & { code?: number }) => {
      // UNAVAILABLE: the scheduler went away; NOT_FOUND: it does not know this host (it restarted).
      // Either way it is announced again until it answers, and then told which tasks we hold.
      if (err.code === 5 || err.code === 14) this.sched.markLost(this.addr);
      lost(`scheduler stream failed: ${err.message}`);
    });
    call.on('end', () => lost('scheduler closed the stream'));
    const download: DownloadMsg = {
      url: o.url,
      digest: o.digest ?? '',
      tag: o.tag ?? '',
      application: o.application ?? '',
      priority: priorityName(o.priority),
      filtered_query_params: o.filteredQueryParams ?? DEFAULT_FILTERED_QUERY_PARAMS,
      request_header: o.requestHeaders ?? {},
      piece_length: o.pieceLength ?? 0,
      disable_back_to_source: !!o.disableBackToSource,
      need_back_to_source: !!o.needBackToSource,
      range: o.range ? { start: o.range.start, length: o.range.end === undefined ? 0 : o.range.end - o.range.start + 1 } : null,
      timeout_ms: 0,
      is_preheat: !!o.isPreheat,
      content_for_calculating_task_id: o.contentForCalculatingTaskId ?? '',
      enable_task_id_based_blob_digest: !!o.enableTaskIdBasedBlobDigest,
    };
    this.send({ register_peer_request: { download } });
    const firstAnswer = setTimeout(() => {
      if (this.mode === 'waiting') this.done.reject(new TimeoutError('scheduler gave no answer in time'));
    }, cfg.scheduler.scheduleTimeout);
    this.timers.push(firstAnswer);
    const watchdog = setInterval(() => this.checkStall(), 500);
    this.timers.push(watchdog);
    const refresh = setInterval(() => this.refreshParents(), PARENT_REFRESH_MS);
    this.timers.push(refresh);
    const off = this.task.subscribe(() => {
      this.checkDone();
      this.pump();
    });
    try {
      await this.done.promise;
    } finally {
      off();
      this.close();
    }
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    clearTimeout(this.linger);
    for (const p of this.parents.values()) p.pieces.close();
    try {
      this.call?.end();
    } catch {
      /* already gone */
    }
  }

  private onResponse(msg: AnnouncePeerResponseMsg): void {
    if (this.closed) return;
    const task = this.task;
    switch (msg.response) {
      case 'empty_task_response':
        task.setContent(0, MIN_PIECE_LENGTH);
        this.send({ download_peer_finished_request: { content_length: 0, piece_count: 0 } });
        this.done.resolve();
        return;
      case 'need_back_to_source_response':
        if (this.mode === 'source') return;
        if (this.mode === 'p2p' && this.refreshPending && this.productive()) {
          // The answer to an optional "more parents" request; the parents we have are delivering,
          // and the origin would only send the same bytes again.
          this.refreshPending = false;
          task.log.debug('ignoring back-to-source answer to a parent refresh: parents are delivering');
          return;
        }
        this.mode = 'source';
        task.log.info('scheduler says back to source', { reason: msg.need_back_to_source_response?.description });
        void this.runBackToSource();
        return;
      case 'normal_task_response': {
        const r = msg.normal_task_response!;
        this.refreshPending = false;
        if (r.task) this.applyTaskInfo(r.task);
        if (this.mode === 'source') return;
        this.mode = 'p2p';
        if (!this.startedSent) {
          this.startedSent = true;
          this.send({ download_peer_started_request: {} });
        }
        for (const p of r.candidate_parents ?? []) this.addParent(p);
        task.log.debug('parents', { parents: (r.candidate_parents ?? []).map((p) => p.id), contentLength: r.task?.content_length, digests: r.task?.pieces?.length });
        this.lastProgress = Date.now();
        this.checkDone();
        this.pump();
        return;
      }
      case 'task_pieces_response':
        if (msg.task_pieces_response?.task) this.applyTaskInfo(msg.task_pieces_response.task);
        this.pump();
        return;
    }
  }

  private applyTaskInfo(t: TaskInfoMsg): void {
    if (t.content_length >= 0) this.task.setContent(Number(t.content_length), Number(t.piece_length));
    for (const p of t.pieces ?? []) {
      if (!p.digest) continue;
      this.task.digests.set(p.number, p.digest);
      if (p.block_digests && p.block_digests.length > 0) this.task.blockDigests.set(p.number, Buffer.from(p.block_digests));
    }
  }

  private async runBackToSource(): Promise<void> {
    for (const p of this.parents.values()) p.failed = true; // stop polling: the origin serves this peer now
    const reporter: BackToSourceReporter = {
      started: (contentLength, pieceLength) => this.send({ download_peer_back_to_source_started_request: { description: '', content_length: contentLength, piece_length: pieceLength } }),
      piece: (piece) => this.send({ download_piece_back_to_source_finished_request: { piece } }),
      finished: (contentLength, count) => this.send({ download_peer_back_to_source_finished_request: { content_length: contentLength, piece_count: count } }),
      failed: (description) => this.send({ download_peer_back_to_source_failed_request: { description } }),
    };
    try {
      await this.tm.backToSource(this.task, reporter);
      this.done.resolve();
    } catch (err) {
      // Origin errors (404, 401...) are final: P2P cannot help; other failures go back to source without the scheduler.
      this.done.reject(err);
    }
  }

  private addParent(p: PeerMsg): void {
    if (!p.host || this.parents.has(p.id) || this.failedParents.has(p.id) || p.id === this.task.peerId) return;
    const base = `http://${p.host.ip.includes(':') ? `[${p.host.ip}]` : p.host.ip}:${p.host.download_port}`;
    const parent: Parent = {
      id: p.id,
      hostId: p.host.id,
      base,
      // One connection more than piece requests can use: the long poll always has one.
      pieces: new PieceClient(p.host.ip, p.host.download_port, { connections: this.deps.config.download.concurrentPieceCount + 1, tls: this.deps.pieceTls }),
      has: new Set(),
      partial: new Set(),
      partialVersion: -1,
      cursor: 0,
      inflight: 0,
      failed: false,
      retryAt: 0,
    };
    this.parents.set(p.id, parent);
    void this.poll(parent);
  }

  /** Long-polls a parent for the pieces it holds, until the session ends or the parent fails. */
  private async poll(parent: Parent): Promise<void> {
    let errors = 0;
    while (!this.closed && !parent.failed) {
      try {
        // Not undici: a non-seed agent then never loads its HTTP parser, whose WebAssembly took
        // each fresh agent about 0.25 CPU-seconds to compile in the middle of its first download.
        let json: Buffer | undefined;
        const res = await parent.pieces.get(`/v1/tasks/${this.task.id}/pieces?from=${parent.cursor}&wait_ms=${PARENT_POLL_WAIT_MS}&pv=${parent.partialVersion}`, (len) => (json = Buffer.allocUnsafe(len <= MAX_POLL_BODY ? len : 0)), {
          signal: AbortSignal.timeout(PARENT_POLL_WAIT_MS + 10_000),
        });
        if (res.status === 404) {
          await sleep(PARENT_RETRY_MS * 2);
          continue;
        }
        if (res.status !== 200 || !json) throw new Error(`status ${res.status}`);
        const body = JSON.parse(json.toString('utf8', 0, res.length)) as { contentLength: number; pieceLength: number; headers: Record<string, string>; pieces: number[]; next: number; complete: boolean; partial?: number[]; partialVersion?: number };
        errors = 0;
        if (body.contentLength >= 0 && this.task.contentLength < 0) this.task.setContent(body.contentLength, body.pieceLength, body.headers);
        else if (body.headers && Object.keys(this.task.stored.meta.responseHeaders).length === 0) this.task.stored.setContent(body.contentLength, body.pieceLength, body.headers);
        const partial = new Set(body.partial ?? []);
        const newPartial = [...partial].some((n) => !parent.partial.has(n));
        parent.partial = partial;
        parent.partialVersion = body.partialVersion ?? -1;
        if (body.pieces.length > 0) {
          for (const n of body.pieces) parent.has.add(n);
          this.lastProgress = Date.now();
        }
        if (body.pieces.length > 0 || newPartial) this.pump();
        parent.cursor = body.next;
        if (body.complete) return; // it has everything; nothing more to learn
      } catch (err) {
        if (this.closed) return;
        if (++errors >= 2) {
          this.parentFailed(parent, undefined, `unreachable: ${errorMessage(err)}`);
          return;
        }
        await sleep(PARENT_RETRY_MS);
      }
    }
  }

  private usable(p: Parent): boolean {
    return !p.failed && p.retryAt <= Date.now();
  }

  /** Fills free download slots: rarest piece first (ties: lowest number), least busy holder. */
  private pump(): void {
    if (this.closed || this.mode !== 'p2p' || this.task.contentLength < 0) return;
    const limit = this.deps.config.download.concurrentPieceCount;
    if (this.inflight.size >= limit) return;
    const missing = this.task.missing();
    const candidates: { n: number; holders: Parent[] }[] = [];
    for (const n of missing) {
      if (this.inflight.has(n) || !this.task.digests.has(n)) continue;
      const holders = [...this.parents.values()].filter((p) => (p.has.has(n) || p.partial.has(n)) && this.usable(p));
      if (holders.length > 0) candidates.push({ n, holders });
    }
    const front = this.task.readerFront();
    for (const c of orderPieces(candidates, front === undefined ? undefined : { from: front, to: front + limit - 1 })) {
      if (this.inflight.size >= limit) break;
      // A parent holding the whole piece before one still receiving it; then the least busy.
      const complete = c.holders.filter((p) => p.has.has(c.n));
      const pool = complete.length > 0 ? complete : c.holders;
      const least = Math.min(...pool.map((p) => p.inflight));
      const best = pool.filter((p) => p.inflight === least);
      const parent = best[Math.floor(Math.random() * best.length)];
      void this.fetchPiece(c.n, parent);
    }
  }

  private async fetchPiece(n: number, parent: Parent): Promise<void> {
    const task = this.task;
    this.inflight.add(n);
    parent.inflight++;
    const t0 = Date.now();
    const { offset, length } = pieceBounds(n, task.contentLength, task.pieceLength);
    const want = task.digests.get(n)!;
    // Still arriving at the parent: it sends verified blocks as they come; if its own download of
    // the piece stops, that is no fault of the parent's.
    const fromPartial = !parent.has.has(n);
    const blocks = task.blockDigests.get(n);
    const verifier = BlockVerifier.fits(blocks, length, task.pieceLength) ? new BlockVerifier(length, task.pieceLength, blocks) : undefined;
    let failure: string | undefined;
    let temporary = false;
    // The body lands in a pooled buffer, taken once the parent answers 200 (a 429 takes none). With
    // block digests the buffer is registered as a partial piece at once, so this peer's children can
    // be sent its verified blocks before the piece is complete; the cache then owns the buffer.
    const cache = task.stored.store.cache;
    const key = `${task.id}:${n}`;
    let pooled: Buffer | undefined;
    let partial: PartialHandle | undefined;
    let partialPooled: Buffer | undefined;
    let announced = false;
    const integrity = new AbortController();
    try {
      let buf: Buffer | undefined;
      const h = verifier ? undefined : createHash('sha256');
      const limiter = this.deps.limits.download;
      const prefetchLimit = this.deps.limits.prefetch?.unlimited === false ? this.deps.limits.prefetch : undefined;
      const res = await parent.pieces.get(
        `/v1/tasks/${task.id}/pieces/${n}`,
        () => {
          // (called again only for a retry on a fresh connection, before any byte arrived)
          if (pooled) cache.pool.give(pooled);
          partial?.fail();
          pooled = cache.pool.take(task.pieceLength);
          if (verifier) {
            partial = cache.beginPartial(key, pooled, length);
            partialPooled = pooled;
            pooled = undefined; // the cache owns it now
            return (buf = partialPooled.subarray(0, length));
          }
          return (buf = pooled.subarray(0, length));
        },
        {
          signal: AbortSignal.any([AbortSignal.timeout(this.deps.config.download.pieceTimeout), integrity.signal]),
          headers: tracing.traceHeaders(tracing.pieceContext(task.id, parent.id, parent.base)),
          onData: (from, k) => {
            const chunk = buf!.subarray(from, from + k);
            if (verifier) {
              let verified: number;
              try {
                verified = verifier.update(chunk);
              } catch (err) {
                integrity.abort(err);
                return;
              }
              if (verified > 0) {
                partial!.advance(verified);
                if (!announced && verified < length) {
                  announced = true;
                  task.stored.announcePartial();
                }
              }
            } else h!.update(chunk);
            let wait = limiter.takeNow(k);
            if (prefetchLimit && task.prefetchOnly(n)) wait = Math.max(wait, prefetchLimit.takeNow(k));
            return wait;
          },
        },
      );
      if (res.status === 404) {
        parent.has.delete(n);
        parent.partial.delete(n);
        return;
      }
      if (res.status === 429) {
        parent.retryAt = Date.now() + PARENT_RETRY_MS;
        setTimeout(() => this.pump(), PARENT_RETRY_MS + 5).unref();
        return;
      }
      if (res.status !== 200) {
        failure = `status ${res.status}`;
        return;
      }
      if (res.length !== length || !buf) {
        failure = `short piece (${res.length}/${length} bytes)`;
        temporary = fromPartial;
        return;
      }
      // With block digests every block was checked as it arrived (an IntegrityError aborted the
      // transfer otherwise); the piece's own digest is the one the origin reader published.
      const digest = verifier ? (verifier.verified === length ? want : '') : 'sha256:' + h!.digest('hex');
      if (digest !== want) {
        failure = 'digest mismatch';
        return;
      }
      if (this.closed || task.stored.has(n)) return;
      const owned = verifier ? partialPooled : pooled;
      pooled = undefined;
      partial = undefined; // completed by writePiece (same buffer), or dropped by it
      try {
        await task.stored.writePiece(n, buf, digest, owned);
      } catch (err) {
        // Our own disk failed, not the parent: the task ends here (and is freed, see run()).
        this.done.reject(err);
        return;
      }
      this.deps.metrics.downloadTraffic.inc({ type: 'REMOTE_PEER' }, length);
      this.deps.metrics.downloadPieceDuration.observe({ type: 'REMOTE_PEER' }, Date.now() - t0);
      tracing.pieceFromParent(task.id, parent.id, parent.base, n, length);
      this.lastProgress = Date.now();
      this.send({ download_piece_finished_request: { piece: { number: n, parent_id: parent.id, offset, length, digest, traffic_type: 'REMOTE_PEER', cost_ms: Date.now() - t0 } } });
      task.log.debug('piece from parent', { piece: n, parentId: parent.id, ms: Date.now() - t0, inflight: this.inflight.size, partial: fromPartial });
    } catch (err) {
      if (integrity.signal.aborted) failure = `digest mismatch (${errorMessage(integrity.signal.reason)})`;
      else {
        failure = errorMessage(err);
        temporary = fromPartial;
      }
    } finally {
      if (pooled) cache.pool.give(pooled);
      partial?.fail();
      this.inflight.delete(n);
      parent.inflight--;
      if (failure !== undefined) {
        if (temporary) {
          // The parent's own download of this piece stopped (or its connection broke while it
          // was sending one still arriving): try the piece elsewhere, keep the parent.
          parent.partial.delete(n);
          task.log.debug('piece still arriving at its parent did not complete', { piece: n, parentId: parent.id, reason: failure });
        } else this.parentFailed(parent, n, failure);
      }
      this.checkDone();
      this.pump();
    }
  }

  /** A parent that failed a piece (or is unreachable) is reported and never used again by this peer. */
  private parentFailed(parent: Parent, n: number | undefined, reason: string): void {
    if (this.closed) return;
    this.task.log.warn('parent failed', { parentId: parent.id, piece: n, reason });
    if (n !== undefined) this.send({ download_piece_failed_request: { piece_number: n, parent_id: parent.id, temporary: true, reason } });
    if (parent.failed) return;
    parent.failed = true;
    this.failedParents.add(parent.id);
    this.parents.delete(parent.id);
    parent.pieces.close();
    if (this.mode === 'p2p' && [...this.parents.values()].every((p) => p.failed)) this.reschedule('every parent failed');
  }

  private reschedule(description: string): void {
    this.refreshPending = false;
    if (this.detached) {
      this.done.reject(new UnavailableError(`no scheduler to ask for parents: ${description}`));
      return;
    }
    if (++this.schedules > MAX_SCHEDULE_COUNT) {
      this.done.reject(new UnavailableError(`gave up after ${MAX_SCHEDULE_COUNT} schedules: ${description}`));
      return;
    }
    this.task.log.info('asking for new parents', { description, blocked: [...this.failedParents] });
    this.lastProgress = Date.now();
    this.send({ reschedule_peer_request: { candidate_parent_ids: [...this.failedParents], description } });
  }

  /** Whether a usable parent delivered (or announced) a piece within the last few seconds. */
  private productive(): boolean {
    return [...this.parents.values()].some((p) => !p.failed) && Date.now() - this.lastProgress < PRODUCTIVE_MS;
  }

  private refreshParents(): void {
    if (this.closed || this.mode !== 'p2p' || this.task.satisfied() || this.refreshPending) return;
    const usable = [...this.parents.values()].filter((p) => !p.failed);
    if (usable.length >= TARGET_PARENTS) return;
    // Only when more parents would help: free download slots, or pieces no parent of ours holds.
    const limit = this.deps.config.download.concurrentPieceCount;
    const unheld = this.task.missing().some((n) => !usable.some((p) => p.has.has(n)));
    if (this.inflight.size >= limit && !unheld) return;
    this.refreshPending = true;
    this.send({ reschedule_peer_request: { candidate_parent_ids: [...this.failedParents], description: 'more parents' } });
  }

  private checkStall(): void {
    if (this.closed || this.mode !== 'p2p' || this.task.satisfied()) return;
    const stallMs = Math.max(3_000, Math.min(this.deps.config.download.pieceTimeout, 15_000));
    if (this.inflight.size === 0 && Date.now() - this.lastProgress > stallMs) this.reschedule('no progress from parents');
  }

  private checkDone(): void {
    if (this.mode !== 'p2p') return;
    if (!this.task.satisfied()) {
      clearTimeout(this.linger);
      this.linger = undefined;
      return;
    }
    if (this.task.stored.finishedCount === this.task.pieceCount) {
      this.send({ download_peer_finished_request: { content_length: this.task.contentLength, piece_count: this.task.pieceCount } });
      this.done.resolve();
      return;
    }
    // Ranged readers (nydusd, lazy pullers) come in bursts: keep this peer and its parents a while
    // for the next range instead of registering again (or falling back to the origin).
    this.linger ??= setTimeout(() => this.done.resolve(), RANGE_LINGER_MS);
  }
}

/** Copies `out.length` bytes starting at `from` of the concatenation of `chunks` into `out`. */
export function copyRange(chunks: Buffer[], from: number, out: Buffer): void {
  let skip = from;
  let at = 0;
  for (const c of chunks) {
    if (at >= out.length) break;
    if (skip >= c.length) {
      skip -= c.length;
      continue;
    }
    at += c.copy(out, at, skip, Math.min(c.length, skip + (out.length - at)));
    skip = 0;
  }
  if (at !== out.length) throw new RangeError(`cached piece holds ${at} of ${out.length} bytes asked`);
}

/** Origin failures a later attempt may not see: 5xx, 408, 429, and transport failures (reset, stall, short body). */
function retryableSourceError(err: unknown): boolean {
  if (err instanceof SourceError) return (err.status >= 500 && err.status !== 508) || err.status === 408 || err.status === 429;
  return err instanceof UnavailableError && !(err instanceof DiskFullError) && err.details?.retry !== false && !/did not announce a content length/.test(err.message);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new TimeoutError(what)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
