/**
 * The proxy against real registries (distribution 2.8 anonymous, htpasswd, token-auth front, 307
 * redirect front) with the in-process fixture TaskManager on the P2P path: upstream choice, header
 * pass-through, auth, redirects without credential leaks, Range, integrity, fallback, metrics.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { Registry } from 'prom-client';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { Agent as UndiciAgent, request } from 'undici';
import { createCa, LeafSigner } from '../../agent/proxy/ca.js';
import { createLogger } from '../../adapters/log.js';
import { proxyConfigSchema, type ProxyConfig } from '../../agent/proxy-config.js';
import { startProxy, type RunningProxy } from '../../agent/proxy/server.js';
import { buildImage, fileDigest, onPath, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
import { requireOrSkip } from '../support/require.js';
import { multipartByteranges } from '../support/multipart.js';
import { OriginTaskManager } from './origin-task-manager.js';

const tools = registryToolsAvailable();
const execFileP = promisify(execFile);
const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json';

interface Harness {
  proxy: RunningProxy;
  tm: OriginTaskManager;
  url: string;
  metrics: Registry;
  logs: string[];
}

const harnesses: Harness[] = [];
async function harness(proxy: Partial<Record<keyof ProxyConfig, unknown>> = {}, tm = new OriginTaskManager()): Promise<Harness> {
  const logs: string[] = [];
  const metrics = new Registry();
  const config = proxyConfigSchema.parse({ server: { ip: '127.0.0.1', port: 0 }, ...proxy });
  const p = await startProxy({ config: { proxy: config }, taskManager: tm, logger: createLogger({}, { write: (l) => { logs.push(l); if (process.env.PROXY_DEBUG) process.stderr.write(l); }, level: 'debug' }), metricsRegistry: metrics });
  const h = { proxy: p, tm, url: `http://127.0.0.1:${p.port}`, metrics, logs };
  harnesses.push(h);
  return h;
}

async function get(url: string, headers: Record<string, string> = {}, method = 'GET') {
  const r = await request(url, { method: method as 'GET', headers });
  const body = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, headers: r.headers as Record<string, string>, body };
}

describe.skipIf(!requireOrSkip(tools.ok, 'docker-registry/umoci/skopeo', `missing: ${tools.missing.join(', ')}`))('proxy against real registries', () => {
  let image: BuiltImage;
  let plain: RunningRegistry;
  let redirecting: RunningRegistry;
  let htpasswd: RunningRegistry;
  let token: RunningRegistry;
  beforeAll(async () => {
    image = await buildImage({ layers: [600_000, 2_500_000] });
    [plain, redirecting, htpasswd, token] = await Promise.all([
      startRegistry(),
      startRegistry({ redirectBlobs: true, auth: 'htpasswd' }),
      startRegistry({ auth: 'htpasswd' }),
      startRegistry({ auth: 'token' }),
    ]);
    for (const r of [plain, redirecting, htpasswd, token]) await pushImage(image, `${r.host}/test/app:v1`, { creds: r.creds });
    for (const r of [plain, redirecting, htpasswd, token]) r.resetCounters();
  }, 120_000);
  afterAll(async () => {
    await Promise.all(harnesses.splice(0).map((h) => h.proxy.close()));
    await Promise.all([plain, redirecting, htpasswd, token].filter(Boolean).map((r) => r.close()));
    await image?.cleanup();
  });

  it('mirror mode: ns picks the upstream; manifests pass through with digest and length; blobs go P2P once', async () => {
    const h = await harness();
    const ns = encodeURIComponent(plain.host);
    const ping = await get(`${h.url}/v2/?ns=${ns}`);
    expect(ping.status).toBe(200);
    expect(ping.headers['docker-distribution-api-version']).toBe('registry/2.0');
    const head = await get(`${h.url}/v2/test/app/manifests/v1?ns=${ns}`, { accept: OCI_ACCEPT }, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['docker-content-digest']).toBe(image.manifestDigest);
    expect(head.headers['content-length']).toBeDefined();
    expect(Number(head.headers['content-length'])).toBeGreaterThan(100);
    const man = await get(`${h.url}/v2/test/app/manifests/${image.manifestDigest}?ns=${ns}`, { accept: OCI_ACCEPT });
    expect(sha(man.body)).toBe(image.manifestDigest);
    expect(man.headers['content-type']).toBe('application/vnd.oci.image.manifest.v1+json');

    for (let i = 0; i < 3; i++) {
      for (const digest of image.blobs) {
        const b = await get(`${h.url}/v2/test/app/blobs/${digest}?ns=${ns}`);
        expect(b.status).toBe(200);
        expect(sha(b.body)).toBe(digest);
        expect(b.headers['x-dragonfly-task-id']).toMatch(/^[0-9a-f]{64}$/);
        expect(b.headers['docker-content-digest']).toBe(digest);
      }
    }
    for (const digest of image.blobs) expect(plain.blobGets.get(digest)).toBe(1);
    // ns never reaches the origin, and is filtered from the task ID.
    expect(h.tm.calls.every((c) => !new URL(c.url).searchParams.has('ns'))).toBe(true);
    expect(plain.requests.some((r) => r.url.includes('ns='))).toBe(false);
    const text = await h.metrics.metrics();
    expect(text).toContain(`dragonfly_client_proxy_request_total{route="p2p",result="ok"} ${image.blobs.length * 3}`);
    expect(text).toMatch(/dragonfly_client_proxy_traffic_bytes_total\{source="p2p"\} \d+/);
  });

  it('trace context, tracing off: a direct request passes the client\'s traceparent on unchanged; a P2P blob never hands it to the task (one origin read serves many clients)', async () => {
    const h = await harness();
    const ns = encodeURIComponent(plain.host);
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    plain.resetCounters();
    const man = await get(`${h.url}/v2/test/app/manifests/${image.manifestDigest}?ns=${ns}`, { accept: OCI_ACCEPT, traceparent: tp, tracestate: 'vendor=1' });
    expect(man.status).toBe(200);
    const seen = plain.requests.find((r) => r.url.includes('/manifests/'));
    expect(seen?.traceparent, 'the manifest request reached the registry with the client\'s traceparent').toBe(tp);
    const before = h.tm.calls.length;
    const blob = await get(`${h.url}/v2/test/app/blobs/${image.blobs[0]}?ns=${ns}`, { traceparent: tp, tracestate: 'vendor=1' });
    expect(sha(blob.body)).toBe(image.blobs[0]);
    const call = h.tm.calls.at(-1)!;
    expect(h.tm.calls.length).toBe(before + 1);
    expect(Object.keys(call.requestHeaders ?? {}).filter((k) => /^trace(parent|state)$/i.test(k)), 'no client trace context in the task\'s origin headers').toEqual([]);
  });

  it('X-Dragonfly-Registry wins over ns; the configured default is used when neither is given', async () => {
    const h = await harness({ registryMirror: { addr: `http://${htpasswd.host}` } });
    const viaHeader = await get(`${h.url}/v2/test/app/manifests/v1?ns=${encodeURIComponent(htpasswd.host)}`, { 'x-dragonfly-registry': plain.url, accept: OCI_ACCEPT });
    expect(viaHeader.status).toBe(200);
    const viaDefault = await get(`${h.url}/v2/test/app/manifests/v1`, { accept: OCI_ACCEPT });
    expect(viaDefault.status).toBe(401);
    expect(viaDefault.headers['www-authenticate']).toMatch(/^Basic realm="damselfly-test"/);
  });

  it('an unreachable default upstream: the bare /v2/ ping is answered locally, anything else is a 502 marked as the proxy\'s', async () => {
    const h = await harness({ registryMirror: { addr: 'http://127.0.0.1:1' } });
    const ping = await get(`${h.url}/v2/`);
    expect(ping.status).toBe(200);
    expect(ping.body.toString()).toBe('{}');
    const man = await get(`${h.url}/v2/test/app/manifests/v1`);
    expect(man.status).toBe(502);
    expect(man.headers['x-dragonfly-error-type']).toBe('proxy');
    // With a hint, the ping goes to the named upstream.
    expect((await get(`${h.url}/v2/?ns=${encodeURIComponent(htpasswd.host)}`)).status).toBe(401);
  });

  it('htpasswd: the 401 challenge reaches the client unchanged; with Basic credentials pulls work and are never logged', async () => {
    const h = await harness({ registryMirror: { addr: htpasswd.url } });
    const basic = `Basic ${Buffer.from(`${htpasswd.creds!.username}:${htpasswd.creds!.password}`).toString('base64')}`;
    const anonBlob = await get(`${h.url}/v2/test/app/blobs/${image.configDigest}`);
    expect(anonBlob.status).toBe(401);
    expect(anonBlob.headers['www-authenticate']).toMatch(/^Basic /);
    const blob = await get(`${h.url}/v2/test/app/blobs/${image.layers[1]!.digest}`, { authorization: basic });
    expect(blob.status).toBe(200);
    expect(sha(blob.body)).toBe(image.layers[1]!.digest);
    expect(h.tm.calls.at(-1)!.requestHeaders!.authorization).toBe(basic);
    expect(h.logs.join('')).not.toContain(htpasswd.creds!.password);
    expect(h.logs.join('')).not.toContain(basic.slice(6));
  });

  it('token auth: Bearer challenge passes through, the token endpoint is reachable through the proxy, the token is used upstream', async () => {
    const h = await harness({ registryMirror: { addr: token.url } });
    const anon = await get(`${h.url}/v2/test/app/manifests/v1`, { accept: OCI_ACCEPT });
    expect(anon.status).toBe(401);
    const challenge = anon.headers['www-authenticate']!;
    expect(challenge).toBe(`Bearer realm="${token.url}/token",service="damselfly-test",scope="repository:test/app:pull"`);
    // nydus <= 2.3.4 sends the token request to the mirror: origin-form /token goes to the upstream.
    const tok = JSON.parse((await get(`${h.url}/token?service=damselfly-test&scope=repository:test/app:pull`)).body.toString()) as { token: string };
    const man = await get(`${h.url}/v2/test/app/manifests/v1`, { accept: OCI_ACCEPT, authorization: `Bearer ${tok.token}` });
    expect(man.status).toBe(200);
    expect(man.headers['docker-content-digest']).toBe(image.manifestDigest);
    const blob = await get(`${h.url}/v2/test/app/blobs/${image.layers[0]!.digest}`, { authorization: `Bearer ${tok.token}` });
    expect(blob.status).toBe(200);
    expect(sha(blob.body)).toBe(image.layers[0]!.digest);
  });

  it('307 to signed storage URLs is followed by the agent without leaking Authorization, on the P2P and the direct path; signatures do not change the task ID', async () => {
    const basic = `Basic ${Buffer.from(`${redirecting.creds!.username}:${redirecting.creds!.password}`).toString('base64')}`;
    const h = await harness({ registryMirror: { addr: redirecting.url } });
    const digest = image.layers[0]!.digest;
    const first = await get(`${h.url}/v2/test/app/blobs/${digest}`, { authorization: basic });
    expect(first.status).toBe(200);
    expect(sha(first.body)).toBe(digest);
    // Direct path (HEAD and GET with P2P disabled by rules) follows the redirect too.
    const direct = await harness({ registryMirror: { addr: redirecting.url }, rules: [] });
    const d = await get(`${direct.url}/v2/test/app/blobs/${image.configDigest}`, { authorization: basic });
    expect(d.status).toBe(200);
    expect(sha(d.body)).toBe(image.configDigest);
    expect(redirecting.storageGets.get(digest)).toBe(1);
    expect(redirecting.storageAuthLeaks).toBe(0);
    // A task ID computed from a URL carrying signature params equals the one without them.
    const withSig = h.tm.taskId({ url: `${redirecting.url}/v2/x/blobs/${digest}?X-Amz-Signature=abc&X-Amz-Date=1`, filteredQueryParams: h.tm.calls[0]!.filteredQueryParams });
    expect(withSig).toBe(h.tm.taskId({ url: `${redirecting.url}/v2/x/blobs/${digest}` }));
  });

  it('Range: nydusd pattern (HEAD for size, then many closed ranges) answered 206 with exactly one correct Content-Range; prefetch on request', async () => {
    const h = await harness({ registryMirror: { addr: plain.url } });
    const { digest } = image.layers[1]!;
    const full = await get(`${plain.backendUrl}/v2/test/app/blobs/${digest}`);
    const head = await get(`${h.url}/v2/test/app/blobs/${digest}`, {}, 'HEAD');
    expect(head.status).toBe(200);
    const size = Number(head.headers['content-length']);
    expect(size).toBe(full.body.length);
    const chunk = 64 * 1024 + 7;
    for (let off = 0; off < size; off += chunk) {
      const end = Math.min(off + chunk, size) - 1;
      const r = await get(`${h.url}/v2/test/app/blobs/${digest}`, { range: `bytes=${off}-${end}`, 'x-dragonfly-prefetch': off === 0 ? 'true' : 'false' });
      expect(r.status).toBe(206);
      expect(r.headers['content-range']).toBe(`bytes ${off}-${end}/${size}`);
      expect(Number(r.headers['content-length'])).toBe(end - off + 1);
      expect(r.body.equals(full.body.subarray(off, end + 1))).toBe(true);
    }
    expect(h.tm.prefetches).toHaveLength(1);
    expect(h.tm.prefetches[0]!.range).toBeUndefined();
    // Open-ended (containerd resume) and suffix (served by the origin) ranges.
    const open = await get(`${h.url}/v2/test/app/blobs/${digest}`, { range: `bytes=${size - 1000}-` });
    expect(open.status).toBe(206);
    expect(open.headers['content-range']).toBe(`bytes ${size - 1000}-${size - 1}/${size}`);
    expect(open.body.equals(full.body.subarray(size - 1000))).toBe(true);
    const suffix = await get(`${h.url}/v2/test/app/blobs/${digest}`, { range: 'bytes=-500' });
    expect(suffix.status).toBe(206);
    expect(suffix.body.equals(full.body.subarray(size - 500))).toBe(true);
  });

  it('multi-range (podman partial pulls) passes through to the origin: 206 multipart/byteranges relayed intact, also behind auth and a 307 to storage', async () => {
    // formats.md: containers/image GetBlobAt sends `bytes=a-b,c-d` and takes 200, a single range or
    // multipart/byteranges. The P2P path serves single ranges only; these go to the registry as sent.
    const { digest } = image.layers[1]!;
    const full = await get(`${plain.backendUrl}/v2/test/app/blobs/${digest}`);
    const size = full.body.length;
    const ranges: [number, number][] = [[0, 1], [5, 9], [size - 100, size - 1]];
    const header = `bytes=${ranges.map(([a, b]) => `${a}-${b}`).join(',')}`;
    const basic = `Basic ${Buffer.from(`${redirecting.creds!.username}:${redirecting.creds!.password}`).toString('base64')}`;
    for (const [reg, auth] of [[plain, undefined], [redirecting, basic]] as const) {
      const h = await harness({ registryMirror: { addr: reg.url } });
      const r = await get(`${h.url}/v2/test/app/blobs/${digest}`, { range: header, ...(auth ? { authorization: auth } : {}) });
      expect(r.status).toBe(206);
      expect(r.headers['content-range']).toBeUndefined();
      expect(Number(r.headers['content-length'])).toBe(r.body.length);
      const boundary = /^multipart\/byteranges; boundary=(.+)$/.exec(r.headers['content-type'] ?? '')?.[1];
      expect(boundary, r.headers['content-type']).toBeDefined();
      const parts = multipartByteranges(r.body, boundary!);
      expect(parts.map((p) => p.range)).toEqual(ranges.map(([a, b]) => `bytes ${a}-${b}/${size}`));
      for (const [i, [a, b]] of ranges.entries()) expect(parts[i]!.body.equals(full.body.subarray(a, b + 1)), `part ${i}`).toBe(true);
      // Not a P2P task (nothing cached from a partial read) and no digest check on partial bodies.
      expect(h.tm.calls).toHaveLength(0);
      expect(await h.metrics.metrics()).toMatch(/dragonfly_client_proxy_fallback_total\{reason="multirange"\} 1/);
    }
    expect(redirecting.storageAuthLeaks).toBe(0);
  });

  it('X-Dragonfly-Tag/-Application/-Priority/-Filtered-Query-Params reach the task manager; control headers never reach the origin', async () => {
    const h = await harness({ registryMirror: { addr: plain.url } });
    await get(`${h.url}/v2/test/app/blobs/${image.configDigest}?foo=1`, {
      'x-dragonfly-tag': 't1', 'x-dragonfly-application': 'app1', 'x-dragonfly-priority': '3', 'x-dragonfly-filtered-query-params': 'foo, bar',
    });
    const c = h.tm.calls.at(-1)!;
    expect(c).toMatchObject({ tag: 't1', application: 'app1', priority: 3, filteredQueryParams: ['foo', 'bar'], digest: image.configDigest });
    expect(Object.keys(c.requestHeaders!).some((k) => k.startsWith('x-dragonfly'))).toBe(false);
    // X-Dragonfly-Use-P2P forces P2P for a URL no rule matches.
    const before = h.tm.calls.length;
    const m = await get(`${h.url}/v2/test/app/manifests/${image.manifestDigest}`, { 'x-dragonfly-use-p2p': 'true', accept: OCI_ACCEPT });
    expect(m.status).toBe(200);
    expect(h.tm.calls.length).toBe(before + 1);
  });

  it('P2P failure before the first byte falls back to a direct fetch in the same request', async () => {
    const h = await harness({ registryMirror: { addr: plain.url } });
    h.tm.failNext = 1;
    const b = await get(`${h.url}/v2/test/app/blobs/${image.layers[0]!.digest}`);
    expect(b.status).toBe(200);
    expect(sha(b.body)).toBe(image.layers[0]!.digest);
    expect(b.headers['x-dragonfly-task-id']).toBeUndefined();
    expect(await h.metrics.metrics()).toMatch(/dragonfly_client_proxy_fallback_total\{reason="download"\} 1/);
    expect(await h.metrics.metrics()).toMatch(/dragonfly_client_proxy_request_total\{route="direct",result="fallback"\} 1/);
  });
});

describe('integrity against a lying origin', () => {
  let liar: http.Server;
  let liarUrl = '';
  const good = Buffer.alloc(300_000, 7);
  const bad = Buffer.alloc(300_000, 8);
  const digest = sha(good);
  beforeAll(async () => {
    liar = http.createServer((req, res) => {
      res.writeHead(200, { 'content-length': String(bad.length), 'content-type': 'application/octet-stream' });
      res.end(req.method === 'HEAD' ? undefined : bad);
    });
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
    liarUrl = `http://127.0.0.1:${(liar.address() as net.AddressInfo).port}`;
  });
  afterAll(async () => {
    await Promise.all(harnesses.splice(0).map((h) => h.proxy.close()));
    liar.closeAllConnections();
    await new Promise((r) => liar.close(r));
  });

  async function pull(url: string) {
    const r = await request(url);
    expect(r.statusCode).toBe(200);
    return r.body.arrayBuffer();
  }

  it('P2P path: a blob whose bytes do not hash to its digest is a broken transfer, never a complete 200', async () => {
    const h = await harness({ registryMirror: { addr: liarUrl } });
    await expect(pull(`${h.url}/v2/x/blobs/${digest}`)).rejects.toThrow();
  });

  it('direct path: the same with P2P disabled (the guard withholds the last bytes)', async () => {
    const h = await harness({ registryMirror: { addr: liarUrl }, rules: [] });
    await expect(pull(`${h.url}/v2/x/blobs/${digest}`)).rejects.toThrow();
    expect(await h.metrics.metrics()).toMatch(/dragonfly_client_proxy_request_failure_total\{route="direct"\} 1/);
  });
});

describe.skipIf(!requireOrSkip(tools.ok && onPath('curl'), 'docker-registry/umoci/skopeo/curl', 'missing tools'))('HTTP proxy mode (docker-style HTTP(S)_PROXY)', () => {
  let image: BuiltImage;
  let reg: RunningRegistry;
  let tlsFront: https.Server;
  let tlsPort = 0;
  let dir = '';
  let proxyCaFile = '';
  let upstreamCaFile = '';
  const curl = async (args: string[]) => execFileP('curl', ['-sS', '--fail', '--noproxy', '', ...args], { encoding: 'buffer', maxBuffer: 64 << 20 });
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'dfly-connect-'));
    image = await buildImage({ layers: [700_000] });
    reg = await startRegistry();
    await pushImage(image, `${reg.host}/test/app:v1`);
    reg.resetCounters();
    // The registry over TLS, with a certificate from an unrelated "public" CA the agent trusts via registryMirror.certs.
    const upstreamCa = createCa('Upstream CA');
    upstreamCaFile = path.join(dir, 'upstream-ca.crt');
    await writeFile(upstreamCaFile, upstreamCa.cert);
    tlsFront = https.createServer(new LeafSigner(upstreamCa).serverOptions('127.0.0.1'), (req, res) => {
      const up = http.request(`${reg.url}${req.url}`, { method: req.method, headers: { ...req.headers, host: reg.host } }, (u) => {
        res.writeHead(u.statusCode ?? 502, u.headers);
        u.pipe(res);
      });
      req.pipe(up);
    });
    await new Promise<void>((r) => tlsFront.listen(0, '127.0.0.1', r));
    tlsPort = (tlsFront.address() as net.AddressInfo).port;
    const proxyCa = createCa('Damselfly test proxy CA');
    proxyCaFile = path.join(dir, 'ca.crt');
    await writeFile(proxyCaFile, proxyCa.cert);
    await writeFile(path.join(dir, 'ca.key'), proxyCa.key, { mode: 0o600 });
  }, 120_000);
  afterAll(async () => {
    await Promise.all(harnesses.splice(0).map((h) => h.proxy.close()));
    tlsFront?.closeAllConnections();
    await new Promise((r) => (tlsFront ? tlsFront.close(r) : r(undefined)));
    await reg?.close();
    await image?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  async function proxyWith(hijackHosts: string[]) {
    // The fixture task manager must reach the TLS upstream too: it trusts the same CA.
    const tm = new OriginTaskManager(new UndiciAgent({ connect: { ca: [readFileSync(upstreamCaFile, 'utf8')] } }));
    return harness(
      {
        server: { ip: '127.0.0.1', port: 0, caCert: proxyCaFile, caKey: path.join(dir, 'ca.key') },
        registryMirror: { certs: upstreamCaFile },
        hijackHTTPS: { hosts: hijackHosts.map((regx) => ({ regx })) },
      },
      tm,
    );
  }

  it('CONNECT to a hijack host is intercepted with a leaf from the configured CA; blob GETs go P2P, manifests pass through', async () => {
    const h = await proxyWith(['^127\\.0\\.0\\.1$']);
    const layer = image.layers[0]!;
    const out = path.join(dir, 'blob');
    await curl(['-x', h.url, '--cacert', proxyCaFile, '-o', out, `https://127.0.0.1:${tlsPort}/v2/test/app/blobs/${layer.digest}`]);
    expect(await fileDigest(out)).toBe(layer.digest);
    const man = await curl(['-x', h.url, '--cacert', proxyCaFile, '-H', `accept: ${OCI_ACCEPT}`, `https://127.0.0.1:${tlsPort}/v2/test/app/manifests/v1`]);
    expect(sha(man.stdout)).toBe(image.manifestDigest);
    // Trusting only the upstream's CA fails: the client really talks to the proxy's leaf.
    await expect(curl(['-x', h.url, '--cacert', upstreamCaFile, `https://127.0.0.1:${tlsPort}/v2/`])).rejects.toThrow();
    const text = await h.metrics.metrics();
    expect(text).toMatch(/dragonfly_client_proxy_request_total\{route="connect",result="ok"\} [1-9]/);
    expect(text).toMatch(/dragonfly_client_proxy_request_total\{route="p2p",result="ok"\} 1/);
    expect(h.tm.calls.map((c) => c.url)).toEqual([`https://127.0.0.1:${tlsPort}/v2/test/app/blobs/${layer.digest}`]);
  });

  it('CONNECT to any other host is tunneled untouched (the client sees the upstream certificate)', async () => {
    const h = await proxyWith(['^registry\\.example$']);
    const r = await curl(['-x', h.url, '--cacert', upstreamCaFile, `https://127.0.0.1:${tlsPort}/v2/test/app/blobs/${image.configDigest}`]);
    expect(sha(r.stdout)).toBe(image.configDigest);
    expect(h.tm.calls).toHaveLength(0);
    expect(await h.metrics.metrics()).toMatch(/dragonfly_client_proxy_request_total\{route="tunnel",result="ok"\} 1/);
  });

  it('absolute-URI requests (HTTP_PROXY for plain-http registries) go P2P for blobs', async () => {
    const h = await proxyWith([]);
    const r = await curl(['-x', h.url, `${reg.url}/v2/test/app/blobs/${image.layers[0]!.digest}`]);
    expect(sha(r.stdout)).toBe(image.layers[0]!.digest);
    expect(h.tm.calls).toHaveLength(1);
  });
});
