/**
 * A peer: one download of one task by one host, bound to one AnnouncePeer stream while it runs.
 */
import { PEER_TRANSITIONS, StateMachine, type PeerState } from './fsm.js';
import type { Host } from './host.js';
import { PieceSet } from './indexed-set.js';
import type { Task } from './task.js';

/** Piece costs remembered per peer for bad-parent detection (Dragonfly keeps the last 20). */
export const PIECE_COST_WINDOW = 20;

/** What the scheduler sends down a peer's stream (the AnnouncePeerResponse oneof, proto field names). */
export type PeerResponse = Record<string, unknown>;

export interface PeerStream {
  send(response: PeerResponse): void;
}

export class Peer {
  readonly fsm: StateMachine<PeerState>;
  /** Piece numbers this peer holds and has verified (a bitmap: 1 bit per piece). */
  readonly finishedPieces = new PieceSet();
  /** How many of the task's digests (Task.pieceOrder) this peer's stream was sent: each goes once. */
  digestCursor = 0;
  /**
   * Bytes of the pieces this peer reported, by where they came from (each piece number counted
   * once, at the length its report gives): what the reports show, not pieces × piece length.
   */
  bytesFromPeers = 0;
  bytesFromOrigin = 0;
  /** Recent costs (ms) of pieces this peer served to children: a slow parent shows up here. */
  readonly uploadCosts: number[] = [];
  /** When a child last reported a piece served by this peer. */
  lastUploadCostAt = 0;
  /** Parents this peer must not be given again (itself included, as Dragonfly does). */
  readonly blockParents = new Set<string>();
  needBackToSource = false;
  /** The download asked for a byte range: finishing does not mean holding every piece. */
  partial = false;
  priority = 'LEVEL6';
  stream: PeerStream | undefined;
  /** Bumped on every (re)schedule so an older scheduling loop stops. */
  scheduleGeneration = 0;
  readonly createdAt: number;
  updatedAt: number;
  /** Last time a child reported a piece from this peer or this peer reported one. */
  lastPieceAt: number;

  constructor(
    readonly id: string,
    readonly task: Task,
    readonly host: Host,
    now: number,
  ) {
    this.fsm = new StateMachine<PeerState>('peer', PEER_TRANSITIONS, 'Pending', now);
    this.blockParents.add(id);
    this.createdAt = now;
    this.updatedAt = now;
    this.lastPieceAt = now;
  }

  get state(): PeerState {
    return this.fsm.state;
  }

  /** Moves the peer's state. Throws InvalidError on an illegal transition. */
  transition(to: PeerState, now: number): void {
    this.fsm.transition(to, now);
    this.updatedAt = now;
    this.host.loadEpoch++;
    this.task.noteState(this);
  }

  /** Records the cost of a piece this peer served; keeps the last PIECE_COST_WINDOW. */
  addUploadCost(costMs: number, now: number): void {
    this.lastUploadCostAt = now;
    this.uploadCosts.push(costMs);
    if (this.uploadCosts.length > PIECE_COST_WINDOW) this.uploadCosts.shift();
  }
}
