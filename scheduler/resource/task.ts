/**
 * A task: one piece of content (one task ID) and everything the scheduler knows about it: its
 * lifecycle, the piece digests read from the origin, and the DAG of its peers.
 */
import { Dag } from '../dag.js';
import { StateMachine, TASK_TRANSITIONS, type TaskState } from './fsm.js';
import type { Peer } from './peer.js';

/** A piece whose digest some back-to-source peer reported. */
export interface PieceMeta {
  number: number;
  offset: number;
  length: number;
  digest: string;
  /** Raw sha256 of each block (proto Piece.block_digests); absent when the reader sent none. */
  blockDigests?: Buffer;
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
  /** Pieces learned since the last push to running peers. */
  pendingPieces: PieceMeta[] = [];
  pendingMetaChange = false;
  /** Peers currently reading from the origin. */
  readonly backToSourcePeers = new Set<string>();
  /** Set while a seed peer was asked to download and has not registered yet. */
  seedTriggeredAt: number | undefined;
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
    this.pendingPieces.push(p);
    return true;
  }
}
