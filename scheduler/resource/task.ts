/**
 * A task: one piece of content (one task ID) and everything the scheduler knows about it: its
 * lifecycle, the piece digests read from the origin, and the DAG of its peers.
 */
import { Dag } from './dag.js';
import { StateMachine, TASK_TRANSITIONS, type TaskState } from './fsm.js';
import { IndexedSet } from './indexed-set.js';
import type { Peer } from './peer.js';

/** A piece whose digest some back-to-source peer reported. */
export interface PieceMeta {
  number: number;
  offset: number;
  length: number;
  digest: string;
  /** Raw sha256 of each block (proto Piece.block_digests); absent when the reader sent none. */
  blockDigests?: Buffer;
  /** Its proto message, built once by the service (a piece's fields never change). */
  message?: object;
}

export interface TaskSource {
  url: string;
  tag: string;
  application: string;
  filteredQueryParams: string[];
}

export class Task {
  readonly fsm: StateMachine<TaskState>;
  /** Peers of the task, by id; the DAG's vertices. */
  readonly dag = new Dag<Peer>();
  /** -1 while unknown. */
  contentLength = -1;
  pieceLength = 0;
  /** 0 while unknown. */
  totalPieceCount = 0;
  readonly pieces = new Map<number, PieceMeta>();
  /** Every known digest in the order learned: a peer's digestCursor says how many it was sent. */
  readonly pieceOrder: PieceMeta[] = [];
  /** Pieces learned since the last push to running peers. */
  pendingPieces: PieceMeta[] = [];
  /**
   * Non-partial peers that read or hold the whole content (BackToSource, Running, Succeeded):
   * Scheduling.hasSource asks this instead of scanning the task.
   */
  readonly sources = new Set<Peer>();
  /**
   * Peers whose host may have upload bandwidth to spare. Added when that may have become true (a
   * new peer, an edge removed, a parent finished or its child progressed, a host re-announced);
   * removed lazily when a draw finds the host full. Scheduling draws from it when a sample has no
   * spare parent, instead of scanning the task for one.
   */
  readonly spare = new IndexedSet<Peer>();
  pendingMetaChange = false;
  /** Peers currently reading from the origin. */
  readonly backToSourcePeers = new Set<string>();
  /** Set while a seed peer was asked to download and has not registered yet. */
  seedTriggeredAt: number | undefined;
  /** Bytes its peers reported receiving, from parents / from the origin (Peer.bytesFromPeers/FromOrigin, summed; kept when peers leave). */
  bytesFromPeers = 0;
  bytesFromOrigin = 0;
  seedFailedAt: number | undefined;
  /** Scheduling loops of this task waiting for a parent; woken when one may have appeared. */
  readonly waiters = new Set<AbortController>();
  readonly createdAt: number;
  updatedAt: number;

  constructor(
    readonly id: string,
    public source: TaskSource,
    now: number,
  ) {
    this.fsm = new StateMachine<TaskState>('task', TASK_TRANSITIONS, 'Pending', now);
    this.createdAt = now;
    this.updatedAt = now;
  }

  get state(): TaskState {
    return this.fsm.state;
  }

  get peerCount(): number {
    return this.dag.size;
  }

  peers(): IterableIterator<Peer> {
    return this.dag.values();
  }

  /** Moves the task's state unless it is already there. Throws InvalidError when illegal. */
  moveTo(to: TaskState, now: number): void {
    if (this.fsm.state !== to) this.fsm.transition(to, now);
    this.updatedAt = now;
  }

  /** Whether one more peer may read from the origin now (the per-task cap). */
  canBackToSource(limit: number): boolean {
    return this.backToSourcePeers.size < limit;
  }

  /** Piece count from what is known: reported, or derived from content and piece length. */
  get pieceCount(): number {
    if (this.totalPieceCount > 0) return this.totalPieceCount;
    if (this.contentLength > 0 && this.pieceLength > 0) return Math.ceil(this.contentLength / this.pieceLength);
    return 0;
  }

  /** Wakes every scheduling loop waiting on this task (a source, parent or free slot appeared). */
  wake(): void {
    for (const w of this.waiters) w.abort();
    this.waiters.clear();
  }

  /** Records a piece digest; returns true if it was new. */
  addPiece(p: PieceMeta): boolean {
    if (this.pieces.has(p.number) || !p.digest) return false;
    this.pieces.set(p.number, p);
    this.pieceOrder.push(p);
    this.pendingPieces.push(p);
    return true;
  }

  /** Digests `peer` was not sent yet (at most once per piece per peer); advances its cursor. */
  takeUnsentPieces(peer: Peer): PieceMeta[] {
    const out = peer.digestCursor >= this.pieceOrder.length ? [] : this.pieceOrder.slice(peer.digestCursor);
    peer.digestCursor = this.pieceOrder.length;
    return out;
  }

  /** Keeps the index of sources (see `sources`) in step with a peer's state. */
  noteState(peer: Peer): void {
    if (!peer.partial && (peer.fsm.is('BackToSource', 'Running', 'Succeeded'))) this.sources.add(peer);
    else this.sources.delete(peer);
    // A finished parent is charged only what its children lack: it may have bandwidth again.
    if (peer.fsm.is('Succeeded')) this.spare.add(peer);
  }

  /** Drops a peer from the task's indexes (it left). */
  forget(peer: Peer): void {
    this.sources.delete(peer);
    this.spare.delete(peer);
  }
}
