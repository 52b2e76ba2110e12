/**
 * bench:reports — what the schedulers' console reports cost the manager's KV store with 10,000
 * peers: a real scheduler registry (2,000 hosts, 400 tasks, 10,000 peers whose pieces advance every
 * 100 ms) summarised by ReportBuilder and posted by startReporter to the manager app on SQLite,
 * whose KV store counts every write. Baselines measured in the same run: the writes a per-piece
 * design would make (pieces finished) and a per-peer design (one record per peer per report).
 *
 *   npm run bench:reports        (or: node dist-test/test/bench/reports.js [seconds] [interval-ms])
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KvStore } from '../../adapters/kv/port.js';
import { SqliteKvStore } from '../../adapters/kv/sqlite.js';
import { silentLogger } from '../../adapters/log.js';
import { MemoryQueue } from '../../adapters/queue/memory.js';
import { createApp } from '../../control/manager/app.js';
import { bootstrap } from '../../control/manager/bootstrap.js';
import { managerConfig } from '../../control/manager/config.js';
import { ReportBuilder, startReporter } from '../../scheduler/report.js';
import type { Peer } from '../../scheduler/resource/peer.js';
import { World } from '../scheduler/fixtures.js';

const seconds = Number(process.argv[2] ?? 10);
const intervalMs = Number(process.argv[3] ?? 1_000);
const PEERS = 10_000;
const HOSTS = 2_000;
const TASKS = 400;
const SECRET = 'bench-scheduler-secret-0123456789';

function counting(kv: KvStore): { kv: KvStore; writes: () => number } {
  let n = 0;
  const proxy = new Proxy(kv, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv);
      if (typeof v !== 'function') return v;
      if (prop === 'put' || prop === 'create' || prop === 'update' || prop === 'delete' || prop === 'transact') {
        return (...args: unknown[]) => {
          n++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return v.bind(target);
    },
  });
  return { kv: proxy, writes: () => n };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-bench-reports-'));
  const raw = SqliteKvStore.open({ path: path.join(dir, 'kv.db'), timeoutMs: 5_000 });
  const { kv, writes } = counting(raw);
  const config = managerConfig({ auth: { rootPassword: 'bench-root-password', schedulerSecret: SECRET } });
  await bootstrap(kv, { rootPassword: config.auth.rootPassword, jobRateLimit: 10, now: new Date(), logger: silentLogger });
  const app = createApp({ kv, queue: new MemoryQueue({ maxReceives: 5, visibilityMs: 30_000 }), config, clock: { now: () => Date.now() }, logger: silentLogger });
  const post = async (pathname: string, body: unknown) => {
    const res = await app.request(pathname, { method: 'POST', headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (res.status !== 200) throw new Error(`${pathname}: ${res.status} ${await res.text()}`);
    return res;
  };
  await post('/api/v1/schedulers', { hostname: 'bench-sched', ip: '127.0.0.1', port: 8002, scheduler_cluster_id: 1 });

  const world = new World(() => Date.now());
  for (let h = 0; h < HOSTS; h++) world.host(`h${h}`, { hostname: `host-${h}`, type: h < 4 ? 'SUPER_SEED' : 'NORMAL' });
  const peers: Peer[] = [];
  for (let i = 0; i < PEERS; i++) peers.push(world.peer(`p${i}`, `h${i % HOSTS}`, 'Running', `task-${i % TASKS}`, 0));
  for (const t of world.r.tasks.list()) {
    t.moveTo('Running', Date.now());
    t.pieceLength = 4 * 1024 * 1024;
    t.contentLength = 64 * t.pieceLength;
  }
  // Each peer finishes a piece every ~2 s (a 4 MiB piece at ~2 MiB/s): 5,000 pieces/s in the swarm.
  let pieces = 0;
  let cursor = 0;
  const advance = setInterval(() => {
    for (let k = 0; k < PEERS / 20; k++) {
      const p = peers[cursor++ % PEERS];
      if (p.finishedPieces.size < 64) {
        p.finishedPieces.add(p.finishedPieces.size);
        pieces++;
      }
    }
  }, 100);

  const builder = new ReportBuilder(world.r, { hostname: 'bench-sched', ip: '127.0.0.1', clusterId: 1, intervalMs });
  const sizes: number[] = [];
  const buildMs: number[] = [];
  const w0 = writes();
  const p0 = pieces;
  const t0 = performance.now();
  const reporter = startReporter(
    { observe: () => builder.observe(), build: (now: number) => {
      const s = performance.now();
      const r = builder.build(now);
      buildMs.push(performance.now() - s);
      sizes.push(JSON.stringify(r).length);
      return r;
    } } as ReportBuilder,
    intervalMs,
    (r) => post('/api/v1/schedulers/report', r),
    silentLogger,
  );
  await new Promise((r) => setTimeout(r, seconds * 1_000));
  reporter.stop();
  clearInterval(advance);
  const elapsedMin = (performance.now() - t0) / 60_000;
  const kvWrites = writes() - w0;
  const reports = sizes.length;
  const perReport = reports ? kvWrites / reports : 0;
  const sorted = [...sizes].sort((a, b) => a - b);
  const ms = [...buildMs].sort((a, b) => a - b);
  process.stdout.write(
    JSON.stringify({
      bench: 'reports',
      store: 'sqlite',
      peers: PEERS,
      hosts: HOSTS,
      tasks: TASKS,
      interval_ms: intervalMs,
      seconds,
      reports,
      kv_writes: kvWrites,
      kv_writes_per_report: perReport,
      kv_writes_per_minute: Math.round(kvWrites / elapsedMin),
      kv_writes_per_minute_at_5s_interval: Math.round(perReport * 12),
      report_bytes_p50: sorted[Math.floor(sorted.length / 2)] ?? 0,
      report_bytes_max: sorted[sorted.length - 1] ?? 0,
      build_ms_p50: Math.round((ms[Math.floor(ms.length / 2)] ?? 0) * 10) / 10,
      baseline_per_piece_writes_per_minute: Math.round((pieces - p0) / elapsedMin),
      baseline_per_peer_writes_per_minute: Math.round((PEERS * reports) / elapsedMin),
    }) + '\n',
  );
  await raw.close();
  rmSync(dir, { recursive: true, force: true });
}

void main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
