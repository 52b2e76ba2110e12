/**
 * bench:swarm — how close the swarm gets to the theoretical minimum distribution time.
 *
 *   npm run bench:swarm -- --agents 16 --size 128MiB --origin-rate 20MiB --upload-rate 20MiB --download-rate 40MiB
 *   node .build/<you>/test/bench/swarm.js ...same flags...   (DAMSELFLY_CLI overrides the CLI it runs)
 *
 * Starts a rate-limited origin, a scheduler, one seed peer and N agents as real processes on
 * 127.0.0.1; every agent starts the download at once (see --client); measures when each finishes, verifies every
 * sha256, counts origin bytes. Then, in the same run, the baseline: N plain HTTP clients downloading
 * straight from the same rate-limited origin at once, each capped at --download-rate. Rates are per
 * second and enforced by the agents' own limiters (upload.rateLimit, download.rateLimit) and the
 * origin's token bucket. Progress goes to stderr; ONE JSON line goes to stdout.
 *
 * Lower bound (Kumar & Ross 2006, research/peers.md §3.10), F = file size, N = agents:
 *
 *   T_min = max( F / u_origin,  F / d_min,  N·F / (u_origin + Σ u_agents + u_seed) )
 *
 * The seed peer is counted as an extra uploader in the third term (its upload capacity adds to what
 * the system can move), and as nothing else: it must itself receive F from the origin, which the first
 * term already bounds, and its own finish time is not measured. Adding its capacity only lowers T_min,
 * so the bound stays a true lower bound for this system.
 * Client-server baseline bound (Kurose & Ross): D_cs = max( N·F / u_origin, F / d_min ).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Agent, request } from 'undici';
import { cliPath } from '../support/cli.js';
import { benchFlags, cpuSeconds, flag, lowerBounds, percentile, round, runBench, tMinReport } from './harness.js';
import { startOrigin, fileSha256, TokenBucket, MiB } from '../support/origin.js';
import { spawnRole, startCluster, apiGet, apiWarm, getThrough, killAll, cleanupTempDirs, scrapeMetric, merge, type Cluster, type RoleProcess } from '../support/procs.js';

interface Flags {
  agents: number;
  size: number;
  originRate: number;
  uploadRate: number;
  downloadRate: number;
  seedUploadRate: number;
  baseline: boolean;
  /** Before the timer starts, every agent downloads a small unrelated file once (a daemon's warm state). */
  warmup: boolean;
  /** How each agent's download is started: its local API (default) or one `damselfly get` process each. */
  client: 'api' | 'cli';
  candidateParentLimit?: number;
  concurrentPieceCount?: number;
  uploadConcurrentLimit?: number;
  /** Deep-merged into every agent's (and the seed's) / the scheduler's generated config. */
  agentConfig?: Record<string, unknown>;
  schedulerConfig?: Record<string, unknown>;
  /** security.mtls: required everywhere, certificates from a manager started for the run. */
  mtls: boolean;
}

const USAGE = `usage: bench:swarm [--agents 16] [--size 128MiB] [--origin-rate 20MiB] [--upload-rate 20MiB]
                   [--download-rate 40MiB] [--seed-upload-rate <upload-rate>] [--no-baseline] [--no-warmup] [--client api|cli]
                   [--candidate-parent-limit N] [--concurrent-piece-count N] [--upload-concurrent-limit N]
                   [--agent-config JSON] [--scheduler-config JSON]   (merged into the generated YAML)
                   [--mtls]   (mutual TLS everywhere: a manager issues the certificates)
Rates are bytes per second (e.g. 20MiB = 20 MiB/s). Prints one JSON line on stdout.
Before the timer starts every agent downloads an unrelated 16 MiB file once, as a running daemon has
done before (its code compiled, its buffers mapped); --no-warmup measures freshly started processes.
--client api (default): each download is one request to the agent's local API asking it to place
  the file at the output path (what \`damselfly get\` asks); --client cli: one \`damselfly get\` process
  per agent, all started at once (on a 2-core machine their start-up adds about 1 s).`;

function parseFlags(argv: string[]): Flags {
  const S = { type: 'string' } as const;
  const B = { type: 'boolean' } as const;
  const v = benchFlags(argv, USAGE, {
    agents: S, size: S, 'origin-rate': S, 'upload-rate': S, 'download-rate': S, 'seed-upload-rate': S,
    'no-baseline': B, 'no-warmup': B, mtls: B, client: S,
    'candidate-parent-limit': S, 'concurrent-piece-count': S, 'upload-concurrent-limit': S, 'agent-config': S, 'scheduler-config': S,
  });
  const optionalInt = (name: 'candidate-parent-limit' | 'concurrent-piece-count' | 'upload-concurrent-limit'): number | undefined => (v[name] === undefined ? undefined : flag.number(v[name], name, 0, 1, true));
  const uploadRate = flag.size(v['upload-rate'], 'upload-rate', 20 * MiB);
  return {
    agents: flag.number(v.agents, 'agents', 16, 1, true),
    size: flag.size(v.size, 'size', 128 * MiB),
    originRate: flag.size(v['origin-rate'], 'origin-rate', 20 * MiB),
    uploadRate,
    downloadRate: flag.size(v['download-rate'], 'download-rate', 40 * MiB),
    seedUploadRate: flag.size(v['seed-upload-rate'], 'seed-upload-rate', uploadRate),
    baseline: !v['no-baseline'],
    warmup: !v['no-warmup'],
    client: flag.oneOf(v.client, 'client', ['api', 'cli'] as const, 'api'),
    mtls: !!v.mtls,
    candidateParentLimit: optionalInt('candidate-parent-limit'),
    concurrentPieceCount: optionalInt('concurrent-piece-count'),
    uploadConcurrentLimit: optionalInt('upload-concurrent-limit'),
    agentConfig: flag.json(v['agent-config'], 'agent-config'),
    schedulerConfig: flag.json(v['scheduler-config'], 'scheduler-config'),
  };
}

const progress = (msg: string): void => void process.stderr.write(`bench:swarm ${new Date().toISOString()} ${msg}\n`);

/** Downloads `url` capped at `rate` bytes/s (reading pauses, so TCP backpressure holds the sender). */
async function plainDownload(url: string, rate: number, dispatcher: Agent): Promise<{ bytes: number; digest: string; ms: number }> {
  const t0 = performance.now();
  const bucket = new TokenBucket(rate, 64 * 1024);
  const res = await request(url, { dispatcher });
  if (res.statusCode !== 200) throw new Error(`baseline GET ${url}: HTTP ${res.statusCode}`);
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of res.body) {
    const b = chunk as Buffer;
    await bucket.take(b.length);
    h.update(b);
    bytes += b.length;
  }
  return { bytes, digest: `sha256:${h.digest('hex')}`, ms: performance.now() - t0 };
}

async function main(): Promise<number> {
  // Every role in its own network namespace, links shaped by tc: a module of its own.
  if (process.argv.includes('--netns')) return (await import('./swarm-netns.js')).netnsMain(process.argv.slice(2));
  const flags = parseFlags(process.argv.slice(2));
  const cli = cliPath();
  const F = flags.size;
  const N = flags.agents;

  // T_min = max(F/u_origin, F/d_min, N·F/(u_origin + Σu_agents + u_seed)) — see the header comment.
  const bounds = lowerBounds(F, N, flags);
  const { tMin, dcs } = bounds;

  // The origin shares the cores with the swarm (it runs in this process): its bucket tolerates
  // 100 ms of its own lateness without losing rate, and is emptied at t0, so the bytes it has sent
  // by time t never exceed originRate × t and F / u_origin stays a true lower bound.
  const origin = await startOrigin({ rate: flags.originRate, burst: flags.originRate / 10, startEmpty: true });
  const seedName = `bench-${process.pid}-${Date.now()}`;
  const filePath = `/bench/${seedName}.bin`;
  const url = origin.add(filePath, { size: F, seed: seedName });
  progress(`computing sha256 of ${F} generated bytes`);
  const want = origin.sha256(filePath);
  const outDir = mkdtempSync(path.join(tmpdir(), 'damselfly-bench-out-'));
  let cluster: Cluster | undefined;
  try {
    const concurrentLimit = flags.uploadConcurrentLimit ? { concurrentLimit: flags.uploadConcurrentLimit } : {};
    const agentOver = {
      upload: { rateLimit: flags.uploadRate, ...concurrentLimit },
      download: {
        rateLimit: flags.downloadRate,
        ...(flags.concurrentPieceCount ? { concurrentPieceCount: flags.concurrentPieceCount } : {}),
      },
    };
    // --mtls: a manager as the cluster CA, and every role with security.mtls required.
    let security: Record<string, unknown> = {};
    let env: Record<string, string> | undefined;
    if (flags.mtls) {
      const joinToken = randomBytes(24).toString('base64url');
      env = { DAMSELFLY_JOIN_TOKEN: joinToken };
      progress('starting a manager to issue the certificates (--mtls)');
      const manager = await spawnRole('manager', { server: { ip: '127.0.0.1', port: 0 }, store: { dataDir: path.join(outDir, 'manager') } }, { env, readyTimeoutMs: 60_000, cli });
      security = { security: { mtls: 'required', managerAddr: `http://${String(manager.ready.http)}` } };
    }
    progress(`starting scheduler, seed peer and ${N} agents${flags.mtls ? ' (mTLS required)' : ''}`);
    cluster = await startCluster({
      agents: N,
      cli,
      env,
      readyTimeoutMs: 60_000,
      scheduler: merge(
        merge(flags.candidateParentLimit ? { scheduling: { candidateParentLimit: flags.candidateParentLimit } } : {}, security),
        flags.schedulerConfig,
      ),
      agent: () => merge(merge(agentOver, security), flags.agentConfig),
      seedOverrides: merge(
        merge({ upload: { rateLimit: flags.seedUploadRate, ...concurrentLimit }, download: { rateLimit: flags.downloadRate } }, security),
        flags.agentConfig,
      ),
    });
    // The client side of the harness (this process's HTTP client, each agent's local API) is warmed
    // outside the measured time: a user's `damselfly get` meets a long-running agent.
    if (flags.client === 'api') await Promise.all(cluster.agents.map((a) => apiWarm(a)));
    if (flags.warmup) {
      // Agents, seed and scheduler are daemons: the measured download should meet them warm (code
      // compiled, piece buffers mapped), not in their first second of life. An unrelated file, so
      // nothing of the measured one is cached anywhere.
      const warmName = `warmup-${process.pid}-${Date.now()}`;
      const warmUrl = origin.add(`/bench/${warmName}.bin`, { size: 16 * MiB, seed: warmName });
      progress('warm-up: every agent downloads an unrelated 16 MiB file');
      const warm = await Promise.all(cluster.agents.map((a, i) => apiGet(a, warmUrl, path.join(outDir, `warmup-${i}.bin`), { timeoutMs: 5 * 60_000, exportTo: true })));
      const bad = warm.find((r) => r.code !== 0);
      if (bad) throw new Error(`warm-up download failed: ${bad.stderr.slice(-500)}`);
      await new Promise((r) => setTimeout(r, 1_000)); // let the warm-up task's sessions end everywhere
    }
    const uploadedBefore = new Map<RoleProcess, number>();
    for (const p of [...(cluster.seed ? [cluster.seed] : []), ...cluster.agents]) {
      uploadedBefore.set(p, await scrapeMetric(p.ready.metrics, 'dragonfly_client_upload_traffic').catch(() => 0));
    }
    progress(`cluster up; all ${N} agents start downloading (monotonic ${process.hrtime.bigint() / 1000n} µs, for matching profiles)`);
    // Nothing saved up from before t0 (the warm-up, idle time): the origin starts sending from empty.
    origin.emptyBucket();
    const roles = cluster.all();
    const cpuOf = (procs: RoleProcess[]): number => procs.reduce((a, p) => a + cpuSeconds(p.pid), 0);
    const cpuBefore = cpuOf(roles);
    const cpuSchedBefore = cpuOf([cluster.scheduler]);
    const cpuSeedBefore = cluster.seed ? cpuOf([cluster.seed]) : 0;
    const t0 = performance.now();
    const results = await Promise.all(
      cluster.agents.map(async (a, i) => {
        const file = path.join(outDir, `agent-${i}.bin`);
        const r = flags.client === 'api' ? await apiGet(a, url, file, { timeoutMs: 30 * 60_000, exportTo: true }) : await getThrough(a, url, file, [], 30 * 60_000, cli);
        const sec = (performance.now() - t0) / 1000;
        progress(`${a.name} done in ${sec.toFixed(2)} s (exit ${r.code})`);
        if (r.code !== 0) progress(`${a.name} stderr: ${r.stderr.slice(-1500)}`);
        return { sec, code: r.code, file };
      }),
    );
    const times = results.map((r) => r.sec).sort((a, b) => a - b);
    const timeAll = times[times.length - 1]!;
    // Whether the machine, not the protocol, was the limit: CPU the role processes burned during the
    // run (the `damselfly get` clients come on top) against what the cores could give.
    const rolesCpuSec = cpuOf(roles) - cpuBefore;
    const schedulerCpuSec = cpuOf([cluster.scheduler]) - cpuSchedBefore;
    const seedCpuSec = cluster.seed ? cpuOf([cluster.seed]) - cpuSeedBefore : 0;
    const load1 = loadavg()[0]!;
    const failed = results.filter((r) => r.code !== 0).length;
    progress('verifying outputs');
    const digests = await Promise.all(results.map((r) => (r.code === 0 ? fileSha256(r.file) : Promise.resolve('failed'))));
    const badDigests = digests.filter((d) => d !== want).length;
    const originPath = origin.stats().byPath[filePath];
    const originBytes = originPath?.bytes ?? 0;
    // When the origin sent its first and last byte: the swarm's start-up before, its tail after.
    const originFirstByteSec = originPath?.firstByteAt !== undefined ? (originPath.firstByteAt - t0) / 1000 : NaN;
    const originLastByteSec = originPath?.lastByteAt !== undefined ? (originPath.lastByteAt - t0) / 1000 : NaN;
    // Who uploaded the N·F bytes: the seed alone (client-server in disguise) or the agents too.
    const uploaded = async (p: RoleProcess): Promise<number> =>
      (await scrapeMetric(p.ready.metrics, 'dragonfly_client_upload_traffic').catch(() => NaN)) - (uploadedBefore.get(p) ?? 0);
    const seedUploaded = cluster.seed ? await uploaded(cluster.seed) : 0;
    const agentUploads = (await Promise.all(cluster.agents.map(uploaded))).sort((a, b) => a - b);
    await cluster.stop();
    cluster = undefined;
    rmSync(outDir, { recursive: true, force: true });

    let baseline: Record<string, unknown> | undefined;
    if (flags.baseline) {
      progress(`baseline: ${N} plain clients straight from the origin (about ${dcs.toFixed(0)} s)`);
      origin.resetStats();
      origin.emptyBucket();
      const dispatcher = new Agent({ connections: N });
      const tb = performance.now();
      const runs = await Promise.all(Array.from({ length: N }, () => plainDownload(url, flags.downloadRate, dispatcher)));
      const bTimes = runs.map((r) => r.ms / 1000).sort((a, b) => a - b);
      await dispatcher.close();
      baseline = {
        timeSec: round((performance.now() - tb) / 1000),
        p50Sec: round(percentile(bTimes, 50)),
        p99Sec: round(percentile(bTimes, 99)),
        originRatio: round((origin.stats().byPath[filePath]?.bytes ?? 0) / F),
        boundSec: round(dcs),
        digestsOk: runs.every((r) => r.digest === want && r.bytes === F),
      };
    }

    const line = {
      bench: 'swarm',
      agents: N,
      fileBytes: F,
      rates: {
        originBytesPerSec: flags.originRate,
        uploadBytesPerSec: flags.uploadRate,
        seedUploadBytesPerSec: flags.seedUploadRate,
        downloadBytesPerSec: flags.downloadRate,
      },
      timeAllSec: round(timeAll),
      p50Sec: round(percentile(times, 50)),
      p99Sec: round(percentile(times, 99)),
      firstSec: round(times[0]!),
      failed,
      digestsOk: failed === 0 && badDigests === 0,
      originBytes,
      originRatio: round(originBytes / F, 4),
      originFirstByteSec: round(originFirstByteSec),
      originLastByteSec: round(originLastByteSec),
      uploads: {
        seedFileCopies: round(seedUploaded / F, 2),
        agentsFileCopies: round(agentUploads.reduce((a, b) => a + b, 0) / F, 2),
        perAgentMinMaxFileCopies: [round(agentUploads[0]! / F, 2), round(agentUploads[agentUploads.length - 1]! / F, 2)],
      },
      tMin: {
        ...tMinReport(bounds),
        seed: 'counted as an uploader in the third term (u_total = u_origin + N·u_agent + u_seed); its own download is not timed',
      },
      ratioToTMin: round(timeAll / tMin),
      machine: {
        cores: availableParallelism(),
        rolesCpuSec: round(rolesCpuSec, 1),
        rolesCpuShareOfCores: round(rolesCpuSec / (timeAll * availableParallelism()), 2),
        // The run cannot be shorter than the CPU its roles burned spread over every core: when this
        // floor is above the target (1.3 × T_min), the machine, not the protocol, is the bound.
        cpuFloorSec: round(rolesCpuSec / availableParallelism(), 2),
        cpuFloorRatioToTMin: round(rolesCpuSec / availableParallelism() / tMin, 2),
        schedulerCpuSec: round(schedulerCpuSec, 1),
        seedCpuSec: round(seedCpuSec, 1),
        loadAverage1m: round(load1, 1),
      },
      tuning: {
        candidateParentLimit: flags.candidateParentLimit ?? 'scheduler default',
        concurrentPieceCount: flags.concurrentPieceCount ?? 'agent default',
        uploadConcurrentLimit: flags.uploadConcurrentLimit ?? 'agent default',
        agentConfig: flags.agentConfig,
        schedulerConfig: flags.schedulerConfig,
      },
      mtls: flags.mtls ? 'required (scheduler gRPC, agents gRPC and piece servers; certificates from the manager)' : 'off',
      client: flags.client === 'api' ? 'local API, agent places the file (as damselfly get asks)' : 'one damselfly get process per agent',
      warmup: flags.warmup ? 'every agent downloaded an unrelated 16 MiB file before the timer' : 'none (freshly started processes)',
      baseline,
      speedupVsBaseline: baseline ? round((baseline.timeSec as number) / timeAll, 2) : undefined,
    };
    process.stdout.write(JSON.stringify(line) + '\n');
    return line.digestsOk ? 0 : 1;
  } finally {
    await killAll(); // the cluster if it is still up, and the --mtls manager
    await origin.close();
    rmSync(outDir, { recursive: true, force: true });
    cleanupTempDirs();
  }
}

runBench('bench:swarm', main);
