/**
 * bench:swarm --netns: the swarm benchmark with every role in its own network namespace
 * (test/netns/bed.ts) and the limits enforced by the kernel's `tc` on each host's link instead of
 * the agents' own limiters.
 *
 *   npm run bench:swarm -- --netns --agents 16 --size 128MiB --origin-rate 20MiB --upload-rate 20MiB --download-rate 40MiB [--delay 5]
 *   npm run bench:swarm -- --netns --scenario registry [--pulls 3] [--size 64MiB] [--registry-rate 50MiB]
 *
 * Swarm: the origin (a server of this process) sits on 10.81.0.0/24, reached through a relay in its
 * host, whose eth0 egress is capped at --origin-rate; scheduler, seed peer and N agents are hosts on
 * 10.81.1.0/24, each eth0 capped at --upload-rate (seed: --seed-upload-rate) and each host's receive
 * side at --download-rate; --delay adds a one-way delay on every host's eth0 (netem; refused where the
 * kernel has none). Agents run with no rate limits of their own. Baseline in the same run: the N agent
 * hosts download straight from the origin over the same shaped links. T_min and D_cs as in swarm.ts.
 *
 * Registry scenario: a docker-registry behind a relay whose host's egress is capped at
 * --registry-rate; --pulls hosts each run an agent and a real containerd. The image is pulled by all
 * containerds at once through their agents (with a scheduler and no seed peer: the first agent goes
 * back to source, the others take pieces from it), then, after wiping the content stores, directly
 * from the registry. Reports both times and their ratio.
 *
 * Progress on stderr; one JSON line on stdout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchFlags, flag, lowerBounds, percentile, round, tMinReport } from './harness.js';
import { fileSha256, MiB } from '../support/origin.js';
import { apiGet, apiWarm, cleanupTempDirs, killAll, makeTempDir, portOf, runCli, schedulerConfigFor, spawnRole, type RoleProcess } from '../support/procs.js';
import { buildImage, pushImage, startRegistry } from '../support/registry.js';
import { Bed, netnsAvailable, type NetHost } from '../netns/bed.js';
import { startContainerd, type Containerd } from '../netns/containerd.js';

interface Flags {
  scenario: 'swarm' | 'registry';
  agents: number;
  size: number;
  originRate: number;
  uploadRate: number;
  downloadRate: number;
  seedUploadRate: number;
  delayMs: number;
  baseline: boolean;
  warmup: boolean;
  pulls: number;
  registryRate: number;
  /** Also give every agent its link's rates as its own limits (what it announces to the scheduler). */
  agentLimits: boolean;
}

const USAGE = `usage: bench:swarm --netns [--scenario swarm|registry] [--agents 16] [--size 128MiB] [--origin-rate 20MiB]
                   [--upload-rate 20MiB] [--download-rate 40MiB] [--seed-upload-rate <upload-rate>] [--delay MS]
                   [--no-baseline] [--no-warmup] [--agent-limits] [--pulls 3] [--registry-rate 50MiB]
Every role in its own network namespace, links shaped by tc. Needs root, iproute2, tc (htb; netem for --delay);
the registry scenario also docker-registry, umoci, skopeo, containerd. --agent-limits also sets each agent's
upload/download rateLimit to its link's rates (they are then announced to the scheduler). Prints one JSON line on stdout.`;

function parseFlags(argv: string[]): Flags {
  const S = { type: 'string' } as const;
  const B = { type: 'boolean' } as const;
  const v = benchFlags(argv, USAGE, {
    netns: B, scenario: S, agents: S, size: S, 'origin-rate': S, 'upload-rate': S, 'download-rate': S, 'seed-upload-rate': S,
    delay: S, 'no-baseline': B, 'agent-limits': B, 'no-warmup': B, pulls: S, 'registry-rate': S,
  });
  const scenario = flag.oneOf(v.scenario, 'scenario', ['swarm', 'registry'] as const, 'swarm');
  const uploadRate = flag.size(v['upload-rate'], 'upload-rate', 20 * MiB);
  return {
    scenario,
    agents: flag.number(v.agents, 'agents', 16, 1, true),
    size: flag.size(v.size, 'size', scenario === 'swarm' ? 128 * MiB : 64 * MiB),
    originRate: flag.size(v['origin-rate'], 'origin-rate', 20 * MiB),
    uploadRate,
    downloadRate: flag.size(v['download-rate'], 'download-rate', 40 * MiB),
    seedUploadRate: flag.size(v['seed-upload-rate'], 'seed-upload-rate', uploadRate),
    delayMs: flag.number(v.delay, 'delay', 0, 0),
    baseline: !v['no-baseline'],
    warmup: !v['no-warmup'],
    pulls: flag.number(v.pulls, 'pulls', 3, 1, true),
    registryRate: flag.size(v['registry-rate'], 'registry-rate', 50 * MiB),
    agentLimits: !!v['agent-limits'],
  };
}

const progress = (msg: string): void => void process.stderr.write(`bench:swarm --netns ${new Date().toISOString()} ${msg}\n`);
/** A metric of a role in a namespace (its metrics port is only reachable from inside). */
async function metricIn(host: NetHost, role: RoleProcess, name: string): Promise<number> {
  const port = portOf(role.ready.metrics);
  const r = await host.run(process.execPath, ['-e', `fetch('http://127.0.0.1:${port}/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))`]);
  let sum = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}

// A plain client inside a host: GET url, sha256 the body; prints {bytes, digest, ms}.
const PLAIN_GET = String.raw`
const { createHash } = require('crypto');
const t0 = performance.now();
fetch(process.argv[1]).then(async (res) => {
  if (res.status !== 200) throw new Error('HTTP ' + res.status);
  const h = createHash('sha256'); let bytes = 0;
  for await (const c of res.body) { h.update(c); bytes += c.length; }
  process.stdout.write(JSON.stringify({ bytes, digest: 'sha256:' + h.digest('hex'), ms: performance.now() - t0 }) + '\n');
}).catch((e) => { process.stderr.write(String(e)); process.exit(1); });
`;

function agentConfig(name: string, dir: string, scheduler: string, seed: boolean, limits?: { up: number; down: number }): Record<string, unknown> {
  const any = { ip: '0.0.0.0', port: 0 };
  const cfg: Record<string, unknown> = {
    host: { hostname: name },
    seedPeer: { enable: seed },
    storage: { dir: path.join(dir, 'storage'), keep: false },
    scheduler: { addrs: [scheduler], announceInterval: '5s' },
    upload: { server: any, pieceServer: any },
    download: { server: { socket: path.join(dir, 'agent.sock') } },
    proxy: { server: { ip: '127.0.0.1', port: 0 } },
    metrics: { server: any },
  };
  if (limits) {
    (cfg.upload as Record<string, unknown>).rateLimit = limits.up;
    (cfg.download as Record<string, unknown>) = { ...(cfg.download as object), rateLimit: limits.down };
  }
  return cfg;
}

async function startRoles(bed: Bed, cli: string, agents: number, seed: boolean, limits?: { up: number; seedUp: number; down: number }): Promise<{ sched: RoleProcess; seedHost?: NetHost; seed?: RoleProcess; hosts: NetHost[]; procs: RoleProcess[] }> {
  const schedHost = await bed.addHost('scheduler', 'cluster');
  const sched = await spawnRole('scheduler', schedulerConfigFor({ server: { ip: '0.0.0.0', port: 0 }, metrics: { enable: false } }), { cli, exec: schedHost.execPrefix });
  const addr = String(sched.ready.grpc);
  const start = async (name: string, isSeed: boolean) => {
    const host = await bed.addHost(name, 'cluster');
    const dir = makeTempDir(`dfly-bench-${name}-`);
    const lim = limits ? { up: isSeed ? limits.seedUp : limits.up, down: limits.down } : undefined;
    const proc = await spawnRole('agent', agentConfig(name, dir, addr, isSeed, lim), { cli, dir, name, exec: host.execPrefix, readyTimeoutMs: 60_000 });
    return { host, proc };
  };
  const s = seed ? await start('seed', true) : undefined;
  const list = await Promise.all(Array.from({ length: agents }, (_, i) => start(`agent-${i}`, false)));
  return { sched, seedHost: s?.host, seed: s?.proc, hosts: list.map((x) => x.host), procs: list.map((x) => x.proc) };
}

// The origin as a process inside its own host, so its bytes leave by that host's shaped link with no
// relay on the way (a relay through this process fell below 20 MiB/s on a loaded machine). It speaks
// one JSON line per command on stdin/stdout: {"add":[path,size,seed]} -> {"url","sha256"},
// {"stats":path} -> {"bytes"}, {"reset":true} -> {}.
const ORIGIN_PROC = (originJs: string) => `
import { startOrigin } from ${JSON.stringify(originJs)};
import readline from 'node:readline';
const o = await startOrigin({ host: '0.0.0.0' });
process.stdout.write(JSON.stringify({ ready: true, port: o.port }) + '\\n');
for await (const line of readline.createInterface({ input: process.stdin })) {
  const c = JSON.parse(line);
  let out = {};
  if (c.add) { o.add(c.add[0], { size: c.add[1], seed: c.add[2] }); out = { sha256: o.sha256(c.add[0]) }; }
  else if (c.stats) out = { bytes: o.stats().byPath[c.stats]?.bytes ?? 0 };
  else if (c.reset) o.resetStats();
  process.stdout.write(JSON.stringify(out) + '\\n');
}
`;

interface NsOrigin {
  addr: string;
  add(path: string, size: number, seed: string): Promise<string>;
  bytes(path: string): Promise<number>;
  reset(): Promise<void>;
}

async function startNsOrigin(host: NetHost): Promise<NsOrigin> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const originJs = path.resolve(here, '..', 'support', 'origin.js');
  const child = host.spawn(process.execPath, ['--input-type=module', '-e', ORIGIN_PROC(originJs)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting: Array<(v: Record<string, unknown>) => void> = [];
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      waiting.shift()?.(JSON.parse(line) as Record<string, unknown>);
    }
  });
  const next = () => new Promise<Record<string, unknown>>((resolve) => waiting.push(resolve));
  const ready = await Promise.race([next(), new Promise<never>((_, reject) => child.once('exit', (c) => reject(new Error(`origin in ${host.name} exited ${c}`))))]);
  const call = (cmd: unknown) => {
    const p = next();
    child.stdin!.write(JSON.stringify(cmd) + '\n');
    return p;
  };
  return {
    addr: `${host.ip}:${Number(ready.port)}`,
    add: async (p, size, seed) => String((await call({ add: [p, size, seed] })).sha256),
    bytes: async (p) => Number((await call({ stats: p })).bytes),
    reset: async () => void (await call({ reset: true })),
  };
}

async function swarm(flags: Flags, cli: string, bed: Bed): Promise<Record<string, unknown>> {
  const F = flags.size;
  const N = flags.agents;
  const bounds = lowerBounds(F, N, flags);
  const { tMin, dcs } = bounds;

  await bed.network('origin', 0);
  await bed.network('cluster', 1);
  // The origin itself is unlimited: its host's link is the limit.
  const originHost = await bed.addHost('origin', 'origin');
  const origin = await startNsOrigin(originHost);
  {
    const originAddr = origin.addr;
    const name = `bench-${bed.id}`;
    const filePath = `/bench/${name}.bin`;
    progress(`computing sha256 of ${F} generated bytes`);
    const want = await origin.add(filePath, F, name);
    const url = `http://${originAddr}${filePath}`;
    progress(`starting scheduler, seed peer and ${N} agents, each in its own namespace`);
    const roles = await startRoles(bed, cli, N, true, flags.agentLimits ? { up: flags.uploadRate, seedUp: flags.seedUploadRate, down: flags.downloadRate } : undefined);
    const delay = flags.delayMs ? { delayMs: flags.delayMs } : {};
    await bed.shape(originHost, { up: { rate: flags.originRate, ...delay } });
    await bed.shape(roles.seedHost!, { up: { rate: flags.seedUploadRate, ...delay }, down: { rate: flags.downloadRate } });
    for (const h of roles.hosts) await bed.shape(h, { up: { rate: flags.uploadRate, ...delay }, down: { rate: flags.downloadRate } });
    const outDir = mkdtempSync(path.join(tmpdir(), 'dfly-bench-out-'));
    try {
      await Promise.all(roles.procs.map((a) => apiWarm(a)));
      if (flags.warmup) {
        const warmPath = `/bench/warm-${name}.bin`;
        await origin.add(warmPath, 16 * MiB, `warm-${name}`);
        progress('warm-up: every agent downloads an unrelated 16 MiB file');
        const warm = await Promise.all(roles.procs.map((a, i) => apiGet(a, `http://${originAddr}${warmPath}`, path.join(outDir, `warm-${i}.bin`), { timeoutMs: 5 * 60_000, exportTo: true })));
        const bad = warm.find((r) => r.code !== 0);
        if (bad) throw new Error(`warm-up download failed: ${bad.stderr.slice(-500)}`);
        await new Promise((r) => setTimeout(r, 1_000));
      }
      const uploaders = [{ host: roles.seedHost!, proc: roles.seed! }, ...roles.hosts.map((host, i) => ({ host, proc: roles.procs[i]! }))];
      const upBefore = await Promise.all(uploaders.map((u) => metricIn(u.host, u.proc, 'dragonfly_client_upload_traffic')));
      await origin.reset();
      progress(`all ${N} agents start downloading`);
      const t0 = performance.now();
      const results = await Promise.all(
        roles.procs.map(async (a, i) => {
          const file = path.join(outDir, `agent-${i}.bin`);
          const r = await apiGet(a, url, file, { timeoutMs: 30 * 60_000, exportTo: true });
          const sec = (performance.now() - t0) / 1000;
          progress(`${a.name} done in ${sec.toFixed(2)} s (exit ${r.code})`);
          if (r.code !== 0) progress(`${a.name}: ${r.stderr.slice(-800)}`);
          return { sec, code: r.code, file };
        }),
      );
      const times = results.map((r) => r.sec).sort((a, b) => a - b);
      const timeAll = times[times.length - 1]!;
      const load1 = loadavg()[0]!;
      const digests = await Promise.all(results.map((r) => (r.code === 0 ? fileSha256(r.file) : Promise.resolve('failed'))));
      const failed = results.filter((r) => r.code !== 0).length;
      const originBytes = await origin.bytes(filePath);
      const upAfter = await Promise.all(uploaders.map((u) => metricIn(u.host, u.proc, 'dragonfly_client_upload_traffic')));
      const ups = upAfter.map((v, i) => v - upBefore[i]!);
      for (const p of [roles.seed!, ...roles.procs]) await p.stop();
      await roles.sched.stop();

      let baseline: Record<string, unknown> | undefined;
      if (flags.baseline) {
        progress(`baseline: ${N} plain clients in the agent hosts, straight from the origin (about ${dcs.toFixed(0)} s)`);
        await origin.reset();
        const tb = performance.now();
        const runs = await Promise.all(
          roles.hosts.map(async (h) => {
            const r = await h.run(process.execPath, ['-e', PLAIN_GET, url], { timeoutMs: 60 * 60_000 });
            if (r.code !== 0) throw new Error(`baseline client in ${h.name}: ${r.stderr}`);
            return JSON.parse(r.stdout) as { bytes: number; digest: string; ms: number };
          }),
        );
        const bTimes = runs.map((r) => r.ms / 1000).sort((a, b) => a - b);
        baseline = {
          timeSec: round((performance.now() - tb) / 1000),
          p50Sec: round(percentile(bTimes, 50)),
          originRatio: round((await origin.bytes(filePath)) / F),
          boundSec: round(dcs),
          digestsOk: runs.every((r) => r.digest === want && r.bytes === F),
        };
      }
      return {
        bench: 'swarm',
        mode: 'netns',
        agents: N,
        fileBytes: F,
        shaping: {
          by: `tc htb on each host veth (eth0 egress = upload, router side = download); ${flags.agentLimits ? "agents' own limits set to the same rates" : 'agents run without their own limits'}`,
          originBytesPerSec: flags.originRate,
          uploadBytesPerSec: flags.uploadRate,
          seedUploadBytesPerSec: flags.seedUploadRate,
          downloadBytesPerSec: flags.downloadRate,
          oneWayDelayMs: flags.delayMs,
        },
        timeAllSec: round(timeAll),
        p50Sec: round(percentile(times, 50)),
        firstSec: round(times[0]!),
        failed,
        digestsOk: failed === 0 && digests.every((d) => d === want),
        originRatio: round(originBytes / F, 4),
        uploads: { seedFileCopies: round(ups[0]! / F, 2), agentsFileCopies: round(ups.slice(1).reduce((a, b) => a + b, 0) / F, 2) },
        tMin: tMinReport(bounds),
        ratioToTMin: round(timeAll / tMin),
        machine: { cores: availableParallelism(), loadAverage1m: round(load1, 1) },
        baseline,
        speedupVsBaseline: baseline ? round((baseline.timeSec as number) / timeAll, 2) : undefined,
      };
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  }
}

async function registryScenario(flags: Flags, cli: string, bed: Bed): Promise<Record<string, unknown>> {
  await bed.network('central', 0);
  await bed.network('cluster', 1);
  const reg = await startRegistry();
  // Three layers of the requested total: containerd fetches layers in parallel, as in real images.
  const third = Math.floor(flags.size / 3);
  const img = await buildImage({ layers: [third, third, flags.size - 2 * third], seed: `registry-${bed.id}` });
  // Pulled both ways before the timed pulls, so neither path pays first-use costs (code warm-up,
  // containerd's first pull) that the other does not.
  const warm = await buildImage({ layers: [1 << 20], seed: `registry-warm-${bed.id}` });
  const warm2 = await buildImage({ layers: [1 << 20], seed: `registry-warm2-${bed.id}` });
  const containerds: Containerd[] = [];
  try {
    await pushImage(img, `${reg.host}/bench/app:v1`);
    await pushImage(warm, `${reg.host}/bench/warm:v1`);
    await pushImage(warm2, `${reg.host}/bench/warm:v2`);
    const regHost = await bed.addHost('registry', 'central');
    const regAddr = await bed.expose(regHost, portOf(reg.host), 5000);
    await bed.shape(regHost, { up: { rate: flags.registryRate } });
    const ref = `${regAddr}/bench/app:v1`;
    progress(`starting a scheduler and ${flags.pulls} hosts, each with an agent and a containerd`);
    const roles = await startRoles(bed, cli, flags.pulls, false);
    const hostsDirs: string[] = [];
    const directDirs: string[] = [];
    for (const [i, h] of roles.hosts.entries()) {
      const dir = makeTempDir(`dfly-bench-ctrd-${i}-`);
      containerds.push(await startContainerd(h, path.join(dir, 'ctrd')));
      hostsDirs.push(path.join(dir, 'hosts'));
      const gen = await runCli(['config', 'containerd', '--mirror', `http://127.0.0.1:${portOf(roles.procs[i]!.ready.proxy)}`, '--registry', `http://${regAddr}`, '--write', hostsDirs[i]!], { cli });
      if (gen.code !== 0) throw new Error(`damselfly config containerd: ${gen.stderr}`);
      // Direct: a hosts.toml naming only the registry itself (plain HTTP).
      directDirs.push(path.join(dir, 'direct'));
      const { mkdir, writeFile } = await import('node:fs/promises');
      await mkdir(path.join(directDirs[i]!, regAddr), { recursive: true });
      await writeFile(path.join(directDirs[i]!, regAddr, 'hosts.toml'), `server = "http://${regAddr}"\n[host."http://${regAddr}"]\n  capabilities = ["pull", "resolve"]\n`);
    }
    const pullAll = async (dirs: string[]): Promise<number> => {
      const t0 = performance.now();
      await Promise.all(containerds.map((c, i) => c.pull(ref, dirs[i]!, 30 * 60_000)));
      const sec = (performance.now() - t0) / 1000;
      for (const c of containerds) {
        const content = await c.content();
        for (const d of img.blobs) if (!content.includes(d)) throw new Error(`a containerd lacks ${d} after the pull`);
      }
      return sec;
    };
    const wipe = async () => {
      for (const [i, c] of containerds.entries()) {
        await roles.hosts[i]!.run('ctr', ['-a', c.sock, '-n', 'dfly', 'images', 'rm', '--sync', ref]);
        const left = (await c.content()).filter(Boolean);
        if (left.length) await roles.hosts[i]!.run('ctr', ['-a', c.sock, '-n', 'dfly', 'content', 'rm', ...left]);
      }
    };
    const warmRef = `${regAddr}/bench/warm:v1`;
    progress('warm-up: every containerd pulls a 1 MiB image through its agent and directly');
    await Promise.all(containerds.map((c, i) => c.pull(warmRef, hostsDirs[i]!)));
    await Promise.all(containerds.map((c, i) => c.pull(warmRef.replace(':v1', ':v2'), directDirs[i]!)));
    reg.resetCounters();
    progress(`${flags.pulls} containerd pulls through their agents (registry egress ${flags.registryRate} B/s)`);
    const viaSec = await pullAll(hostsDirs);
    const viaGets = reg.totalBlobGets();
    await wipe();
    reg.resetCounters();
    progress(`${flags.pulls} containerd pulls straight from the registry`);
    const directSec = await pullAll(directDirs);
    const directGets = reg.totalBlobGets();
    return {
      bench: 'swarm',
      mode: 'netns',
      scenario: 'registry-limited',
      pulls: flags.pulls,
      imageLayerBytes: img.layers.reduce((a, l) => a + l.size, 0),
      registryEgressBytesPerSec: flags.registryRate,
      throughAgents: { sec: round(viaSec), registryBlobGets: viaGets },
      direct: { sec: round(directSec), registryBlobGets: directGets },
      ratioDirectToAgents: round(directSec / viaSec, 2),
      blobs: img.blobs.length,
      machine: { cores: availableParallelism(), loadAverage1m: round(loadavg()[0]!, 1) },
    };
  } finally {
    for (const c of containerds) await c.stop();
    await reg.close();
    await img.cleanup();
    await warm.cleanup();
    await warm2.cleanup();
  }
}

/** Entry point for `bench:swarm --netns ...`; resolves with the exit code. */
export async function netnsMain(argv: string[]): Promise<number> {
  const flags = parseFlags(argv);
  const avail = await netnsAvailable();
  if (!avail.ok) throw new Error(`--netns needs network namespaces: ${avail.reason}`);
  const here = path.dirname(fileURLToPath(import.meta.url));
  const cli = process.env.DAMSELFLY_CLI ?? path.resolve(here, '..', '..', 'control', 'cli.js');
  const bed = await Bed.create();
  try {
    const line = flags.scenario === 'swarm' ? await swarm(flags, cli, bed) : await registryScenario(flags, cli, bed);
    process.stdout.write(JSON.stringify(line) + '\n');
    return line.digestsOk === false ? 1 : 0;
  } finally {
    await killAll();
    await bed.destroy();
    cleanupTempDirs();
  }
}
