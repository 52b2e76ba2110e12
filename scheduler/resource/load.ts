/**
 * Upload-bandwidth accounting: what a host's children are expected to draw from it, and whether
 * its upload is taken (the formulas are in evaluator.ts's header, which scores parents with them).
 * Part of the resource model: Resources keeps its index of hosts with spare upload by these.
 */
import type { Host } from './host.js';
import type { Peer } from './peer.js';

/** uploadLoad at or above this = the host's upload bandwidth is taken (float slack). */
export const FULL_LOAD = 0.999;

/** Looks a peer up by id (Resources.peer). */
export type PeerLookup = (id: string) => Peer | undefined;

/** Expected rate (bytes/s) `child` draws from one parent on `parentHost`: edgeRate in the header; 0 when unknown. */
export function edgeRate(child: Peer, parentHost: Host): number {
  const cap = parentHost.info.maxTxBandwidth;
  if (cap <= 0) return 0;
  const own = child.host.info.maxTxBandwidth;
  const stream = own > 0 ? Math.min(own, cap) : cap;
  return stream / Math.max(1, child.task.dag.inDegree(child.id));
}

/**
 * What a child still draws from a parent that has finished the task: no more than what it lacks,
 * spread over this horizon. A chain's head finishes while its child is a piece or two behind; charged
 * at the full edgeRate its host would look busy until the child left, and the swarm's tail would not
 * be offered the one uploader with time to spare.
 */
export const FINISHED_EDGE_HORIZON_MS = 1_000;

/** The rate `child` is charged on `parent`'s host: edgeRate, or for a finished parent at most its lack per horizon. */
export function chargedRate(child: Peer, parent: Peer): number {
  const rate = edgeRate(child, parent.host);
  const task = child.task;
  if (rate <= 0 || !parent.fsm.is('Succeeded') || parent.partial || task.pieceCount <= 0) return rate;
  const missing = Math.max(0, task.pieceCount - child.finishedPieces.size);
  return Math.min(rate, (missing * task.pieceLength * 1000) / FINISHED_EDGE_HORIZON_MS);
}

/** Σ chargedRate over the children of every peer on `host` (bytes/s). */
export function expectedUploadRate(host: Host, peerOf: PeerLookup): number {
  let sum = 0;
  for (const id of host.peers) {
    const p = peerOf(id);
    if (!p) continue;
    for (const cid of p.task.dag.children(p.id)) {
      const c = p.task.dag.get(cid);
      if (c) sum += chargedRate(c, p);
    }
  }
  return sum;
}

/** uploadLoad(host) from the header, in [0, 1]: bandwidth share when announced, else slot share. */
export function uploadLoad(host: Host, peerOf: PeerLookup): number {
  const cap = host.info.maxTxBandwidth;
  if (cap > 0) return Math.min(1, expectedUploadRate(host, peerOf) / cap);
  return Math.min(1, host.concurrentUploadCount / host.uploadLimit);
}

/**
 * uploadLoad, recomputed only when the host's loadEpoch moved (see Host.loadEpoch): a decision
 * reads ~filterParentLimit loads, and a host feeding many children would otherwise cost a walk
 * over them each time.
 */
export function hostLoad(host: Host, peerOf: PeerLookup): number {
  if (host.loadCacheEpoch !== host.loadEpoch) {
    host.loadCache = uploadLoad(host, peerOf);
    host.loadCacheEpoch = host.loadEpoch;
  }
  return host.loadCache;
}

/** Whether the host's expected upload already uses its announced bandwidth (never for unknown rates). */
export function isUploadFull(load: number): boolean {
  return load >= FULL_LOAD;
}
