/**
 * bench:faults — origin bytes and time when something fails mid-transfer, beside the same run with
 * no fault (issue 13).
 *
 *   npm run bench:faults                       (defaults: --agents 4 --size 64MiB --origin-rate 32MiB)
 *   npm run bench:faults -- --only none,origin-reset
 *   npm run bench:faults -- --only parent-kill --repeat 5   (each scenario 5 times: the worst run is
 *                                                            reported, with every run's ratio)
 *
 * Per scenario a fresh origin (rate-limited, misbehaving on command: test/support/origin.ts), a
 * scheduler, one seed peer and N agents as real processes; every agent runs `damselfly get` at once
 * and every output's sha256 is checked. The fault fires once the origin has sent a quarter of the
 * file: parent-kill (SIGKILL of the first agent that has served 4 MiB to others, i.e. a parent in
 * use, together with its own `get`, as when a host dies: that get is not counted and reads nothing
 * from the origin), seed-kill, scheduler-kill (SIGKILL, never back), scheduler-restart
 * (SIGKILL, a new scheduler on the same address 2 s later), scheduler-unanswered (the last agent's
 * get starts only then, while the scheduler is frozen with SIGSTOP, so its register is never
 * answered; 1.5 s later SIGKILL and a new scheduler 2 s after that), origin-reset (connection destroyed),
 * origin-stall (no byte for 60 s), origin-5xx (two 500 answers). ratio = origin bytes / file size;
 * allDoneS = until the last counted get exited; ok = every counted get exited 0 with the right
 * bytes, through its agent. Progress goes to stderr; ONE JSON line goes to stdout.
 */
import path from 'node:path';
import { benchFlags, flag, flagsOrExit, runBench } from './harness.js';
import { fileSha256, MiB, startOrigin, type Origin } from '../support/origin.js';
import { cleanupTempDirs, getThrough, killAll, makeTempDir, portOf, schedulerConfigFor, scrapeMetric, spawnRole, startCluster, type Cluster, type RoleProcess } from '../support/procs.js';

const SCENARIOS = ['none', 'parent-kill', 'seed-kill', 'scheduler-kill', 'scheduler-restart', 'scheduler-unanswered', 'origin-reset', 'origin-stall', 'origin-5xx'] as const;
type Scenario = (typeof SCENARIOS)[number];

const USAGE = `usage: bench:faults [--agents 4] [--size 64MiB] [--origin-rate 32MiB] [--only ${SCENARIOS.join(',')}] [--repeat 1]`;
const { agents, size, originRate, only, repeat } = flagsOrExit('bench:faults', () => {
  const S = { type: 'string' } as const;
  const f = benchFlags(process.argv.slice(2), USAGE, { agents: S, size: S, 'origin-rate': S, only: S, repeat: S });
  return {
    agents: flag.number(f.agents, 'agents', 4, 1, true),
    size: flag.size(f.size, 'size', 64 * MiB),
    originRate: flag.size(f['origin-rate'], 'origin-rate', 32 * MiB),
    only: (f.only ?? SCENARIOS.join(',')).split(',').map((s) => flag.oneOf(s, 'only', SCENARIOS, 'none')),
    repeat: flag.number(f.repeat, 'repeat', 1, 1, true),
  };
});

/** Resolves true once `cond` holds, false if `over` settled first (the fault then did not fire). */
async function until(cond: () => boolean | Promise<boolean>, over: Promise<unknown>): Promise<boolean> {
  let ended = false;
  void over.finally(() => (ended = true));
  while (!(await cond())) {
    if (ended) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

async function run(s: Scenario): Promise<{ ratio: number; allDoneS: number; ok: boolean; fired: boolean; failures: string[]; parentUploadedMiB?: number }> {
  const origin: Origin = await startOrigin({ rate: originRate });
  let cluster: Cluster | undefined;
  try {
    cluster = await startCluster({ agents, readyTimeoutMs: 60_000 });
    const p = `/bench/${s}.bin`;
    const url = origin.add(p, { size, seed: `faults-${s}-${Date.now()}` });
    const want = origin.sha256(p);
    if (s === 'origin-reset') origin.fault({ kind: 'reset', afterBytes: size / 4, path: p });
    if (s === 'origin-stall') origin.fault({ kind: 'stall', afterBytes: size / 4, ms: 60_000, path: p });
    if (s === 'origin-5xx') origin.fault({ kind: 'status', status: 500, path: p }, 2);
    const out = makeTempDir('damselfly-bench-faults-');
    const t0 = performance.now();
    const hostDown = new Map(cluster.agents.map((a) => [a, new AbortController()]));
    const startGet = (a: RoleProcess) => getThrough(a, url, path.join(out, `${a.name}.bin`), ['--digest', want], 240_000, undefined, hostDown.get(a)!.signal).then((r) => ({ ...r, at: performance.now() }));
    // scheduler-unanswered: the last agent's get starts once the scheduler is frozen.
    const late = s === 'scheduler-unanswered' ? cluster.agents.at(-1) : undefined;
    let startLate = (): void => undefined;
    const lateGo = new Promise<void>((r) => (startLate = r));
    const gets = cluster.agents.map((a) => (a === late ? lateGo.then(() => startGet(a)) : startGet(a)));
    const quarter = () => (origin.stats().byPath[p]?.bytes ?? 0) >= size / 4;
    const all = Promise.all(gets);
    let excluded: RoleProcess | undefined;
    let fired = s === 'none';
    let parentUploadedMiB: number | undefined;
    if (s === 'parent-kill') {
      // The first agent that has served a piece's worth to others (a parent children are using),
      // killed together with its own get (the figure below says how much it had uploaded).
      const uploaded = new Map<RoleProcess, number>();
      const served = async (): Promise<boolean> => {
        await new Promise((r) => setTimeout(r, 50));
        for (const a of cluster!.agents) uploaded.set(a, await scrapeMetric(a.ready.metrics, 'dragonfly_client_upload_traffic').catch(() => 0));
        return [...uploaded.values()].some((b) => b >= 4 * MiB);
      };
      fired = await until(served, all);
      if (fired) {
        excluded = [...uploaded.entries()].sort((x, y) => y[1] - x[1])[0]![0];
        parentUploadedMiB = Math.round((uploaded.get(excluded)! / MiB) * 10) / 10;
        excluded.kill('SIGKILL');
        hostDown.get(excluded)!.abort();
      }
    } else if (s === 'seed-kill') {
      fired = await until(quarter, all);
      cluster.seed!.kill('SIGKILL');
    } else if (s === 'scheduler-kill' || s === 'scheduler-restart') {
      fired = await until(quarter, all);
      const port = portOf(cluster.scheduler.ready.grpc);
      cluster.scheduler.kill('SIGKILL');
      if (s === 'scheduler-restart') {
        await cluster.scheduler.exited;
        await new Promise((r) => setTimeout(r, 2_000));
        await spawnRole('scheduler', schedulerConfigFor({ server: { ip: '127.0.0.1', port } }), { name: 'scheduler-2' });
      }
    } else if (s === 'scheduler-unanswered') {
      fired = await until(quarter, all);
      const port = portOf(cluster.scheduler.ready.grpc);
      cluster.scheduler.kill('SIGSTOP');
      startLate();
      await new Promise((r) => setTimeout(r, 1_500));
      cluster.scheduler.kill('SIGKILL');
      await cluster.scheduler.exited;
      await new Promise((r) => setTimeout(r, 2_000));
      await spawnRole('scheduler', schedulerConfigFor({ server: { ip: '127.0.0.1', port } }), { name: 'scheduler-2' });
    }
    const results = await all;
    if (s.startsWith('origin-')) fired = origin.faultsApplied() > 0;
    const failures: string[] = [];
    let last = t0;
    for (const [i, r] of results.entries()) {
      const a = cluster.agents[i]!;
      if (a === excluded) continue;
      last = Math.max(last, r.at);
      if (r.code !== 0) failures.push(`${a.name}: exit ${r.code}: ${r.stderr.slice(-300)}`);
      else if (/from the origin directly/.test(r.stderr)) failures.push(`${a.name}: bypassed its agent`);
      else if ((await fileSha256(path.join(out, `${a.name}.bin`))) !== want) failures.push(`${a.name}: wrong bytes`);
    }
    const ratio = (origin.stats().byPath[p]?.bytes ?? 0) / size;
    return { ratio: Math.round(ratio * 1000) / 1000, allDoneS: Math.round((last - t0) / 10) / 100, ok: failures.length === 0, fired, failures, ...(parentUploadedMiB !== undefined ? { parentUploadedMiB } : {}) };
  } finally {
    await killAll();
    await origin.close();
  }
}

async function main(): Promise<void> {
  const runs: Record<string, unknown> = {};
  for (const s of only) {
    const all: Awaited<ReturnType<typeof run>>[] = [];
    for (let i = 0; i < repeat; i++) {
      const r = await run(s);
      process.stderr.write(`${s}${repeat > 1 ? ` #${i + 1}` : ''}: ratio ${r.ratio}, all done in ${r.allDoneS} s${r.ok ? '' : `, FAILED: ${r.failures.join('; ')}`}\n`);
      all.push(r);
    }
    // The worst run: a failed one, else the highest origin ratio.
    const worst = all.reduce((a, b) => (Number(!b.ok) - Number(!a.ok) || b.ratio - a.ratio) > 0 ? b : a);
    runs[s] = repeat > 1 ? { ...worst, repeats: repeat, ratios: all.map((r) => r.ratio), allOk: all.every((r) => r.ok && r.fired) } : worst;
  }
  cleanupTempDirs();
  process.stdout.write(JSON.stringify({ bench: 'faults', agents, size, originRate, minS: Math.round((size / originRate) * 100) / 100, runs }) + '\n');
}

runBench('bench:faults', async () => {
  await main();
  return 0;
});
