/**
 * The agent's side of the scheduler protocol: host announcements to every scheduler, the choice of
 * one scheduler per task by consistent hashing (so all peers of a task meet), AnnouncePeer streams,
 * and scheduler discovery through the manager (dynconfig) with a cached last good answer.
 */
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ManagerClient } from '../adapters/manager-client.js';
import type { Logger } from '../adapters/log.js';
import { injectMetadata } from '../adapters/tracing.js';
import { HashRing } from '../scheduler/protocol/hashring.js';
import { loadProto } from '../scheduler/protocol/loader.js';
import type { Host__Output as HostMsg } from '../scheduler/protocol/messages.js';

export interface SchedulerClientOptions {
  addrs: string[];
  announceIntervalMs: number;
  manager?: { addr: string; refreshIntervalMs: number; cacheFile: string };
  logger: Logger;
  /** mTLS: channel credentials from the cluster identity (adapters/tls.ts); default plaintext. */
  credentials?: () => grpc.ChannelCredentials;
}

/** Pause between announces to a scheduler that was lost. */
const RETRY_LOST_MS = 500;

type Client = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

export class SchedulerClient {
  private clients = new Map<string, Client>();
  private ring: HashRing;
  private addrs: string[];
  private timers: NodeJS.Timeout[] = [];
  private announced = new Map<string, Promise<boolean>>();
  /** Schedulers that took this host's last announce (until one is marked lost). */
  private known = new Set<string>();
  private closed = false;
  /** Schedulers seen failing (an announce or a stream): announced again until they answer. */
  private lost = new Set<string>();
  /**
   * Called when a scheduler answers again after it was lost, and once per scheduler after start():
   * a restarted scheduler knows nothing, so the agent tells it which tasks this host holds.
   */
  onReachable?: (addr: string) => void;

  constructor(private host: HostMsg, private opts: SchedulerClientOptions) {
    this.addrs = opts.addrs;
    this.ring = new HashRing(this.addrs);
  }

  get schedulerAddrs(): string[] {
    return [...this.addrs];
  }

  /** Updates the host record (e.g. once ports are bound). */
  setHost(host: HostMsg): void {
    this.host = host;
  }

  private client(addr: string): Client {
    let c = this.clients.get(addr);
    if (!c) {
      const { Scheduler } = loadProto();
      c = new Scheduler(addr, this.opts.credentials?.() ?? grpc.credentials.createInsecure(), {
        'grpc.keepalive_time_ms': 30_000,
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 2_000,
      }) as unknown as Client;
      this.clients.set(addr, c);
      this.watch(addr, c);
    }
    return c;
  }

  /**
   * A scheduler restarted between two announces never fails one; its connection dropping is the
   * sign. When the channel leaves READY the scheduler counts as lost (markLost), so once it answers
   * again it is told what this host holds.
   */
  private watch(addr: string, c: Client): void {
    const ch = c.getChannel();
    const step = (last: grpc.connectivityState) => {
      if (this.closed || this.clients.get(addr) !== c) return;
      ch.watchConnectivityState(last, Infinity, () => {
        const now = ch.getConnectivityState(false);
        if (last === grpc.connectivityState.READY && now !== grpc.connectivityState.READY) this.markLost(addr);
        step(now);
      });
    };
    step(ch.getConnectivityState(false));
  }

  private unary<T>(addr: string, method: string, req: unknown, timeoutMs = 5_000): Promise<T> {
    return new Promise((resolve, reject) => {
      this.client(addr)[method](req, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
    });
  }

  /** Announces the host to one scheduler; resolves false (logged) on failure. */
  announce(addr: string): Promise<boolean> {
    const p = this.unary(addr, 'AnnounceHost', { host: this.host, interval_ms: this.opts.announceIntervalMs }).then(
      () => {
        this.known.add(addr);
        return true;
      },
      (err: grpc.ServiceError) => {
        this.opts.logger.warn('announce host failed', { scheduler: addr, err: err.details ?? err.message });
        this.markLost(addr);
        return false;
      },
    );
    this.announced.set(addr, p);
    return p;
  }

  /** Whether the scheduler at `addr` is being announced to again after a failure (see markLost). */
  isLost(addr: string): boolean {
    return this.lost.has(addr);
  }

  /**
   * The scheduler at `addr` failed (a stream broke, NOT_FOUND for this host, an announce failed):
   * announce again every RETRY_LOST_MS until it answers, then onReachable(addr). Never throws.
   */
  markLost(addr: string): void {
    this.known.delete(addr);
    if (this.closed || this.lost.has(addr)) return;
    this.lost.add(addr);
    void (async () => {
      while (!this.closed && this.lost.has(addr)) {
        await new Promise((r) => setTimeout(r, RETRY_LOST_MS).unref());
        if (this.closed) return;
        const ok = await this.unary(addr, 'AnnounceHost', { host: this.host, interval_ms: this.opts.announceIntervalMs }).then(
          () => true,
          () => false,
        );
        if (!ok) continue;
        this.announced.set(addr, Promise.resolve(true));
        this.known.add(addr);
        this.lost.delete(addr);
        this.opts.logger.info('scheduler reachable again', { scheduler: addr });
        this.onReachable?.(addr);
      }
    })();
  }

  /** Starts discovery and the announce loop; resolves after the first round (never throws). */
  async start(): Promise<void> {
    if (this.opts.manager) {
      await this.refreshFromManager();
      const t = setInterval(() => void this.refreshFromManager(), this.opts.manager.refreshIntervalMs);
      t.unref();
      this.timers.push(t);
    }
    const first = await Promise.all(this.addrs.map((a) => this.announce(a)));
    for (const [i, ok] of first.entries()) if (ok) this.onReachable?.(this.addrs[i]!);
    const t = setInterval(() => {
      for (const a of this.addrs) void this.announce(a);
    }, this.opts.announceIntervalMs);
    t.unref();
    this.timers.push(t);
  }

  private setAddrs(addrs: string[]): void {
    const changed = addrs.join(',') !== this.addrs.join(',');
    if (!changed) return;
    this.addrs = addrs;
    this.ring = new HashRing(addrs);
    for (const a of addrs) if (!this.announced.has(a)) void this.announce(a);
    this.opts.logger.info('scheduler list updated', { schedulers: addrs });
  }

  private async refreshFromManager(): Promise<void> {
    const m = this.opts.manager!;
    const q = new URLSearchParams({ hostname: this.host.hostname, ip: this.host.ip, idc: this.host.idc, location: this.host.location });
    try {
      const { status, text } = await new ManagerClient(m.addr, { timeoutMs: 5_000 }).request('GET', `/api/v1/schedulers/search?${q}`);
      if (status !== 200) throw new Error(`manager answered ${status}`);
      const body = JSON.parse(text) as { schedulers?: { ip: string; port: number }[] };
      const addrs = (body.schedulers ?? []).map((s) => `${s.ip}:${s.port}`);
      if (addrs.length === 0) throw new Error('manager returned no schedulers');
      const tmp = `${m.cacheFile}.tmp`;
      writeFileSync(tmp, text);
      renameSync(tmp, m.cacheFile);
      this.setAddrs(addrs);
    } catch (err) {
      // A manager outage must never stop pulls: keep the last good answer, from memory or the cache file.
      try {
        const cached = JSON.parse(readFileSync(m.cacheFile, 'utf8')) as { schedulers?: { ip: string; port: number }[] };
        const addrs = (cached.schedulers ?? []).map((s) => `${s.ip}:${s.port}`);
        if (addrs.length > 0 && this.addrs === this.opts.addrs) this.setAddrs(addrs);
      } catch {
        /* no cache: static scheduler.addrs stay */
      }
      this.opts.logger.warn('scheduler discovery from manager failed; using cached schedulers', { err: (err as Error).message, cache: path.basename(m.cacheFile) });
    }
  }

  /** The scheduler responsible for a task, or undefined when none is configured. */
  pick(taskId: string): string | undefined {
    return this.ring.pick(taskId);
  }

  /** Opens an AnnouncePeer stream to `addr`, announcing the host first if that has not succeeded yet. */
  async openPeerStream(addr: string): Promise<grpc.ClientDuplexStream<unknown, unknown>> {
    // A scheduler that knows this host is not waited on again: a periodic announce still in flight
    // (a slow or paused scheduler) must not hold every download's start for its deadline.
    if (!this.known.has(addr)) {
      const ok = await (this.announced.get(addr) ?? this.announce(addr));
      if (!ok && !(await this.announce(addr))) throw new Error(`scheduler ${addr} unreachable`);
    }
    return (this.client(addr).AnnouncePeer as (md: grpc.Metadata) => grpc.ClientDuplexStream<unknown, unknown>).call(this.client(addr), injectMetadata(new grpc.Metadata()));
  }

  /** Tells the scheduler a peer left (eviction): a short stream with leave_peer_request. Never throws. */
  async leavePeer(taskId: string, peerId: string): Promise<void> {
    const addr = this.pick(taskId);
    if (!addr || this.closed) return;
    try {
      const call = await this.openPeerStream(addr);
      call.on('error', () => undefined);
      call.on('data', () => undefined);
      call.write({ host_id: this.host.id, task_id: taskId, peer_id: peerId, leave_peer_request: {} });
      call.end();
    } catch (err) {
      this.opts.logger.debug('leave peer failed', { taskId, peerId, err: (err as Error).message });
    }
  }

  /** LeaveHost to every scheduler, then closes channels. Never throws. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.all(this.addrs.map((a) => this.unary(a, 'LeaveHost', { id: this.host.id }, 2_000).catch(() => undefined)));
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
