/**
 * The scheduler's resource model as proto messages, and an announced host back: what the service
 * sends down streams and answers to unary calls (field names as in damselfly.proto).
 */
import { InvalidError } from '../adapters/errors.js';
import type { Host as HostMessage, Host__Output, Peer__Output, Piece, TaskInfo } from './protocol/messages.js';
import type { HostInfo, HostType } from './resource/host.js';
import type { Peer } from './resource/peer.js';
import type { PieceMeta, Task } from './resource/task.js';

const HOST_TYPES: readonly unknown[] = ['NORMAL', 'SUPER_SEED', 'STRONG_SEED', 'WEAK_SEED'];

/** proto Host → HostInfo. Throws InvalidError without an id. */
export function hostFromMessage(h: HostMessage | null | undefined): HostInfo {
  if (!h || !h.id) throw new InvalidError('host.id is required');
  const type = HOST_TYPES.includes(h.type) ? (h.type as HostType) : 'NORMAL';
  return {
    id: String(h.id),
    type,
    hostname: h.hostname ?? '',
    ip: h.ip ?? '',
    port: Number(h.port ?? 0),
    downloadPort: Number(h.download_port ?? 0),
    idc: h.idc ?? '',
    location: h.location ?? '',
    maxTxBandwidth: Number(h.max_tx_bandwidth ?? 0),
    uploadLimit: Number(h.upload_limit ?? 0),
    concurrentUploadCount: Number(h.concurrent_upload_count ?? 0),
    proxyPort: Number(h.proxy_port ?? 0),
    schedulerClusterId: Number(h.scheduler_cluster_id ?? 0),
    disableShared: Boolean(h.disable_shared),
    os: h.os ?? '',
    platform: h.platform ?? '',
  };
}

/** HostInfo → proto Host. */
export function hostMessage(i: HostInfo): Host__Output {
  return {
    id: i.id,
    type: i.type,
    hostname: i.hostname,
    ip: i.ip,
    port: i.port,
    download_port: i.downloadPort,
    idc: i.idc,
    location: i.location,
    max_tx_bandwidth: i.maxTxBandwidth,
    upload_limit: i.uploadLimit,
    concurrent_upload_count: i.concurrentUploadCount,
    proxy_port: i.proxyPort,
    scheduler_cluster_id: i.schedulerClusterId,
    disable_shared: i.disableShared,
    os: i.os,
    platform: i.platform,
  };
}

export function peerMessage(p: Peer): Peer__Output {
  return {
    id: p.id,
    host: hostMessage(p.host.info),
    state: p.state,
    finished_piece_count: p.finishedPieces.size,
    task_id: p.task.id,
    is_finished: p.fsm.is('Succeeded'),
  };
}

const NO_BLOCKS = Buffer.alloc(0);

/** A piece's proto message, built once per piece (it never changes) and shared by every answer. */
function pieceMessage(p: PieceMeta): Piece {
  return (p.message ??= { number: p.number, parent_id: '', offset: p.offset, length: p.length, digest: p.digest, traffic_type: 'BACK_TO_SOURCE', cost_ms: 0, block_digests: p.blockDigests ?? NO_BLOCKS }) as Piece;
}

/**
 * proto TaskInfo; `pieces` defaults to every known digest. Answers to a peer carry only the digests
 * it was not sent yet (Task.takeUnsentPieces): agents merge them, so each digest crosses each
 * stream once, and an answer never costs the task's whole piece list.
 */
export function taskMessage(t: Task, pieces: Iterable<PieceMeta> = t.pieces.values()): TaskInfo {
  return {
    id: t.id,
    content_length: t.contentLength,
    piece_length: t.pieceLength,
    piece_count: t.pieceCount,
    pieces: Array.from(pieces, pieceMessage),
    state: t.state,
    peer_count: t.peerCount,
  };
}
