/**
 * Parent scoring, upload-bandwidth accounting and bad-parent detection.
 *
 *   score = W_LOAD      · (1 − uploadLoad(host))                   (parent host has upload bandwidth to spare)
 *         + W_PIECES    · piecesHeld / pieceCount                  (parent can serve the most pieces)
 *         + W_UPLOAD_OK · (uploads + 1) / (uploads + failures + 1)  (parent host served children well)
 *         + W_HOST_TYPE · (idle seed peer 1 | normal peer 0.5 | seed peer with children 0)
 *         + W_IDC       · (same IDC 1 | else 0)
 *         + W_LOCATION  · matchedLocationPrefix / 5                 ('|'-separated, up to 5 elements)
 *
 *   uploadLoad(host) = min(1, Σ_children charge / max_tx_bandwidth)    when the host announced a rate,
 *                      concurrentUploadCount / uploadLimit              otherwise (slots, as before)
 *   edgeRate(child)  = min(child.max_tx_bandwidth, parent.max_tx_bandwidth) / inDegree(child)
 *   charge           = edgeRate, or for a parent that finished the task
 *                      min(edgeRate, child's missing bytes / FINISHED_EDGE_HORIZON_MS)
 *
 * edgeRate is the rate a child is expected to draw from one parent: in a swarm whose upload equals
 * its demand a peer can usefully receive about as fast as it forwards (its own max_tx_bandwidth),
 * spread over its parents (after Dragonfly's LoadQuality / PeakBandwidthUsage). A host whose
 * children already draw its whole upload rate is "full": the scheduler offers it only when no
 * candidate has spare bandwidth (scheduling.ts), never refusing to schedule.
 *
 * Why these weights: inside one cluster (the common case, and our benchmark) IDC and location are
 * equal for every candidate and cancel out, so ranking is decided by load and pieces held, which
 * are what bound a child's throughput; they get the largest weights. A host whose uploads failed
 * before is likely to fail again (W_UPLOAD_OK, after Dragonfly's former base evaluator). Host type:
 * an idle seed peer is the best first parent (it reads the origin first), but once it has a child
 * the seed should feed as few children as possible: children pick the rarest pieces, which are
 * exactly the pieces only the seed holds, so every extra seed child makes the seed upload the same
 * piece again instead of the swarm re-uploading it (measured: seed uploaded 3 of 4 copies). IDC and
 * location together weigh as much as load: across sites they should dominate ties, not override an
 * overloaded or empty parent.
 */
import type { Host } from './resource/host.js';
import type { Peer } from './resource/peer.js';

export const W_LOAD = 0.25;
export const W_PIECES = 0.25;
export const W_UPLOAD_OK = 0.15;
export const W_HOST_TYPE = 0.15;
export const W_IDC = 0.1;
export const W_LOCATION = 0.1;

export const SEED_HOST_SCORE = 1;
/** A seed peer host that already serves a child ranks below normal peers (see the header). */
export const BUSY_SEED_HOST_SCORE = 0;
export const NORMAL_HOST_SCORE = 0.5;
export const MAX_LOCATION_ELEMENTS = 5;

/** Fewer samples than the window: a piece costing more than this many times the mean is an outlier. */
export const BAD_COST_FACTOR = 20;
/** Full window: a piece costing more than mean + this many standard deviations is an outlier. */
export const BAD_COST_SIGMAS = 3;

/** Context shared by every candidate of one scheduling round. */
export interface EvalContext {
  /** The task's piece count, or 0 when unknown. */
  pieceCount: number;
  /** The most pieces any candidate holds (used when pieceCount is unknown). */
  maxPiecesHeld: number;
  /** uploadLoad of a host in [0, 1] (see the header); defaults to the slot ratio. */
  load?: (h: Host) => number;
}

export function idcAffinity(a: string, b: string): number {
  return a !== '' && b !== '' && a.toLowerCase() === b.toLowerCase() ? 1 : 0;
}

/** matched leading '|'-separated elements / 5; identical non-empty strings score 1. */
export function locationAffinity(a: string, b: string): number {
  if (a === '' || b === '') return 0;
  if (a.toLowerCase() === b.toLowerCase()) return 1;
  const x = a.split('|');
  const y = b.split('|');
  const n = Math.min(x.length, y.length, MAX_LOCATION_ELEMENTS);
  let matched = 0;
  for (let i = 0; i < n && x[i].toLowerCase() === y[i].toLowerCase(); i++) matched++;
  return matched / MAX_LOCATION_ELEMENTS;
}

/** Scores `parent` as a parent of `child`; higher is better, in [0, 1]. */
export function evaluate(parent: Peer, child: Peer, ctx: EvalContext): number {
  const h = parent.host;
  const load = ctx.load ? ctx.load(h) : Math.min(1, h.concurrentUploadCount / h.uploadLimit);
  const denom = ctx.pieceCount > 0 ? ctx.pieceCount : ctx.maxPiecesHeld;
  // With no piece count known yet, a source (or a finished peer) will hold every piece.
  const sourceLike = !parent.partial && parent.fsm.is('Succeeded', 'BackToSource') ? 1 : 0;
  const pieces = denom > 0 ? Math.min(1, parent.finishedPieces.size / denom) : sourceLike;
  const hostType = !h.isSeed ? NORMAL_HOST_SCORE : h.concurrentUploadCount > 0 ? BUSY_SEED_HOST_SCORE : SEED_HOST_SCORE;
  return (
    W_LOAD * (1 - load) +
    W_PIECES * pieces +
    W_UPLOAD_OK * h.uploadSuccessRatio +
    W_HOST_TYPE * hostType +
    W_IDC * idcAffinity(h.info.idc, child.host.info.idc) +
    W_LOCATION * locationAffinity(h.info.location, child.host.info.location)
  );
}

/** Sorts candidates best first (stable for equal scores); `load` as in EvalContext. */
export function rankParents(candidates: Peer[], child: Peer, pieceCount: number, load?: (h: Host) => number): Peer[] {
  let maxPiecesHeld = 0;
  for (const c of candidates) maxPiecesHeld = Math.max(maxPiecesHeld, c.finishedPieces.size);
  const ctx: EvalContext = { pieceCount, maxPiecesHeld, load };
  return candidates
    .map((p, i) => ({ p, i, s: evaluate(p, child, ctx) }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .map((x) => x.p);
}

/**
 * Whether the last of `costs` is an outlier: with fewer than `window` samples, more than
 * BAD_COST_FACTOR × the mean of the others; with a full window, more than mean + BAD_COST_SIGMAS·σ
 * of the others.
 */
export function isCostOutlier(costs: readonly number[], window: number): boolean {
  if (costs.length < 2) return false;
  const last = costs[costs.length - 1];
  const prev = costs.slice(0, -1);
  const mean = prev.reduce((a, b) => a + b, 0) / prev.length;
  if (costs.length < window) return last > BAD_COST_FACTOR * mean;
  const variance = prev.reduce((a, b) => a + (b - mean) ** 2, 0) / prev.length;
  return last > mean + BAD_COST_SIGMAS * Math.sqrt(variance);
}

/**
 * Whether `parent` should not be offered: not scheduled yet (Pending/ReceivedEmpty), finished
 * badly (Failed/Leave), stalled (downloading but no piece for `stallMs`), or its last served piece,
 * less than `stallMs` ago, was a cost outlier (older verdicts expire: a parent that was slow once,
 * e.g. while its own source was slow, gets another chance instead of being shunned forever).
 *
 * Unlike Dragonfly, a ReceivedNormal peer (it has parents and is about to fetch) is acceptable:
 * children long-poll their parents for pieces, so a parent that holds nothing yet costs nothing,
 * and peers that register together can form a mesh instead of all hanging off the first source.
 */
export function isBadParent(parent: Peer, now: number, stallMs: number, window: number): boolean {
  if (isDeadParent(parent, now, stallMs)) return true;
  return now - parent.lastUploadCostAt <= stallMs && isCostOutlier(parent.uploadCosts, window);
}

/**
 * The part of isBadParent that ends an existing edge: the parent failed, left, was never scheduled,
 * or stalled. A slow last piece alone does not: the child keeps fetching from a parent that serves
 * it (and a piece sent while it was still arriving at the parent costs what the parent's own source
 * took), so the edge, and the upload it draws, stay counted.
 */
export function isDeadParent(parent: Peer, now: number, stallMs: number): boolean {
  if (!parent.fsm.is('ReceivedNormal', 'Running', 'BackToSource', 'Succeeded')) return true;
  return !parent.fsm.is('Succeeded') && now - parent.lastPieceAt > stallMs;
}
