/**
 * Runs one simulation and summarizes it as the one JSON line the CLI prints.
 *
 * Lower bound (Kumar & Ross 2006, as bench:swarm), from the capacities drawn in this run:
 *   T_min = max( F / u_origin,  F / d_min,  N·F / (u_origin + Σ u_nodes + Σ u_seeds) )
 * N = all nodes (leavers included: they were meant to get the file; leaving only lowers Σu), d_min
 * over the nodes. The seeds add upload and must receive F from the origin themselves, which the first
 * term bounds. Times count from the first join (t = 0); with a join window the all-done time
 * includes the window, and `lastJoinToDoneSec` says how long after the last join everyone was done.
 */
import { World, type Node, type SimOptions } from './world.js';

const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const r6 = (x: number): number => Math.round(x * 1e6) / 1e6;

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

export interface SimResult {
  [k: string]: unknown;
}

export async function simulate(o: SimOptions): Promise<{ result: SimResult; world: World }> {
  const wall0 = performance.now();
  const w = new World(o);
  await w.run();
  const wallSec = (performance.now() - wall0) / 1000;
  const F = w.F;
  const nodes = w.nodes;
  const survivors = nodes.filter((n) => n.leftAt < 0);
  const done = survivors.filter((n) => n.doneAt >= 0);
  const uSum = nodes.reduce((a, n) => a + n.host.up, 0) + w.seeds.reduce((a, n) => a + n.host.up, 0);
  const dMin = nodes.reduce((a, n) => Math.min(a, n.host.down), Infinity);
  const terms = { originSec: F / o.originRate, downloadSec: F / dMin, systemSec: (nodes.length * F) / (o.originRate + uSum) };
  const tMin = Math.max(terms.originSec, terms.downloadSec, terms.systemSec);
  const allDone = done.length === survivors.length && done.length > 0 ? Math.max(...done.map((n) => n.doneAt)) / 1000 : NaN;
  const lastJoin = Math.max(0, ...nodes.map((n) => n.joinAt)) / 1000;
  const perNode = done.map((n) => (n.doneAt - n.joinAt) / 1000);
  const firstPiece = done.map((n) => (Math.min(...n.haveAt) - n.joinAt) / 1000);
  const hops: number[] = [];
  let maxHops = 0;
  for (const n of done) {
    for (let i = 0; i < w.pieceCount; i++) {
      const h = n.hops[i]!;
      hops.push(h);
      if (h > maxHops) maxHops = h;
    }
  }
  const outDeg = (list: Node[]): number[] => list.map((n) => n.children.size);
  const degrees = outDeg(nodes);
  const ratio = allDone / tMin;
  const goal = o.leave > 0 ? 1.3 : 1.2;
  const originRatio = w.origin.sentBytes / F;
  const result: SimResult = {
    bench: 'sim',
    nodes: nodes.length,
    seeds: w.seeds.length,
    sizeBytes: F,
    pieceLength: w.pieceLength,
    pieces: w.pieceCount,
    originRateBps: o.originRate,
    uploadBps: { mean: o.upload, spread: o.uploadSpread, min: Math.round(Math.min(...nodes.map((n) => n.host.up))) },
    downloadBps: { mean: o.download, spread: o.downloadSpread, min: Math.round(dMin) },
    latencyMs: o.latencyMs,
    joinWindowSec: o.joinWindowMs / 1000,
    leaveShare: o.leave,
    seed: o.seed,
    tMin: { sec: r6(tMin), originSec: r6(terms.originSec), downloadSec: r6(terms.downloadSec), systemSec: r6(terms.systemSec) },
    allDoneSec: r6(allDone),
    ratioToTMin: r3(ratio),
    lastJoinToDoneSec: r6(allDone - lastJoin),
    perNodeSec: { p50: r6(quantile(perNode, 0.5)), p99: r6(quantile(perNode, 0.99)), max: r6(quantile(perNode, 1)) },
    firstPieceSec: { p50: r6(quantile(firstPiece, 0.5)), p99: r6(quantile(firstPiece, 0.99)), max: r6(quantile(firstPiece, 1)) },
    originRatio: r6(originRatio),
    depth: { maxHops, p50Hops: quantile(hops, 0.5), p99Hops: quantile(hops, 0.99) },
    outDegree: { max: Math.max(0, ...degrees), p50: quantile(degrees, 0.5), p99: quantile(degrees, 0.99), seedMax: Math.max(0, ...outDeg(w.seeds)) },
    uploadedCopies: {
      seedMax: r3(Math.max(0, ...w.seeds.map((n) => n.host.sentBytes / F))),
      nodeMin: r3(Math.min(...nodes.map((n) => n.host.sentBytes / F))),
      nodeMax: r3(Math.max(...nodes.map((n) => n.host.sentBytes / F))),
    },
    completed: done.length,
    left: nodes.length - survivors.length,
    incomplete: survivors.length - done.length,
    originReaders: w.counts.originReaders,
    seedTriggers: w.counts.seedTriggers,
    messages: { toScheduler: w.counts.toScheduler, answers: w.counts.answers, reschedules: w.counts.reschedules, parentRefreshes: w.counts.refreshes },
    pieceRequests: { busy429: w.counts.busy, notFound404: w.counts.notFound, sent: w.net.flowsStarted },
    schedulerCpuSec: r3(w.sim.schedCpuUs / 1e6),
    events: w.sim.events,
    flows: w.net.flowsStarted,
    wallSec: r3(wallSec),
    goals: {
      ratioToTMin: `${goal} (${ratio <= goal ? 'met' : 'not met'})`,
      originRatio: `1.01 (${originRatio <= 1.01 ? 'met' : 'not met'})`,
    },
  };
  return { result, world: w };
}
