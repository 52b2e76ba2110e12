/**
 * bench:scheduler — the scheduler's cost per decision as the task grows, in process.
 *
 *   npm run bench:scheduler                       # this code, then the baseline commit, same run
 *   npm run bench:scheduler -- --no-baseline      # this code only
 *   node --expose-gc dist-test/test/bench/scheduler.js [--sizes 1000,10000,100000] [--budget-ms 3000]
 *
 * Drives the real SchedulerService through in-memory AnnouncePeer streams (the same `data` events
 * and `write()` calls grpc-js makes; no sockets, so the figure is the scheduler's own cost). For each
 * N it builds a task of N running peers directly in the registry (a random tree under one source,
 * every host announcing the same upload rate, as agents do by default), then registers new peers
 * one at a time and times each decision (register → first answer written), then reschedules
 * (blocking the current parent), piece reports, and leaves. "tasks" spreads N peers over 1,000 tasks.
 * "core" times Scheduling.schedule alone on peers created in the registry. Heap per peer: 10,000
 * peers holding 1,000 pieces each, measured after a full GC. Figures per CPU-second are the ones to
 * compare on a shared machine; wall-clock p99 includes other processes' turns.
 *
 * One JSON line per scenario on stdout. With the baseline (default), this file is built and run
 * against BASELINE_REF in a throwaway git worktree in the same run, and each line carries both.
 * The machine may be shared: run it a few times and take the median.
 */
import { EventEmitter } from 'node:events';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { schedulerConfig } from '../../scheduler/config.js';
import { createScheduler } from '../../scheduler/server.js';
import type { HostInfo } from '../../scheduler/resource/host.js';
import type { Peer } from '../../scheduler/resource/peer.js';
import { benchFlags, flag, runBench } from './harness.js';

/** The commit before issue 15's work (scheduler at its original design); BASELINE_REF=<ref> compares against another. */
const BASELINE_REF = process.env.BASELINE_REF ?? 'dcd53b1';
const PL = 4 << 20;
const RATE = 50 * 1024 ** 3; // agents announce 50 GiB/s by default

type Msg = Record<string, any>;

class FakeCall extends EventEmitter {
  onWrite: ((m: Msg) => void) | undefined;
  bytes = 0;
  write(m: Msg): void {
    this.onWrite?.(m);
  }
  end(): void {}
}

function hostInfo(id: string): HostInfo {
  return {
    id, type: 'NORMAL', hostname: id, ip: '10.0.0.1', port: 1, downloadPort: 2, idc: '', location: '', maxTxBandwidth: RATE,
    uploadLimit: 0, concurrentUploadCount: 0, proxyPort: 0, schedulerClusterId: 1, disableShared: false, os: 'linux', platform: 'debian',
  };
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;

interface Scenario {
  scenario: string;
  peers: number;
  tasks: number;
}

async function runScenario(sc: Scenario, pieces: number, budgetMs: number): Promise<Msg> {
  const s = createScheduler(schedulerConfig({ metrics: { enable: false }, seedPeer: { enable: false } }));
  const res = s.resources;
  const now = Date.now();
  const perTask = Math.max(1, Math.floor(sc.peers / sc.tasks));
  const taskIds: string[] = [];
  let rnd = 12345;
  const random = (): number => {
    rnd = (rnd * 1103515245 + 12345) & 0x7fffffff;
    return rnd / 0x80000000;
  };
  let hostN = 0;
  const newHost = (): string => {
    const id = `h${hostN++}`;
    res.hosts.announce(hostInfo(id), 60_000, now);
    return id;
  };
  for (let t = 0; t < sc.tasks; t++) {
    const tid = `task-${t}`.padEnd(64, '0');
    taskIds.push(tid);
    const task = res.tasks.getOrCreate(tid, { url: `http://origin/${t}`, tag: '', application: '', filteredQueryParams: [] }, now);
    task.contentLength = pieces * PL;
    task.pieceLength = PL;
    for (let n = 0; n < pieces; n++) task.addPiece({ number: n, offset: n * PL, length: PL, digest: 'sha256:' + n.toString(16).padStart(64, '0') });
    task.pendingPieces = [];
    const ps: Peer[] = [];
    const src = res.createPeer(`${tid}-p0`, task, newHost(), now);
    src.transition('BackToSource', now);
    task.backToSourcePeers.add(src.id);
    for (let n = 0; n < pieces; n++) src.finishedPieces.add(n);
    task.moveTo('Running', now);
    ps.push(src);
    for (let i = 1; i < perTask; i++) {
      const p = res.createPeer(`${tid}-p${i}`, task, newHost(), now);
      p.transition('ReceivedNormal', now);
      p.transition('Running', now);
      res.addParent(ps[Math.floor(random() * ps.length)], p);
      const held = Math.floor(random() * pieces);
      for (let n = 0; n < held; n++) p.finishedPieces.add(n);
      ps.push(p);
    }
  }
  const svc = s.service;
  // The decision alone (Scheduling.schedule on a registered peer), timed in CPU as well as wall
  // time: on a shared machine wall time includes other processes' turns.
  const core: number[] = [];
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  while ((performance.now() - w0 < budgetMs && core.length < 20_000) || core.length < 20) {
    const task = res.tasks.get(taskIds[Math.floor(random() * taskIds.length)])!;
    const p = res.createPeer(`core-${core.length}`, task, newHost(), Date.now());
    const a = performance.now();
    const d = await svc.scheduling.schedule(p);
    core.push(performance.now() - a);
    if (d.kind === 'normal') p.transition('Running', Date.now());
  }
  const coreCpu = process.cpuUsage(c0);
  const coreCpuSec = (coreCpu.user + coreCpu.system) / 1e6;
  const calls: { call: FakeCall; peerId: string; hostId: string; taskId: string }[] = [];
  let respBytes = 0;
  let respCount = 0;
  // The first message written back, or undefined after `waitMs`: a peer whose only holder it just
  // blocked is not answered at once (the scheduler keeps it waiting for a holder rather than giving
  // up), and such a wait is counted, not timed.
  const ask = (call: FakeCall, req: Msg, waitMs = 5_000): Promise<Msg | undefined> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        call.onWrite = undefined;
        resolve(undefined);
      }, waitMs);
      call.onWrite = (m) => {
        clearTimeout(timer);
        call.onWrite = undefined;
        resolve(m);
      };
      call.emit('data', req);
    });
  // Decisions: new peers register one at a time.
  const lat: number[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let kinds: Record<string, number> = {};
  while ((performance.now() - t0 < budgetMs && lat.length < 20_000) || lat.length < 20) {
    const taskId = taskIds[Math.floor(random() * taskIds.length)];
    const hostId = newHost();
    const peerId = `new-${lat.length}`;
    const call = new FakeCall();
    svc.announcePeer(call as never);
    const a = performance.now();
    const m = (await ask(call, { request: 'register_peer_request', host_id: hostId, task_id: taskId, peer_id: peerId, register_peer_request: { download: { url: 'http://origin/x', piece_length: PL, priority: 'LEVEL6' } } })) ?? { unanswered: true };
    lat.push(performance.now() - a);
    const kind = Object.keys(m)[0];
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    if (respCount < 50) {
      respBytes += JSON.stringify(m).length;
      respCount++;
    }
    call.emit('data', { request: 'download_peer_started_request', peer_id: peerId });
    calls.push({ call, peerId, hostId, taskId });
  }
  const decideMs = performance.now() - t0;
  const cpuDecide = process.cpuUsage(cpu0);
  // Reschedules: every registered peer blocks its parent(s) and asks again.
  const resched: number[] = [];
  let reschedWaiting = 0;
  const r0 = performance.now();
  for (const c of calls) {
    if (performance.now() - r0 > budgetMs && resched.length >= 20) break;
    const peer = res.peer(c.peerId);
    if (!peer) continue;
    const parents = [...peer.task.dag.parents(peer.id)];
    const a = performance.now();
    const m = await ask(c.call, { request: 'reschedule_peer_request', peer_id: c.peerId, reschedule_peer_request: { candidate_parent_ids: parents, description: 'bench' } }, 200);
    if (m) resched.push(performance.now() - a);
    else reschedWaiting++;
  }
  // Piece reports.
  const live = calls.filter((c) => res.peer(c.peerId));
  let reports = 0;
  const q0 = performance.now();
  for (let n = 0; n < pieces && performance.now() - q0 < budgetMs; n++) {
    for (const c of live) {
      const peer = res.peer(c.peerId)!;
      const parentId = peer.task.dag.parents(peer.id).values().next().value ?? '';
      c.call.emit('data', { request: 'download_piece_finished_request', peer_id: c.peerId, download_piece_finished_request: { piece: { number: n, parent_id: parentId, offset: n * PL, length: PL, digest: '', traffic_type: 'REMOTE_PEER', cost_ms: 5 } } });
      reports++;
    }
  }
  const pieceMs = performance.now() - q0;
  // Leaves.
  const leave: number[] = [];
  for (const c of live) {
    const a = performance.now();
    c.call.emit('data', { request: 'leave_peer_request', peer_id: c.peerId });
    leave.push(performance.now() - a);
  }
  const cpu = process.cpuUsage(cpu0);
  svc.close();
  return {
    scenario: sc.scenario,
    peers: sc.peers,
    tasks: sc.tasks,
    pieces,
    coreDecisions: core.length,
    coreDecisionsPerCpuSec: Math.round(core.length / coreCpuSec),
    coreDecisionP50Us: Math.round(quantile(core, 0.5) * 1000),
    coreDecisionP99Us: Math.round(quantile(core, 0.99) * 1000),
    decisions: lat.length,
    decisionsPerSec: Math.round(lat.length / (decideMs / 1000)),
    decisionsPerCpuSec: Math.round(lat.length / ((cpuDecide.user + cpuDecide.system) / 1e6)),
    decisionP50Ms: r3(quantile(lat, 0.5)),
    decisionP99Ms: r3(quantile(lat, 0.99)),
    cpuSecPer1000Decisions: r3((cpuDecide.user + cpuDecide.system) / 1e6 / (lat.length / 1000)),
    answers: kinds,
    answerBytesMean: Math.round(respBytes / Math.max(1, respCount)),
    rescheduleP50Ms: r3(quantile(resched, 0.5)),
    rescheduleP99Ms: r3(quantile(resched, 0.99)),
    reschedulesWaiting: reschedWaiting,
    pieceReportsPerSec: Math.round(reports / (pieceMs / 1000)),
    leaveP50Us: Math.round(quantile(leave, 0.5) * 1000),
    leaveP99Us: Math.round(quantile(leave, 0.99) * 1000),
    cpuSec: r3((cpu.user + cpu.system) / 1e6),
  };
}

function heapPerPeer(pieces: number, peers: number): Msg {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return { scenario: 'heap', error: 'run node with --expose-gc' };
  const s = createScheduler(schedulerConfig({ metrics: { enable: false }, seedPeer: { enable: false } }));
  const res = s.resources;
  const now = Date.now();
  const task = res.tasks.getOrCreate('heap'.padEnd(64, '0'), { url: 'http://origin/heap', tag: '', application: '', filteredQueryParams: [] }, now);
  task.contentLength = pieces * PL;
  task.pieceLength = PL;
  for (let i = 0; i < peers; i++) res.hosts.announce(hostInfo(`h${i}`), 60_000, now);
  gc();
  const before = process.memoryUsage().heapUsed;
  const keep: Peer[] = [];
  for (let i = 0; i < peers; i++) {
    const p = res.createPeer(`p${i}`, task, `h${i}`, now);
    p.transition('ReceivedNormal', now);
    p.transition('Running', now);
    if (i > 0) res.addParent(keep[Math.floor(i / 2)], p);
    for (let n = 0; n < pieces; n++) p.finishedPieces.add(n);
    keep.push(p);
  }
  gc();
  const after = process.memoryUsage().heapUsed;
  return { scenario: 'heap', peers, piecesHeld: pieces, heapPerPeerBytes: Math.round((after - before) / peers), kept: keep.length };
}

function runBaseline(argv: string[]): Msg[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const repo = path.resolve(here, '../../..');
  const wt = mkdtempSync(path.join(tmpdir(), 'damselfly-bench-baseline-'));
  try {
    execFileSync('git', ['-C', repo, 'worktree', 'add', '--detach', wt, BASELINE_REF], { stdio: 'ignore' });
    symlinkSync(path.join(repo, 'node_modules'), path.join(wt, 'node_modules'));
    copyFileSync(path.join(repo, 'test/bench/scheduler.ts'), path.join(wt, 'test/bench/scheduler.ts'));
    // Older commits built test/ with tsconfig.build.json; later ones have tsconfig.test.json for it.
    const testConfig = existsSync(path.join(wt, 'tsconfig.test.json'));
    const out_ = path.join(wt, testConfig ? 'dist-test' : 'dist');
    execFileSync(path.join(repo, 'node_modules/.bin/tsc'), ['-p', testConfig ? 'tsconfig.test.json' : 'tsconfig.build.json', '--outDir', out_], { cwd: wt, stdio: 'inherit' });
    const out = spawnSync(process.execPath, ['--expose-gc', path.join(out_, 'test/bench/scheduler.js'), '--no-baseline', ...argv], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
    if (out.status !== 0) throw new Error(`baseline bench exited ${out.status}`);
    return out.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Msg);
  } finally {
    spawnSync('git', ['-C', repo, 'worktree', 'remove', '--force', wt], { stdio: 'ignore' });
    if (existsSync(wt)) rmSync(wt, { recursive: true, force: true });
  }
}

const USAGE = 'usage: npm run bench:scheduler -- [--sizes 1000,10000,100000] [--budget-ms 3000] [--pieces 100] [--no-baseline]';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const f = benchFlags(argv, USAGE, { sizes: { type: 'string' }, 'budget-ms': { type: 'string' }, pieces: { type: 'string' }, 'no-baseline': { type: 'boolean' } });
  const sizes = (f.sizes ?? '1000,10000,100000').split(',').map((v) => flag.number(v, 'sizes', 0, 1, true));
  const budgetMs = flag.number(f['budget-ms'], 'budget-ms', 3000, 1);
  const pieces = flag.number(f.pieces, 'pieces', 100, 1, true);
  const passArgs = argv.filter((a) => a !== '--no-baseline');
  const baseline = f['no-baseline'] ? undefined : runBaseline(passArgs);
  const lines: Msg[] = [];
  for (const n of sizes) lines.push(await runScenario({ scenario: 'oneTask', peers: n, tasks: 1 }, pieces, budgetMs));
  const spread = sizes[sizes.length - 1];
  lines.push(await runScenario({ scenario: 'thousandTasks', peers: spread, tasks: 1000 }, pieces, budgetMs));
  lines.push(heapPerPeer(1000, 10_000));
  for (const l of lines) {
    const b = baseline?.find((x) => x.scenario === l.scenario && x.peers === l.peers);
    console.log(JSON.stringify(b ? { ...l, baseline: { ref: BASELINE_REF, ...b, scenario: undefined } } : l));
  }
  return 0;
}

runBench('bench:scheduler', main);
