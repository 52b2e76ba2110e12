/**
 * Docker-style HTTP proxy mode through real agents: the registry behind TLS (certificate from its own
 * CA, trusted by the agents through NODE_EXTRA_CA_CERTS as a system CA would be), agents holding a
 * CA from `damselfly ca init`, and curl as the HTTPS_PROXY client trusting that CA. CONNECT to the
 * registry host is intercepted and blob GETs go P2P; each blob leaves the registry once. A second
 * front with a self-signed certificate (trusted by nobody) is reached through a hijack rule marked
 * `insecure`: its blobs go P2P too, back-to-source included, without verification for that host only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createCa, LeafSigner } from '../../agent/proxy/ca.js';
import { cleanupTempDirs, killAll, makeTempDir, proxyUrl, runCli, scrapeMetric, startCluster, type Cluster } from '../support/procs.js';
import { buildImage, onPath, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
import { requireOrSkip } from '../support/require.js';
import { cliBuilt } from '../support/cli.js';

const execFileP = promisify(execFile);
const tools = registryToolsAvailable();
const cliOk = cliBuilt();
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe.skipIf(
  !requireOrSkip(tools.ok && onPath('curl'), 'docker-registry/umoci/skopeo/curl', `missing: ${[...tools.missing, ...(onPath('curl') ? [] : ['curl'])].join(', ')}`) ||
    !requireOrSkip(cliOk, 'compiled damselfly CLI', 'run npm run build or set DAMSELFLY_CLI'),
)('HTTP proxy mode through real agents (CONNECT intercepted with the damselfly CA)', () => {
  let reg: RunningRegistry;
  let image: BuiltImage;
  let cluster: Cluster;
  let tlsFront: https.Server;
  let registryHttps = '';
  let selfSigned: https.Server;
  let selfSignedHttps = '';
  let caCert = '';
  const proxies: string[] = [];

  beforeAll(async () => {
    const work = makeTempDir('damselfly-proxy-mode-');
    [reg, image] = await Promise.all([startRegistry(), buildImage({ layers: [2 << 20, 3 << 20] })]);
    await pushImage(image, `${reg.host}/test/app:v1`);
    reg.resetCounters();
    const upstreamCa = createCa('Registry CA');
    const upstreamCaFile = path.join(work, 'registry-ca.crt');
    await writeFile(upstreamCaFile, upstreamCa.cert);
    const front = (req: http.IncomingMessage, res: http.ServerResponse) => {
      const up = http.request(`${reg.url}${req.url}`, { method: req.method, headers: { ...req.headers, host: reg.host } }, (u) => {
        res.writeHead(u.statusCode ?? 502, u.headers);
        u.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
    tlsFront = https.createServer(new LeafSigner(upstreamCa).serverOptions('127.0.0.1'), front);
    await new Promise<void>((r) => tlsFront.listen(0, '127.0.0.1', r));
    registryHttps = `https://127.0.0.1:${(tlsFront.address() as AddressInfo).port}`;
    // The same registry on another loopback address with a self-signed certificate nobody trusts.
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.2',
      '-addext', 'subjectAltName=IP:127.0.0.2', '-keyout', path.join(work, 'self.key'), '-out', path.join(work, 'self.crt')], { stdio: 'ignore' });
    selfSigned = https.createServer({ key: readFileSync(path.join(work, 'self.key')), cert: readFileSync(path.join(work, 'self.crt')) }, front);
    await new Promise<void>((r) => selfSigned.listen(0, '127.0.0.2', r));
    selfSignedHttps = `https://127.0.0.2:${(selfSigned.address() as AddressInfo).port}`;
    const init = await runCli(['ca', 'init', '--dir', path.join(work, 'ca')]);
    expect(init.code, init.stderr).toBe(0);
    const ca = JSON.parse(init.stdout) as { caCert: string; caKey: string };
    caCert = ca.caCert;
    const proxy = {
      server: { caCert: ca.caCert, caKey: ca.caKey },
      hijackHTTPS: { hosts: [{ regx: '^127\\.0\\.0\\.1$' }, { regx: '^127\\.0\\.0\\.2$', insecure: true }] },
    };
    cluster = await startCluster({
      agents: 2,
      agent: () => ({ proxy }),
      seedOverrides: { proxy },
      env: { NODE_EXTRA_CA_CERTS: upstreamCaFile },
      readyTimeoutMs: 30_000,
    });
    for (const a of cluster.agents) proxies.push(proxyUrl(a));
  }, 180_000);

  afterAll(async () => {
    await killAll();
    for (const s of [tlsFront, selfSigned]) {
      s?.closeAllConnections();
      await new Promise((r) => (s ? s.close(r) : r(undefined)));
    }
    await reg?.close();
    await image?.cleanup();
    cleanupTempDirs();
  });

  it('curl via HTTPS_PROXY=<agent> trusting the damselfly CA: blobs go P2P with X-Dragonfly-Task-ID, once from the registry across agents', async () => {
    const headerFile = path.join(makeTempDir('damselfly-curl-'), 'headers');
    for (const [i, proxy] of proxies.entries()) {
      for (const digest of image.blobs) {
        const { stdout } = await execFileP(
          'curl',
          ['-sS', '--fail', '--noproxy', '', '-x', proxy, '--cacert', caCert, '-D', headerFile, `${registryHttps}/v2/test/app/blobs/${digest}`],
          { encoding: 'buffer', maxBuffer: 64 << 20 },
        ).then(
          (r) => ({ stdout: r.stdout, headers: readFileSync(headerFile, 'utf8') }),
          (e: { stderr?: Buffer; code?: number }) => {
            throw new Error(`curl through agent ${i} failed (exit ${e.code}): ${e.stderr?.toString()}\n${cluster.agents[i]!.tail(15)}`);
          },
        )
          .then((r) => {
            expect(r.headers.toLowerCase()).toMatch(/x-dragonfly-task-id: [0-9a-f]{64}/);
            return r;
          });
        expect(sha(stdout)).toBe(digest);
      }
      const manifest = await execFileP('curl', ['-sS', '--fail', '--noproxy', '', '-x', proxy, '--cacert', caCert, '-H', 'accept: application/vnd.oci.image.manifest.v1+json', `${registryHttps}/v2/test/app/manifests/v1`], { encoding: 'buffer' });
      expect(sha(manifest.stdout)).toBe(image.manifestDigest);
      expect(await scrapeMetric(cluster.agents[i]!.ready.metrics, 'dragonfly_client_proxy_request_via_dfdaemon_total')).toBe(image.blobs.length);
    }
    for (const d of image.blobs) expect(reg.blobGets.get(d), `registry GETs of ${d}`).toBe(1);
  }, 180_000);

  it('self-signed upstream marked insecure: blobs go P2P (back-to-source without verification for that host), once from the registry', async () => {
    reg.resetCounters();
    const fallbacks = await Promise.all(cluster.agents.map((a) => scrapeMetric(a.ready.metrics, 'dragonfly_client_proxy_fallback_total')));
    // The upstream really is untrusted: curl straight to it fails verification.
    await expect(execFileP('curl', ['-sS', '--fail', '--noproxy', '*', `${selfSignedHttps}/v2/`])).rejects.toThrow();
    const headerFile = path.join(makeTempDir('damselfly-curl-'), 'headers');
    for (const [i, proxy] of proxies.entries()) {
      for (const digest of image.blobs) {
        const r = await execFileP(
          'curl',
          ['-sS', '--fail', '--noproxy', '', '-x', proxy, '--cacert', caCert, '-D', headerFile, `${selfSignedHttps}/v2/test/app/blobs/${digest}`],
          { encoding: 'buffer', maxBuffer: 64 << 20 },
        ).catch((e: { stderr?: Buffer; code?: number }) => {
          throw new Error(`curl through agent ${i} failed (exit ${e.code}): ${e.stderr?.toString()}\n${cluster.agents[i]!.tail(15)}`);
        });
        expect(sha(r.stdout)).toBe(digest);
        expect(readFileSync(headerFile, 'utf8').toLowerCase(), `agent ${i}: served by P2P`).toMatch(/x-dragonfly-task-id: [0-9a-f]{64}/);
      }
      expect(await scrapeMetric(cluster.agents[i]!.ready.metrics, 'dragonfly_client_proxy_fallback_total'), `agent ${i} fell back to a direct fetch:\n${cluster.agents[i]!.tail(15)}`).toBe(fallbacks[i]);
    }
    for (const d of image.blobs) expect(reg.blobGets.get(d), `registry GETs of ${d}`).toBe(1);
  }, 180_000);
});
