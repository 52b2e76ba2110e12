/**
 * Private images stay private (agent/proxy/access.ts), against the real registry behind htpasswd
 * and real agents: a client with credentials pulls a blob through one agent; through another agent
 * (which would otherwise get it from the swarm) a client without credentials, with wrong ones, with a
 * Range, as a forward-proxy request, or naming the digest under a repository it is not in gets the
 * registry's own refusal, not the blob. An agent with the check turned off shows the hole is real (it
 * hands the swarm's copy to an anonymous client). With the registry down, a client whose access was
 * confirmed keeps pulling from the swarm and one never confirmed gets a 502, not the blob.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, request } from 'undici';
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
    // Agent 2 has the check off: the control that shows the blob really is in the swarm for anyone.
    cluster = await startCluster({
      agents: 3,
      agent: (i) => (i === 2 ? { proxy: { registryMirror: { addr: reg.url, checkAccess: false } } } : mirror),
      seedOverrides: mirror,
      readyTimeoutMs: 60_000,
    });
  }, 180_000);
  afterAll(async () => {
    await killAll();
    await reg?.close();
    await image?.cleanup();
    cleanupTempDirs();
  });

  const get = async (agent: number, repo: string, headers: Record<string, string> = {}, absolute = false) => {
    const path = `/v2/${repo}/blobs/${layer}`;
    // Forward-proxy form: the absolute registry URL sent to the agent as an HTTP proxy.
    const res = absolute
      ? await new Client(proxyUrl(cluster.agents[agent]!)).request({ method: 'GET', path: `${reg.url}${path}`, headers: { ...headers, host: reg.host } })
      : await request(`${proxyUrl(cluster.agents[agent]!)}${path}`, { headers });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body, digest: `sha256:${createHash('sha256').update(body).digest('hex')}` };
  };
  const refusedWithoutBlob = (r: { body: Buffer; digest: string }) => {
    expect(r.body.length).toBeLessThan(4096);
    expect(r.digest).not.toBe(layer);
  };

  it('with credentials through agent 0: the blob; without, wrong, ranged, forward-proxied or for another repository through agent 1: the registry refusal; with them through agent 1: the blob from the swarm', async () => {
    const good = basic(reg.creds!.username, reg.creds!.password);
    const first = await get(0, 'team/private', { authorization: good });
    expect(first.status).toBe(200);
    expect(first.digest).toBe(layer);
    expect(reg.blobGets.get(layer)).toBe(1);

    const anonymous = await get(1, 'team/private');
    expect(anonymous.status).toBe(401);
    expect(String(anonymous.headers['www-authenticate'])).toMatch(/^Basic realm=/);
    expect(JSON.parse(anonymous.body.toString()).errors[0].code).toBe('UNAUTHORIZED');
    refusedWithoutBlob(anonymous);

    const wrong = await get(1, 'team/private', { authorization: basic(reg.creds!.username, 'not-the-password') });
    expect(wrong.status).toBe(401);
    refusedWithoutBlob(wrong);

    // nydusd's pattern (a closed range) and the HTTP_PROXY form take the same P2P path: same check.
    const ranged = await get(1, 'team/private', { range: 'bytes=0-1023' });
    expect(ranged.status).toBe(401);
    refusedWithoutBlob(ranged);
    const forwarded = await get(1, 'team/private', {}, true);
    expect(forwarded.status).toBe(401);
    refusedWithoutBlob(forwarded);

    // The digest named under a repository it is not in: the registry says unknown, so does the agent.
    const elsewhere = await get(1, 'team/other', { authorization: good });
    expect(elsewhere.status).toBe(404);
    refusedWithoutBlob(elsewhere);

    const second = await get(1, 'team/private', { authorization: good });
    expect(second.status).toBe(200);
    expect(second.digest).toBe(layer);
    // Served from the swarm: the registry sent the blob's bytes once in all.
    expect(reg.blobGets.get(layer)).toBe(1);
    // The refusals were the registry's answers to HEADs with each client's own credentials.
    const heads = reg.requests.filter((r) => r.method === 'HEAD' && r.url.endsWith(layer));
    expect(heads.filter((r) => r.status === 401).length).toBeGreaterThanOrEqual(4);
    const metrics = await (await fetch(`http://${String(cluster.agents[1]!.ready.metrics)}/metrics`)).text();
    const denied = /dragonfly_client_proxy_request_total\{[^}]*result="denied"[^}]*\} (\d+)/.exec(metrics);
    expect(Number(denied?.[1])).toBe(5);

    // The control: with the check off, the swarm's copy goes to a client that never proved anything.
    const hole = await get(2, 'team/private');
    expect(hole.status).toBe(200);
    expect(hole.digest).toBe(layer);
    expect(reg.blobGets.get(layer)).toBe(1);
  }, 180_000);

  it('registry down: a client confirmed within accessCheckTTL still pulls from the swarm; one never confirmed gets 502, not the blob', async () => {
    const good = basic(reg.creds!.username, reg.creds!.password);
    await reg.close();
    const confirmed = await get(1, 'team/private', { authorization: good });
    expect(confirmed.status, `${confirmed.body.toString().slice(0, 300)}\n${cluster.agents[1]!.tail(20)}`).toBe(200);
    expect(confirmed.digest).toBe(layer);
    const stranger = await get(1, 'team/private', { authorization: basic('someone', 'else') });
    expect(stranger.status).toBe(502);
    refusedWithoutBlob(stranger);
  }, 60_000);
});
