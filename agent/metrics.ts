/**
 * The agent's Prometheus registry, `dragonfly_client_*` names after Dragonfly's client metrics so
 * existing dashboards keep working. The proxy registers its own metrics on the same registry.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { version } from '../adapters/version.js';

/** Dragonfly's histogram buckets for durations in milliseconds: 1 ms to 2^23 ms (≈ 2.3 h). */
const MS_BUCKETS = Array.from({ length: 24 }, (_, i) => 2 ** i);

/** A fresh registry (the runtime metrics are added by the entry point, once per process: agent/main.ts). */
export function createAgentMetrics() {
  const registry = new Registry();
  const r = [registry];
  const m = {
    registry,
    downloadTaskTotal: new Counter({ name: 'dragonfly_client_download_task_total', help: 'Downloads started', labelNames: ['type', 'tag', 'app', 'priority'], registers: r }),
    downloadTaskFailureTotal: new Counter({ name: 'dragonfly_client_download_task_failure_total', help: 'Downloads failed', labelNames: ['type', 'tag', 'app', 'priority'], registers: r }),
    downloadTraffic: new Counter({ name: 'dragonfly_client_download_traffic', help: 'Bytes downloaded, by traffic type (REMOTE_PEER, BACK_TO_SOURCE, LOCAL_PEER: served from the local cache)', labelNames: ['type'], registers: r }),
    uploadTraffic: new Counter({ name: 'dragonfly_client_upload_traffic', help: 'Bytes uploaded to other peers', registers: r }),
    uploadTaskTotal: new Counter({ name: 'dragonfly_client_upload_task_total', help: 'Piece uploads', labelNames: ['type'], registers: r }),
    uploadPieceArrivingTotal: new Counter({
      name: 'dragonfly_client_upload_piece_arriving_total',
      help: 'Pieces sent to a child while still arriving here, block by block as each block was verified',
      registers: r,
    }),
    uploadTaskFailureTotal: new Counter({ name: 'dragonfly_client_upload_task_failure_total', help: 'Piece uploads refused or failed', labelNames: ['type'], registers: r }),
    concurrentDownloadTaskTotal: new Gauge({ name: 'dragonfly_client_concurrent_download_task_total', help: 'Tasks downloading now', registers: r }),
    concurrentUploadPieceTotal: new Gauge({ name: 'dragonfly_client_concurrent_upload_piece_total', help: 'Pieces uploading now', registers: r }),
    backendRequestTotal: new Counter({ name: 'dragonfly_client_backend_request_total', help: 'Requests to origins', labelNames: ['scheme', 'method'], registers: r }),
    backendRequestFailureTotal: new Counter({ name: 'dragonfly_client_backend_request_failure_total', help: 'Failed requests to origins', labelNames: ['scheme', 'method'], registers: r }),
    downloadTaskDuration: new Histogram({
      name: 'dragonfly_client_download_task_duration_milliseconds',
      help: 'Task download duration',
      labelNames: ['task_type', 'task_size_level'],
      buckets: MS_BUCKETS,
      registers: r,
    }),
    downloadPieceDuration: new Histogram({
      name: 'dragonfly_client_download_piece_duration_milliseconds',
      help: 'Piece download duration, by traffic type (REMOTE_PEER, BACK_TO_SOURCE)',
      labelNames: ['type'],
      buckets: MS_BUCKETS,
      registers: r,
    }),
    diskSpaceTotal: new Gauge({ name: 'dragonfly_client_disk_space_total', help: 'Capacity of the storage file system (or diskThreshold)', registers: r }),
    diskUsageSpaceTotal: new Gauge({ name: 'dragonfly_client_disk_usage_space_total', help: 'Used bytes of the storage file system', registers: r }),
    version: new Gauge({ name: 'dragonfly_client_version', help: 'Version', labelNames: ['git_version', 'platform'], registers: r }),
  };
  m.version.set({ git_version: version, platform: `${process.platform}/${process.arch}` }, 1);
  // Series that exist from the start at 0, so that rate() and increase() count their first increment.
  for (const type of ['REMOTE_PEER', 'BACK_TO_SOURCE', 'LOCAL_PEER']) m.downloadTraffic.inc({ type }, 0);
  for (const type of ['REMOTE_PEER', 'BACK_TO_SOURCE']) m.downloadPieceDuration.zero({ type });
  return m;
}

export type AgentMetrics = ReturnType<typeof createAgentMetrics>;
