/**
 * bench:proxy — what the agent's proxy costs on a cache hit.
 *
 *   npm run bench:proxy -- [--size 1GiB] [--runs 3] [--requests 400]
 *   node .build/<you>/test/bench/proxy.js ...   (DAMSELFLY_CLI overrides the CLI it runs)
 *
 * In one run, on 127.0.0.1: a plain static HTTP server (fs stream, no framework) in a node process of
 * its own, as the agent is, holding a generated blob of --size; Debian's registry with a 1 MiB layer pushed by skopeo; a scheduler and one agent
 * (real processes). Measures
 *   1. throughput of the big blob from the warm agent cache through the proxy (X-Dragonfly-Registry
 *      pointing at the static server) vs the same bytes straight from the static server (goal ≥ 0.8);
 *   2. p50/p99 latency of GETting the cached 1 MiB blob through the proxy vs straight from the
 *      registry (goal: ≤ 1 ms added at p50).
 * Every body is hashed once per run to prove the bytes are right. ONE JSON line on stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { parseSize } from '../../adapters/config.js';
import { cleanupTempDirs, killAll, proxyUrl, scrapeMetric, startCluster } from '../support/procs.js';
import { buildImage, generatedBytes, pushImage, startRegistry } from '../support/registry.js';

const MiB = 1024 * 1024;
const log = (msg: string) => process.stderr.write(`[bench:proxy] ${msg}\n`);

async function makeBlob(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  const block = generatedBytes(4 * MiB, 'bench-proxy');
  for (let off = 0; off < size; off += block.length) {
    // Vary each block so the content is not trivially repetitive.
    const chunk = Buffer.from(block.subarray(0, Math.min(block.length, size - off)));
    chunk.writeUInt32BE(off / block.length, 0);
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
  return `sha256:${hash.digest('hex')}`;
}

/** The baseline: Node's plain way to serve a file (fs stream piped into the response, 1 MiB reads). */
function serveStatic(file: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-length': String(statSync(file).size), 'content-type': 'application/octet-stream' });
    createReadStream(file, { highWaterMark: MiB }).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/**
 * Runs serveStatic() in a child process (this file with --serve-static), so the baseline has a
 * process of its own like the agent, instead of sharing the client's event loop.
 */
async function startStaticProcess(file: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve-static', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`static server exited (${code})`)));
    child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  child.removeAllListeners('exit');
  return { child, url: `http://127.0.0.1:${port}` };
}

async function timedGet(dispatcher: Agent, url: string, headers: Record<string, string>, verify?: string): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  const res = await request(url, { headers, dispatcher });
  if (res.statusCode !== 200) throw new Error(`GET ${url}: HTTP ${res.statusCode}`);
  const hash = verify ? createHash('sha256') : undefined;
  let bytes = 0;
  for await (const c of res.body) {
    bytes += (c as Buffer).length;
    hash?.update(c as Buffer);
  }
  const ms = performance.now() - t0;
  if (hash && `sha256:${hash.digest('hex')}` !== verify) throw new Error(`GET ${url}: wrong bytes`);
  return { ms, bytes };
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
const round = (n: number, d = 3) => Math.round(n * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { size: { type: 'string', default: '1GiB' }, runs: { type: 'string', default: '3' }, requests: { type: 'string', default: '400' } } });
  const size = parseSize(values.size);
  const runs = Number(values.runs);
  const requests = Number(values.requests);
  const dir = mkdtempSync(path.join(tmpdir(), 'damselfly-bench-proxy-'));
  const blobFile = path.join(dir, 'blob');
  const dispatcher = new Agent({ keepAliveTimeout: 30_000, connections: 4 });
  let staticServer: ChildProcess | undefined;
  let reg: Awaited<ReturnType<typeof startRegistry>> | undefined;
  let image: Awaited<ReturnType<typeof buildImage>> | undefined;
  try {
    log(`generating ${values.size} blob`);
    const digest = await makeBlob(blobFile, size);
    const started = await startStaticProcess(blobFile);
    staticServer = started.child;
    const staticUrl = started.url;

    log('starting registry and pushing a 1 MiB layer');
    reg = await startRegistry();
    image = await buildImage({ layers: [MiB] });
    await pushImage(image, `${reg.host}/bench/small:v1`);
    const small = image.layers[0]!;

    log('starting scheduler and agent');
    const cluster = await startCluster({ agents: 1, seed: false, agent: () => ({ proxy: { registryMirror: { addr: reg!.backendUrl } } }), readyTimeoutMs: 30_000 });
    const agent = cluster.agents[0]!;
    const proxy = proxyUrl(agent);

    // 1. Throughput from the warm cache.
    const bigPath = `/v2/bench/big/blobs/${digest}`;
    const viaProxy = { 'x-dragonfly-registry': staticUrl };
    log('warming the agent cache with the big blob');
    await timedGet(dispatcher, `${proxy}${bigPath}`, viaProxy, digest);
    const proxyMs: number[] = [];
    const staticMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      staticMs.push((await timedGet(dispatcher, `${staticUrl}${bigPath}`, {}, i === 0 ? digest : undefined)).ms);
      proxyMs.push((await timedGet(dispatcher, `${proxy}${bigPath}`, viaProxy, i === 0 ? digest : undefined)).ms);
    }
    const best = (a: number[]) => Math.min(...a);
    const mbps = (ms: number) => size / MiB / (ms / 1000);

    // 2. Latency of a cached 1 MiB blob: proxy vs registry.
    const smallPath = `/v2/bench/small/blobs/${small.digest}`;
    await timedGet(dispatcher, `${proxy}${smallPath}`, {}, small.digest);
    const lat = { proxy: [] as number[], registry: [] as number[] };
    for (let i = 0; i < 20; i++) {
      await timedGet(dispatcher, `${proxy}${smallPath}`, {});
      await timedGet(dispatcher, `${reg.backendUrl}${smallPath}`, {});
    }
    for (let i = 0; i < requests; i++) {
      lat.proxy.push((await timedGet(dispatcher, `${proxy}${smallPath}`, {}, i === 0 ? small.digest : undefined)).ms);
      lat.registry.push((await timedGet(dispatcher, `${reg.backendUrl}${smallPath}`, {}, i === 0 ? small.digest : undefined)).ms);
    }
    lat.proxy.sort((a, b) => a - b);
    lat.registry.sort((a, b) => a - b);
    const p2pRequests = await scrapeMetric(agent.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total');
    const result = {
      bench: 'proxy',
      blobBytes: size,
      runs,
      throughputMiBps: { proxyWarmCache: round(mbps(best(proxyMs)), 1), staticServer: round(mbps(best(staticMs)), 1) },
      throughputRatio: round(best(staticMs) / best(proxyMs)),
      // Every run, to show the noise (best-of-runs above): ms per blob, in order.
      runsMs: { proxyWarmCache: proxyMs.map((ms) => Math.round(ms)), staticServer: staticMs.map((ms) => Math.round(ms)) },
      throughputGoal: 0.8,
      latency1MiBms: {
        requests,
        proxy: { p50: round(pct(lat.proxy, 50)), p99: round(pct(lat.proxy, 99)) },
        registry: { p50: round(pct(lat.registry, 50)), p99: round(pct(lat.registry, 99)) },
        addedP50: round(pct(lat.proxy, 50) - pct(lat.registry, 50)),
      },
      addedP50GoalMs: 1,
      proxyP2PRequests: p2pRequests,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await killAll();
    await dispatcher.close();
    staticServer?.kill();
    await reg?.close();
    await image?.cleanup();
    rmSync(dir, { recursive: true, force: true });
    cleanupTempDirs();
  }
}

const serveArg = process.argv.indexOf('--serve-static');
if (serveArg >= 0) {
  // The baseline's own process: serve the file, print the port, run until killed.
  void serveStatic(process.argv[serveArg + 1]!).then((server) => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
} else main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:proxy failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
