/**
 * The schedulers' reports and the reads over them, on the SQLite store and on the server backends
 * (PostgreSQL, Redis; each skips loudly when its server is missing): a real scheduler registry
 * (scheduler/resource) summarised by ReportBuilder, posted to the manager app, read back as peers,
 * tasks (cursor pages, filters), one task's graph and the overview; the preheat alias with its token.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KvStore } from '../../adapters/kv/port.js';
import { SqliteKvStore } from '../../adapters/kv/sqlite.js';
import { createKvStore } from '../../adapters/stores.js';
import { silentLogger } from '../../adapters/log.js';
import { MemoryQueue } from '../../adapters/queue/memory.js';
import { createApp } from '../../control/manager/app.js';
import { bootstrap } from '../../control/manager/bootstrap.js';
import { managerConfig } from '../../control/manager/config.js';
import { manifestUrl } from '../../control/manager/routes/preheat.js';
import { REPORT_CAPS } from '../../scheduler/report-schema.js';
import { ReportBuilder } from '../../scheduler/report.js';
import { World } from '../scheduler/fixtures.js';
import { requireOrSkip } from '../support/require.js';
import { postgresBackend, redisBackend, type Backend } from '../support/servers.js';

const ROOT = 'root-password-123';
const SECRET = 'scheduler-secret-0123456789';

const backends: Array<{ name: string; open: (dir: string) => Promise<{ kv?: KvStore; backend?: Backend; reason?: string }> }> = [
  { name: 'SQLite', open: async (dir) => ({ kv: SqliteKvStore.open({ path: path.join(dir, 'kv.db'), timeoutMs: 5_000 }) }) },
  {
    name: 'PostgreSQL',
    open: async () => {
      const backend = await postgresBackend({ direct: true, timeoutMs: 5_000 });
      return backend.ok ? { kv: await createKvStore(backend.kv!), backend } : { backend, reason: backend.reason };
    },
  },
  {
    name: 'Redis',
    open: async () => {
      const backend = await redisBackend({ direct: true, timeoutMs: 5_000 });
      return backend.ok ? { kv: await createKvStore(backend.kv!), backend } : { backend, reason: backend.reason };
    },
  },
];

for (const store of backends) describe(`visibility API (${store.name})`, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'damselfly-vis-'));
  let kv: KvStore;
  let backend: Backend | undefined;
  let available = false;
  const config = managerConfig({ auth: { rootPassword: ROOT, schedulerSecret: SECRET } });
  let app: ReturnType<typeof createApp>;
  const req = async (method: string, p: string, token?: string, body?: unknown) => {
    const res = await app.request(p, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: res.status, json, headers: res.headers };
  };
  let jwt: string;
  const world = new World(() => Date.now());

  beforeAll(async () => {
    const opened = await store.open(dir);
    backend = opened.backend;
    available = requireOrSkip(opened.kv !== undefined, `${backend?.what ?? store.name} for the visibility API`, opened.reason ?? '');
    if (!available) return;
    kv = opened.kv!;
    app = createApp({ kv, queue: new MemoryQueue({ maxReceives: 5, visibilityMs: 30_000 }), config, clock: { now: () => Date.now() }, logger: silentLogger });
    await bootstrap(kv, { rootPassword: ROOT, jobRateLimit: 10, now: new Date(), logger: silentLogger });
    jwt = (await req('POST', '/api/v1/users/signin', undefined, { name: 'root', password: ROOT })).json.token;
    expect((await req('POST', '/api/v1/schedulers', SECRET, { hostname: 'sched-1', ip: '127.0.0.1', port: 8002, scheduler_cluster_id: 1 })).status).toBe(200);
    // A seed that read the origin, two children of it, a grandchild; and a finished task elsewhere.
    world.host('seed', { type: 'SUPER_SEED', hostname: 'seed-host' }).host('a', { hostname: 'agent-a' }).host('b', { hostname: 'agent-b' });
    const seed = world.peer('p-seed', 'seed', 'BackToSource', 'task-1', 8);
    const a = world.peer('p-a', 'a', 'Running', 'task-1', 4);
    const b = world.peer('p-b', 'b', 'Running', 'task-1', 2);
    world.r.addParent(seed, a);
    world.r.addParent(a, b);
    const t = world.r.tasks.get('task-1')!;
    t.moveTo('Running', Date.now());
    t.contentLength = 8 * 4 * 1024 * 1024;
    t.pieceLength = 4 * 1024 * 1024;
    // What the service counts from the piece reports (scheduler/grpc.test.ts tests that counting).
    seed.bytesFromOrigin = 8 * t.pieceLength;
    a.bytesFromPeers = 4 * t.pieceLength;
    b.bytesFromPeers = 2 * t.pieceLength;
    t.bytesFromOrigin = seed.bytesFromOrigin;
    t.bytesFromPeers = a.bytesFromPeers + b.bytesFromPeers + t.pieceLength; // and a peer that left
    world.peer('p-c', 'b', 'Succeeded', 'task-2', 1);
    const t2 = world.r.tasks.get('task-2')!;
    t2.moveTo('Running', Date.now());
    t2.moveTo('Succeeded', Date.now());
  });
  afterAll(async () => {
    await kv?.close();
    await backend?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (builder: ReportBuilder) => req('POST', '/api/v1/schedulers/report', SECRET, builder.build(Date.now()));

  it('refuses reports without the scheduler secret, from unknown schedulers, and with unknown fields', async (ctx) => {
    if (!available) return ctx.skip();
    const builder = new ReportBuilder(world.r, { hostname: 'sched-1', ip: '127.0.0.1', clusterId: 1, intervalMs: 1_000 });
    const r = builder.build(Date.now());
    expect((await req('POST', '/api/v1/schedulers/report', 'wrong', r)).status).toBe(401);
    expect((await req('POST', '/api/v1/schedulers/report', SECRET, { ...r, hostname: 'ghost' })).status).toBe(404);
    const bad = await req('POST', '/api/v1/schedulers/report', SECRET, { ...r, extra: 1 });
    expect(bad.status).toBe(400);
    expect(bad.json.fields).toHaveProperty('extra');
    expect((await req('GET', '/api/v1/peers', jwt)).json).toEqual([]);
  });

  it('peers, tasks, a task graph and the overview come from one stored report', async (ctx) => {
    if (!available) return ctx.skip();
    const builder = new ReportBuilder(world.r, { hostname: 'sched-1', ip: '127.0.0.1', clusterId: 1, intervalMs: 1_000 });
    expect((await post(builder)).status).toBe(200);
    const reports = await kv.list('v1/mgr-reports/');
    expect(reports.items).toHaveLength(1);
    expect(reports.items[0].expiresAt! - Date.now()).toBeLessThanOrEqual(15_000);

    const peers = await req('GET', '/api/v1/peers?per_page=2', jwt);
    expect(peers.status).toBe(200);
    expect(peers.headers.get('x-total-count')).toBe('3');
    expect(peers.json).toHaveLength(2);
    const all = (await req('GET', '/api/v1/peers?per_page=100', jwt)).json;
    const seed = all.find((p: any) => p.host_name === 'seed-host');
    expect(seed).toMatchObject({ id: 'seed', type: 'super', ip: '127.0.0.1', port: 1, download_port: 2, scheduler_cluster_id: 1, state: 'active' });
    expect((await req('GET', '/api/v1/peers?type=super', jwt)).json.map((p: any) => p.id)).toEqual(['seed']);

    const tasks = await req('GET', '/api/v1/tasks', jwt);
    expect(tasks.json.tasks.map((t: any) => t.id).sort()).toEqual(['task-1', 'task-2']);
    const t1 = tasks.json.tasks.find((t: any) => t.id === 'task-1');
    const MiB4 = 4 * 1024 * 1024;
    expect(t1).toMatchObject({ state: 'Running', peer_count: 3, content_length: 8 * MiB4, total_piece_count: 8, bytes_from_origin: 8 * MiB4, bytes_from_peers: 7 * MiB4, progress: 1 });
    expect((await req('GET', '/api/v1/tasks?state=Running', jwt)).json.tasks.map((t: any) => t.id)).toEqual(['task-1']);
    expect((await req('GET', '/api/v1/tasks/task-2', jwt)).json.finished_at).toBeTruthy();
    expect((await req('GET', '/api/v1/tasks?host=agent-a', jwt)).json.tasks.map((t: any) => t.id)).toEqual(['task-1']);
    expect((await req('GET', '/api/v1/tasks?url=nothing-like-it', jwt)).json.tasks).toEqual([]);
    expect((await req('GET', '/api/v1/tasks?scheduler_cluster_id=2', jwt)).json.tasks).toEqual([]);

    // Cursor pages: one at a time, no repeats, no gaps, then the end.
    const p1 = (await req('GET', '/api/v1/tasks?limit=1', jwt)).json;
    expect(p1.tasks).toHaveLength(1);
    expect(p1.next_cursor).toBeTruthy();
    const p2 = (await req('GET', `/api/v1/tasks?limit=1&cursor=${p1.next_cursor}`, jwt)).json;
    expect(p2.tasks).toHaveLength(1);
    expect(p2.next_cursor).toBeNull();
    expect([p1.tasks[0].id, p2.tasks[0].id].sort()).toEqual(['task-1', 'task-2']);
    const badCursor = await req('GET', '/api/v1/tasks?cursor=bm90LWpzb24', jwt);
    expect(badCursor.status).toBe(400);
    expect(badCursor.json.fields).toHaveProperty('cursor');
    expect((await req('GET', '/api/v1/tasks?limit=0', jwt)).json.fields).toHaveProperty('limit');

    const detail = await req('GET', '/api/v1/tasks/task-1', jwt);
    expect(detail.status).toBe(200);
    expect(detail.json.peers.map((p: any) => p.host_name).sort()).toEqual(['agent-a', 'agent-b', 'seed-host']);
    expect(detail.json.edges).toEqual(expect.arrayContaining([{ parent: 'p-seed', child: 'p-a' }, { parent: 'p-a', child: 'p-b' }]));
    expect(detail.json.edges).toHaveLength(2);
    expect(detail.json.peers.find((p: any) => p.id === 'p-a')).toMatchObject({ bytes_from_peers: 4 * MiB4, bytes_from_origin: 0 });
    expect(detail.json.peers.find((p: any) => p.id === 'p-seed')).toMatchObject({ bytes_from_peers: 0, bytes_from_origin: 8 * MiB4 });
    expect((await req('GET', '/api/v1/tasks/no-such-task', jwt)).status).toBe(404);

    const ov = (await req('GET', '/api/v1/overview', jwt)).json.clusters;
    expect(ov[0]).toMatchObject({ id: 1, schedulers: { active: 1, inactive: 0 }, seed_peers: { active: 1 }, active_peers: 4, tasks: 2, tasks_in_flight: 1 });
    expect(ov[0].p2p_share + ov[0].back_to_source_rate).toBeCloseTo(1);
    expect((await req('GET', '/api/v1/overview')).status).toBe(401);
  });

  it('a seed peer that stopped announcing is shown down (three missed intervals), and up again once it announces', async (ctx) => {
    if (!available) return ctx.skip();
    const builder = new ReportBuilder(world.r, { hostname: 'sched-1', ip: '127.0.0.1', clusterId: 1, intervalMs: 1_000 });
    const seedHost = world.r.hosts.get('seed')!;
    const { lastAnnounce, announceIntervalMs } = seedHost;
    try {
      seedHost.announceIntervalMs = 5_000;
      seedHost.lastAnnounce = Date.now() - 16_000; // > 3 × 5 s ago: silent, though the scheduler still holds it
      expect((await post(builder)).status).toBe(200);
      const seed = (await req('GET', '/api/v1/peers?type=super', jwt)).json[0];
      expect(seed).toMatchObject({ id: 'seed', state: 'inactive' });
      expect((await req('GET', '/api/v1/overview', jwt)).json.clusters[0].seed_peers).toEqual({ active: 0, inactive: 1 });
      seedHost.lastAnnounce = Date.now() - 14_000; // < 3 × 5 s: up
      expect((await post(builder)).status).toBe(200);
      expect((await req('GET', '/api/v1/peers?type=super', jwt)).json[0].state).toBe('active');
      expect((await req('GET', '/api/v1/overview', jwt)).json.clusters[0].seed_peers).toEqual({ active: 1, inactive: 0 });
    } finally {
      seedHost.lastAnnounce = lastAnnounce;
      seedHost.announceIntervalMs = announceIntervalMs;
    }
  });

  it('a report of 10,000 peers stays one write under the byte cap, keeping the running tasks', async (ctx) => {
    if (!available) return ctx.skip();
    const big = new World(() => Date.now());
    for (let h = 0; h < 2_000; h++) big.host(`h${h}`, { hostname: `host-${h}` });
    for (let i = 0; i < 10_000; i++) big.peer(`p${i}`, `h${i % 2_000}`, i % 3 === 0 ? 'Succeeded' : 'Running', `task-${i % 400}`, 3);
    const report = new ReportBuilder(big.r, { hostname: 'sched-1', ip: '127.0.0.1', clusterId: 1, intervalMs: 5_000 }).build(Date.now());
    expect(JSON.stringify(report).length).toBeLessThanOrEqual(REPORT_CAPS.bytes);
    expect(report.totals).toMatchObject({ hosts: 2_000, peers: 10_000, tasks: 400 });
    expect(report.hosts.length).toBeLessThanOrEqual(REPORT_CAPS.hosts);
    expect(report.tasks.length).toBeGreaterThan(0);
    const res = await req('POST', '/api/v1/schedulers/report', SECRET, report);
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    const ov = (await req('GET', '/api/v1/overview', jwt)).json.clusters;
    expect(ov[0].active_peers).toBe(10_000);
  });

  it('preheat alias: a token is required (the 401 says how), an image reference becomes a job', async (ctx) => {
    if (!available) return ctx.skip();
    const none = await req('POST', '/api/v1/preheat', undefined, { type: 'image', url: 'harbor.example.com/production/myapp:v2.0.0' });
    expect(none.status).toBe(401);
    expect(none.json.message).toContain('personal-access-tokens');
    const tok = await req('POST', '/api/v1/personal-access-tokens', jwt, { name: 'cron', scopes: ['job'], expired_at: '2099-01-01T00:00:00Z' });
    expect(tok.status).toBe(200);
    const pat = tok.json.token;
    const clusterOnly = (await req('POST', '/api/v1/personal-access-tokens', jwt, { name: 'c', scopes: ['cluster'], expired_at: '2099-01-01T00:00:00Z' })).json.token;
    expect((await req('POST', '/api/v1/preheat', clusterOnly, { type: 'image', url: 'nginx' })).status).toBe(403);
    const created = await req('POST', '/api/v1/preheat', pat, { type: 'image', url: 'harbor.example.com/production/myapp:v2.0.0', scope: 'all_peers', headers: { 'X-Trace': 'x' } });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    expect(created.json).toMatchObject({ state: 'PENDING', status: 'RUNNING' });
    const job = await req('GET', `/api/v1/jobs/${created.json.id}`, jwt);
    expect(job.json.args).toMatchObject({ url: 'https://harbor.example.com/v2/production/myapp/manifests/v2.0.0', scope: 'all_peers' });
    expect((await req('GET', `/api/v1/preheat/${created.json.id}`, pat)).json.id).toBe(created.json.id);
    const bad = await req('POST', '/api/v1/preheat', pat, { type: 'image', url: 'Not An Image!' });
    expect(bad.status).toBe(400);
    expect(bad.json.fields).toHaveProperty('url');
  });

  it('manifestUrl', () => {
    expect(manifestUrl('nginx')).toBe('https://registry-1.docker.io/v2/library/nginx/manifests/latest');
    expect(manifestUrl('localhost:5000/team/app:1.2')).toBe('http://localhost:5000/v2/team/app/manifests/1.2');
    expect(manifestUrl('127.0.0.1:5000/app@sha256:' + 'a'.repeat(64))).toBe(`http://127.0.0.1:5000/v2/app/manifests/sha256:${'a'.repeat(64)}`);
    expect(manifestUrl('https://r.example/v2/x/manifests/1')).toBe('https://r.example/v2/x/manifests/1');
    expect(manifestUrl('UPPER/case')).toBeUndefined();
    expect(manifestUrl('a//b')).toBeUndefined();
  });
});
