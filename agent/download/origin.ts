/**
 * Back to source: the one peer of a task the scheduler sends to the origin (or every peer, when
 * there is no scheduler or P2P failed) reads the missing wanted pieces, hashes each piece and its
 * blocks (blocks.ts) as bytes arrive, stores it and reports it, so the scheduler can relay the
 * digests to everyone else.
 */
import { createHash } from 'node:crypto';
import { SourceError, UnavailableError, errorMessage } from '../../adapters/errors.js';
import { sleep } from '../../adapters/clock.js';
import { interestingHeaders } from '../../adapters/source/client.js';
import { sourceRead } from '../../adapters/source/sources.js';
import * as tracing from '../../adapters/tracing.js';
import type { Piece as PieceMsg } from '../../scheduler/protocol/messages.js';
import { MIN_PIECE_LENGTH, pieceBounds, pieceCount, pieceLengthFor } from '../../scheduler/protocol/task-id.js';
import { DiskFullError, isDiskFull, stripCredentials } from '../storage/store.js';
import { BlockHasher } from './blocks.js';
import type { Task } from './task.js';
import type { TrafficLedger } from './traffic.js';
import type { TaskManagerDeps } from './types.js';

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

export interface BackToSourceReporter {
  started(contentLength: number, pieceLength: number): void;
  piece(p: PieceMsg): void;
  finished(contentLength: number, pieceCount: number): void;
  failed(description: string): void;
}

export class OriginReader {
  constructor(
    private readonly deps: Pick<TaskManagerDeps, 'metrics' | 'limits'>,
    private readonly traffic: TrafficLedger,
    private readonly stopping: () => boolean,
  ) {}

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
        if (attempt >= SOURCE_ATTEMPTS || !retryableSourceError(err) || task.state !== 'running' || this.stopping()) {
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
      // The origin sees this read's span as its parent (when tracing is on), never the trace
      // headers of whichever client started the task.
      res = await sourceRead(o.url, { ...o.requestHeaders, ...tracing.traceHeaders() }, range, o.signal);
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
        this.traffic.count(task.id, 'source', chunk.length);
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

/** Origin failures a later attempt may not see: 5xx, 408, 429, and transport failures (reset, stall, short body). */
function retryableSourceError(err: unknown): boolean {
  if (err instanceof SourceError) return (err.status >= 500 && err.status !== 508) || err.status === 408 || err.status === 429;
  return err instanceof UnavailableError && !(err instanceof DiskFullError) && err.details?.retry !== false && !/did not announce a content length/.test(err.message);
}
