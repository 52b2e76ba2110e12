/**
 * Prometheus metrics named after Dragonfly's scheduler set (dragonfly_scheduler_*), in their own
 * registry so several schedulers (tests, `damselfly up`) can run in one process.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, Summary } from 'prom-client';
import { version } from '../adapters/version.js';

const P = 'dragonfly_scheduler_';

export class SchedulerMetrics {
  readonly registry = new Registry();
  private c = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    new Counter<L>({ name: P + name, help, labelNames, registers: [this.registry] });

  readonly announceHost = this.c('announce_host_total', 'Counter of the number of announce host', ['os', 'platform', 'host_type']);
  readonly announceHostFailure = this.c('announce_host_failure_total', 'Counter of failed announce host');
  readonly leaveHost = this.c('leave_host_total', 'Counter of the number of leave host');
  readonly announcePeer = this.c('announce_peer_total', 'Counter of the number of announce peer streams');
  readonly announcePeerFailure = this.c('announce_peer_failure_total', 'Counter of announce peer streams ended with an error');
  readonly registerPeer = this.c('register_peer_total', 'Counter of the number of register peer', ['priority', 'task_type', 'host_type']);
  readonly registerPeerFailure = this.c('register_peer_failure_total', 'Counter of failed register peer', ['priority', 'task_type', 'host_type']);
  readonly downloadPeerStarted = this.c('download_peer_started_total', 'Counter of download peer started', ['priority', 'task_type', 'host_type']);
  readonly downloadPeerBackToSourceStarted = this.c('download_peer_back_to_source_started_total', 'Counter of back-to-source started', ['priority', 'task_type', 'host_type']);
  readonly downloadPeerFinished = this.c('download_peer_finished_total', 'Counter of download peer finished', ['priority', 'task_type', 'host_type']);
  readonly downloadPeerFailure = this.c('download_peer_finished_failure_total', 'Counter of download peer failed', ['priority', 'task_type', 'host_type']);
  readonly downloadPeerBackToSourceFailure = this.c('download_peer_back_to_source_finished_failure_total', 'Counter of back-to-source failed', ['priority', 'task_type', 'host_type']);
  readonly downloadPieceFinished = this.c('download_piece_finished_total', 'Counter of piece finished', ['traffic_type', 'task_type', 'host_type']);
  readonly downloadPieceFailure = this.c('download_piece_finished_failure_total', 'Counter of piece failed', ['traffic_type', 'task_type', 'host_type']);
  readonly downloadPieceBackToSourceFailure = this.c('download_piece_back_to_source_finished_failure_total', 'Counter of back-to-source piece failed', ['task_type', 'host_type']);
  readonly traffic = this.c('traffic', 'Counter of bytes transferred, by traffic type', ['type', 'task_type', 'host_type']);
  readonly leavePeer = this.c('leave_peer_total', 'Counter of the number of leave peer');
  readonly statTask = this.c('stat_task_total', 'Counter of stat task');
  readonly statTaskFailure = this.c('stat_task_failure_total', 'Counter of failed stat task');
  readonly listHosts = this.c('list_hosts_total', 'Counter of list hosts');
  readonly registerTask = this.c('register_task_total', 'Counter of tasks this scheduler started tracking (their first peer registered)');
  readonly seedPeerTrigger = this.c('seed_peer_download_total', 'Counter of seed peer download triggers');
  readonly seedPeerTriggerFailure = this.c('seed_peer_download_failure_total', 'Counter of failed seed peer download triggers');
  readonly concurrentSchedule = new Gauge({ name: P + 'concurrent_schedule_total', help: 'Gauge of peers being scheduled now', registers: [this.registry] });
  readonly scheduleDuration = new Summary({
    name: P + 'schedule_duration_milliseconds',
    help: 'Summary of the time spent scheduling a peer',
    percentiles: [0.5, 0.9, 0.99],
    maxAgeSeconds: 600,
    ageBuckets: 5,
    registers: [this.registry],
  });
  readonly downloadPeerDuration = new Summary({
    name: P + 'download_peer_duration_milliseconds',
    help: 'Summary of the time from register to finished, by task size level',
    labelNames: ['task_size_level'],
    percentiles: [0.5, 0.9, 0.99],
    maxAgeSeconds: 600,
    ageBuckets: 5,
    registers: [this.registry],
  });
  readonly hosts = new Gauge({ name: P + 'hosts', help: 'Hosts known to the scheduler', labelNames: ['host_type'], registers: [this.registry] });
  readonly tasks = new Gauge({ name: P + 'tasks', help: 'Tasks known to the scheduler', labelNames: ['state'], registers: [this.registry] });
  readonly peers = new Gauge({ name: P + 'peers', help: 'Peers known to the scheduler', labelNames: ['state'], registers: [this.registry] });
  readonly version = new Gauge({ name: P + 'version', help: 'Version info of the service', labelNames: ['git_version', 'platform'], registers: [this.registry] });

  constructor() {
    this.version.set({ git_version: version, platform: `${process.platform}/${process.arch}` }, 1);
    // Series that exist from the start at 0, so that rate() and increase() count their first
    // increment (a series born at 1 looks to Prometheus like one that never moved).
    for (const host_type of ['normal', 'super']) {
      for (const type of ['BACK_TO_SOURCE', 'REMOTE_PEER', 'LOCAL_PEER']) this.traffic.inc({ type, task_type: 'STANDARD', host_type }, 0);
      const peer = { priority: 'LEVEL6', task_type: 'STANDARD', host_type };
      for (const c of [this.downloadPeerBackToSourceStarted, this.downloadPeerFinished, this.downloadPeerFailure, this.downloadPeerBackToSourceFailure]) c.inc(peer, 0);
      this.downloadPieceFailure.inc({ traffic_type: 'REMOTE_PEER', task_type: 'STANDARD', host_type }, 0);
    }
  }
}

/** Serves GET /metrics on ip:port (0 = ephemeral); resolves with the server and its bound port. */
export function serveMetrics(metrics: SchedulerMetrics, ip: string, port: number, refresh: () => void): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    refresh();
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, ip, () => {
      server.off('error', reject);
      resolve({ server, port: (server.address() as AddressInfo).port });
    });
  });
}
