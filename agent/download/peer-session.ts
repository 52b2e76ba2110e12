/**
 * One AnnouncePeer stream of a running task: scheduling rounds, fetching pieces from several
 * parents in parallel (each long-polled for what it holds, each piece verified against the digest
 * the scheduler relays, block by block where the origin reader published block digests), and the
 * origin when the scheduler says so. Its lifecycle is SESSION_TRANSITIONS (states.ts).
 */
import type * as grpc from '@grpc/grpc-js';
import { sleep, withTimeout } from '../../adapters/clock.js';
import { TimeoutError, UnavailableError, errorMessage } from '../../adapters/errors.js';
import { StateMachine } from '../../adapters/fsm.js';
import * as tracing from '../../adapters/tracing.js';
import { encodeDownload } from '../../scheduler/protocol/download.js';
import type { AnnouncePeerResponse__Output as AnnouncePeerResponseMsg, Download as DownloadMsg, Peer__Output as PeerMsg, TaskInfo__Output as TaskInfoMsg } from '../../scheduler/protocol/messages.js';
import { DEFAULT_FILTERED_QUERY_PARAMS, MIN_PIECE_LENGTH, pieceBounds } from '../../scheduler/protocol/task-id.js';
import { PieceClient } from '../piece-client.js';
import { receivePiece, type Parent } from './piece-fetch.js';
import type { SchedulerClient } from '../scheduler-client.js';
import { OfferedDigests } from './detached.js';
import type { BackToSourceReporter, OriginReader } from './origin.js';
import { orderPieces } from './pieces.js';
import { SESSION_TRANSITIONS, type SessionState } from './states.js';
import { Deferred, type Task } from './task.js';
import type { TrafficLedger } from './traffic.js';
import type { TaskManagerDeps } from './types.js';

const MAX_SCHEDULE_COUNT = 5;
/** Long-poll window of a child asking a parent which pieces it holds. */
const PARENT_POLL_WAIT_MS = 1_000;
/** Largest piece list a parent may answer a long poll with (a larger one is a protocol error). */
const MAX_POLL_BODY = 8 * 1024 * 1024;
/** Pause before asking a parent again after a 429. */
const PARENT_RETRY_MS = 100;
/**
 * The scheduler hands out a few parents per answer; peers that started later hold pieces too. While
 * pieces are missing and this peer has fewer than TARGET_PARENTS usable parents, it asks for a fresh
 * set (an empty reschedule_peer_request) every PARENT_REFRESH_MS and keeps the parents it had.
 */
const PARENT_REFRESH_MS = 1_500;
/** A parent set that delivered within this window is "working". */
const PRODUCTIVE_MS = 3_000;
const TARGET_PARENTS = 12;
/** How long a peer that holds every range asked so far stays registered for the next one. */
const RANGE_LINGER_MS = 3_000;


/** The scheduler's stream broke before its first answer: no parent is known yet (the caller may register again). */
export class SchedulerLostError extends UnavailableError {
  constructor(
    readonly scheduler: string,
    why: string,
  ) {
    super(`${why} (before it answered)`, { details: { scheduler } });
  }
}

export class PeerSession {
  private call?: grpc.ClientDuplexStream<unknown, unknown>;
  private parents = new Map<string, Parent>();
  private failedParents = new Set<string>();
  private inflight = new Set<number>();
  private done = new Deferred();
  private readonly lifecycle = new StateMachine<SessionState>('peer session', SESSION_TRANSITIONS, 'registering', Date.now());
  private startedSent = false;
  private schedules = 0;
  private lastProgress = Date.now();
  private timers: NodeJS.Timeout[] = [];
  private hostId: string;
  private linger?: NodeJS.Timeout;
  private refreshPending = false;
  /** Set once the session went on without its scheduler: parents are asked for their digests from then on (detached.ts). */
  private wantOffers = false;
  /** Digests offered by parents once detached (detached.ts); the scheduler's come first. */
  private offered = new OfferedDigests();

  constructor(
    private task: Task,
    private sched: SchedulerClient,
    private addr: string,
    private deps: TaskManagerDeps,
    private engine: { origin: OriginReader; traffic: TrafficLedger },
  ) {
    this.hostId = deps.host().id;
  }

  private get closed(): boolean {
    return this.lifecycle.is('closed');
  }
  /** The scheduler's stream is gone; the session goes on with what it has (states.ts). */
  private get detached(): boolean {
    return this.lifecycle.is('detached-p2p', 'detached-source');
  }
  /** Fetching from parents (with or without the scheduler). */
  private get p2p(): boolean {
    return this.lifecycle.is('p2p', 'detached-p2p');
  }
  private to(state: SessionState): void {
    this.lifecycle.transition(state, Date.now());
  }

  private send(req: Record<string, unknown>): void {
    if (this.closed || this.detached || !this.call) return;
    try {
      this.call.write({ host_id: this.hostId, task_id: this.task.id, peer_id: this.task.peerId, ...req });
    } catch {
      /* the stream broke; the 'error' handler decides what happens */
    }
  }

  /** Resolves when the wanted pieces are held; throws when P2P cannot deliver (caller falls back). */
  async run(): Promise<void> {
    const cfg = this.deps.config;
    const o = this.task.opts;
    const call = await withTimeout(tracing.inTask(this.task.id, () => this.sched.openPeerStream(this.addr)), cfg.scheduler.scheduleTimeout, 'scheduler did not accept the stream');
    this.attach(call);
    this.send({ register_peer_request: { download: this.downloadMessage(!!o.needBackToSource) } });
    this.task.log.debug('registering with the scheduler', { scheduler: this.addr });
    const firstAnswer = setTimeout(() => {
      if (this.lifecycle.is('registering')) this.done.reject(new TimeoutError('scheduler gave no answer in time'));
    }, cfg.scheduler.scheduleTimeout);
    this.timers.push(firstAnswer);
    const watchdog = setInterval(() => this.checkStall(), 500);
    this.timers.push(watchdog);
    const refresh = setInterval(() => this.refreshParents(), PARENT_REFRESH_MS);
    this.timers.push(refresh);
    const off = this.task.subscribe(() => {
      this.checkDone();
      this.pump();
    });
    try {
      await this.done.promise;
    } finally {
      off();
      this.close();
    }
  }

  /** Makes `call` the session's stream: its answers are handled, its loss decides what goes on without it. */
  private attach(call: grpc.ClientDuplexStream<unknown, unknown>): void {
    this.call = call;
    call.on('data', (msg: AnnouncePeerResponseMsg) => {
      if (call === this.call) this.onResponse(msg);
    });
    const task = this.task;
    const lost = (why: string) => {
      if (call !== this.call) return; // a stream this session already replaced
      // The scheduler ends the stream after download_peer_finished: that is no loss.
      if (this.closed || this.detached || this.task.satisfied()) return;
      // A read from the origin already under way needs no scheduler: finish it detached. Failing
      // here would make the caller start a second origin read beside the first.
      if (this.lifecycle.is('source')) {
        task.log.warn('scheduler stream lost; finishing the origin read without it', { reason: why });
        this.to('detached-source');
        task.detachedFrom = this.addr;
        return;
      }
      // Parents the scheduler named need no scheduler to keep serving: keep going detached with
      // them, taking the digests of pieces the scheduler had not relayed yet from the parents
      // themselves (detached.ts), rather than every peer re-reading the origin. The stall
      // watchdog still ends it (then the origin, as before).
      if (this.lifecycle.is('p2p') && [...this.parents.values()].some((p) => !p.failed)) {
        task.log.warn('scheduler stream lost; continuing with the parents it named', { reason: why, parents: this.parents.size });
        this.to('detached-p2p');
        this.wantOffers = true;
        task.detachedFrom = this.addr;
        this.lastProgress = Date.now();
        // A parent already known complete is asked once more, for its digests.
        for (const p of this.parents.values()) {
          if (p.polling || p.failed) continue;
          p.cursor = 0;
          void this.poll(p);
        }
        return;
      }
      // Lost before the first answer: no parent is known. The task manager registers again once
      // the scheduler (restarted) answers, rather than read the origin behind its back at once.
      if (this.lifecycle.is('registering')) this.done.reject(new SchedulerLostError(this.addr, why));
      else this.done.reject(new UnavailableError(why));
    };
    call.on('error', (err: Error & { code?: number }) => {
      // UNAVAILABLE: the scheduler went away; NOT_FOUND: it does not know this host (it restarted).
      // Either way it is announced again until it answers, and then told which tasks we hold.
      if (err.code === 5 || err.code === 14) this.sched.markLost(this.addr);
      lost(`scheduler stream failed: ${err.message}`);
    });
    call.on('end', () => lost('scheduler closed the stream'));
  }

  /** The register_peer_request's download of this task. */
  private downloadMessage(needBackToSource: boolean): DownloadMsg {
    const o = this.task.opts;
    // The task started for a range but is wanted whole now (a register again after a restart): whole.
    const range = this.task.wantAll || this.task.prefetchAll ? undefined : o.range;
    return encodeDownload({ ...o, range, filteredQueryParams: o.filteredQueryParams ?? DEFAULT_FILTERED_QUERY_PARAMS, needBackToSource });
  }

  /**
   * The scheduler at `addr` answers again after it was lost (restarted): a session that went on
   * without it registers there again and reports every piece it holds, then the rest as they
   * arrive, so the restarted scheduler knows this peer (and hands it out as a parent) instead of
   * sending the task's next peers to the origin. An origin read registers as the task's source (its
   * digests are relayed to everyone); a peer fetching from parents registers as a normal peer and
   * keeps its parents (an answer sending it to the origin is ignored while they deliver, as for a
   * parent refresh) and the digests they offered. Never throws.
   */
  async reattach(addr: string): Promise<void> {
    if (addr !== this.addr || !this.detached) return;
    let call: grpc.ClientDuplexStream<unknown, unknown>;
    try {
      call = await withTimeout(this.sched.openPeerStream(addr), 5_000, 'scheduler did not accept the stream');
    } catch (err) {
      this.task.log.debug('registering again with the scheduler failed', { scheduler: addr, err: errorMessage(err) });
      return;
    }
    if (!this.detached) {
      call.on('error', () => undefined);
      call.end();
      return;
    }
    const task = this.task;
    const source = this.lifecycle.is('detached-source');
    this.attach(call);
    this.to(source ? 'source' : 'p2p');
    task.detachedFrom = undefined;
    this.startedSent = false;
    this.refreshPending = !source;
    this.send({ register_peer_request: { download: this.downloadMessage(source) } });
    if (source && task.contentLength >= 0) this.send({ download_peer_back_to_source_started_request: { description: 'registered again after the scheduler was lost', content_length: task.contentLength, piece_length: task.pieceLength } });
    let n = 0;
    for (const num of task.stored.order) {
      const digest = task.digests.get(num) ?? this.offered.get(num);
      if (!digest) continue;
      const b = pieceBounds(num, task.contentLength, task.pieceLength);
      const piece = { number: num, parent_id: '', offset: b.offset, length: b.length, digest, cost_ms: 0 };
      if (source) this.send({ download_piece_back_to_source_finished_request: { piece: { ...piece, traffic_type: 'BACK_TO_SOURCE', block_digests: task.blockDigests.get(num) ?? Buffer.alloc(0) } } });
      else this.send({ download_piece_finished_request: { piece: { ...piece, traffic_type: 'REMOTE_PEER' } } });
      n++;
    }
    task.log.info(source ? 'origin read registered again with the scheduler' : 'peer registered again with the scheduler', { scheduler: addr, pieces: n, parents: this.parents.size });
  }

  private close(): void {
    if (this.closed) return;
    this.to('closed');
    for (const t of this.timers) clearTimeout(t);
    clearTimeout(this.linger);
    for (const p of this.parents.values()) p.pieces.close();
    try {
      this.call?.end();
    } catch {
      /* already gone */
    }
  }

  private onResponse(msg: AnnouncePeerResponseMsg): void {
    if (this.closed) return;
    const task = this.task;
    switch (msg.response) {
      case 'empty_task_response':
        task.setContent(0, MIN_PIECE_LENGTH);
        this.send({ download_peer_finished_request: { content_length: 0, piece_count: 0 } });
        this.done.resolve();
        return;
      case 'need_back_to_source_response':
        if (this.lifecycle.is('source')) return;
        if (this.lifecycle.is('p2p') && this.refreshPending && this.productive()) {
          // The answer to an optional "more parents" request; the parents we have are delivering,
          // and the origin would only send the same bytes again.
          this.refreshPending = false;
          task.log.debug('ignoring back-to-source answer to a parent refresh: parents are delivering');
          return;
        }
        this.to('source');
        task.log.info('scheduler says back to source', { reason: msg.need_back_to_source_response?.description });
        void this.runBackToSource();
        return;
      case 'normal_task_response': {
        const r = msg.normal_task_response!;
        this.refreshPending = false;
        if (r.task) this.applyTaskInfo(r.task);
        if (this.lifecycle.is('source')) return;
        if (this.lifecycle.is('registering')) this.to('p2p');
        if (!this.startedSent) {
          this.startedSent = true;
          this.send({ download_peer_started_request: {} });
        }
        for (const p of r.candidate_parents ?? []) this.addParent(p);
        task.log.debug('parents', { parents: (r.candidate_parents ?? []).map((p) => p.id), contentLength: r.task?.content_length, digests: r.task?.pieces?.length });
        this.lastProgress = Date.now();
        this.checkDone();
        this.pump();
        return;
      }
      case 'task_pieces_response':
        if (msg.task_pieces_response?.task) this.applyTaskInfo(msg.task_pieces_response.task);
        this.pump();
        return;
    }
  }

  private applyTaskInfo(t: TaskInfoMsg): void {
    if (t.content_length >= 0) this.task.setContent(Number(t.content_length), Number(t.piece_length));
    for (const p of t.pieces ?? []) {
      if (!p.digest) continue;
      this.task.digests.set(p.number, p.digest);
      if (p.block_digests && p.block_digests.length > 0) this.task.blockDigests.set(p.number, Buffer.from(p.block_digests));
    }
  }

  private async runBackToSource(): Promise<void> {
    for (const p of this.parents.values()) p.failed = true; // stop polling: the origin serves this peer now
    const reporter: BackToSourceReporter = {
      started: (contentLength, pieceLength) => this.send({ download_peer_back_to_source_started_request: { description: '', content_length: contentLength, piece_length: pieceLength } }),
      piece: (piece) => this.send({ download_piece_back_to_source_finished_request: { piece } }),
      finished: (contentLength, count) => this.send({ download_peer_back_to_source_finished_request: { content_length: contentLength, piece_count: count } }),
      failed: (description) => this.send({ download_peer_back_to_source_failed_request: { description } }),
    };
    try {
      await this.engine.origin.backToSource(this.task, reporter);
      this.done.resolve();
    } catch (err) {
      // Origin errors (404, 401...) are final: P2P cannot help; other failures go back to source without the scheduler.
      this.done.reject(err);
    }
  }

  private addParent(p: PeerMsg): void {
    if (!p.host || this.parents.has(p.id) || this.failedParents.has(p.id) || p.id === this.task.peerId) return;
    const base = `http://${p.host.ip.includes(':') ? `[${p.host.ip}]` : p.host.ip}:${p.host.download_port}`;
    const parent: Parent = {
      id: p.id,
      hostId: p.host.id,
      base,
      // One connection more than piece requests can use: the long poll always has one.
      pieces: new PieceClient(p.host.ip, p.host.download_port, { connections: this.deps.config.download.concurrentPieceCount + 1, tls: this.deps.pieceTls }),
      has: new Set(),
      partial: new Set(),
      partialVersion: -1,
      cursor: 0,
      inflight: 0,
      failed: false,
      polling: false,
      retryAt: 0,
    };
    this.parents.set(p.id, parent);
    void this.poll(parent);
  }

  /** Long-polls a parent for the pieces it holds, until the session ends or the parent fails. */
  private async poll(parent: Parent): Promise<void> {
    parent.polling = true;
    try {
      await this.pollLoop(parent);
    } finally {
      parent.polling = false;
    }
  }

  private async pollLoop(parent: Parent): Promise<void> {
    let errors = 0;
    while (!this.closed && !parent.failed) {
      try {
        // Not undici: a non-seed agent then never loads its HTTP parser, whose WebAssembly took
        // each fresh agent about 0.25 CPU-seconds to compile in the middle of its first download.
        let json: Buffer | undefined;
        const withDigests = this.wantOffers;
        const res = await parent.pieces.get(`/v1/tasks/${this.task.id}/pieces?from=${parent.cursor}&wait_ms=${PARENT_POLL_WAIT_MS}&pv=${parent.partialVersion}${withDigests ? '&digests=1' : ''}`, (len) => (json = Buffer.allocUnsafe(len <= MAX_POLL_BODY ? len : 0)), {
          signal: AbortSignal.timeout(PARENT_POLL_WAIT_MS + 10_000),
        });
        if (res.status === 404) {
          // A definite answer: the scheduler names only peers that registered the task, so it is
          // gone there (its origin read failed, it was deleted or evicted). Waiting on it would
          // hold this peer until the stall watchdog; ask for another parent now (finding 8).
          this.parentFailed(parent, undefined, 'does not hold the task (404)');
          return;
        }
        if (res.status !== 200 || !json) throw new Error(`status ${res.status}`);
        const body = JSON.parse(json.toString('utf8', 0, res.length)) as { contentLength: number; pieceLength: number; headers: Record<string, string>; pieces: number[]; next: number; complete: boolean; partial?: number[]; partialVersion?: number; digests?: Record<string, string> };
        errors = 0;
        if (withDigests) this.offered.offer(parent.id, body.digests);
        if (body.contentLength >= 0 && this.task.contentLength < 0) this.task.setContent(body.contentLength, body.pieceLength, body.headers);
        else if (body.headers && Object.keys(this.task.stored.meta.responseHeaders).length === 0) this.task.stored.setContent(body.contentLength, body.pieceLength, body.headers);
        const partial = new Set(body.partial ?? []);
        const newPartial = [...partial].some((n) => !parent.partial.has(n));
        parent.partial = partial;
        parent.partialVersion = body.partialVersion ?? -1;
        if (body.pieces.length > 0) {
          for (const n of body.pieces) parent.has.add(n);
          this.lastProgress = Date.now();
        }
        if (body.pieces.length > 0 || newPartial) this.pump();
        // Detached since this poll was sent: ask again from the start, for the digests.
        parent.cursor = this.wantOffers && !withDigests ? 0 : body.next;
        // It has everything: nothing more to learn (once detached, not before its digests came).
        if (body.complete && withDigests === this.wantOffers) return;
      } catch (err) {
        if (this.closed) return;
        if (++errors >= 2) {
          this.parentFailed(parent, undefined, `unreachable: ${errorMessage(err)}`);
          return;
        }
        await sleep(PARENT_RETRY_MS);
      }
    }
  }

  private usable(p: Parent): boolean {
    return !p.failed && p.retryAt <= Date.now();
  }

  /** Fills free download slots: rarest piece first (ties: lowest number), least busy holder. */
  private pump(): void {
    if (this.closed || !this.p2p || this.task.contentLength < 0) return;
    const limit = this.deps.config.download.concurrentPieceCount;
    if (this.inflight.size >= limit) return;
    const missing = this.task.missing();
    const candidates: { n: number; holders: Parent[] }[] = [];
    for (const n of missing) {
      if (this.inflight.has(n) || this.digestOf(n) === undefined) continue;
      const holders = [...this.parents.values()].filter((p) => (p.has.has(n) || p.partial.has(n)) && this.usable(p));
      if (holders.length > 0) candidates.push({ n, holders });
    }
    const front = this.task.readerFront();
    for (const c of orderPieces(candidates, front === undefined ? undefined : { from: front, to: front + limit - 1 })) {
      if (this.inflight.size >= limit) break;
      // A parent holding the whole piece before one still receiving it; then the least busy.
      const complete = c.holders.filter((p) => p.has.has(c.n));
      const pool = complete.length > 0 ? complete : c.holders;
      const least = Math.min(...pool.map((p) => p.inflight));
      const best = pool.filter((p) => p.inflight === least);
      const parent = best[Math.floor(Math.random() * best.length)];
      void this.fetchPiece(c.n, parent);
    }
  }

  /** The digest piece `n` must match: the scheduler's (origin reader's), or once detached a parent's offer. */
  private digestOf(n: number): string | undefined {
    return this.task.digests.get(n) ?? (this.wantOffers ? this.offered.get(n) : undefined);
  }

  private async fetchPiece(n: number, parent: Parent): Promise<void> {
    const task = this.task;
    this.inflight.add(n);
    parent.inflight++;
    const t0 = Date.now();
    const { offset, length } = pieceBounds(n, task.contentLength, task.pieceLength);
    const fromPartial = !parent.has.has(n);
    let failure: string | undefined;
    let temporary = false;
    try {
      const r = await receivePiece(task, n, parent, this.digestOf(n)!, this.deps);
      switch (r.kind) {
        case 'gone':
          parent.has.delete(n);
          parent.partial.delete(n);
          return;
        case 'busy':
          parent.retryAt = Date.now() + PARENT_RETRY_MS;
          setTimeout(() => this.pump(), PARENT_RETRY_MS + 5).unref();
          return;
        case 'failed':
          failure = r.reason;
          temporary = r.temporary;
          // A digest only this parent offered (detached) that its own bytes do not match.
          if (r.offerMismatch && !task.digests.has(n)) this.offered.drop(parent.id);
          return;
      }
      if (this.closed || task.stored.has(n)) {
        r.discard();
        return;
      }
      try {
        await task.stored.writePiece(n, r.buf, r.digest, r.owned);
        if (!task.digests.has(n)) task.digests.set(n, r.digest);
      } catch (err) {
        // Our own disk failed, not the parent: the task ends here (and is freed, see run()).
        this.done.reject(err);
        return;
      }
      this.deps.metrics.downloadTraffic.inc({ type: 'REMOTE_PEER' }, length);
      this.engine.traffic.count(task.id, 'peer', length);
      this.deps.metrics.downloadPieceDuration.observe({ type: 'REMOTE_PEER' }, Date.now() - t0);
      tracing.pieceFromParent(task.id, parent.id, parent.base, n, length);
      this.lastProgress = Date.now();
      this.send({ download_piece_finished_request: { piece: { number: n, parent_id: parent.id, offset, length, digest: r.digest, traffic_type: 'REMOTE_PEER', cost_ms: Date.now() - t0 } } });
      task.log.debug('piece from parent', { piece: n, parentId: parent.id, ms: Date.now() - t0, inflight: this.inflight.size, partial: fromPartial });
    } catch (err) {
      failure = errorMessage(err);
    } finally {
      this.inflight.delete(n);
      parent.inflight--;
      if (failure !== undefined) {
        if (temporary) {
          // The parent's own download of this piece stopped (or its connection broke while it
          // was sending one still arriving): try the piece elsewhere, keep the parent.
          parent.partial.delete(n);
          task.log.debug('piece still arriving at its parent did not complete', { piece: n, parentId: parent.id, reason: failure });
        } else this.parentFailed(parent, n, failure);
      }
      this.checkDone();
      this.pump();
    }
  }

  /** A parent that failed a piece (or is unreachable) is reported and never used again by this peer. */
  private parentFailed(parent: Parent, n: number | undefined, reason: string): void {
    if (this.closed) return;
    this.task.log.warn('parent failed', { parentId: parent.id, piece: n, reason });
    if (n !== undefined) this.send({ download_piece_failed_request: { piece_number: n, parent_id: parent.id, temporary: true, reason } });
    if (parent.failed) return;
    parent.failed = true;
    this.failedParents.add(parent.id);
    this.parents.delete(parent.id);
    parent.pieces.close();
    if (this.p2p && [...this.parents.values()].every((p) => p.failed)) this.reschedule('every parent failed');
  }

  private reschedule(description: string): void {
    this.refreshPending = false;
    if (this.detached) {
      this.done.reject(new UnavailableError(`no scheduler to ask for parents: ${description}`));
      return;
    }
    if (++this.schedules > MAX_SCHEDULE_COUNT) {
      this.done.reject(new UnavailableError(`gave up after ${MAX_SCHEDULE_COUNT} schedules: ${description}`));
      return;
    }
    this.task.log.info('asking for new parents', { description, blocked: [...this.failedParents] });
    this.lastProgress = Date.now();
    this.send({ reschedule_peer_request: { candidate_parent_ids: [...this.failedParents], description } });
  }

  /** Whether a usable parent delivered (or announced) a piece within the last few seconds. */
  private productive(): boolean {
    return [...this.parents.values()].some((p) => !p.failed) && Date.now() - this.lastProgress < PRODUCTIVE_MS;
  }

  private refreshParents(): void {
    if (this.closed || !this.p2p || this.task.satisfied() || this.refreshPending) return;
    const usable = [...this.parents.values()].filter((p) => !p.failed);
    if (usable.length >= TARGET_PARENTS) return;
    // Only when more parents would help: free download slots, or pieces no parent of ours holds.
    const limit = this.deps.config.download.concurrentPieceCount;
    const unheld = this.task.missing().some((n) => !usable.some((p) => p.has.has(n)));
    if (this.inflight.size >= limit && !unheld) return;
    this.refreshPending = true;
    this.send({ reschedule_peer_request: { candidate_parent_ids: [...this.failedParents], description: 'more parents' } });
  }

  private checkStall(): void {
    if (this.closed || !this.p2p || this.task.satisfied()) return;
    const stallMs = Math.max(3_000, Math.min(this.deps.config.download.pieceTimeout, 15_000));
    if (this.inflight.size === 0 && Date.now() - this.lastProgress > stallMs) this.reschedule('no progress from parents');
  }

  private checkDone(): void {
    if (!this.p2p) return;
    if (!this.task.satisfied()) {
      clearTimeout(this.linger);
      this.linger = undefined;
      return;
    }
    if (this.task.stored.finishedCount === this.task.pieceCount) {
      this.send({ download_peer_finished_request: { content_length: this.task.contentLength, piece_count: this.task.pieceCount } });
      this.done.resolve();
      return;
    }
    // Ranged readers (nydusd, lazy pullers) come in bursts: keep this peer and its parents a while
    // for the next range instead of registering again (or falling back to the origin).
    this.linger ??= setTimeout(() => this.done.resolve(), RANGE_LINGER_MS);
  }
}
