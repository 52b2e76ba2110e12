/**
 * End to end with real components: Debian's registry (behind a counting front) holding an
 * umoci-built 3-layer image pushed by skopeo; a scheduler, a seed peer and 3 agents (compiled CLI);
 * pulls through each agent's proxy with `skopeo --registries-conf` (file from `damselfly config
 * podman`) and with a real containerd 1.6 daemon + `ctr images pull --hosts-dir` (hosts.toml from
 * `damselfly config containerd`). Every pulled digest must match the pushed one and each blob must
 * be fetched from the registry exactly once across all agents and clients. Then nydusd's range
 * pattern on a fresh agent, and a Range GET with X-Dragonfly-Prefetch paced by proxy.prefetchRateLimit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { cleanupTempDirs, killAll, makeTempDir, proxyUrl, runCli, scrapeMetric, startCluster, waitFor, type Cluster } from '../support/procs.js';
import { buildImage, onPath, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
import { multipartByteranges } from '../support/multipart.js';
import { requireOrSkip } from '../support/require.js';
import { cliBuilt } from '../support/cli.js';

const execFileP = promisify(execFile);
const tools = registryToolsAvailable();
const cliOk = cliBuilt();
const isRoot = process.getuid?.() === 0;
const haveContainerd = onPath('containerd') && onPath('ctr') && isRoot;

async function sha256File(file: string): Promise<string> {
  return `sha256:${createHash('sha256').update(await readFile(file)).digest('hex')}`;
}

describe.skipIf(
  !requireOrSkip(tools.ok, 'docker-registry/umoci/skopeo', `missing: ${tools.missing.join(', ')}`) ||
    !requireOrSkip(cliOk, 'compiled damselfly CLI', 'run npm run build or set DAMSELFLY_CLI'),
)('mirror end to end: registry, scheduler, seed peer, 3 agents, skopeo and containerd', () => {
  let reg: RunningRegistry;
  let tokenReg: RunningRegistry;
  let basicReg: RunningRegistry;
  let image: BuiltImage;
  let cluster: Cluster;
  let work: string;
  const proxies: string[] = [];

  beforeAll(async () => {
    work = makeTempDir('damselfly-mirror-e2e-');
    [reg, image] = await Promise.all([startRegistry(), buildImage({ layers: [1 << 20, 5 << 20, 9 << 20] })]);
    const pushed = await pushImage(image, `${reg.host}/test/app:v1`);
    expect(pushed).toBe(image.manifestDigest);
    // Auth paths for real: a Bearer token-auth registry, and an htpasswd one whose blob GETs 307 to
    // a signed storage URL (the agent must follow it without carrying the credentials along).
    [tokenReg, basicReg] = await Promise.all([startRegistry({ auth: 'token', anonymousPull: false }), startRegistry({ auth: 'htpasswd', redirectBlobs: true })]);
    await pushImage(image, `${tokenReg.host}/test/app:v1`, { creds: tokenReg.creds });
    await pushImage(image, `${basicReg.host}/test/app:v1`, { creds: basicReg.creds });
    for (const r of [reg, tokenReg, basicReg]) r.resetCounters();
    cluster = await startCluster({
      agents: 3,
      // containers/image sends no upstream hint to a mirror: the agents' default upstream is the registry.
      agent: () => ({ proxy: { registryMirror: { addr: reg.url } } }),
      seedOverrides: { proxy: { registryMirror: { addr: reg.url } } },
      readyTimeoutMs: 30_000,
    });
    for (const a of cluster.agents) proxies.push(proxyUrl(a));
    expect(proxies.every((p) => /:\d+$/.test(p) && !p.endsWith(':0') && !p.endsWith(':NaN'))).toBe(true);
  }, 180_000);

  afterAll(async () => {
    await killAll();
    await Promise.all([reg, tokenReg, basicReg].filter(Boolean).map((r) => r.close()));
    await image?.cleanup();
    cleanupTempDirs();
  });

  it('skopeo pulls through each agent (registries.conf from `damselfly config podman`); digests match; blobs fetched from the registry once', async () => {
    for (const [i, proxy] of proxies.entries()) {
      const dir = path.join(work, `skopeo-${i}`);
      const gen = await runCli(['config', 'podman', '--mirror', proxy, '--registry', reg.host, '--write', dir]);
      expect(gen.code, gen.stderr).toBe(0);
      const out = path.join(dir, 'out');
      await execFileP('skopeo', ['--registries-conf', path.join(dir, 'registries.conf'), 'copy', '--insecure-policy', '--src-tls-verify=false', `docker://${reg.host}/test/app:v1`, `oci:${out}:v1`], { timeout: 120_000 });
      const index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
      expect(index.manifests[0]!.digest).toBe(image.manifestDigest);
      for (const d of [image.manifestDigest, ...image.blobs]) expect(await sha256File(path.join(out, 'blobs', 'sha256', d.slice(7)))).toBe(d);
      // The proxy served it (skopeo would silently use the registry if the mirror failed).
      expect(await scrapeMetric(cluster.agents[i]!.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total')).toBeGreaterThanOrEqual(image.blobs.length);
    }
    for (const d of image.blobs) expect(reg.blobGets.get(d), `registry GETs of ${d}`).toBe(1);
  }, 300_000);

  it('skopeo through one agent to a second registry: the mirror location path names the upstream (not the agent default)', async () => {
    const reg2 = await startRegistry();
    try {
      await pushImage(image, `${reg2.host}/other/app:v2`);
      reg2.resetCounters();
      const dir = path.join(work, 'skopeo-reg2');
      const gen = await runCli(['config', 'podman', '--mirror', proxies[0]!, '--registry', reg2.host, '--write', dir]);
      expect(gen.code, gen.stderr).toBe(0);
      expect(readFileSync(path.join(dir, 'registries.conf'), 'utf8')).toContain(`/damselfly-upstream/${reg2.host.replace(':', '_')}`);
      const before = await scrapeMetric(cluster.agents[0]!.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total');
      const out = path.join(dir, 'out');
      await execFileP('skopeo', ['--registries-conf', path.join(dir, 'registries.conf'), 'copy', '--insecure-policy', '--src-tls-verify=false', `docker://${reg2.host}/other/app:v2`, `oci:${out}:v2`], { timeout: 120_000 });
      for (const d of [image.manifestDigest, ...image.blobs]) expect(await sha256File(path.join(out, 'blobs', 'sha256', d.slice(7)))).toBe(d);
      const after = await scrapeMetric(cluster.agents[0]!.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total');
      expect(after - before).toBeGreaterThanOrEqual(image.blobs.length);
      // The manifest came from reg2 via the agent (the path prefix was stripped before it got there).
      expect(reg2.requests.some((q) => q.url.startsWith('/v2/other/app/manifests/'))).toBe(true);
      expect(reg2.requests.some((q) => q.url.includes('damselfly-upstream'))).toBe(false);
    } finally {
      await reg2.close();
    }
  }, 300_000);

  describe.skipIf(!requireOrSkip(haveContainerd, 'containerd + ctr as root', isRoot ? 'binaries missing' : 'not root'))('containerd 1.6', () => {
    let ctrd: ChildProcess | undefined;
    let sock = '';
    beforeAll(async () => {
      const base = path.join(work, 'ctrd');
      await mkdir(base, { recursive: true });
      sock = path.join(base, 'containerd.sock');
      await writeFile(
        path.join(base, 'config.toml'),
        `version = 2\nroot = "${base}/root"\nstate = "${base}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n[ttrpc]\n  address = "${sock}.ttrpc"\n[debug]\n  address = "${base}/debug.sock"\n[metrics]\n  address = ""\n# Each namespace fetches its own blobs (the default "shared" would reuse another namespace's content).\n[plugins."io.containerd.metadata.v1.bolt"]\n  content_sharing_policy = "isolated"\n`,
      );
      ctrd = spawn('containerd', ['--config', path.join(base, 'config.toml'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      ctrd.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
      await waitFor(() => existsSync(sock), `containerd socket (${err})`, 20_000);
      await waitFor(async () => (await execFileP('ctr', ['-a', sock, 'version']).then(() => true, () => false)) || undefined, 'containerd answering', 20_000);
    }, 60_000);
    afterAll(async () => {
      if (ctrd && ctrd.exitCode === null) {
        ctrd.kill('SIGTERM');
        await new Promise((r) => {
          const t = setTimeout(() => {
            ctrd!.kill('SIGKILL');
            r(undefined);
          }, 5000);
          ctrd!.once('exit', () => {
            clearTimeout(t);
            r(undefined);
          });
        });
      }
    });

    it('ctr images pull --hosts-dir (hosts.toml from `damselfly config containerd`) through each agent; digests match; still one registry GET per blob', async () => {
      for (const [i, proxy] of proxies.entries()) {
        const hosts = path.join(work, `hosts-${i}`);
        const gen = await runCli(['config', 'containerd', '--mirror', proxy, '--registry', reg.host, '--write', hosts]);
        expect(gen.code, gen.stderr).toBe(0);
        expect(readFileSync(path.join(hosts, reg.host, 'hosts.toml'), 'utf8')).toContain(`[host."${proxy}"]`);
        const ns = `e2e${i}`;
        const before = await scrapeMetric(cluster.agents[i]!.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total');
        await execFileP('ctr', ['-a', sock, '-n', ns, 'images', 'pull', '--hosts-dir', hosts, '--plain-http', '--snapshotter', 'native', `${reg.host}/test/app:v1`], { timeout: 180_000 });
        const { stdout } = await execFileP('ctr', ['-a', sock, '-n', ns, 'images', 'ls']);
        expect(stdout).toContain(image.manifestDigest);
        const content = (await execFileP('ctr', ['-a', sock, '-n', ns, 'content', 'ls', '-q'])).stdout;
        for (const d of image.blobs) expect(content).toContain(d);
        const after = await scrapeMetric(cluster.agents[i]!.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total');
        expect(after - before).toBeGreaterThanOrEqual(image.blobs.length);
        // Remove the content so the next namespace pulls again instead of sharing the content store.
        await execFileP('ctr', ['-a', sock, '-n', ns, 'images', 'rm', '--sync', `${reg.host}/test/app:v1`]);
        const left = (await execFileP('ctr', ['-a', sock, '-n', ns, 'content', 'ls', '-q'])).stdout.trim();
        if (left) await execFileP('ctr', ['-a', sock, '-n', ns, 'content', 'rm', ...left.split('\n')]).catch(() => undefined);
      }
      for (const d of image.blobs) expect(reg.blobGets.get(d), `registry GETs of ${d}`).toBe(1);
    }, 400_000);

    it('ctr through the catch-all _default/hosts.toml: no header, the agent takes the upstream from ?ns=', async () => {
      const proxy = proxies[1]!;
      const hosts = path.join(work, 'hosts-default');
      const gen = await runCli(['config', 'containerd', '--mirror', proxy, '--write', hosts]);
      expect(gen.code, gen.stderr).toBe(0);
      // Only the catch-all is left, so the request carries ns=<registry> and nothing else names it.
      await rm(path.join(hosts, 'docker.io'), { recursive: true });
      const ns = 'catchall';
      const before = await scrapeMetric(cluster.agents[1]!.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total');
      await execFileP('ctr', ['-a', sock, '-n', ns, 'images', 'pull', '--hosts-dir', hosts, '--plain-http', '--snapshotter', 'native', `${reg.host}/test/app:v1`], { timeout: 180_000 });
      expect((await execFileP('ctr', ['-a', sock, '-n', ns, 'images', 'ls'])).stdout).toContain(image.manifestDigest);
      const after = await scrapeMetric(cluster.agents[1]!.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total');
      expect(after - before).toBeGreaterThanOrEqual(image.blobs.length);
      expect(reg.requests.some((q) => q.url.includes('ns='))).toBe(false);
      for (const d of image.blobs) expect(reg.blobGets.get(d)).toBe(1);
    }, 300_000);

    it('ctr pulls with credentials through the agents: token-auth registry (Bearer) and htpasswd registry behind 307 redirects', async () => {
      for (const [k, r] of [[0, tokenReg], [2, basicReg]] as const) {
        const proxy = proxies[k]!;
        const hosts = path.join(work, `hosts-auth-${k}`);
        const gen = await runCli(['config', 'containerd', '--mirror', proxy, '--registry', r.host, '--write', hosts]);
        expect(gen.code, gen.stderr).toBe(0);
        const ns = `auth${k}`;
        const before = await scrapeMetric(cluster.agents[k]!.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total');
        await execFileP('ctr', ['-a', sock, '-n', ns, 'images', 'pull', '--user', `${r.creds!.username}:${r.creds!.password}`, '--hosts-dir', hosts, '--plain-http', '--snapshotter', 'native', `${r.host}/test/app:v1`], { timeout: 180_000 });
        const { stdout } = await execFileP('ctr', ['-a', sock, '-n', ns, 'images', 'ls']);
        expect(stdout).toContain(image.manifestDigest);
        const after = await scrapeMetric(cluster.agents[k]!.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total');
        expect(after - before).toBeGreaterThanOrEqual(image.blobs.length);
        for (const d of image.blobs) expect(r.blobGets.get(d), `registry GETs of ${d}`).toBe(1);
        // Every blob GET reached the registry authenticated (via the agent), none anonymously.
        expect(r.requests.filter((q) => q.url.includes('/blobs/') && q.method === 'GET' && !q.authorization)).toEqual([]);
      }
      expect(tokenReg.tokensIssued).toBeGreaterThan(0);
      for (const d of image.blobs) expect(basicReg.storageGets.get(d)).toBe(1);
      expect(basicReg.storageAuthLeaks).toBe(0);
      for (const a of cluster.all()) expect(readFileSync(a.logFile, 'utf8')).not.toContain(basicReg.creds!.password);
    }, 400_000);
  });

  it('nydusd read pattern through an agent: HEAD for the size, then many closed ranges, every byte checked', async () => {
    const layer = image.layers[2]!;
    const full = Buffer.from(await (await request(`${reg.backendUrl}/v2/test/app/blobs/${layer.digest}`)).body.arrayBuffer());
    // A fresh agent: the ranges come from its peers (pieces covering each range only), not the registry.
    const fresh = await cluster.addAgent('agent-range', { proxy: { registryMirror: { addr: reg.url } } });
    const proxy = proxyUrl(fresh);
    const url = `${proxy}/v2/test/app/blobs/${layer.digest}`;
    const head = await request(url, { method: 'HEAD' });
    await head.body.dump();
    expect(head.statusCode).toBe(200);
    expect(Number(head.headers['content-length'])).toBe(full.length);
    const chunk = 1_048_576 + 4099;
    for (let off = 0; off < full.length; off += chunk) {
      const end = Math.min(off + chunk, full.length) - 1;
      const r = await request(url, { headers: { range: `bytes=${off}-${end}` }, headersTimeout: 15_000, bodyTimeout: 15_000 }).catch((e: unknown) => {
        throw new Error(`range ${off}-${end}: ${String(e)}\n${fresh.tail(30)}`);
      });
      const body = Buffer.from(await r.body.arrayBuffer());
      expect(r.statusCode).toBe(206);
      expect(r.headers['content-range']).toBe(`bytes ${off}-${end}/${full.length}`);
      expect(body.equals(full.subarray(off, end + 1))).toBe(true);
    }
    // The fresh agent's pieces must come from its peers, not the registry.
    expect(reg.blobGets.get(layer.digest), `registry GETs of ${layer.digest}; fresh agent log:\n${fresh.logs().filter((l) => /source|parent|schedul|piece/i.test(JSON.stringify(l))).slice(-25).map((l) => JSON.stringify(l)).join('\n')}`).toBe(1);
  }, 120_000);

  it('X-Dragonfly-Prefetch after a Range GET: the rest of the blob follows in the background at proxy.prefetchRateLimit', async () => {
    const layer = image.layers[2]!; // 3 pieces of 4 MiB: the range needs the first, the prefetch paces the other two
    const rate = 1 << 20;
    const fresh = await cluster.addAgent('agent-prefetch', { proxy: { registryMirror: { addr: reg.url }, prefetchRateLimit: '1MiB' } });
    const url = `${proxyUrl(fresh)}/v2/test/app/blobs/${layer.digest}`;
    // Bytes the agent fetched (from peers or the registry), not those it served from its own cache.
    const fetched = async () => {
      const text = await (await fetch(`http://${String(fresh.ready.metrics)}/metrics`)).text();
      let n = 0;
      for (const m of text.matchAll(/^dragonfly_client_download_traffic\{type="(\w+)"\} (\S+)$/gm)) if (m[1] !== 'LOCAL_PEER') n += Number(m[2]);
      return n;
    };
    // From the request on: the prefetch may start pacing before the range answer is read.
    const t0 = Date.now();
    const r = await request(url, { headers: { range: 'bytes=0-1023', 'x-dragonfly-prefetch': 'true' } });
    expect(r.statusCode).toBe(206);
    await r.body.dump();
    const first = 4 << 20;
    await new Promise((res) => setTimeout(res, 1500));
    const early = await fetched();
    // The first piece at full speed, then at most 1.5 s of the prefetch rate plus its burst (and a chunk).
    expect(early, 'prefetched bytes after 1.5 s').toBeLessThanOrEqual(first + 1.5 * rate + rate / 10 + (256 << 10));
    await waitFor(async () => ((await fetched()) >= layer.size ? true : undefined), `prefetch of ${layer.size} bytes`, 30_000, 200);
    const elapsed = (Date.now() - t0) / 1000;
    // ~(size - 4 MiB) at 1 MiB/s, less the limiter's burst; unpaced it would take a fraction of a second.
    expect(elapsed).toBeGreaterThanOrEqual(((layer.size - first - rate / 10) / rate) * 0.8);
    // The prefetched blob is then served whole from the agent's cache.
    const whole = await request(url);
    expect(whole.statusCode).toBe(200);
    expect(createHash('sha256').update(Buffer.from(await whole.body.arrayBuffer())).digest('hex')).toBe(layer.digest.slice(7));
  }, 120_000);

  it('X-Dragonfly-Enable-Task-ID-Based-Blob-Digest: the same layer under two repositories, through two agents, is one task and one registry GET', async () => {
    const img = await buildImage({ layers: [3 << 20] });
    try {
      await pushImage(img, `${reg.host}/one/app:v1`);
      await pushImage(img, `${reg.host}/two/app:v1`);
      const layer = img.layers[0]!;
      reg.resetCounters();
      const hint = { 'x-dragonfly-enable-task-id-based-blob-digest': 'true' };
      const ids: string[] = [];
      for (const [i, repo] of [[0, 'one/app'], [1, 'two/app']] as const) {
        const r = await request(`${proxies[i]}/v2/${repo}/blobs/${layer.digest}`, { headers: hint });
        expect(r.statusCode).toBe(200);
        expect(createHash('sha256').update(Buffer.from(await r.body.arrayBuffer())).digest('hex')).toBe(layer.digest.slice(7));
        ids.push(String(r.headers['x-dragonfly-task-id']));
      }
      expect(ids).toEqual([layer.digest.slice(7), layer.digest.slice(7)]);
      expect(reg.blobGets.get(layer.digest), 'registry GETs of the shared layer').toBe(1);
    } finally {
      await img.cleanup();
    }
  }, 120_000);

  it('multi-range (podman partial pulls) of a blob the agent holds complete: 206 multipart/byteranges from the cache, no registry GET', async () => {
    const layer = image.layers[1]!;
    const url = `${proxies[0]}/v2/test/app/blobs/${layer.digest}`;
    const whole = await request(url);
    const full = Buffer.from(await whole.body.arrayBuffer());
    expect(whole.statusCode).toBe(200);
    reg.resetCounters();
    const ranges = [[0, 99], [4096, 8191], [full.length - 10, full.length - 1]] as const;
    const r = await request(url, { headers: { range: `bytes=0-99, 4096-8191, -10` } });
    const body = Buffer.from(await r.body.arrayBuffer());
    expect(r.statusCode).toBe(206);
    const boundary = /boundary=([^;]+)/.exec(String(r.headers['content-type']))?.[1];
    expect(String(r.headers['content-type'])).toMatch(/^multipart\/byteranges; boundary=/);
    expect(Number(r.headers['content-length'])).toBe(body.length);
    const parts = multipartByteranges(body, boundary!);
    expect(parts.map((p) => p.range)).toEqual(ranges.map(([a, b]) => `bytes ${a}-${b}/${full.length}`));
    for (const [i, [a, b]] of ranges.entries()) expect(parts[i]!.body.equals(full.subarray(a, b + 1))).toBe(true);
    expect(reg.blobGets.get(layer.digest) ?? 0, 'registry GETs of the cached layer').toBe(0);
  }, 120_000);
});
