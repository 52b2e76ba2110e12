/**
 * The summary a scheduler posts to the manager every few seconds (`POST /api/v1/schedulers/report`):
 * its hosts and its tasks, capped so one report is one bounded KV write whatever the swarm's size.
 * Shared by the sender (scheduler/report.ts) and the manager's route (control/manager/routes/visibility.ts).
 * Times are epoch ms on the scheduler's clock; the manager shifts them by `now` to its own.
 */
import { z } from 'zod';

export const REPORT_CAPS = {
  hosts: 500,
  tasks: 200,
  peersPerTask: 50,
  /** Whole report, JSON bytes: under the manager's body limit and DynamoDB's 400 KB item. */
  bytes: 240_000,
} as const;

const str = (max: number) => z.string().max(max);
const count = z.number().int().nonnegative();
const rate = z.number().nonnegative();

export const reportHostSchema = z.strictObject({
  id: str(512),
  host_name: str(256),
  type: z.enum(['normal', 'super', 'strong', 'weak']),
  idc: str(1024),
  location: str(1024),
  ip: str(64),
  port: count,
  download_port: count,
  proxy_port: count,
  os: str(64),
  platform: str(64),
  /** Bytes per second this host sent to children / received, over the last report interval. */
  upload_rate: rate,
  download_rate: rate,
  concurrent_upload_count: count,
  upload_limit: count,
  pieces_served: count,
  pieces_failed: count,
  peer_count: count,
  last_seen: count,
  /** How often the host promised to announce itself (0: unknown); the manager counts it down after three missed. */
  announce_interval_ms: count.optional(),
  created_at: count,
});

export const reportPeerSchema = z.strictObject({
  id: str(512),
  host_id: str(512),
  state: str(32),
  finished_pieces: count,
  back_to_source: z.boolean(),
  /** Bytes of the pieces it reported, from parents / from the origin (optional: older schedulers send none). */
  bytes_from_peers: count.optional(),
  bytes_from_origin: count.optional(),
});

export const reportTaskSchema = z.strictObject({
  id: str(512),
  url: str(8192),
  content_length: z.number().int().min(-1),
  piece_length: count,
  total_piece_count: count,
  state: z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Leave']),
  peer_count: count,
  pieces_known: count,
  bytes_from_peers: count,
  bytes_from_origin: count,
  started_at: count,
  /** When the task reached Succeeded/Failed; 0 while in flight. */
  finished_at: count,
  updated_at: count,
  peers: z.array(reportPeerSchema).max(REPORT_CAPS.peersPerTask),
  /** [parent peer id, child peer id], only between listed peers. */
  edges: z.array(z.tuple([str(512), str(512)])).max(REPORT_CAPS.peersPerTask * 4),
});

export const schedulerReportSchema = z.strictObject({
  hostname: z.string().min(1).max(256).regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, 'a hostname: letters, digits, _ . - only'),
  ip: z.union([z.ipv4(), z.ipv6()]),
  scheduler_cluster_id: z.number().int().positive(),
  now: count,
  interval_ms: z.number().int().min(100).max(3_600_000),
  /** Uncapped counts, so the overview stays right when the lists were cut. */
  totals: z.strictObject({ hosts: count, peers: count, tasks: count, tasks_running: count }),
  hosts: z.array(reportHostSchema).max(REPORT_CAPS.hosts),
  tasks: z.array(reportTaskSchema).max(REPORT_CAPS.tasks),
});

export type SchedulerReport = z.output<typeof schedulerReportSchema>;
export type ReportHost = z.output<typeof reportHostSchema>;
export type ReportTask = z.output<typeof reportTaskSchema>;
