/**
 * The Scheduler gRPC service: host announcements and one AnnouncePeer stream per download,
 * implementing the agent ↔ scheduler protocol (README "Scheduler"; dragonfly.md §3.2).
 */
import type * as grpc from '@grpc/grpc-js';
import { InvalidError, NotFoundError, errorMessage } from '../adapters/errors.js';
import type { Logger } from '../adapters/log.js';
import type { Clock } from '../adapters/clock.js';
import type { SchedulerConfig } from './config.js';
import type { DfdaemonClientPool } from './dfdaemon-client.js';
import type { AnnounceHostRequest, AnnouncePeerRequest__Output, AnnouncePeerResponse, Download, Download__Output, LeaveHostRequest, ListHostsResponse, ListTaskPeersRequest, ListTaskPeersResponse, StatTaskRequest, TaskInfo } from './protocol/messages.js';
import { hostLoad, isUploadFull } from './resource/load.js';
import { schedulingFailedStatus, toGrpcStatus } from './protocol/grpc-status.js';
import { HashRing } from './protocol/hashring.js';
import { shared as encodedOnce } from './protocol/encode-once.js';
import type { SchedulerMetrics } from './metrics.js';
import { taskSizeLevel } from './protocol/task-size.js';
import type { Host, HostInfo, HostType } from './resource/host.js';
import type { Peer, PeerResponse } from './resource/peer.js';
import type { Resources } from './resource/resources.js';
import type { PieceMeta, Task } from './resource/task.js';
import { Scheduling } from './scheduling.js';
import { hostFromMessage, hostMessage, peerMessage, taskMessage } from './wire.js';
import { HELD_TASK_DESCRIPTION } from './protocol/messages.js';

/** Pushes of new piece digests to running peers are batched over this window. */
export const PIECE_PUSH_BATCH_MS = 10;
/** At most this many running peers are offered a just-finished peer (bounds the work per finish). */
export const FINISHED_PARENT_OFFERS = 8;
/** Peers of the task drawn at random when a peer finishes; the ones furthest behind are offered it. */
export const FINISHED_PARENT_SAMPLE = 64;
/** How long a triggered seed peer may take to download a whole task. */
export const SEED_DOWNLOAD_TIMEOUT_MS = 10 * 3_600_000;

type Msg = Record<string, any>;

function labels(peer: Peer): { priority: string; task_type: string; host_type: string } {
  return { priority: peer.priority, task_type: 'STANDARD', host_type: peer.host.isSeed ? 'super' : 'normal' };
}

export interface ServiceDeps {
  resources: Resources;
  config: SchedulerConfig;
  clock: Clock;
  metrics: SchedulerMetrics;
  logger: Logger;
  dfdaemon: DfdaemonClientPool;
}

export class SchedulerService {
  readonly scheduling: Scheduling;
  private readonly resources: Resources;
  private readonly log: Logger;
  private readonly pushTimers = new Map<string, NodeJS.Timeout>();
  /** The download each peer registered with (request headers included: never logged). */
  private readonly downloads = new WeakMap<Peer, Partial<Download__Output>>();
  /** Peers that announce a task their host already held (HELD_TASK_DESCRIPTION): their pieces are no traffic. */
  private readonly heldAnnounce = new WeakSet<Peer>();
  private readonly seedTriggers = new Set<AbortController>();
  private seedRing: { key: string; ring: HashRing } | undefined;

  constructor(private readonly deps: ServiceDeps) {
    this.resources = deps.resources;
    this.log = deps.logger;
    const s = deps.config.scheduling;
    this.scheduling = new Scheduling(
      deps.resources,
      { ...s, seedPeerEnable: deps.config.seedPeer.enable, seedTriggerTimeout: deps.config.seedPeer.triggerTimeout },
      deps.clock,
      { triggerSeedPeer: (seed, task, peer) => this.triggerSeedPeer(seed, task, peer) },
      (task) => this.pickSeed(task),
    );
  }

  /** The seed-peer host of a task: consistent hash of the task ID over announced seed hosts. */
  pickSeed(task: Task): Host | undefined {
    const seeds = this.resources.hosts.list({ type: 'seed' }).filter((h) => !h.info.disableShared && h.info.port > 0);
    if (seeds.length === 0) return undefined;
    const key = seeds.map((h) => h.id).sort().join('\n');
    if (this.seedRing?.key !== key) this.seedRing = { key, ring: new HashRing(seeds.map((h) => h.id)) };
    return this.resources.hosts.get(this.seedRing.ring.pick(task.id)!);
  }

  private triggerSeedPeer(seed: Host, task: Task, peer: Peer): void {
    const d = this.downloads.get(peer) ?? {};
    const download: Download = {
      url: task.source.url,
      tag: task.source.tag,
      application: task.source.application,
      filtered_query_params: task.source.filteredQueryParams,
      request_header: d.request_header ?? {},
      piece_length: Number(d.piece_length ?? 0),
      priority: d.priority ?? 'LEVEL6',
      need_back_to_source: true,
      // The seed must compute the same task ID as the peer that registered it.
      content_for_calculating_task_id: d.content_for_calculating_task_id ?? '',
      enable_task_id_based_blob_digest: Boolean(d.enable_task_id_based_blob_digest),
    };
    const log = this.log.child({ taskId: task.id, hostId: seed.id });
    log.info('triggering seed peer');
    this.deps.metrics.seedPeerTrigger.inc();
    const abort = new AbortController();
    this.seedTriggers.add(abort);
    this.deps.dfdaemon
      .get({ ip: seed.info.ip, port: seed.info.port })
      .downloadTask(download, { timeoutMs: SEED_DOWNLOAD_TIMEOUT_MS, signal: abort.signal })
      .then(
        () => {
          log.info('seed peer finished task');
          // A seed that already held the task answers at once without registering a peer, so
          // nobody here can use it (its digests are unknown to this scheduler): stop waiting for it.
          if (task.seedTriggeredAt !== undefined) this.scheduling.seedPeerFailed(task);
        },
        (err: unknown) => {
          if (abort.signal.aborted) return;
          this.deps.metrics.seedPeerTriggerFailure.inc();
          log.warn('seed peer download failed; peers go back to source', { error: errorMessage(err) });
          this.scheduling.seedPeerFailed(task);
        },
      )
      .finally(() => this.seedTriggers.delete(abort));
  }

  /** Stops timers and in-flight seed triggers (shutdown). */
  close(): void {
    for (const t of this.pushTimers.values()) clearTimeout(t);
    this.pushTimers.clear();
    for (const a of this.seedTriggers) a.abort();
  }

  // ---- unary RPCs ----

  announceHost(req: AnnounceHostRequest): void {
    const info = hostFromMessage(req.host);
    this.resources.hosts.announce(info, Number(req.interval_ms ?? 0), this.deps.clock.now());
    this.deps.metrics.announceHost.inc({ os: info.os, platform: info.platform, host_type: info.type });
  }

  leaveHost(req: LeaveHostRequest): void {
    const id = String(req.id ?? '');
    const peers = this.resources.hosts.get(id)?.peers.size ?? 0;
    if (this.resources.hosts.delete(id)) {
      this.deps.metrics.leaveHost.inc();
      this.log.info('host left', { hostId: id, peers });
    }
  }

  /** Throws NotFoundError for an unknown task. */
  statTask(req: StatTaskRequest): TaskInfo {
    this.deps.metrics.statTask.inc();
    const task = this.resources.tasks.get(String(req.task_id ?? ''));
    if (!task) {
      this.deps.metrics.statTaskFailure.inc();
      throw new NotFoundError(`task ${req.task_id} not found`);
    }
    return taskMessage(task);
  }

  listTaskPeers(req: ListTaskPeersRequest): ListTaskPeersResponse {
    return { peers: this.resources.peersOfTask(String(req.task_id ?? '')).map(peerMessage) };
  }

  listHosts(): ListHostsResponse {
    this.deps.metrics.listHosts.inc();
    return { hosts: this.resources.hosts.list().map((h) => hostMessage(h.info)) };
  }

  // ---- the AnnouncePeer stream ----

  announcePeer(call: grpc.ServerDuplexStream<AnnouncePeerRequest__Output, AnnouncePeerResponse>): void {
    this.deps.metrics.announcePeer.inc();
    let peer: Peer | undefined;
    let closed = false;
    const stream = {
      send: (r: PeerResponse) => {
        if (!closed) call.write(r);
      },
    };
    const finish = (): void => {
      if (closed) return;
      closed = true;
      call.end();
    };
    const fail = (status: Partial<grpc.StatusObject>): void => {
      if (closed) return;
      closed = true;
      this.deps.metrics.announcePeerFailure.inc();
      call.emit('error', status);
    };
    const gone = (): void => {
      closed = true;
      if (!peer || this.resources.peer(peer.id) !== peer || peer.stream !== stream) return;
      peer.stream = undefined;
      // A finished peer stays as a parent candidate; anything else left with its stream.
      if (!peer.fsm.is('Succeeded')) {
        this.log.debug('peer left with its stream', { taskId: peer.task.id, peerId: peer.id, hostId: peer.host.id, state: peer.state });
        this.leave(peer);
      }
    };
    call.on('data', (req: AnnouncePeerRequest__Output) => {
      try {
        const p = this.onRequest(req, peer, stream, { finish, fail });
        if (p) peer = p;
      } catch (err) {
        this.log.warn('announce peer request rejected', { peerId: req.peer_id, taskId: req.task_id, error: errorMessage(err) });
        fail(toGrpcStatus(err));
        gone();
      }
    });
    call.on('end', () => {
      gone();
      finish();
    });
    call.on('cancelled', gone);
    call.on('error', gone);
  }

  private leave(peer: Peer): void {
    peer.task.updatedAt = this.deps.clock.now();
    this.resources.deletePeer(peer.id);
    this.deps.metrics.leavePeer.inc();
  }

  /** Handles one stream message; returns the peer when the message registered it. Throws DamselflyError. */
  private onRequest(
    req: Msg,
    current: Peer | undefined,
    stream: { send(r: PeerResponse): void },
    end: { finish(): void; fail(s: Partial<grpc.StatusObject>): void },
  ): Peer | undefined {
    const now = this.deps.clock.now();
    const m = this.deps.metrics;
    const kind: string | undefined = req.request;
    if (kind === 'register_peer_request') return this.register(req, stream, end);
    const peer = current && current.id === req.peer_id && this.resources.peer(current.id) === current ? current : this.resources.peer(String(req.peer_id ?? ''));
    if (!peer) {
      if (kind === 'leave_peer_request') {
        end.finish();
        return undefined;
      }
      throw new NotFoundError(`peer ${req.peer_id} not found: register it first`);
    }
    const task = peer.task;
    peer.updatedAt = now;
    switch (kind) {
      case 'download_peer_started_request':
        if (peer.fsm.is('ReceivedNormal')) peer.transition('Running', now);
        m.downloadPeerStarted.inc(labels(peer));
        task.wake();
        return undefined;
      case 'download_peer_back_to_source_started_request': {
        const r = req.download_peer_back_to_source_started_request;
        if (!peer.fsm.is('BackToSource')) peer.transition('BackToSource', now);
        task.backToSourcePeers.add(peer.id);
        this.learnLength(task, Number(r.content_length ?? -1), Number(r.piece_length ?? 0));
        if (r.description === HELD_TASK_DESCRIPTION) this.heldAnnounce.add(peer);
        m.downloadPeerBackToSourceStarted.inc(labels(peer));
        return undefined;
      }
      case 'download_piece_back_to_source_finished_request': {
        const p = req.download_piece_back_to_source_finished_request.piece ?? {};
        const length = Number(p.length ?? 0);
        // A held task announced to a (restarted) scheduler moved no bytes: its pieces are no traffic.
        const held = this.heldAnnounce.has(peer);
        const moved = this.countPiece(peer, Number(p.number), length, !held);
        peer.bytesFromOrigin += moved;
        task.bytesFromOrigin += moved;
        peer.lastPieceAt = now;
        const blocks = p.block_digests && p.block_digests.length > 0 ? Buffer.from(p.block_digests) : undefined;
        if (task.addPiece({ number: Number(p.number), offset: Number(p.offset ?? 0), length, digest: String(p.digest ?? ''), blockDigests: blocks })) this.schedulePush(task);
        m.downloadPieceFinished.inc({ traffic_type: 'BACK_TO_SOURCE', task_type: 'STANDARD', host_type: labels(peer).host_type });
        if (!held) m.traffic.inc({ type: 'BACK_TO_SOURCE', task_type: 'STANDARD', host_type: labels(peer).host_type }, length);
        return undefined;
      }
      case 'download_piece_finished_request': {
        const p = req.download_piece_finished_request.piece ?? {};
        const length = Number(p.length ?? 0);
        const moved = this.countPiece(peer, Number(p.number), length, true);
        peer.bytesFromPeers += moved;
        task.bytesFromPeers += moved;
        peer.lastPieceAt = now;
        const parent = p.parent_id ? this.resources.peer(String(p.parent_id)) : undefined;
        if (parent) {
          parent.host.uploadCount++;
          parent.host.bytesServed += moved;
          parent.addUploadCost(Number(p.cost_ms ?? 0), now);
        }
        // A finished parent is charged what its children lack: it frees up as they catch up.
        for (const pid of task.dag.parents(peer.id)) {
          const pp = task.dag.get(pid);
          if (pp?.fsm.is('Succeeded')) {
            pp.host.loadEpoch++;
            task.spare.add(pp);
          }
        }
        const traffic = p.traffic_type === 'LOCAL_PEER' ? 'LOCAL_PEER' : 'REMOTE_PEER';
        m.downloadPieceFinished.inc({ traffic_type: traffic, task_type: 'STANDARD', host_type: labels(peer).host_type });
        m.traffic.inc({ type: traffic, task_type: 'STANDARD', host_type: labels(peer).host_type }, length);
        return undefined;
      }
      case 'download_piece_failed_request': {
        const r = req.download_piece_failed_request;
        const parentId = String(r.parent_id ?? '');
        m.downloadPieceFailure.inc({ traffic_type: 'REMOTE_PEER', task_type: 'STANDARD', host_type: labels(peer).host_type });
        if (parentId) this.blockParent(peer, parentId);
        return undefined;
      }
      case 'download_piece_back_to_source_failed_request':
        m.downloadPieceBackToSourceFailure.inc({ task_type: 'STANDARD', host_type: labels(peer).host_type });
        return undefined;
      case 'reschedule_peer_request': {
        for (const id of req.reschedule_peer_request.candidate_parent_ids ?? []) this.blockParent(peer, String(id));
        this.runSchedule(peer, stream, end);
        return undefined;
      }
      case 'download_peer_finished_request': {
        const r = req.download_peer_finished_request;
        this.learnLength(task, Number(r.content_length ?? -1), 0, Number(r.piece_count ?? 0));
        peer.scheduleGeneration++;
        this.resources.deleteParents(peer);
        if (task.backToSourcePeers.delete(peer.id)) task.wake();
        this.noteWhole(peer);
        if (!peer.fsm.is('Succeeded')) peer.transition('Succeeded', now);
        m.downloadPeerFinished.inc(labels(peer));
        m.downloadPeerDuration.observe({ task_size_level: taskSizeLevel(task.contentLength) }, now - peer.createdAt);
        end.finish();
        this.offerFinishedParent(peer);
        return undefined;
      }
      case 'download_peer_back_to_source_finished_request': {
        const r = req.download_peer_back_to_source_finished_request;
        this.learnLength(task, Number(r.content_length ?? -1), 0, Number(r.piece_count ?? 0));
        task.backToSourcePeers.delete(peer.id);
        task.wake();
        this.noteWhole(peer);
        if (!peer.fsm.is('Succeeded')) peer.transition('Succeeded', now);
        // A ranged read from the origin proves nothing about the rest of the content.
        if (!peer.partial) task.moveTo('Succeeded', now);
        m.downloadPeerFinished.inc(labels(peer));
        m.downloadPeerDuration.observe({ task_size_level: taskSizeLevel(task.contentLength) }, now - peer.createdAt);
        end.finish();
        this.offerFinishedParent(peer);
        return undefined;
      }
      case 'download_peer_failed_request':
        peer.scheduleGeneration++;
        this.resources.deleteParents(peer);
        if (task.backToSourcePeers.delete(peer.id)) task.wake();
        peer.transition('Failed', now);
        m.downloadPeerFailure.inc(labels(peer));
        end.finish();
        return undefined;
      case 'download_peer_back_to_source_failed_request':
        task.backToSourcePeers.delete(peer.id);
        task.wake();
        peer.transition('Failed', now);
        if (task.backToSourcePeers.size === 0 && !task.fsm.is('Succeeded')) task.moveTo('Failed', now);
        m.downloadPeerBackToSourceFailure.inc(labels(peer));
        end.finish();
        return undefined;
      case 'leave_peer_request':
        this.log.debug('peer leaves', { taskId: task.id, peerId: peer.id, hostId: peer.host.id, state: peer.state });
        this.leave(peer);
        end.finish();
        return undefined;
      default:
        throw new InvalidError(`unknown announce peer request ${String(kind)}`);
    }
  }

  private register(req: Msg, stream: { send(r: PeerResponse): void }, end: { finish(): void; fail(s: Partial<grpc.StatusObject>): void }): Peer {
    const download: Partial<Download__Output> = req.register_peer_request?.download ?? {};
    const hostId = String(req.host_id ?? '');
    const taskId = String(req.task_id ?? '');
    const peerId = String(req.peer_id ?? '');
    const m = this.deps.metrics;
    const lbl = { priority: String(download.priority ?? 'LEVEL6'), task_type: 'STANDARD', host_type: 'normal' };
    if (!taskId || !peerId) {
      m.registerPeerFailure.inc(lbl);
      throw new InvalidError('task_id and peer_id are required');
    }
    const host = this.resources.hosts.get(hostId);
    if (!host) {
      m.registerPeerFailure.inc(lbl);
      throw new NotFoundError(`host ${hostId} not found: announce the host first`);
    }
    const now = this.deps.clock.now();
    if (!this.resources.tasks.get(taskId)) m.registerTask.inc();
    const task = this.resources.tasks.getOrCreate(
      taskId,
      { url: String(download.url ?? ''), tag: String(download.tag ?? ''), application: String(download.application ?? ''), filteredQueryParams: download.filtered_query_params ?? [] },
      now,
    );
    if (task.pieceLength === 0 && Number(download.piece_length ?? 0) > 0) task.pieceLength = Number(download.piece_length);
    const peer = this.resources.createPeer(peerId, task, hostId, now);
    peer.stream = stream;
    peer.priority = String(download.priority ?? 'LEVEL6');
    peer.needBackToSource = Boolean(download.need_back_to_source) || (host.isSeed && Boolean(download.is_preheat));
    peer.partial = Number(download.range?.length ?? 0) > 0;
    this.downloads.set(peer, download);
    // The seed peer we asked for has arrived; it is a parent candidate from now on.
    if (host.isSeed) task.seedTriggeredAt = undefined;
    m.registerPeer.inc(labels(peer));
    if (this.log.debugEnabled !== false) this.log.debug('peer registered', { taskId, peerId, hostId });
    this.runSchedule(peer, stream, end, Boolean(download.disable_back_to_source));
    return peer;
  }

  /**
   * A peer that registered for a range but finished holding every piece (the agent was asked for
   * the whole task meanwhile, as a Hub client's byte-0 probe followed by the whole file) is a
   * source from now on, like any peer that finished the whole task.
   */
  private noteWhole(peer: Peer): void {
    const n = peer.task.pieceCount;
    if (!peer.partial || n <= 0 || peer.finishedPieces.size < n) return;
    for (let i = 0; i < n; i++) if (!peer.finishedPieces.has(i)) return;
    peer.partial = false;
    peer.task.noteState(peer);
  }

  /**
   * Records a reported piece; returns the bytes it moved (`traffic`): its length, at most the task's
   * piece length, the first time the peer reports that piece number, else 0 (a repeated report, a
   * register again after a restart). Counted on the peer's host as received.
   */
  private countPiece(peer: Peer, num: number, length: number, traffic: boolean): number {
    const fresh = !peer.finishedPieces.has(num);
    peer.finishedPieces.add(num);
    if (!fresh || !traffic || !(length > 0)) return 0;
    const bytes = peer.task.pieceLength > 0 ? Math.min(length, peer.task.pieceLength) : length;
    peer.host.bytesReceived += bytes;
    return bytes;
  }

  private runSchedule(peer: Peer, stream: { send(r: PeerResponse): void }, end: { fail(s: Partial<grpc.StatusObject>): void }, disableBackToSource = false): void {
    const m = this.deps.metrics;
    const t0 = performance.now();
    m.concurrentSchedule.inc();
    this.scheduling.maybeTriggerSeedPeer(peer);
    this.scheduling.schedule(peer, disableBackToSource).then(
      (d) => {
        m.concurrentSchedule.dec();
        m.scheduleDuration.observe(performance.now() - t0);
        switch (d.kind) {
          case 'normal':
            if (this.log.debugEnabled !== false) this.log.debug('parents scheduled', { taskId: peer.task.id, peerId: peer.id, hostId: peer.host.id, parents: d.parents.map((p) => p.id), dropped: { ...this.scheduling.lastFilter } });
            stream.send({ normal_task_response: { candidate_parents: d.parents.map(peerMessage), task: taskMessage(peer.task, peer.task.takeUnsentPieces(peer)) } });
            return;
          case 'backToSource':
            if (this.log.debugEnabled !== false) this.log.debug('back to source', { taskId: peer.task.id, peerId: peer.id, hostId: peer.host.id, reason: d.reason });
            stream.send({ need_back_to_source_response: { description: d.reason } });
            return;
          case 'empty':
            stream.send({ empty_task_response: {} });
            return;
          case 'fail':
            this.log.info('scheduling failed', { taskId: peer.task.id, peerId: peer.id, reason: d.reason });
            end.fail(schedulingFailedStatus(d.reason, d.code));
            return;
          case 'cancelled':
            return;
        }
      },
      (err: unknown) => {
        m.concurrentSchedule.dec();
        this.log.error('scheduling crashed', { taskId: peer.task.id, peerId: peer.id, error: errorMessage(err) });
        end.fail(toGrpcStatus(err));
      },
    );
  }

  /**
   * A peer that just finished holds every piece: offer it to running peers of the task that have
   * room for another parent (fewer than candidateParentLimit). Peers that registered early only got
   * the first source; this spreads the tail of a swarm. Agents add parents from any
   * normal_task_response, so this is an ordinary answer with one candidate.
   */
  private offerFinishedParent(parent: Peer): void {
    const task = parent.task;
    const busy = (): boolean => parent.host.freeUploadCount <= 0 || isUploadFull(hostLoad(parent.host, (id) => this.resources.peer(id)));
    if (parent.partial || parent.host.info.disableShared || busy()) return;
    const limit = this.deps.config.scheduling.candidateParentLimit;
    let offers = 0;
    // The children furthest behind first (of a bounded random draw, not the whole task): in a chain
    // they are the deepest, and gain the most.
    const behindFirst = task.dag.sample(FINISHED_PARENT_SAMPLE, () => this.deps.clock.random(), parent.id).sort((a, b) => a.finishedPieces.size - b.finishedPieces.size);
    for (const child of behindFirst) {
      if (offers >= FINISHED_PARENT_OFFERS) return;
      if (child === parent || !child.stream || !child.fsm.is('ReceivedNormal', 'Running')) continue;
      if (child.host === parent.host || child.blockParents.has(parent.id)) continue;
      if (task.dag.inDegree(child.id) >= limit || !task.dag.canAddEdge(parent.id, child.id)) continue;
      this.resources.addParent(parent, child);
      child.stream.send({ normal_task_response: { candidate_parents: [peerMessage(parent)], task: taskMessage(task, task.takeUnsentPieces(child)) } });
      offers++;
      if (busy()) return;
    }
  }

  private blockParent(peer: Peer, parentId: string): void {
    if (parentId === peer.id || peer.blockParents.has(parentId)) return;
    peer.blockParents.add(parentId);
    const parent = this.resources.peer(parentId);
    if (!parent) return;
    parent.host.uploadFailedCount++;
    this.resources.deleteParent(parentId, peer);
  }

  private learnLength(task: Task, contentLength: number, pieceLength: number, pieceCount = 0): void {
    let changed = false;
    if (contentLength >= 0 && task.contentLength !== contentLength) {
      task.contentLength = contentLength;
      changed = true;
    }
    if (pieceLength > 0 && task.pieceLength !== pieceLength) {
      task.pieceLength = pieceLength;
      changed = true;
    }
    if (pieceCount > 0 && task.totalPieceCount !== pieceCount) {
      task.totalPieceCount = pieceCount;
      changed = true;
    }
    if (changed) {
      task.pendingMetaChange = true;
      this.schedulePush(task);
    }
  }

  /** Batches new digests / lengths of a task and pushes them to its running peers. */
  private schedulePush(task: Task): void {
    if (this.pushTimers.has(task.id)) return;
    const t = setTimeout(() => {
      this.pushTimers.delete(task.id);
      this.flushPush(task);
    }, PIECE_PUSH_BATCH_MS);
    this.pushTimers.set(task.id, t);
  }

  /**
   * Sends every running peer the digests it was not sent yet (the pieces learned since the last
   * push, for a peer that got every push before) and the current lengths. Peers at the same cursor
   * share one message object, encoded once for all their streams (protocol/encode-once.ts).
   */
  flushPush(task: Task): void {
    const pieces = task.pendingPieces;
    if (pieces.length === 0 && !task.pendingMetaChange) return;
    task.pendingPieces = [];
    task.pendingMetaChange = false;
    if (this.resources.tasks.get(task.id) !== task) return;
    const end = task.pieceOrder.length;
    const shared = new Map<number, Msg>();
    for (const p of task.peers()) {
      if (!p.stream || !p.fsm.is('ReceivedNormal', 'Running')) continue;
      const from = Math.min(p.digestCursor, end);
      let msg = shared.get(from);
      if (!msg) shared.set(from, (msg = encodedOnce({ task_pieces_response: { task: taskMessage(task, task.pieceOrder.slice(from, end)) } })));
      p.digestCursor = end;
      p.stream.send(msg);
    }
  }
}
