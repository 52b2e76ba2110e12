/**
 * bench:model — an AI model repository (one large safetensors-like file plus small ones, ≥ 1 GiB in
 * all) from the local hub origin (test/support/hub.ts; its CDN rate-limited), to N agents at once
 * with `damselfly get --recursive hf://…`, against N plain clients reading the same files straight
 * from the same hub in the same run.
 *
 *   npm run bench:model -- --agents 8 --size 1GiB --origin-rate 40MiB --upload-rate 40MiB --download-rate 80MiB
 *
 * Real processes on 127.0.0.1: a scheduler, a seed peer and N agents (test/support/procs.ts), each
 * `get` a process of its own. Every output file is checked by sha256. ONE JSON line goes to stdout:
 * all-done time ÷ T_min and origin bytes ÷ repository size, and the same for the baseline.
 *
 *   T_min = max( F / u_origin,  F / d_min,  N·F / (u_origin + Σ u_agents + u_seed) )   (F = repository bytes)
 * as in bench:swarm (Kumar & Ross). Baseline bound D_cs = max( N·F / u_origin, F / d_min ).
 * Goals (issue #18): originRatio ≤ 1.01, ratioToTMin ≤ 1.3.
 */
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { benchFlags, cpuSeconds, flag, FlagError, lowerBounds, round, runBench, tMinReport } from './harness.js';
import { sourceGet } from '../../adapters/source/client.js';
import { cliPath } from '../support/cli.js';
import { startHub } from '../support/hub.js';
import { generatedSha256, MiB, TokenBucket, type Content } from '../support/origin.js';
import { cleanupTempDirs, killAll, runCli, startCluster, type Cluster } from '../support/procs.js';

const USAGE = `usage: bench:model [--agents 8] [--size 1GiB] [--origin-rate 40MiB] [--upload-rate 40MiB]
                   [--download-rate 80MiB] [--concurrency 5] [--no-baseline]`;

const progress = (msg: string): void => void process.stderr.write(`bench:model ${new Date().toISOString()} ${msg}\n`);

function parseFlags(argv: string[]) {
  const S = { type: 'string' } as const;
  const v = benchFlags(argv, USAGE, { agents: S, size: S, 'origin-rate': S, 'upload-rate': S, 'download-rate': S, concurrency: S, 'no-baseline': { type: 'boolean' } });
  const size = flag.size(v.size, 'size', 1024 * MiB);
  if (size < 16 * MiB) throw new FlagError(`--size: expected at least 16MiB, got ${v.size}`);
  return {
    agents: flag.number(v.agents, 'agents', 8, 1, true),
    size,
    originRate: flag.size(v['origin-rate'], 'origin-rate', 40 * MiB),
    uploadRate: flag.size(v['upload-rate'], 'upload-rate', 40 * MiB),
    downloadRate: flag.size(v['download-rate'], 'download-rate', 80 * MiB),
    concurrency: flag.number(v.concurrency, 'concurrency', 5, 1, true),
    baseline: !v['no-baseline'],
  };
}

async function fileSha(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file, { highWaterMark: 4 * MiB })) h.update(c as Buffer);
  return 'sha256:' + h.digest('hex');
}

function shaOf(c: Content): string {
  return Buffer.isBuffer(c) ? 'sha256:' + createHash('sha256').update(c).digest('hex') : generatedSha256(c);
}

/** A model repository of `total` bytes: small files as a real one has them, the rest one large file. */
function modelFiles(total: number, seed: string): Record<string, Content> {
  const small: Record<string, Content> = {
    'config.json': Buffer.from(JSON.stringify({ architectures: ['BenchForCausalLM'], hidden_size: 4096, seed })),
    'generation_config.json': Buffer.from(JSON.stringify({ do_sample: true, temperature: 0.7 })),
    'tokenizer_config.json': Buffer.from(JSON.stringify({ model_max_length: 4096 })),
    'special_tokens_map.json': Buffer.from('{"bos_token":"<s>","eos_token":"</s>"}'),
    'README.md': Buffer.from(`# bench model ${seed}\n`),
    // tokenizer.json and a second shard are LFS files too (> 1 MiB), from the CDN like the weights.
    'tokenizer.json': { size: 3 * MiB + 123, seed: `${seed}-tok` },
    'model-00002-of-00002.safetensors': { size: 48 * MiB + 7, seed: `${seed}-shard2` },
  };
  const used = Object.values(small).reduce((n, c) => n + (Buffer.isBuffer(c) ? c.length : c.size), 0);
  return { ...small, 'model-00001-of-00002.safetensors': { size: total - used, seed: `${seed}-shard1` } };
}

async function main(): Promise<number> {
  const flags = parseFlags(process.argv.slice(2));
  const cli = cliPath();
  const N = flags.agents;
  const F = flags.size;
  const bounds = lowerBounds(F, N, flags);
  const { tMin, dcs } = bounds;

  const hub = await startHub({ cdn: { rate: flags.originRate, burst: flags.originRate / 10, startEmpty: true } });
  const seed = `model-${process.pid}-${Date.now()}`;
  const files = modelFiles(F, seed);
  const repo = `bench/${seed}`;
  const commit = hub.commit('models', repo, files);
  progress(`repository ${repo}@${commit.slice(0, 12)}: ${Object.keys(files).length} files, ${F} bytes; computing sha256s`);
  const want = Object.fromEntries(Object.entries(files).map(([p, c]) => [p, shaOf(c)]));
  const outDir = mkdtempSync(path.join(tmpdir(), 'damselfly-bench-model-'));
  const env = { HF_ENDPOINT: hub.base };
  let cluster: Cluster | undefined;
  try {
    progress(`starting scheduler, seed peer and ${N} agents`);
    const limits = { upload: { rateLimit: flags.uploadRate }, download: { rateLimit: flags.downloadRate } };
    cluster = await startCluster({ agents: N, cli, env, readyTimeoutMs: 60_000, agent: () => limits, seedOverrides: limits });
    const roles = cluster.all();
    const cpuBefore = roles.reduce((a, p) => a + cpuSeconds(p.pid), 0);
    const before = hub.stats();
    hub.cdn.emptyBucket();
    progress(`all ${N} agents start get --recursive hf://${repo}`);
    const t0 = performance.now();
    const runs = await Promise.all(
      cluster.agents.map(async (a, i) => {
        const out = path.join(outDir, `agent-${i}`);
        const r = await runCli(['get', '--recursive', `hf://${repo}`, '-O', out, '--endpoint', String(a.ready.socket), '--no-progress', '--concurrency', String(flags.concurrency)], { timeoutMs: 60 * 60_000, env: { ...env, DAMSELFLY_GET_SUMMARY_JSON: '1' }, cli });
        const sec = (performance.now() - t0) / 1000;
        progress(`${a.name} done in ${sec.toFixed(2)} s (exit ${r.code})${r.code === 0 ? '' : ': ' + r.stderr.slice(-800)}`);
        let summary: Record<string, number> | undefined;
        try {
          summary = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as Record<string, number>;
        } catch {
          /* failed runs print none */
        }
        return { sec, code: r.code, out, summary };
      }),
    );
    const timeAll = Math.max(...runs.map((r) => r.sec));
    const rolesCpuSec = roles.reduce((a, p) => a + cpuSeconds(p.pid), 0) - cpuBefore;
    const after = hub.stats();
    const originBytes = after.cdnBytes - before.cdnBytes + (after.hubBytes - before.hubBytes);
    progress('verifying every file of every agent');
    let bad = 0;
    for (const r of runs) for (const [p, d] of Object.entries(want)) if (r.code !== 0 || (await fileSha(path.join(r.out, p)).catch(() => 'missing')) !== d) bad++;
    const fromPeers = runs.reduce((n, r) => n + (r.summary?.fromPeers ?? 0), 0);
    await cluster.stop();
    cluster = undefined;
    rmSync(outDir, { recursive: true, force: true });

    let baseline: Record<string, unknown> | undefined;
    if (flags.baseline) {
      progress(`baseline: ${N} plain clients read every file straight from the hub (about ${dcs.toFixed(0)} s)`);
      const b0 = hub.stats();
      hub.cdn.emptyBucket();
      const tb = performance.now();
      const ok = await Promise.all(
        Array.from({ length: N }, async () => {
          const bucket = new TokenBucket(flags.downloadRate, 64 * 1024);
          let good = true;
          for (const [p, d] of Object.entries(want)) {
            const res = await sourceGet(`${hub.base}/${repo}/resolve/main/${p}`);
            const h = createHash('sha256');
            for await (const c of res.body) {
              await bucket.take((c as Buffer).length);
              h.update(c as Buffer);
            }
            good &&= 'sha256:' + h.digest('hex') === d;
          }
          return good;
        }),
      );
      const b1 = hub.stats();
      const timeSec = (performance.now() - tb) / 1000;
      baseline = {
        timeSec: round(timeSec),
        ratioToTMin: round(timeSec / tMin),
        originRatio: round((b1.cdnBytes - b0.cdnBytes + b1.hubBytes - b0.hubBytes) / F, 4),
        boundSec: round(dcs),
        digestsOk: ok.every(Boolean),
      };
    }
    const line = {
      bench: 'model',
      agents: N,
      repoBytes: F,
      files: Object.keys(files).length,
      rates: { originBytesPerSec: flags.originRate, uploadBytesPerSec: flags.uploadRate, downloadBytesPerSec: flags.downloadRate },
      client: `damselfly get --recursive hf://… --concurrency ${flags.concurrency}, one process per agent`,
      timeAllSec: round(timeAll),
      failed: runs.filter((r) => r.code !== 0).length,
      digestsOk: bad === 0,
      originBytes,
      originRatio: round(originBytes / F, 4),
      bytesFromPeersPerAgent: round(fromPeers / N / F, 3),
      tMin: tMinReport(bounds),
      ratioToTMin: round(timeAll / tMin),
      goals: { originRatio: 1.01, ratioToTMin: 1.3 },
      met: { originRatio: originBytes / F <= 1.01, ratioToTMin: timeAll / tMin <= 1.3 },
      machine: { cores: availableParallelism(), rolesCpuSec: round(rolesCpuSec, 1), cpuFloorRatioToTMin: round(rolesCpuSec / availableParallelism() / tMin, 2), loadAverage1m: round(loadavg()[0]!, 1) },
      baseline,
      speedupVsBaseline: baseline ? round((baseline.timeSec as number) / timeAll, 2) : undefined,
    };
    process.stdout.write(JSON.stringify(line) + '\n');
    return line.digestsOk ? 0 : 1;
  } finally {
    if (cluster) await killAll();
    await hub.close();
    rmSync(outDir, { recursive: true, force: true });
    cleanupTempDirs();
  }
}

runBench('bench:model', main);
