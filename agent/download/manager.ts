/**
 * The download engine's front (agent/download/): one Task per task ID at a time (concurrent
 * downloads of the same URL share it). Its run loop registers the task with the scheduler over one
 * AnnouncePeer stream (peer-session.ts), which fetches pieces from several parents in parallel and
 * verifies each against the digest the scheduler relays; it goes back to source (origin.ts) when
 * told to, and as the fallback when the scheduler or every parent fails: P2P failing never fails a
 * download. Readers get bytes in order as pieces land (reader.ts). Lifecycles: states.ts.
 */
import { createHash, randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import { IntegrityError, SourceError, UnavailableError, errorMessage, isDamselflyError } from '../../adapters/errors.js';
import { DEFAULT_FILTERED_QUERY_PARAMS, piecesCovering, taskIdOf as computeTaskId } from '../../scheduler/protocol/task-id.js';
import { taskSizeLevel } from '../../scheduler/protocol/task-size.js';
import * as tracing from '../../adapters/tracing.js';
import type { AgentConfig } from '../config.js';
import type { SchedulerClient } from '../scheduler-client.js';
import { DiskFullError, stripCredentials, type StoredTask } from '../storage/store.js';
import { announceHeld } from './announce.js';
import { canLinkInto, exportCopy, PieceExport } from './export.js';
import { OriginReader } from './origin.js';
import { PeerSession, SchedulerLostError } from './peer-session.js';
import { checkDigest, openTaskStream } from './reader.js';
import { Task } from './task.js';
import { TrafficLedger } from './traffic.js';
import type { DownloadOptions, TaskManagerDeps, TaskStream } from './types.js';

export type { DownloadOptions, TaskManagerDeps, TaskStream } from './types.js';

/** Times one task registers again after a peer session ended normally and new wants arrived. */
const MAX_REREGISTERS = 3;

export class TaskManager {
  private tasks = new Map<string, Task>();
  private readonly cfg: AgentConfig;
  private stopping = false;
  private readonly traffic = new TrafficLedger();
  private readonly origin: OriginReader;
  /** The peer session of each running task that has one (a restarted scheduler is told about them). */
  private readonly sessions = new Map<string, PeerSession>();

  constructor(private deps: TaskManagerDeps) {
    this.cfg = deps.config;
    this.origin = new OriginReader(deps, this.traffic, () => this.stopping);
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
      // Finished without the scheduler: tell it (if it is back; if not, it is told once it is).
      if (task.state === 'done' && task.detachedFrom && !this.deps.scheduler?.isLost(task.detachedFrom)) void this.announceHeld(task.detachedFrom, id);
    });
    return task;
  }


  /**
   * Starts or joins the download of a task and resolves once the content length is known. Throws
   * SourceError when the origin answers non-2xx, UnavailableError when neither P2P nor the origin can
   * deliver, RangeNotSatisfiableError (416) when the range is outside the content.
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

  async download(o: DownloadOptions): Promise<TaskStream> {
    const id = this.taskIdOf(o);
    const done = await this.finishedInCache(id);
    if (done) {
      await checkDigest(done, o.digest, o.url);
      done.touch();
      return openTaskStream(this.deps.metrics, id, done, undefined, o, true);
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
        return openTaskStream(this.deps.metrics, id, cached, undefined, o, true);
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
    return openTaskStream(this.deps.metrics, id, task.stored, task, o, false);
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
    return openTaskStream(this.deps.metrics, id, c, undefined, { ...o, range: undefined }, true);
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
   * bytes pass through the caller. `output` is a file of its own, never a hard link: editing it must
   * not change the cache (export.ts): written piece by piece while the task downloads, or, for a task
   * already complete, a copy (reflink where the file system can) that counts only if the cached file
   * still matched its seal after it was made. Nothing is left at `output` when this throws or the
   * caller's signal aborts. `onStart` runs once the length is
   * known. Throws like download() (IntegrityError when `o.digest` differs), and the file system's
   * error (EEXIST, ENOENT...) when `output` cannot be created.
   */
  async exportTo(o: DownloadOptions, output: string, onStart?: (info: { taskId: string; peerId: string; contentLength: number; responseHeaders: Record<string, string> }) => void): Promise<{ taskId: string; contentLength: number }> {
    const id = this.taskIdOf(o);
    let started = false;
    for (let attempt = 0; ; attempt++) {
      const cached = await this.finishedInCache(id);
      let stored!: StoredTask;
      if (cached) {
        stored = cached;
        if (!started) onStart?.({ taskId: id, peerId: stored.meta.peerId, contentLength: stored.meta.contentLength, responseHeaders: stored.meta.responseHeaders });
        this.deps.metrics.downloadTraffic.inc({ type: 'LOCAL_PEER' }, Math.max(0, stored.meta.contentLength));
      }
      let streaming: PieceExport | undefined;
      if (!cached) {
        const task = this.ensure({ ...o, range: undefined });
        await raceAbort(task.contentKnown.promise, o.signal);
        if (!started) onStart?.({ taskId: id, peerId: task.peerId, contentLength: task.contentLength, responseHeaders: task.stored.meta.responseHeaders });
        // The first attempt writes the output while the pieces arrive (export.ts); a retry copies.
        const scratch = this.deps.store.exportsDir;
        if (attempt === 0 && task.contentLength > 0 && (await canLinkInto(scratch, output))) streaming = await PieceExport.start(task.stored, output, scratch, this.deps.store.directIO);
        try {
          await raceAbort(task.finished.promise, o.signal);
        } catch (err) {
          await streaming?.abort();
          throw err;
        }
        stored = task.stored;
      }
      started = true;
      stored.inUse++;
      try {
        await checkDigest(stored, o.digest, o.url).catch(async (err: unknown) => {
          await streaming?.abort();
          throw err;
        });
        stored.touch();
        const src = this.deps.store.contentPath(id);
        if (stored.meta.contentLength === 0) {
          await fs.writeFile(output, '', { flag: 'wx' });
          return { taskId: id, contentLength: 0 };
        }
        if (streaming) {
          // Every piece written came verified (from memory as it arrived, or read back and checked).
          try {
            await streaming.finish();
          } catch (err) {
            await streaming.abort();
            if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw err;
            this.deps.logger.warn('writing the output as pieces arrived failed; copying the completed task instead', { taskId: id, output, err: errorMessage(err) });
            continue;
          }
        } else {
          await exportCopy(src, output, stored.meta.contentLength, this.deps.store.directIO);
          if (!(await stored.sealIntact())) {
            // The cached file changed while it was copied: the copy proves nothing; verify and go again.
            await fs.rm(output, { force: true });
            if (attempt >= 2) throw new IntegrityError(`cached content of ${stripCredentials(o.url)} keeps changing on disk`);
            continue;
          }
        }
        // A caller that went away while the last bytes were placed gets no file left behind.
        if (o.signal?.aborted) {
          await fs.rm(output, { force: true });
          throw o.signal.reason;
        }
        return { taskId: id, contentLength: stored.meta.contentLength };
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

  /** Bytes of a task this process took from the origin and from parents since it started (0 when held before). */
  trafficOf(taskId: string): { source: number; peer: number } {
    return this.traffic.of(taskId);
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
   * Tells the scheduler at `addr` which complete tasks this host holds (announce.ts). Never throws.
   */
  announceHeld(addr: string, only?: string): Promise<number> {
    return announceHeld(this.deps, (id) => this.tasks.has(id), () => this.stopping, addr, only);
  }

  /**
   * The scheduler at `addr` answers (again): it is told which complete tasks this host holds, and
   * origin reads that went on without it register there again as their tasks' sources.
   */
  schedulerReachable(addr: string): void {
    for (const s of this.sessions.values()) void s.reattach(addr);
    void this.announceHeld(addr);
  }

  /**
   * Waits up to `scheduler.reconnectTimeout` for the scheduler at `addr` to answer again
   * (SchedulerClient announces to a lost scheduler until it does). False when it does not, or the
   * task ended. Only a task that knows no parent waits: one with parents goes on without the
   * scheduler, and a download started while the scheduler is down reads the origin at once.
   */
  private async reachableAgain(sched: SchedulerClient, addr: string, task: Task): Promise<boolean> {
    const until = Date.now() + this.cfg.scheduler.reconnectTimeout;
    while (Date.now() < until && task.state === 'running' && !this.stopping) {
      if (!sched.isLost(addr)) return true;
      await task.changed(100);
    }
    return false;
  }

  /** Fails running tasks so their readers end; used on shutdown. */
  stop(): void {
    this.stopping = true;
    for (const t of this.tasks.values()) t.fail(new UnavailableError('agent is shutting down'));
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
      let lostRetried = false;
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
            const session = new PeerSession(task, sched, addr, this.deps, { origin: this.origin, traffic: this.traffic });
            this.sessions.set(task.id, session);
            try {
              await session.run();
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
              // The scheduler died before it answered (no parent is known): if it answers again
              // soon (restarted), register again there, once, instead of reading the origin now.
              if (err instanceof SchedulerLostError && !lostRetried) {
                lostRetried = true;
                if (await this.reachableAgain(sched, addr, task)) {
                  triedScheduler = false;
                  rounds--;
                  task.log.info('scheduler answers again; registering again', { scheduler: addr });
                  continue;
                }
              }
              p2pFailed = true;
              task.log.warn('P2P download failed; going back to source', { err: errorMessage(err), scheduler: addr });
            } finally {
              if (this.sessions.get(task.id) === session) this.sessions.delete(task.id);
            }
          }
          if (task.state !== 'running' || task.satisfied() || sessionEnded) continue;
          if (!this.cfg.scheduler.enableBackToSource || o.disableBackToSource) {
            if (p2pFailed) throw new UnavailableError('P2P download failed and back-to-source is disabled');
            continue;
          }
          await this.origin.backToSource(task, undefined);
          task.wantRanges = task.wantRanges.filter(([a]) => a >= 0);
        }
        if (task.state !== 'running') throw await task.finished.promise.then(() => new UnavailableError('stopped')).catch((e: unknown) => e);
        await this.complete(task);
        // Nothing may await between this check and state = 'done': ensure() joins only running tasks.
        if (task.state !== 'running' || this.stopping || task.satisfied() || !task.hasWants()) break;
      }
      this.deps.metrics.downloadTaskDuration.observe({ task_type: 'standard', task_size_level: taskSizeLevel(task.contentLength) }, Date.now() - task.startedAt);
      task.succeed();
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
