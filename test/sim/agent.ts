/**
 * The agent model: one node = one host with one download of the task, after agent/task-manager.ts
 * (PeerSession) and agent/piece-server.ts. What it does, as the agent does:
 *   - registers over an AnnouncePeer stream; takes parents from every normal_task_response and
 *     digests from every answer and push (a piece is fetched only once its digest is known);
 *   - long-polls each parent for the pieces it holds and the ones arriving with a verified block;
 *   - fetches up to CONCURRENT_PIECES pieces at once, rarest first among its parents (ties: lowest
 *     number), from a holder of the whole piece before one still receiving it, then the least busy
 *     (random tie); reports download_piece_finished with the parent and the cost;
 *   - serves pieces (also of a download in progress, cut-through from the first verified block)
 *     one at a time, two more queued by "sent fewest times first", 429 beyond (the child marks that
 *     parent busy for 100 ms); while reading the origin it sends each piece once;
 *   - a failed piece blocklists its parent (download_piece_failed); no usable parent left, no
 *     progress for 15 s: reschedule_peer_request; fewer than 12 parents: ask for more every 1.5 s;
 *   - need_back_to_source_response: reads the origin itself, reporting each piece; a stream the
 *     scheduler fails (or 5 reschedules used up, or no answer in 30 s): reads the origin without it.
 * Simplified (none changes which parents the scheduler names or what a parent can send):
 *   - a long poll is answered the moment the parent has news and re-sent on arrival (one-way
 *     latency each way); poll time-outs without news are not modeled;
 *   - the parent's death is seen by a child's fetch at once (connection reset) and by its poll after
 *     two refused attempts (2 × latency + 100 ms), as the agent's poll loop does;
 *   - piece timeouts (60 s), disk, hashing CPU and the origin's own latency beyond one one-way trip
 *     at the start of its stream are not modeled; a detached session (scheduler lost) takes digests
 *     from its parents at once.
 */
import type { Sim } from './engine.js';
import type { Flow, SimHost } from './net.js';

type Msg = Record<string, any>;

export interface ServeCallbacks {
  notFound(): void;
  busy(): void;
  done(f: Flow, hops: number): void;
  failed(why: string, cutThrough: boolean): void;
}

/** What a session needs of its node (world.ts Node). */
export interface NodeT {
  readonly peerId: string;
  readonly host: SimHost;
  readonly have: Uint8Array;
  readonly digest: Uint8Array;
  readonly order: number[];
  readonly partial: Map<number, unknown>;
  readonly partialVersion: number;
  lengthKnown: boolean;
  readonly complete: boolean;
  readonly pollers: Set<ParentView>;
  send(req: Msg): void;
  closeStream(): void;
  readOrigin(report: boolean): void;
  store(n: number, hops: number, from: NodeT | undefined, f?: Flow): void;
  serve(child: NodeT, n: number, cb: ServeCallbacks): void;
}

/** What a session needs of the world (world.ts World). */
export interface World {
  readonly sim: Sim;
  readonly latency: number;
  readonly url: string;
  readonly F: number;
  readonly pieceCount: number;
  readonly rnd: () => number;
  readonly byPeer: Map<string, NodeT>;
  readonly counts: { reschedules: number; refreshes: number; busy: number; notFound: number };
  bounds(n: number): { offset: number; length: number };
  digestOf(n: number): string;
  log(n: NodeT, what: string, why: string): void;
  connect(n: NodeT, onMsg: (m: Msg) => void, onEnd: () => void, onError: () => void): void;
}

/** agent/config.ts download.concurrentPieceCount default. */
export const CONCURRENT_PIECES = 8;
/** agent/piece-server.ts LIMITED_UPLOAD_SLOTS, LIMITED_UPLOAD_QUEUE; agent/config.ts upload.concurrentLimit. */
export const UPLOAD_SLOTS = 1;
export const UPLOAD_QUEUE = 2;
export const UPLOAD_CONCURRENT_LIMIT = 200;
/** agent/task-manager.ts PARENT_RETRY_MS, PARENT_REFRESH_MS, TARGET_PARENTS, PRODUCTIVE_MS, MAX_SCHEDULE_COUNT. */
const PARENT_RETRY_MS = 100;
const PARENT_REFRESH_MS = 1_500;
const TARGET_PARENTS = 12;
const PRODUCTIVE_MS = 3_000;
const MAX_SCHEDULE_COUNT = 5;
/** checkStall: every 500 ms, max(3 s, min(pieceTimeout 60 s, 15 s)). */
const STALL_CHECK_MS = 500;
const STALL_MS = 15_000;
/** scheduler.scheduleTimeout default. */
const SCHEDULE_TIMEOUT_MS = 30_000;

export interface ParentView {
  owner: Session;
  node: NodeT;
  has: Set<number>;
  partial: Set<number>;
  cursor: number;
  pv: number;
  inflight: number;
  failed: boolean;
  retryAt: number;
}

interface UploadReq {
  child: NodeT;
  n: number;
  prio: number;
  start(): void;
  reject(why: 'busy' | 'gone'): void;
}

export type Mode = 'idle' | 'waiting' | 'p2p' | 'source' | 'done' | 'left';

/** The download side of a node (PeerSession). `n` is always a piece number. */
export class Session {
  mode: Mode = 'idle';
  readonly parents = new Map<string, ParentView>();
  readonly failedParents = new Set<string>();
  readonly inflight = new Set<number>();
  lastProgress = 0;
  schedules = 0;
  refreshPending = false;
  startedSent = false;
  detached = false;
  closed = false;
  private timers: { cancel(): void }[] = [];

  constructor(private readonly w: World, private readonly me: NodeT) {}

  get L(): number {
    return this.w.latency;
  }

  start(needBackToSource: boolean): void {
    const w = this.w;
    this.mode = 'waiting';
    this.lastProgress = w.sim.now;
    w.connect(this.me, (m) => this.onResponse(m), () => this.lost('scheduler closed the stream'), () => this.lost('scheduler failed the stream'));
    this.me.send({ register_peer_request: { download: { url: w.url, piece_length: 0, priority: 'LEVEL6', need_back_to_source: needBackToSource, disable_back_to_source: false, range: null } } });
    const first = w.sim.after(SCHEDULE_TIMEOUT_MS, () => {
      if (this.mode === 'waiting') this.reject('scheduler gave no answer in time');
    });
    this.timers.push({ cancel: () => w.sim.cancel(first) });
    this.every(STALL_CHECK_MS, () => this.checkStall());
    this.every(PARENT_REFRESH_MS, () => this.refreshParents());
  }

  private every(ms: number, fn: () => void): void {
    let ev = this.w.sim.after(ms, tick);
    const self = this;
    function tick(): void {
      if (self.closed) return;
      fn();
      ev = self.w.sim.after(ms, tick);
    }
    this.timers.push({ cancel: () => this.w.sim.cancel(ev) });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) t.cancel();
    for (const p of this.parents.values()) p.node.pollers.delete(p);
    this.me.closeStream();
  }

  /** P2P could not deliver: the agent reads the origin without the scheduler. */
  private reject(why: string): void {
    if (this.closed) return;
    this.w.log(this.me, 'p2p failed', why);
    this.close();
    this.mode = 'source';
    this.me.readOrigin(false);
  }

  private lost(why: string): void {
    if (this.closed || this.me.complete) return;
    if (this.mode === 'source') {
      this.detached = true;
      return;
    }
    if (this.mode === 'p2p' && [...this.parents.values()].some((p) => !p.failed)) {
      this.detached = true;
      this.pump();
      return;
    }
    this.reject(why);
  }

  private onResponse(m: Msg): void {
    if (this.closed) return;
    const w = this.w;
    if (m.need_back_to_source_response) {
      if (this.mode === 'source') return;
      if (this.mode === 'p2p' && this.refreshPending && this.productive()) {
        this.refreshPending = false;
        return;
      }
      this.mode = 'source';
      for (const p of this.parents.values()) {
        p.failed = true;
        p.node.pollers.delete(p);
      }
      this.me.readOrigin(true);
    } else if (m.normal_task_response) {
      const r = m.normal_task_response;
      this.refreshPending = false;
      if (r.task) this.applyTaskInfo(r.task);
      if (this.mode === 'source') return;
      this.mode = 'p2p';
      if (!this.startedSent) {
        this.startedSent = true;
        this.me.send({ download_peer_started_request: {} });
      }
      for (const p of r.candidate_parents ?? []) this.addParent(String(p.id));
      this.lastProgress = w.sim.now;
      this.checkDone();
      this.pump();
    } else if (m.task_pieces_response) {
      if (m.task_pieces_response.task) this.applyTaskInfo(m.task_pieces_response.task);
      this.pump();
    }
  }

  private applyTaskInfo(t: Msg): void {
    if (Number(t.content_length) >= 0) this.me.lengthKnown = true;
    for (const p of t.pieces ?? []) if (p.digest) this.me.digest[Number(p.number)] = 1;
  }

  private addParent(id: string): void {
    const node = this.w.byPeer.get(id);
    if (!node || this.parents.has(id) || this.failedParents.has(id) || node === this.me) return;
    const v: ParentView = { owner: this, node, has: new Set(), partial: new Set(), cursor: 0, pv: -1, inflight: 0, failed: false, retryAt: 0 };
    this.parents.set(id, v);
    this.sendPoll(v);
  }

  // ---- long polls ----

  private sendPoll(v: ParentView): void {
    this.w.sim.after(this.L, () => {
      if (this.closed || v.failed) return;
      const p = v.node;
      if (!p.host.alive) return this.unreachable(v);
      if (p.order.length > v.cursor || p.partialVersion !== v.pv || p.complete) this.answerPoll(v);
      else p.pollers.add(v);
    });
  }

  /** Called at the parent: sends the poll answer (a snapshot of what it holds now). */
  answerPoll(v: ParentView): void {
    const p = v.node;
    p.pollers.delete(v);
    const pieces = p.order.slice(v.cursor);
    const snap = { pieces, next: p.order.length, partial: [...p.partial.keys()], pv: p.partialVersion, complete: p.complete, length: p.lengthKnown };
    this.w.sim.after(this.L, () => this.onPoll(v, snap));
  }

  private onPoll(v: ParentView, s: { pieces: number[]; next: number; partial: number[]; pv: number; complete: boolean; length: boolean }): void {
    if (this.closed || v.failed) return;
    if (s.length) this.me.lengthKnown = true;
    const newPartial = s.partial.some((n) => !v.partial.has(n));
    v.partial = new Set(s.partial);
    v.pv = s.pv;
    for (const n of s.pieces) v.has.add(n);
    if (s.pieces.length > 0) this.lastProgress = this.w.sim.now;
    v.cursor = s.next;
    if (s.pieces.length > 0 || newPartial) this.pump();
    if (!s.complete) this.sendPoll(v);
  }

  /** Two refused attempts 100 ms apart (the poll loop), then the parent counts as failed. */
  unreachable(v: ParentView): void {
    this.w.sim.after(PARENT_RETRY_MS + 2 * this.L, () => this.parentFailed(v, undefined, 'unreachable'));
  }

  // ---- fetching ----

  private usable(p: ParentView): boolean {
    return !p.failed && p.retryAt <= this.w.sim.now;
  }

  private known(n: number): boolean {
    if (this.me.digest[n]) return true;
    if (!this.detached) return false;
    for (const p of this.parents.values()) if (p.has.has(n)) return true;
    return false;
  }

  pump(): void {
    if (this.closed || this.mode !== 'p2p' || !this.me.lengthKnown) return;
    if (this.inflight.size >= CONCURRENT_PIECES) return;
    const me = this.me;
    const ps: ParentView[] = [];
    for (const p of this.parents.values()) if (this.usable(p)) ps.push(p);
    if (ps.length === 0) return;
    const cands: { n: number; holders: ParentView[] }[] = [];
    for (let n = 0; n < this.w.pieceCount; n++) {
      if (me.have[n] || this.inflight.has(n) || !this.known(n)) continue;
      let holders: ParentView[] | undefined;
      for (const p of ps) if (p.has.has(n) || p.partial.has(n)) (holders ??= []).push(p);
      if (holders) cands.push({ n, holders });
    }
    cands.sort((a, b) => a.holders.length - b.holders.length || a.n - b.n);
    for (const c of cands) {
      if (this.inflight.size >= CONCURRENT_PIECES) break;
      const complete = c.holders.filter((p) => p.has.has(c.n));
      const pool = complete.length > 0 ? complete : c.holders;
      const least = Math.min(...pool.map((p) => p.inflight));
      const best = pool.filter((p) => p.inflight === least);
      this.fetch(c.n, best[Math.floor(this.w.rnd() * best.length)]!);
    }
  }

  private fetch(n: number, v: ParentView): void {
    const w = this.w;
    this.inflight.add(n);
    v.inflight++;
    const t0 = w.sim.now;
    const fromPartial = !v.has.has(n);
    let settled = false;
    const finish = (failure?: string, temporary = false): void => {
      if (settled) return;
      settled = true;
      this.inflight.delete(n);
      v.inflight--;
      if (this.closed) return;
      if (failure !== undefined) {
        if (temporary) v.partial.delete(n);
        else this.parentFailed(v, n, failure);
      }
      this.checkDone();
      this.pump();
    };
    w.sim.after(this.L, () =>
      v.node.serve(this.me, n, {
        notFound: () => w.sim.after(this.L, () => {
          w.counts.notFound++;
          v.has.delete(n);
          v.partial.delete(n);
          finish();
        }),
        busy: () => w.sim.after(this.L, () => {
          w.counts.busy++;
          v.retryAt = w.sim.now + PARENT_RETRY_MS;
          w.sim.after(PARENT_RETRY_MS + 5, () => this.pump());
          finish();
        }),
        done: (f: Flow, hops: number) => w.sim.after(this.L, () => {
          if (!this.closed && !this.me.have[n]) {
            this.me.store(n, hops, v.node, f);
            this.lastProgress = w.sim.now;
            const b = w.bounds(n);
            this.me.send({ download_piece_finished_request: { piece: { number: n, parent_id: v.node.peerId, offset: b.offset, length: b.length, digest: w.digestOf(n), traffic_type: 'REMOTE_PEER', cost_ms: Math.round(w.sim.now - t0) } } });
          }
          finish();
        }),
        failed: (why: string, cutThrough: boolean) => w.sim.after(this.L, () => finish(why, cutThrough || fromPartial)),
      }),
    );
  }

  parentFailed(v: ParentView, n: number | undefined, reason: string): void {
    if (this.closed) return;
    if (n !== undefined) this.me.send({ download_piece_failed_request: { piece_number: n, parent_id: v.node.peerId, temporary: true, reason } });
    if (v.failed) return;
    v.failed = true;
    v.node.pollers.delete(v);
    this.failedParents.add(v.node.peerId);
    this.parents.delete(v.node.peerId);
    if (this.mode === 'p2p' && [...this.parents.values()].every((p) => p.failed)) this.reschedule('every parent failed');
  }

  private reschedule(description: string): void {
    this.refreshPending = false;
    if (this.detached) return this.reject(`no scheduler to ask for parents: ${description}`);
    if (++this.schedules > MAX_SCHEDULE_COUNT) return this.reject(`gave up after ${MAX_SCHEDULE_COUNT} schedules: ${description}`);
    this.lastProgress = this.w.sim.now;
    this.w.counts.reschedules++;
    this.me.send({ reschedule_peer_request: { candidate_parent_ids: [...this.failedParents], description } });
  }

  private productive(): boolean {
    return [...this.parents.values()].some((p) => !p.failed) && this.w.sim.now - this.lastProgress < PRODUCTIVE_MS;
  }

  private refreshParents(): void {
    if (this.closed || this.mode !== 'p2p' || this.me.complete || this.refreshPending || this.detached) return;
    const usable = [...this.parents.values()].filter((p) => !p.failed);
    if (usable.length >= TARGET_PARENTS) return;
    let unheld = false;
    for (let n = 0; n < this.w.pieceCount && !unheld; n++) if (!this.me.have[n] && !usable.some((p) => p.has.has(n))) unheld = true;
    if (this.inflight.size >= CONCURRENT_PIECES && !unheld) return;
    this.refreshPending = true;
    this.w.counts.refreshes++;
    this.me.send({ reschedule_peer_request: { candidate_parent_ids: [...this.failedParents], description: 'more parents' } });
  }

  private checkStall(): void {
    if (this.closed || this.mode !== 'p2p' || this.me.complete) return;
    if (this.inflight.size === 0 && this.w.sim.now - this.lastProgress > STALL_MS) this.reschedule('no progress from parents');
  }

  checkDone(): void {
    if (this.mode !== 'p2p' || !this.me.complete || this.closed) return;
    this.me.send({ download_peer_finished_request: { content_length: this.w.F, piece_count: this.w.pieceCount } });
    this.mode = 'done';
    this.close();
  }
}

/** The upload side of a node (piece-server.ts): one send at a time, a queue of two, 429 beyond. */
export class Uploader {
  sending = 0;
  uploading = 0;
  readonly queue: UploadReq[] = [];
  readonly sent: Int32Array;

  constructor(pieceCount: number) {
    this.sent = new Int32Array(pieceCount);
  }

  /** Takes the slot or a queue place for `r`; false = 429. */
  admit(r: UploadReq): boolean {
    if (this.sending < UPLOAD_SLOTS) {
      this.sending++;
      r.start();
      return true;
    }
    if (this.queue.length >= UPLOAD_QUEUE) {
      const worst = this.queue[this.queue.length - 1]!;
      if (worst.prio <= r.prio) return false;
      this.queue.pop();
      worst.reject('busy');
    }
    let i = this.queue.length;
    while (i > 0 && this.queue[i - 1]!.prio > r.prio) i--;
    this.queue.splice(i, 0, r);
    return true;
  }

  release(): void {
    const next = this.queue.shift();
    if (next) next.start();
    else this.sending--;
  }

  /** The host left: every queued request is refused. */
  drop(): void {
    for (const r of this.queue.splice(0)) r.reject('gone');
  }
}

export type { UploadReq };
