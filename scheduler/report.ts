/**
 * Builds the scheduler's summary for the manager (scheduler/report-schema.ts) from its resources,
 * and posts it every interval. Everything here reads the resources through their public fields;
 * the only state kept is what rates need (last counters per host) and which peers read the origin,
 * both pruned to the peers and hosts that still exist.
 */
import type { Logger } from '../adapters/log.js';
import { errorMessage } from '../adapters/errors.js';
import { REPORT_CAPS, type ReportHost, type ReportTask, type SchedulerReport } from './report-schema.js';
import type { Resources } from './resource/resources.js';

const HOST_TYPE: Record<string, ReportHost['type']> = { NORMAL: 'normal', SUPER_SEED: 'super', STRONG_SEED: 'strong', WEAK_SEED: 'weak' };
const IN_FLIGHT = new Set(['Pending', 'Running']);

export interface ReportIdentity {
  hostname: string;
  ip: string;
  clusterId: number;
  intervalMs: number;
}

/** Keeps what a report needs between two reports: counters for rates, origin readers. */
export class ReportBuilder {
  private lastAt = 0;
  private served = new Map<string, number>();
  private received = new Map<string, number>();
  private originPeers = new Set<string>();

  constructor(
    private readonly resources: Resources,
    private readonly id: ReportIdentity,
  ) {}

  /** Notes which peers read the origin; called at every report and cheap enough to call more often. */
  observe(): void {
    for (const t of this.resources.tasks.list()) for (const p of t.backToSourcePeers) this.originPeers.add(p);
    for (const p of this.resources.allPeers()) if (p.state === 'BackToSource' || p.needBackToSource) this.originPeers.add(p.id);
  }

  build(now: number): SchedulerReport {
    this.observe();
    const { resources } = this;
    const elapsedS = this.lastAt > 0 ? Math.max(0.001, (now - this.lastAt) / 1000) : 0;
    const allHosts = resources.hosts.list();
    const hosts: ReportHost[] = [];
    const served = new Map<string, number>();
    const received = new Map<string, number>();
    for (const h of allHosts) {
      // Exact bytes from the piece reports (Host.bytesServed/bytesReceived), per report interval.
      served.set(h.id, h.bytesServed);
      received.set(h.id, h.bytesReceived);
      const dServed = Math.max(0, h.bytesServed - (this.served.get(h.id) ?? h.bytesServed));
      const dReceived = Math.max(0, h.bytesReceived - (this.received.get(h.id) ?? h.bytesReceived));
      hosts.push({
        id: h.id,
        host_name: h.info.hostname,
        type: HOST_TYPE[h.info.type] ?? 'normal',
        idc: h.info.idc,
        location: h.info.location,
        ip: h.info.ip,
        port: h.info.port,
        download_port: h.info.downloadPort,
        proxy_port: h.info.proxyPort,
        os: h.info.os,
        platform: h.info.platform,
        upload_rate: elapsedS ? Math.round(dServed / elapsedS) : 0,
        download_rate: elapsedS ? Math.round(dReceived / elapsedS) : 0,
        concurrent_upload_count: h.concurrentUploadCount,
        upload_limit: h.uploadLimit,
        pieces_served: h.uploadCount,
        pieces_failed: h.uploadFailedCount,
        peer_count: h.peers.size,
        last_seen: h.lastAnnounce,
        announce_interval_ms: h.announceIntervalMs,
        created_at: h.createdAt,
      });
    }
    this.served = served;
    this.received = received;
    this.lastAt = now;
    // Most recently seen first: the cap drops the quietest hosts.
    hosts.sort((a, b) => b.last_seen - a.last_seen || (a.id < b.id ? -1 : 1));

    const allTasks = resources.tasks.list();
    const live = new Set<string>();
    const tasks: ReportTask[] = [];
    let running = 0;
    for (const t of allTasks) {
      if (IN_FLIGHT.has(t.state)) running++;
      const peers = [];
      for (const p of t.peers()) {
        live.add(p.id);
        const origin = this.originPeers.has(p.id);
        peers.push({ id: p.id, host_id: p.host.id, state: p.state, finished_pieces: p.finishedPieces.size, back_to_source: origin, bytes_from_peers: p.bytesFromPeers, bytes_from_origin: p.bytesFromOrigin, updatedAt: p.updatedAt });
      }
      // Running peers first, then the latest: the graph a user wants to see is the live part.
      peers.sort((a, b) => Number(IN_FLIGHT.has(b.state) || b.state === 'BackToSource') - Number(IN_FLIGHT.has(a.state) || a.state === 'BackToSource') || b.updatedAt - a.updatedAt);
      const kept = peers.slice(0, REPORT_CAPS.peersPerTask);
      const keptIds = new Set(kept.map((p) => p.id));
      const edges: [string, string][] = [];
      for (const p of kept) {
        for (const parent of t.dag.parents(p.id)) {
          if (keptIds.has(parent) && edges.length < REPORT_CAPS.peersPerTask * 4) edges.push([parent, p.id]);
        }
      }
      tasks.push({
        id: t.id,
        url: t.source.url.slice(0, 8192),
        content_length: t.contentLength,
        piece_length: t.pieceLength,
        total_piece_count: t.pieceCount,
        state: t.state,
        peer_count: t.peerCount,
        pieces_known: t.pieces.size,
        // Every byte its peers reported, also of peers that left since.
        bytes_from_peers: t.bytesFromPeers,
        bytes_from_origin: t.bytesFromOrigin,
        started_at: t.createdAt,
        finished_at: t.state === 'Succeeded' || t.state === 'Failed' ? t.fsm.since : 0,
        updated_at: t.updatedAt,
        peers: kept.map(({ updatedAt: _u, ...p }) => p),
        edges,
      });
    }
    for (const id of this.originPeers) if (!live.has(id)) this.originPeers.delete(id);
    tasks.sort((a, b) => Number(IN_FLIGHT.has(b.state)) - Number(IN_FLIGHT.has(a.state)) || b.updated_at - a.updated_at);

    const report: SchedulerReport = {
      hostname: this.id.hostname,
      ip: this.id.ip,
      scheduler_cluster_id: this.id.clusterId,
      now,
      interval_ms: this.id.intervalMs,
      totals: { hosts: allHosts.length, peers: resources.peerCount, tasks: allTasks.length, tasks_running: running },
      hosts: hosts.slice(0, REPORT_CAPS.hosts),
      tasks: tasks.slice(0, REPORT_CAPS.tasks),
    };
    return fitReport(report);
  }
}

/** Drops the least interesting tasks, then hosts, until the JSON fits REPORT_CAPS.bytes. */
export function fitReport(report: SchedulerReport): SchedulerReport {
  let size = JSON.stringify(report).length;
  while (size > REPORT_CAPS.bytes && (report.tasks.length > 0 || report.hosts.length > 0)) {
    const over = size - REPORT_CAPS.bytes;
    if (report.tasks.length > 0) {
      const avg = JSON.stringify(report.tasks).length / report.tasks.length;
      report.tasks = report.tasks.slice(0, Math.max(0, report.tasks.length - Math.max(1, Math.ceil(over / avg))));
    } else {
      const avg = JSON.stringify(report.hosts).length / report.hosts.length;
      report.hosts = report.hosts.slice(0, Math.max(0, report.hosts.length - Math.max(1, Math.ceil(over / avg))));
    }
    size = JSON.stringify(report).length;
  }
  return report;
}

export interface Reporter {
  stop(): void;
  /** Builds and sends one report now (tests). */
  flush(): Promise<void>;
}

/** Posts a report every `intervalMs` through `post`; a failed post is logged and the next one tried. */
export function startReporter(builder: ReportBuilder, intervalMs: number, post: (r: SchedulerReport) => Promise<unknown>, logger: Logger, now = () => Date.now()): Reporter {
  let busy = false;
  let failures = 0;
  const flush = async () => {
    if (busy) return; // a slow manager gets one report at a time, never a pile
    busy = true;
    try {
      await post(builder.build(now()));
      failures = 0;
    } catch (err) {
      if (failures++ % 12 === 0) logger.warn('manager report failed', { error: errorMessage(err) });
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void flush(), intervalMs);
  timer.unref();
  // Origin readers are noted between reports too: a short back-to-source spell is not missed.
  const watch = setInterval(() => builder.observe(), Math.max(250, Math.floor(intervalMs / 4)));
  watch.unref();
  return {
    stop: () => {
      clearInterval(timer);
      clearInterval(watch);
    },
    flush,
  };
}
