/**
 * Private images stay private (agent/proxy/access.ts), against the real registry behind htpasswd
 * and real agents: a client with credentials pulls a blob through one agent; through another agent
 * (which would otherwise get it from the swarm) a client without credentials, with wrong ones, or
 * naming the digest under a repository it is not in gets the registry's own refusal, not the blob.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { cleanupTempDirs, killAll, proxyUrl, startCluster, type Cluster } from '../support/procs.js';
import { buildImage, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
import { requireOrSkip } from '../support/require.js';

const tools = registryToolsAvailable();
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

describe.skipIf(!requireOrSkip(tools.ok, 'docker-registry/umoci/skopeo', `missing: ${tools.missing.join(', ')}`))('private blobs through the P2P mirror', () => {
  let reg: RunningRegistry;
  let image: BuiltImage;
  let cluster: Cluster;
  let layer = '';
  beforeAll(async () => {
    [reg, image] = await Promise.all([startRegistry({ auth: 'htpasswd' }), buildImage({ layers: [6 << 20], seed: `private-${process.pid}` })]);
    await pushImage(image, `${reg.host}/team/private:v1`, { creds: reg.creds });
    layer = image.layers[0]!.digest;
    reg.resetCounters();
    const mirror = { proxy: { registryMirror: { addr: reg.url } } };
    cluster = await startCluster({ agents: 2, agent: () => mirror, seedOverrides: mirror, readyTimeoutMs: 60_000 });
  }, 180_000);
  afterAll(async () => {
    await killAll();
    await reg?.close();
    await image?.cleanup();
    cleanupTempDirs();
  });

  const get = async (agent: number, repo: string, authorization?: string) => {
    const res = await request(`${proxyUrl(cluster.agents[agent]!)}/v2/${repo}/blobs/${layer}`, { headers: authorization ? { authorization } : {} });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body, digest: `sha256:${createHash('sha256').update(body).digest('hex')}` };
  };

  it('with credentials through agent 0: the blob; without, wrong or for another repository through agent 1: the registry refusal; with them through agent 1: the blob from the swarm', async () => {
    const good = basic(reg.creds!.username, reg.creds!.password);
    const first = await get(0, 'team/private', good);
    expect(first.status).toBe(200);
    expect(first.digest).toBe(layer);
    expect(reg.blobGets.get(layer)).toBe(1);

    const anonymous = await get(1, 'team/private');
    expect(anonymous.status).toBe(401);
    expect(String(anonymous.headers['www-authenticate'])).toMatch(/^Basic realm=/);
    expect(anonymous.body.length).toBeLessThan(4096);
    expect(anonymous.digest).not.toBe(layer);

    const wrong = await get(1, 'team/private', basic(reg.creds!.username, 'not-the-password'));
    expect(wrong.status).toBe(401);
    expect(wrong.body.length).toBeLessThan(4096);

    // The digest named under a repository it is not in: the registry says unknown, so does the agent.
    const elsewhere = await get(1, 'team/other', good);
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.body.length).toBeLessThan(4096);

    const second = await get(1, 'team/private', good);
    expect(second.status).toBe(200);
    expect(second.digest).toBe(layer);
    // Served from the swarm: the registry sent the blob's bytes once in all.
    expect(reg.blobGets.get(layer)).toBe(1);
    // The refusals were the registry's answers to HEADs with each client's own credentials.
    const heads = reg.requests.filter((r) => r.method === 'HEAD' && r.url.endsWith(layer));
    expect(heads.filter((r) => r.status === 401).length).toBeGreaterThanOrEqual(2);
  }, 180_000);
});
