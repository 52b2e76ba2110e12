/**
 * One simulated rollout: the real SchedulerService (scheduler/service.ts, with its Scheduling,
 * evaluator and DAG) on a virtual clock, driven through in-memory AnnouncePeer streams as
 * test/bench/scheduler.ts drives it, and N modeled agents (agent.ts) on modeled hosts (net.ts), plus
 * seed peers and an origin. No sockets. Every message between an agent and the scheduler, and
 * every request between agents, takes the one-way latency.
 *
 * The scheduler triggers a seed peer through its Dfdaemon client (DownloadTask); here that client is
 * the seed's model, which registers with need_back_to_source one latency later, as a seed does.
 * The digest push batch (service.ts schedulePush) runs on a real setTimeout, not the injected
 * clock; the world therefore calls the service's own flushPush PIECE_PUSH_BATCH_MS (virtual) after
 * the first report that would have armed it, and the real timer never fires during a run (engine.ts).
 */
import { EventEmitter } from 'node:events';
import { silentLogger } from '../../adapters/log.js';
import { schedulerConfig } from '../../scheduler/config.js';
import type { DfdaemonClientPool } from '../../scheduler/dfdaemon-client.js';
import { SchedulerMetrics } from '../../scheduler/metrics.js';
import { pieceLengthFor } from '../../scheduler/protocol/task-id.js';
import { BLOCKS_PER_PIECE } from '../../agent/download/blocks.js';
import { Resources } from '../../scheduler/resource/resources.js';
import { PIECE_PUSH_BATCH_MS, SchedulerService } from '../../scheduler/service.js';
import { Session, UPLOAD_CONCURRENT_LIMIT, Uploader, type ParentView, type ServeCallbacks, type UploadReq } from './agent.js';
import { Sim, VirtualClock, rng } from './engine.js';
import { Network, SimHost, type Flow } from './net.js';

type Msg = Record<string, any>;

export interface SimOptions {
  nodes: number;
  size: number;
  seeds: number;
  /** Bytes per second. */
  originRate: number;
  upload: number;
  uploadSpread: number;
  download: number;
  downloadSpread: number;
  seedUpload: number;
  seedDownload: number;
  joinWindowMs: number;
  /** Share of nodes (0..1) that leave mid-transfer. */
  leave: number;
  latencyMs: number;
  seed: number;
  maxTimeMs: number;
  /** Keep every transfer for checks (tests). */
  audit?: boolean;
  /** Progress lines on stderr about every 10 s of wall time (the CLI). */
  progress?: boolean;
  /** Scheduler configuration overrides (scheduler/config.ts). */
  scheduler?: Record<string, unknown>;
}

export interface Transfer {
  from: string;
  to: string;
  n: number;
  start: number;
  end: number;
  partial: boolean;
}

/** The server side of one AnnouncePeer stream, as grpc-js hands it to the service. */
class SimCall extends EventEmitter {
  dead = false;
  constructor(private readonly w: World, readonly onMsg: (m: Msg) => void, readonly onEnd: () => void, readonly onError: () => void) {
    super();
  }
  write(m: Msg): void {
    this.w.counts.answers++;
    this.w.sim.after(this.w.latency, () => this.onMsg(m));
  }
  end(): void {
    this.w.sim.after(this.w.latency, () => this.onEnd());
  }
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'error') this.w.sim.after(this.w.latency, () => this.onError());
    return super.emit(event, ...args);
  }
}

export class Node {
  readonly have: Uint8Array;
  haveCount = 0;
  readonly order: number[] = [];
  readonly haveAt: Float64Array;
  readonly hops: Int32Array;
  readonly digest: Uint8Array;
  /** Pieces arriving here with a verified block (servable cut-through): the flow and its hop count. */
  readonly partial = new Map<number, { flow: Flow; hops: number }>();
  partialVersion = 0;
  lengthKnown = false;
  readingFromOrigin = false;
  readonly pollers = new Set<ParentView>();
  readonly uploader: Uploader;
  session?: Session;
  call?: SimCall;
  /** Nodes that received at least one piece from this one. */
  readonly children = new Set<Node>();
  joinAt = 0;
  doneAt = -1;
  leftAt = -1;
  /** Leaves once it holds this many pieces (-1: never). */
  leaveAfter = -1;
  readOrigins = 0;
  /** A seed's DownloadTask call resolves when it is done. */
  onDone?: () => void;

  constructor(private readonly w: World, readonly peerId: string, readonly host: SimHost, readonly isSeed: boolean) {
    const c = w.pieceCount;
    this.have = new Uint8Array(c);
    this.haveAt = new Float64Array(c).fill(-1);
    this.hops = new Int32Array(c);
    this.digest = new Uint8Array(c);
    this.uploader = new Uploader(c);
  }

  get complete(): boolean {
    return this.haveCount === this.w.pieceCount;
  }

  send(req: Msg): void {
    const call = this.call;
    if (!call || call.dead) return;
    this.w.toScheduler(this, call, req);
  }

  /** The agent ends its stream (session over): the scheduler sees 'end'. */
  closeStream(): void {
    const call = this.call;
    if (!call || call.dead) return;
    this.w.sim.after(this.w.latency, () => {
      if (call.dead) return;
      call.dead = true;
      this.w.sim.sched(() => call.emit('end'));
    });
  }

  startDownload(needBackToSource: boolean): void {
    this.session = new Session(this.w, this);
    this.session.start(needBackToSource);
  }

  /** A piece request from `child` arrives here (piece-server.ts handle()). */
  serve(child: Node, n: number, cb: ServeCallbacks): void {
    if (!this.host.alive) return cb.failed('connection refused', false);
    if (!this.have[n] && !this.partial.has(n)) return cb.notFound();
    const up = this.uploader;
    const sent = up.sent[n]!;
    if (up.uploading >= UPLOAD_CONCURRENT_LIMIT || (sent > 0 && this.readingFromOrigin)) return cb.busy();
    let counted = true;
    const uncount = (): void => {
      if (counted) up.sent[n] = Math.max(0, up.sent[n]! - 1);
      counted = false;
    };
    const req: UploadReq = {
      child,
      n,
      prio: sent,
      start: () => this.send1(req, uncount, cb),
      reject: (why) => {
        uncount();
        up.uploading--;
        if (why === 'busy') cb.busy();
        else cb.failed('connection reset', false);
      },
    };
    up.sent[n] = sent + 1;
    up.uploading++;
    if (!up.admit(req)) {
      uncount();
      up.uploading--;
      cb.busy();
    }
  }

  private send1(req: UploadReq, uncount: () => void, cb: ServeCallbacks): void {
    const child = req.child as Node;
    const n = req.n;
    const w = this.w;
    const up = this.uploader;
    const abandon = (): void => {
      uncount();
      up.release();
      up.uploading--;
    };
    if (!child.host.alive) return abandon();
    const arriving = this.have[n] ? undefined : this.partial.get(n);
    if (!this.have[n] && (!arriving || arriving.flow.ended)) {
      abandon();
      return cb.notFound();
    }
    const hops = (arriving ? arriving.hops : this.hops[n]!) + 1;
    const start = w.sim.now;
    const entry = { flow: undefined as unknown as Flow, hops };
    entry.flow = w.net.start(this.host, child.host, w.bounds(n).length, { piece: n, partial: !!arriving }, {
      onBlock: () => child.arriving(n, entry),
      onDone: (f) => {
        up.release();
        up.uploading--;
        child.partial.delete(n);
        this.children.add(child);
        if (w.audit) w.audit.push({ from: this.peerId, to: child.peerId, n, start, end: w.sim.now + w.latency, partial: !!arriving });
        cb.done(f, hops);
      },
      onFail: (_f, why) => {
        up.release();
        up.uploading--;
        if (child.partial.get(n) === entry) child.partial.delete(n);
        cb.failed(why, !!arriving);
      },
    }, w.blockBytes(n), arriving?.flow);
  }

  /** A piece arriving here got its first verified block: listed as partial in poll answers. */
  arriving(n: number, entry: { flow: Flow; hops: number }): void {
    if (this.have[n] || !this.host.alive) return;
    this.partial.set(n, entry);
    this.partialVersion++;
    this.news();
  }

  private news(): void {
    for (const v of [...this.pollers]) v.owner.answerPoll(v);
  }

  store(n: number, hops: number, from: Node | undefined, _f?: Flow): void {
    if (this.have[n] || !this.host.alive) return;
    const w = this.w;
    this.have[n] = 1;
    this.haveCount++;
    this.order.push(n);
    this.haveAt[n] = w.sim.now;
    this.hops[n] = hops;
    this.digest[n] = 1;
    this.partial.delete(n);
    this.news();
    if (this.complete && this.doneAt < 0) {
      this.doneAt = w.sim.now;
      w.finished(this);
    } else if (this.leaveAfter >= 0 && this.haveCount >= this.leaveAfter) this.leave();
    void from;
  }

  /**
   * Reads every missing piece from the first missing to the last (one ranged GET, as the agent's
   * backToSourceOnce), reporting to the scheduler when it sent this node there (`report`).
   */
  readOrigin(report: boolean): void {
    const w = this.w;
    this.readOrigins++;
    w.counts.originReaders++;
    this.lengthKnown = true;
    const missing: number[] = [];
    for (let n = 0; n < w.pieceCount; n++) if (!this.have[n]) missing.push(n);
    if (report) this.send({ download_peer_back_to_source_started_request: { description: '', content_length: w.F, piece_length: w.pieceLength } });
    const finish = (): void => {
      this.readingFromOrigin = false;
      if (report) this.send({ download_peer_back_to_source_finished_request: { content_length: w.F, piece_count: w.pieceCount } });
      this.session?.close();
      if (this.session) this.session.mode = 'done';
    };
    if (missing.length === 0) return finish();
    this.readingFromOrigin = true;
    const last = missing[missing.length - 1]!;
    const next = (n: number): void => {
      if (!this.host.alive) return;
      const t0 = w.sim.now;
      const start = w.sim.now;
      w.net.start(w.origin, this.host, w.bounds(n).length, { piece: n, partial: false }, {
        onDone: () => {
          if (!this.have[n]) {
            if (w.audit) w.audit.push({ from: 'origin', to: this.peerId, n, start, end: w.sim.now, partial: false });
            this.store(n, 1, undefined);
            const b = w.bounds(n);
            if (report) this.send({ download_piece_back_to_source_finished_request: { piece: { number: n, parent_id: '', offset: b.offset, length: b.length, digest: w.digestOf(n), traffic_type: 'BACK_TO_SOURCE', cost_ms: Math.round(w.sim.now - t0), block_digests: w.blockDigests } } });
          }
          if (!this.host.alive) return;
          if (n >= last) finish();
          else next(n + 1);
        },
        onFail: () => undefined,
      });
    };
    w.sim.after(w.latency, () => next(missing[0]!));
  }

  /** Churn: the host goes away mid-transfer (no goodbye: the scheduler sees the stream break). */
  leave(): void {
    const w = this.w;
    this.leftAt = w.sim.now;
    w.counts.left++;
    if (this.session) {
      this.session.close();
      this.session.mode = 'left';
    }
    this.uploader.drop();
    for (const v of [...this.pollers]) {
      this.pollers.delete(v);
      v.owner.unreachable(v);
    }
    w.net.leave(this.host);
    const call = this.call;
    if (call && !call.dead) {
      w.sim.after(w.latency, () => {
        if (call.dead) return;
        call.dead = true;
        w.sim.sched(() => call.emit('cancelled'));
      });
    }
    w.finished(this);
  }
}

export class World {
  readonly sim = new Sim();
  readonly net = new Network(this.sim);
  readonly clock: VirtualClock;
  readonly rnd: () => number;
  readonly service: SchedulerService;
  readonly resources = new Resources();
  readonly origin: SimHost;
  readonly F: number;
  readonly pieceLength: number;
  readonly pieceCount: number;
  readonly latency: number;
  readonly url = 'http://origin.sim/blob';
  readonly taskId = 'a'.repeat(64);
  readonly blockDigests: Buffer;
  readonly byPeer = new Map<string, Node>();
  readonly nodes: Node[] = [];
  readonly seeds: Node[] = [];
  readonly audit: Transfer[] | undefined;
  readonly counts = { toScheduler: 0, answers: 0, reschedules: 0, refreshes: 0, busy: 0, notFound: 0, originReaders: 0, left: 0, seedTriggers: 0 };
  private pending = 0;
  private pushArmed = false;

  constructor(readonly o: SimOptions) {
    this.F = o.size;
    this.pieceLength = pieceLengthFor(o.size);
    this.pieceCount = Math.ceil(o.size / this.pieceLength);
    this.latency = o.latencyMs;
    this.rnd = rng(o.seed * 7919 + 1);
    this.clock = new VirtualClock(this.sim, o.seed);
    this.audit = o.audit ? [] : undefined;
    this.blockDigests = Buffer.alloc(32 * BLOCKS_PER_PIECE, 7);
    this.origin = new SimHost('origin', o.originRate, Infinity);
    // A scheduler that has been running (rejoinGrace 0): the swarm starts on it, nobody rejoins.
    const given = o.scheduler ?? {};
    const config = schedulerConfig({ metrics: { enable: false }, ...given, scheduling: { rejoinGrace: 0, ...((given.scheduling as Record<string, unknown> | undefined) ?? {}) } });
    const seedByIp = new Map<string, Node>();
    const dfdaemon = {
      get: (addr: { ip: string; port: number }) => ({
        downloadTask: () =>
          new Promise<void>((resolve) => {
            this.counts.seedTriggers++;
            const seed = seedByIp.get(addr.ip);
            if (!seed) return resolve();
            seed.onDone = resolve;
            this.sim.after(this.latency, () => seed.startDownload(true));
          }),
      }),
    } as unknown as DfdaemonClientPool;
    this.service = new SchedulerService({ resources: this.resources, config, clock: this.clock, metrics: new SchedulerMetrics(), logger: silentLogger, dfdaemon });
    const draw = rng(o.seed * 104729 + 3);
    for (let i = 0; i < o.seeds; i++) {
      const s = this.addNode(`seed-${i}`, new SimHost(`seed-${i}`, o.seedUpload, o.seedDownload), true);
      seedByIp.set(`10.255.0.${i + 1}`, s);
      this.seeds.push(s);
      this.announce(s, i);
    }
    const leavers = new Set<number>();
    const nLeave = Math.round(o.leave * o.nodes);
    while (leavers.size < nLeave) leavers.add(Math.floor(draw() * o.nodes));
    for (let i = 0; i < o.nodes; i++) {
      const host = new SimHost(`node-${i}`, lognormal(draw, o.upload, o.uploadSpread), lognormal(draw, o.download, o.downloadSpread));
      const node = this.addNode(`node-${i}`, host, false);
      node.joinAt = o.joinWindowMs > 0 ? draw() * o.joinWindowMs : 0;
      if (leavers.has(i)) node.leaveAfter = 1 + Math.floor(draw() * Math.max(1, this.pieceCount - 1));
      this.nodes.push(node);
      this.pending++;
      this.sim.at(node.joinAt, () => {
        this.announce(node, o.seeds + i);
        node.startDownload(false);
      });
    }
  }

  private addNode(id: string, host: SimHost, seed: boolean): Node {
    const n = new Node(this, `${id}-peer`, host, seed);
    this.byPeer.set(n.peerId, n);
    return n;
  }

  private announce(n: Node, i: number): void {
    const ip = n.isSeed ? `10.255.0.${i + 1}` : `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const host = {
      id: n.host.id, type: n.isSeed ? 'SUPER_SEED' : 'NORMAL', hostname: n.host.id, ip, port: 65000, download_port: 65001, idc: '', location: '',
      max_tx_bandwidth: Math.round(n.host.up), upload_limit: UPLOAD_CONCURRENT_LIMIT, concurrent_upload_count: 0, proxy_port: 0, scheduler_cluster_id: 1, disable_shared: false, os: 'linux', platform: 'sim',
    };
    this.sim.sched(() => this.service.announceHost({ host, interval_ms: 30_000 } as never));
  }

  bounds(n: number): { offset: number; length: number } {
    const offset = n * this.pieceLength;
    return { offset, length: Math.min(this.pieceLength, this.F - offset) };
  }

  blockBytes(n: number): number {
    return Math.ceil(this.bounds(n).length / BLOCKS_PER_PIECE);
  }

  digestOf(n: number): string {
    return 'sha256:' + n.toString(16).padStart(64, '0');
  }

  log(_n: Node, _what: string, _why: string): void {}

  /** Opens the node's AnnouncePeer stream on the service. */
  connect(n: Node, onMsg: (m: Msg) => void, onEnd: () => void, onError: () => void): void {
    const call = new SimCall(this, onMsg, onEnd, onError);
    n.call = call;
    this.sim.sched(() => this.service.announcePeer(call as never));
  }

  toScheduler(n: Node, call: SimCall, req: Msg): void {
    const kind = Object.keys(req)[0]!;
    this.sim.after(
      this.latency,
      () => {
        if (call.dead) return;
        this.counts.toScheduler++;
        this.sim.sched(() => call.emit('data', { request: kind, host_id: n.host.id, task_id: this.taskId, peer_id: n.peerId, ...req }));
        if (kind.startsWith('download_p') && kind.includes('back_to_source')) this.armPush();
      },
      true,
    );
  }

  /** What schedulePush's timer would do, in virtual time: one flushPush per batch window. */
  private armPush(): void {
    if (this.pushArmed) return;
    this.pushArmed = true;
    this.sim.after(
      PIECE_PUSH_BATCH_MS,
      () => {
        this.pushArmed = false;
        const task = this.resources.tasks.get(this.taskId);
        if (task) this.sim.sched(() => this.service.flushPush(task));
      },
      true,
    );
  }

  finished(n: Node): void {
    n.onDone?.();
    if (!n.isSeed) this.pending--;
  }

  async run(): Promise<void> {
    let last = performance.now();
    let k = 0;
    const tick = (): void => {
      if (++k % 50_000 !== 0 || performance.now() - last < 10_000) return;
      last = performance.now();
      const done = this.nodes.filter((n) => n.doneAt >= 0).length;
      process.stderr.write(`sim ${new Date().toISOString()} virtual ${(this.sim.now / 1000).toFixed(3)} s, ${done}/${this.nodes.length} done, ${this.counts.left} left, ${this.sim.events} events, scheduler ${(this.sim.schedCpuUs / 1e6).toFixed(1)} CPU-s\n`);
    };
    await this.sim.run(() => (this.o.progress && tick(), this.pending <= 0), this.o.maxTimeMs);
    this.service.close();
  }
}

/** A lognormal draw with the given mean and coefficient of variation (0: the mean itself). */
function lognormal(r: () => number, mean: number, cv: number): number {
  if (cv <= 0) return mean;
  const s2 = Math.log(1 + cv * cv);
  const z = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return mean * Math.exp(Math.sqrt(s2) * z - s2 / 2);
}
