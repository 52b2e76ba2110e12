/**
 * What the schedulers see, for the console and API users: the schedulers' reports (one bounded
 * record per scheduler, TTL'd, written once per report) and the reads over them — peers (Dragonfly's
 * field names), tasks (cursor paging, filters), one task with its peers and parent edges, and the
 * per-cluster overview. Nothing is held in memory between requests (Lambda serves these too).
 */
import { z } from 'zod';
import { InvalidError, NotFoundError } from '../../../adapters/errors.js';
import type { KvStore } from '../../../adapters/kv/port.js';
import { managerKeys } from '../../../adapters/keys.js';
import { type ReportHost, type ReportTask, type SchedulerReport, schedulerReportSchema } from '../../../scheduler/report-schema.js';
import { body, decimalQueryInt, pageQuery, paginate, query } from '../http.js';
import { isActive } from '../jobs.js';
import type { ClusterRecord, SchedulerRecord } from '../models.js';
import { listAll } from '../store.js';
import type { RouteModule } from './context.js';

/** A report outlives three missed intervals, never less than 15 s: a dead scheduler's swarm fades out. */
export const reportTtlMs = (intervalMs: number): number => Math.max(3 * intervalMs, 15_000);

/** Every stored report, times already on the manager's clock. */
export async function loadReports(kv: KvStore, clusterId?: number): Promise<SchedulerReport[]> {
  const prefix = clusterId ? managerKeys.reportClusterPrefix(clusterId) : managerKeys.reportPrefix();
  return (await listAll<SchedulerReport>(kv, prefix)).map((r) => r.value);
}

/** A host that promised no interval is down after this long without an announce (Dragonfly's agents announce every 30 s). */
const DEFAULT_ANNOUNCE_MS = 30_000;

/**
 * Whether a host is silent at `nowMs`: three announce intervals passed since it last announced. The
 * scheduler keeps a silent host until its own GC drops it, so its report still lists it meanwhile.
 */
export function isSilent(h: Pick<ReportHost, 'last_seen' | 'announce_interval_ms'>, nowMs: number): boolean {
  return nowMs - h.last_seen > 3 * (h.announce_interval_ms || DEFAULT_ANNOUNCE_MS);
}

type PeerView = ReturnType<typeof peerView>;
function peerView(h: ReportHost, clusterId: number, nowMs: number) {
  const at = (ms: number) => new Date(ms).toISOString();
  return {
    // Dragonfly's manager Peer fields first.
    id: h.id,
    host_name: h.host_name,
    type: h.type,
    idc: h.idc,
    location: h.location,
    ip: h.ip,
    port: h.port,
    download_port: h.download_port,
    proxy_port: h.proxy_port,
    object_storage_port: 0,
    state: isSilent(h, nowMs) ? 'inactive' : 'active',
    os: h.os,
    platform: h.platform,
    scheduler_cluster_id: clusterId,
    created_at: at(h.created_at),
    updated_at: at(h.last_seen),
    // Damselfly's live figures.
    upload_rate: h.upload_rate,
    download_rate: h.download_rate,
    concurrent_upload_count: h.concurrent_upload_count,
    upload_limit: h.upload_limit,
    load: h.upload_limit > 0 ? h.concurrent_upload_count / h.upload_limit : 0,
    pieces_served: h.pieces_served,
    pieces_failed: h.pieces_failed,
    peer_count: h.peer_count,
    last_seen: at(h.last_seen),
  };
}

/** Hosts across reports, one per (cluster, host id): the most recently seen wins. */
export function mergePeers(reports: SchedulerReport[], nowMs: number): PeerView[] {
  const byId = new Map<string, PeerView>();
  for (const r of reports) {
    for (const h of r.hosts) {
      const k = `${r.scheduler_cluster_id}/${h.id}`;
      const cur = byId.get(k);
      if (!cur || cur.updated_at < new Date(h.last_seen).toISOString()) byId.set(k, peerView(h, r.scheduler_cluster_id, nowMs));
    }
  }
  return [...byId.values()].sort((a, b) => a.scheduler_cluster_id - b.scheduler_cluster_id || (a.host_name < b.host_name ? -1 : a.host_name > b.host_name ? 1 : a.id < b.id ? -1 : 1));
}

export interface TaskView extends Omit<ReportTask, 'peers' | 'edges' | 'started_at' | 'finished_at' | 'updated_at'> {
  scheduler_cluster_id: number;
  scheduler: string;
  progress: number;
  started_at: string;
  finished_at: string | null;
  updated_at: string;
}

function taskView(t: ReportTask, r: SchedulerReport): TaskView {
  const { peers: _p, edges: _e, ...rest } = t;
  const done = t.peers.reduce((m, p) => Math.max(m, p.finished_pieces), 0);
  return {
    ...rest,
    scheduler_cluster_id: r.scheduler_cluster_id,
    scheduler: r.hostname,
    progress: t.total_piece_count > 0 ? Math.min(1, done / t.total_piece_count) : t.state === 'Succeeded' ? 1 : 0,
    started_at: new Date(t.started_at).toISOString(),
    finished_at: t.finished_at ? new Date(t.finished_at).toISOString() : null,
    updated_at: new Date(t.updated_at).toISOString(),
  };
}

const taskListQuery = z.object({
  scheduler_cluster_id: decimalQueryInt(1).optional(),
  state: z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Leave']).optional(),
  host: z.string().max(512).optional(),
  url: z.string().max(8192).optional(),
  limit: decimalQueryInt(1, 500).default(50),
  cursor: z
    .string()
    .max(2048)
    .regex(/^[A-Za-z0-9_-]*$/, 'expected the next_cursor of a previous page')
    .optional(),
});
const peerListQuery = pageQuery.extend({
  scheduler_cluster_id: decimalQueryInt(1).optional(),
  host_name: z.string().max(256).optional(),
  ip: z.string().max(64).optional(),
  type: z.enum(['normal', 'super', 'strong', 'weak']).optional(),
});

// Order: newest first, then id. The cursor is the last item's (started_at, id), so a page boundary
// stays put while reports come and go.
const taskOrder = (a: TaskView, b: TaskView) => (a.started_at > b.started_at ? -1 : a.started_at < b.started_at ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : a.scheduler_cluster_id - b.scheduler_cluster_id);
const encodeCursor = (t: TaskView) => Buffer.from(JSON.stringify([t.started_at, t.id, t.scheduler_cluster_id])).toString('base64url');
function decodeCursor(s: string): TaskView {
  try {
    const [started_at, id, scheduler_cluster_id] = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as [string, string, number];
    if (typeof started_at !== 'string' || typeof id !== 'string' || typeof scheduler_cluster_id !== 'number') throw new Error('shape');
    return { started_at, id, scheduler_cluster_id } as TaskView;
  } catch {
    throw new InvalidError('invalid request', { details: { fields: { cursor: 'expected the next_cursor of a previous page' } } });
  }
}

/** Every task of every report (a task on two clusters is two rows), filtered, in list order. */
export function listTasks(reports: SchedulerReport[], f: { scheduler_cluster_id?: number; state?: string; host?: string; url?: string } = {}): TaskView[] {
  const out: TaskView[] = [];
  const seen = new Set<string>();
  for (const r of reports) {
    if (f.scheduler_cluster_id && r.scheduler_cluster_id !== f.scheduler_cluster_id) continue;
    const hostNames = new Map(r.hosts.map((h) => [h.id, h.host_name]));
    for (const t of r.tasks) {
      const k = `${r.scheduler_cluster_id}/${t.id}`;
      if (seen.has(k)) continue;
      if (f.state && t.state !== f.state) continue;
      if (f.url && !t.url.includes(f.url)) continue;
      if (f.host && !t.peers.some((p) => p.host_id === f.host || hostNames.get(p.host_id) === f.host)) continue;
      seen.add(k);
      out.push(taskView(t, r));
    }
  }
  return out.sort(taskOrder);
}

/** One task across reports: its rows, its peers (with host names) and the parent edges. */
export function taskDetail(reports: SchedulerReport[], id: string) {
  const rows: TaskView[] = [];
  const peers: Array<ReportTask['peers'][number] & { host_name: string; ip: string; type: string; scheduler_cluster_id: number }> = [];
  const edges: { parent: string; child: string }[] = [];
  for (const r of reports) {
    const t = r.tasks.find((x) => x.id === id);
    if (!t) continue;
    rows.push(taskView(t, r));
    const hosts = new Map(r.hosts.map((h) => [h.id, h]));
    for (const p of t.peers) {
      const h = hosts.get(p.host_id);
      peers.push({ ...p, host_name: h?.host_name ?? '', ip: h?.ip ?? '', type: h?.type ?? 'normal', scheduler_cluster_id: r.scheduler_cluster_id });
    }
    for (const [parent, child] of t.edges) edges.push({ parent, child });
  }
  if (rows.length === 0) throw new NotFoundError(`task ${id} not found in any scheduler's report`);
  return { ...rows[0], clusters: rows, peers, edges };
}

/** Per cluster: schedulers and seed peers up/down, active peers, tasks in flight, P2P share, back-to-source rate. */
export async function overview(kv: KvStore, nowMs: number, keepAliveMs: number) {
  const clusters = (await listAll<ClusterRecord>(kv, managerKeys.clusterPrefix())).map((r) => r.value);
  const schedulers = (await listAll<SchedulerRecord>(kv, managerKeys.schedulerPrefix())).map((r) => r.value);
  const reports = await loadReports(kv);
  return clusters.map((cl) => {
    const mine = schedulers.filter((s) => s.scheduler_cluster_id === cl.id);
    const active = mine.filter((s) => isActive(s, nowMs, keepAliveMs)).length;
    const rs = reports.filter((r) => r.scheduler_cluster_id === cl.id);
    const peers = mergePeers(rs, nowMs);
    const seeds = peers.filter((p) => p.type !== 'normal');
    const seedsUp = seeds.filter((p) => p.state === 'active').length;
    let fromPeers = 0;
    let fromOrigin = 0;
    for (const t of listTasks(rs)) {
      fromPeers += t.bytes_from_peers;
      fromOrigin += t.bytes_from_origin;
    }
    const total = fromPeers + fromOrigin;
    return {
      id: cl.id,
      name: cl.name,
      is_default: cl.is_default,
      schedulers: { active, inactive: mine.length - active },
      // Seed peers the schedulers know: up while they announce, down after three missed announces
      // (until the scheduler forgets the host); one whose scheduler stopped reporting drops out with its report.
      seed_peers: { active: seedsUp, inactive: seeds.length - seedsUp },
      active_peers: rs.reduce((n, r) => n + r.totals.peers, 0),
      hosts: peers.length,
      tasks: rs.reduce((n, r) => n + r.totals.tasks, 0),
      tasks_in_flight: rs.reduce((n, r) => n + r.totals.tasks_running, 0),
      bytes_from_peers: fromPeers,
      bytes_from_origin: fromOrigin,
      p2p_share: total > 0 ? fromPeers / total : null,
      back_to_source_rate: total > 0 ? fromOrigin / total : null,
      upload_rate: peers.reduce((n, p) => n + p.upload_rate, 0),
      download_rate: peers.reduce((n, p) => n + p.download_rate, 0),
    };
  });
}

export const visibilityRoutes: RouteModule = (app, ctx) => {
  const { kv, config, userAuth, schedAuth, now } = ctx;

  app.post('/api/v1/schedulers/report', schedAuth, async (c) => {
    const r = await body(c, schedulerReportSchema);
    const sched = await kv.get<SchedulerRecord>(managerKeys.scheduler(r.scheduler_cluster_id, r.hostname, r.ip));
    if (!sched) throw new NotFoundError('scheduler not registered: register first');
    // Onto the manager's clock, so "last seen" means the same across schedulers with skewed clocks.
    const shift = now() - r.now;
    const move = (ms: number) => (ms > 0 ? Math.max(0, ms + shift) : 0);
    const stored: SchedulerReport = {
      ...r,
      now: now(),
      hosts: r.hosts.map((h) => ({ ...h, last_seen: move(h.last_seen), created_at: move(h.created_at) })),
      tasks: r.tasks.map((t) => ({ ...t, started_at: move(t.started_at), finished_at: move(t.finished_at), updated_at: move(t.updated_at) })),
    };
    await kv.put(managerKeys.report(r.scheduler_cluster_id, r.hostname, r.ip), stored, { ttlMs: reportTtlMs(r.interval_ms) });
    return c.json({ ok: true });
  });

  app.get('/api/v1/peers', userAuth, async (c) => {
    const q = query(c, peerListQuery);
    const peers = mergePeers(await loadReports(kv, q.scheduler_cluster_id), now()).filter(
      (p) => (!q.host_name || p.host_name === q.host_name) && (!q.ip || p.ip === q.ip) && (!q.type || p.type === q.type),
    );
    return c.json(paginate(c, peers, q.page, q.per_page));
  });

  app.get('/api/v1/tasks', userAuth, async (c) => {
    const q = query(c, taskListQuery);
    let tasks = listTasks(await loadReports(kv, q.scheduler_cluster_id), q);
    if (q.cursor) {
      const after = decodeCursor(q.cursor);
      tasks = tasks.filter((t) => taskOrder(t, after) > 0);
    }
    const page = tasks.slice(0, q.limit);
    const next = tasks.length > q.limit ? encodeCursor(page[page.length - 1]) : null;
    c.header('X-Total-Count', String(tasks.length));
    return c.json({ tasks: page, next_cursor: next });
  });

  app.get('/api/v1/tasks/:id', userAuth, async (c) => {
    const id = c.req.param('id');
    if (!id || id.length > 512) throw new InvalidError('invalid request', { details: { fields: { id: 'expected a task ID' } } });
    return c.json(taskDetail(await loadReports(kv), id));
  });

  app.get('/api/v1/overview', userAuth, async (c) => c.json({ clusters: await overview(kv, now(), config.schedulerKeepAliveInterval) }));
};
