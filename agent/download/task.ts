/**
 * One download of one task ID on this agent (Task), shared by every caller that wants it while it
 * runs: what is wanted (whole task, piece ranges, prefetch), the piece digests learned, the in-order
 * readers' positions, and the lifecycle of states.ts (running → done | failed).
 */
import { StateMachine } from '../../adapters/fsm.js';
import type { Logger } from '../../adapters/log.js';
import * as tracing from '../../adapters/tracing.js';
import { pieceLengthFor } from '../../scheduler/protocol/task-id.js';
import type { StoredTask } from '../storage/store.js';
import { TASK_TRANSITIONS, type TaskState } from './states.js';
import type { DownloadOptions } from './types.js';

/** A promise with its resolve/reject outside, that remembers it settled (and never goes unhandled). */
export class Deferred<T = void> {
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

export class Task {
  private readonly lifecycle = new StateMachine<TaskState>('download task', TASK_TRANSITIONS, 'running', Date.now());
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
  /** The scheduler a peer session of this task lost and finished without (announced to once done). */
  detachedFrom?: string;
  /** Piece each in-order reader of the body (TaskManager.stream) waits for next. */
  readonly readers = new Map<symbol, number>();
  private wake = new Set<() => void>();

  constructor(readonly id: string, readonly stored: StoredTask, readonly opts: DownloadOptions, peerId: string, logger: Logger) {
    this.peerId = peerId;
    this.log = logger.child({ taskId: id, peerId });
    if (stored.meta.contentLength >= 0) this.contentKnown.resolve();
    for (const [n, d] of Object.entries(stored.meta.pieces)) this.digests.set(Number(n), d);
  }

  get state(): TaskState {
    return this.lifecycle.state;
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

  /** running → done: every wanted piece is verified and the task's metadata is durable. */
  succeed(): void {
    this.lifecycle.transition('done', Date.now());
    this.finished.resolve();
    tracing.unbindTask(this.id);
    this.notify();
  }

  /** running → failed (no-op once the task ended): its readers and waiters get `err`. */
  fail(err: unknown): void {
    if (this.state !== 'running') return;
    this.lifecycle.transition('failed', Date.now());
    tracing.unbindTask(this.id);
    if (!this.contentKnown.settled) this.contentKnown.reject(err);
    this.finished.reject(err);
    this.notify();
  }
}
