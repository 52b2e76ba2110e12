/**
 * One piece from one parent: the body lands in a pooled buffer and is verified as it arrives, block
 * by block where the origin reader published block digests (blocks.ts; verified blocks of a piece
 * still arriving can then be sent on to this peer's own children at once), else as a whole piece.
 * Nothing unverified is ever handed back.
 */
import { createHash } from 'node:crypto';
import { errorMessage } from '../../adapters/errors.js';
import * as tracing from '../../adapters/tracing.js';
import { pieceBounds } from '../../scheduler/protocol/task-id.js';
import type { PieceClient } from '../piece-client.js';
import type { PartialHandle } from '../storage/store.js';
import { BlockVerifier } from './blocks.js';
import type { Task } from './task.js';
import type { TaskManagerDeps } from './types.js';

/** A parent of a peer session, as the session knows it. */
export interface Parent {
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
  /** A poll loop (poll()) runs for it. */
  polling: boolean;
  retryAt: number;
}

export type PieceOutcome =
  /** Verified: `buf` holds the piece; write it (`owned` is the pooled buffer behind it) or `discard()` it. */
  | { kind: 'ok'; buf: Buffer; digest: string; owned: Buffer | undefined; discard(): void }
  /** 404: the parent does not hold the piece (any more). */
  | { kind: 'gone' }
  /** 429: the parent's upload is busy; ask again in a moment. */
  | { kind: 'busy' }
  /** `temporary`: the piece was still arriving at the parent, no fault of its own. `offerMismatch`: the whole piece did not hash to `want`. */
  | { kind: 'failed'; reason: string; temporary: boolean; offerMismatch: boolean };

const failed = (reason: string, temporary: boolean, offerMismatch = false): PieceOutcome => ({ kind: 'failed', reason, temporary, offerMismatch });

/** Fetches piece `n` of `task` from `parent` and checks it against `want` (sha256). Never throws. */
export async function receivePiece(task: Task, n: number, parent: Parent, want: string, deps: Pick<TaskManagerDeps, 'config' | 'limits'>): Promise<PieceOutcome> {
  const { length } = pieceBounds(n, task.contentLength, task.pieceLength);
  // Still arriving at the parent: it sends verified blocks as they come; if its own download of
  // the piece stops, that is no fault of the parent's.
  const fromPartial = !parent.has.has(n);
  const blocks = task.blockDigests.get(n);
  const verifier = BlockVerifier.fits(blocks, length, task.pieceLength) ? new BlockVerifier(length, task.pieceLength, blocks) : undefined;
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
    const limiter = deps.limits.download;
    const prefetchLimit = deps.limits.prefetch?.unlimited === false ? deps.limits.prefetch : undefined;
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
        signal: AbortSignal.any([AbortSignal.timeout(deps.config.download.pieceTimeout), integrity.signal]),
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
    if (res.status === 404) return { kind: 'gone' };
    if (res.status === 429) return { kind: 'busy' };
    if (res.status !== 200) return failed(`status ${res.status}`, false);
    if (res.length !== length || !buf) return failed(`short piece (${res.length}/${length} bytes)`, fromPartial);
    // With block digests every block was checked as it arrived (an IntegrityError aborted the
    // transfer otherwise); the piece's own digest is the one the origin reader published.
    const digest = verifier ? (verifier.verified === length ? want : '') : 'sha256:' + h!.digest('hex');
    if (digest !== want) return failed('digest mismatch', false, true);
    const owned = verifier ? partialPooled : pooled;
    const handle = partial;
    // From here the caller owns them: writePiece completes the partial piece (same buffer) or drops it.
    pooled = undefined;
    partial = undefined;
    return {
      kind: 'ok',
      buf,
      digest,
      owned,
      discard: () => {
        if (!verifier && owned) cache.pool.give(owned);
        handle?.fail();
      },
    };
  } catch (err) {
    if (integrity.signal.aborted) return failed(`digest mismatch (${errorMessage(integrity.signal.reason)})`, false);
    return failed(errorMessage(err), fromPartial);
  } finally {
    if (pooled) cache.pool.give(pooled);
    partial?.fail();
  }
}
