/**
 * Reading a task: a TaskStream over a complete, verified content file (streamed like a static file,
 * its seal checked again before the last byte), or piece by piece, in order, as pieces of a running
 * download land (each piece read back from disk is hashed against its digest first).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { IntegrityError, RangeNotSatisfiableError, UnavailableError } from '../../adapters/errors.js';
import { pieceBounds, piecesCovering } from '../../scheduler/protocol/task-id.js';
import type { AgentMetrics } from '../metrics.js';
import { stripCredentials, type StoredTask } from '../storage/store.js';
import { copyRange } from './pieces.js';
import type { Task } from './task.js';
import type { DownloadOptions, TaskStream } from './types.js';

/**
 * Checks a complete task against a whole-content digest a caller asked for: at once when the task
 * already knows its digest, else by hashing its (verified) pieces once and remembering the result.
 * Throws IntegrityError naming the URL when they differ.
 */
export async function checkDigest(s: StoredTask, want: string | undefined, url: string): Promise<void> {
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


/** A TaskStream of task `id` (`task` when a download of it runs), for the range `o` asks. */
export function openTaskStream(metrics: AgentMetrics, id: string, stored: StoredTask, task: Task | undefined, o: DownloadOptions, fromCache: boolean): TaskStream {
  const len = stored.meta.contentLength;
  let start = 0;
  let end = len - 1;
  let range: { start: number; end: number } | undefined;
  if (o.range) {
    start = o.range.start;
    end = Math.min(o.range.end ?? len - 1, len - 1);
    if (len > 0) {
      try {
        piecesCovering(start, end, len, stored.meta.pieceLength);
      } catch (err) {
        throw new RangeNotSatisfiableError(`range ${start}-${o.range.end ?? ''} is outside the content (0-${len - 1})`, { cause: err, details: { contentLength: len } });
      }
    }
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
            await checkDigest(stored, o.digest, o.url);
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
