/**
 * bench:scheduler-grpc — the scheduler as a real process under a load generator of simulated peers
 * speaking the real proto over real AnnouncePeer streams.
 *
 *   npm run bench:scheduler-grpc -- [--peers 10000] [--pieces 100] [--channels 8] [--batch 1000] [--rate 0]
 *   DAMSELFLY_CLI=/path/to/other/dist/control/cli.js ...   (the same load against another build)
 *
 * Starts `damselfly scheduler` (ports 0), announces one host per peer, lets one source peer read
 * "from the origin" and report `--pieces` digests, then opens `--peers` streams that stay open
 * (all concurrent) and registers them in waves of `--batch` at once; each decision's latency is
 * register → first answer. Then every peer reschedules once (blocking its parent). Reports
 * decisions/s, p50/p99, and the scheduler process's CPU-seconds per 1,000 decisions (from
 * /proc/PID/stat, so the generator's own CPU is not counted). One JSON line on stdout. The load
 * generator shares the machine with the scheduler (and, here, with other work): say so with figures.
 *
 * `--rate R` (decisions/s) offers the same registers and reschedules open-loop instead of in waves:
 * R/200 of them every 5 ms whatever the answers, so p99 is the latency at that offered load, not
 * the time to drain a burst of `--batch` (a wave's last answer waits behind the other 999).
 */
import { createHash } from 'node:crypto';
import { SimPeer, hostMsg, schedulerClient, unaryCall } from '../scheduler/support.js';
import { killAll, cleanupTempDirs, spawnRole, schedulerConfigFor } from '../support/procs.js';
import { benchFlags, cpuSeconds, flag, percentile, runBench } from './harness.js';

const USAGE = 'usage: npm run bench:scheduler-grpc -- [--peers 10000] [--pieces 100] [--channels 8] [--batch 1000] [--rate 0]';
const quantile = (xs: number[], q: number): number => (xs.length === 0 ? 0 : percentile([...xs].sort((a, b) => a - b), q * 100));

const PL = 4 << 20;

async function main(): Promise<number> {
  const f = benchFlags(process.argv.slice(2), USAGE, { peers: { type: 'string' }, pieces: { type: 'string' }, channels: { type: 'string' }, batch: { type: 'string' }, rate: { type: 'string' } });
  const peers = flag.number(f.peers, 'peers', 10_000, 1, true);
  const pieces = flag.number(f.pieces, 'pieces', 100, 1, true);
  const channels = flag.number(f.channels, 'channels', 8, 1, true);
  const batch = flag.number(f.batch, 'batch', 1000, 1, true);
  const rate = flag.number(f.rate, 'rate', 0);
  /** Starts `n` jobs: in waves of `batch` (each waits for the previous), or open-loop at `rate`/s. */
  const offer = async (n: number, start: (i: number) => Promise<void>): Promise<void> => {
    if (rate <= 0) {
      for (let i = 0; i < n; i += batch) await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, j) => start(i + j)));
      return;
    }
    const all: Promise<void>[] = [];
    const t = performance.now();
    while (all.length < n) {
      const due = Math.min(n, Math.floor(((performance.now() - t) * rate) / 1000) + 1);
      while (all.length < due) all.push(start(all.length));
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(all);
  };
  const sched = await spawnRole('scheduler', schedulerConfigFor({ metrics: { enable: false }, seedPeer: { enable: false }, scheduling: { retryInterval: '200ms', rejoinGrace: 0 } }));
  const addr = String((sched.ready as Record<string, unknown>).grpc);
  const clients = Array.from({ length: channels }, () => schedulerClient(addr));
  const task = createHash('sha256').update(`bench-grpc-${Date.now()}`).digest('hex');
  try {
    // Hosts: every agent announces the same upload rate (the default 50 GiB/s).
    for (let i = 0; i <= peers; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, peers + 1 - i) }, (_, j) =>
          unaryCall(clients[(i + j) % channels], 'AnnounceHost', { host: hostMsg(`h${i + j}`, { ip: '10.0.0.1', max_tx_bandwidth: 50 * 1024 ** 3 }), interval_ms: 600_000 }),
        ),
      );
    }
    const src = new SimPeer(clients[0], 'h0', task, 'p0');
    src.register();
    await src.next('need_back_to_source_response', 10_000);
    src.send('download_peer_back_to_source_started_request', { content_length: pieces * PL, piece_length: PL });
    for (let n = 0; n < pieces; n++) {
      const digest = 'sha256:' + createHash('sha256').update(String(n)).digest('hex');
      src.send('download_piece_back_to_source_finished_request', { piece: { number: n, offset: n * PL, length: PL, digest, traffic_type: 'BACK_TO_SOURCE', cost_ms: 3 } });
    }
    await new Promise((r) => setTimeout(r, 200));
    const sims: SimPeer[] = [];
    const lat: number[] = [];
    const parents = new Map<SimPeer, string[]>();
    let failed = 0;
    const cpu0 = cpuSeconds(sched.pid);
    const t0 = performance.now();
    await offer(peers, (k) => {
      const j = k + 1;
      const p = new SimPeer(clients[j % channels], `h${j}`, task, `p${j}`);
      sims.push(p);
      const a = performance.now();
      p.register();
      return p.next('normal_task_response', 60_000).then(
        (m) => {
          lat.push(performance.now() - a);
          parents.set(p, m.normal_task_response.candidate_parents.map((c: { id: string }) => c.id));
          p.send('download_peer_started_request');
        },
        () => void failed++,
      );
    });
    const regMs = performance.now() - t0;
    const cpu1 = cpuSeconds(sched.pid);
    // Churn: every peer blocks its parents and asks again, a wave at a time.
    const rlat: number[] = [];
    const r0 = performance.now();
    await offer(sims.length, (k) => {
      const p = sims[k];
      const a = performance.now();
      p.drain();
      p.send('reschedule_peer_request', { candidate_parent_ids: parents.get(p) ?? [], description: 'bench' });
      return p.next('normal_task_response', 60_000).then(
        () => void rlat.push(performance.now() - a),
        () => void failed++,
      );
    });
    const reMs = performance.now() - r0;
    const cpu2 = cpuSeconds(sched.pid);
    const decisions = lat.length + rlat.length;
    console.log(
      JSON.stringify({
        bench: 'scheduler-grpc',
        cli: process.env.DAMSELFLY_CLI ?? 'dist/control/cli.js',
        concurrentPeers: peers,
        pieces,
        channels,
        batch: rate > 0 ? undefined : batch,
        offeredRatePerSec: rate > 0 ? rate : undefined,
        registerDecisionsPerSec: Math.round(lat.length / (regMs / 1000)),
        registerP50Ms: Math.round(quantile(lat, 0.5) * 10) / 10,
        registerP99Ms: Math.round(quantile(lat, 0.99) * 10) / 10,
        rescheduleDecisionsPerSec: Math.round(rlat.length / (reMs / 1000)),
        rescheduleP50Ms: Math.round(quantile(rlat, 0.5) * 10) / 10,
        rescheduleP99Ms: Math.round(quantile(rlat, 0.99) * 10) / 10,
        schedulerCpuSecPer1000Decisions: Math.round(((cpu2 - cpu0) / (decisions / 1000)) * 1000) / 1000,
        registerCpuSecPer1000: Math.round(((cpu1 - cpu0) / (lat.length / 1000)) * 1000) / 1000,
        decisionsPerSchedulerCpuSec: Math.round(decisions / (cpu2 - cpu0)),
        failed,
      }),
    );
    for (const p of [src, ...sims]) p.call.cancel();
  } finally {
    for (const c of clients) c.close();
    await killAll();
    cleanupTempDirs();
  }
  return 0;
}

runBench('bench:scheduler-grpc', main);
