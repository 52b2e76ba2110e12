/**
 * The registry fixtures themselves (test/support/registry.ts): a real distribution registry per auth
 * mode, an umoci-built image pushed with skopeo, and the counting/redirecting front.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { buildImage, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
import { requireOrSkip } from '../support/require.js';

const tools = registryToolsAvailable();
const sha = (b: ArrayBuffer) => `sha256:${createHash('sha256').update(Buffer.from(b)).digest('hex')}`;

describe.skipIf(!requireOrSkip(tools.ok, 'docker-registry/umoci/skopeo', `missing: ${tools.missing.join(', ')}`))('registry fixtures', () => {
  let image: BuiltImage;
  const regs: RunningRegistry[] = [];
  beforeAll(async () => {
    image = await buildImage({ layers: [100_000, 300_000] });
  }, 60_000);
  afterAll(async () => {
    await Promise.all(regs.map((r) => r.close()));
    await image?.cleanup();
  });

  it('anonymous registry with redirecting front: push, then blob GET redirects to signed storage URL', async () => {
    const reg = await startRegistry({ redirectBlobs: true });
    regs.push(reg);
    const digest = await pushImage(image, `${reg.host}/test/app:v1`);
    expect(digest).toBe(image.manifestDigest);
    const layer = image.layers[1]!;
    const r = await fetch(`${reg.url}/v2/test/app/blobs/${layer.digest}`, { redirect: 'manual' });
    expect(r.status).toBe(307);
    expect(r.headers.get('location')).toMatch(/X-Amz-Signature=/);
    const body = await fetch(`${reg.url}/v2/test/app/blobs/${layer.digest}`).then((x) => x.arrayBuffer());
    expect(sha(body)).toBe(layer.digest);
    expect(reg.blobGets.get(layer.digest)).toBe(2);
    expect(reg.storageGets.get(layer.digest)).toBe(1);
  }, 60_000);

  it('htpasswd registry rejects anonymous and accepts Basic', async () => {
    const reg = await startRegistry({ auth: 'htpasswd' });
    regs.push(reg);
    await pushImage(image, `${reg.host}/test/app:v1`, { creds: reg.creds });
    const anon = await fetch(`${reg.url}/v2/test/app/blobs/${image.configDigest}`);
    expect(anon.status).toBe(401);
    expect(anon.headers.get('www-authenticate')).toMatch(/^Basic /);
    const basic = `Basic ${Buffer.from(`${reg.creds!.username}:${reg.creds!.password}`).toString('base64')}`;
    const ok = await fetch(`${reg.url}/v2/test/app/blobs/${image.configDigest}`, { headers: { authorization: basic } });
    expect(ok.status).toBe(200);
    expect(sha(await ok.arrayBuffer())).toBe(image.configDigest);
  }, 60_000);

  it('token registry: Bearer challenge, token endpoint, token accepted', async () => {
    const reg = await startRegistry({ auth: 'token' });
    regs.push(reg);
    await pushImage(image, `${reg.host}/test/app:v1`, { creds: reg.creds });
    const anon = await fetch(`${reg.url}/v2/test/app/manifests/v1`);
    expect(anon.status).toBe(401);
    const chal = anon.headers.get('www-authenticate')!;
    expect(chal).toContain('scope="repository:test/app:pull"');
    const realm = /realm="([^"]+)"/.exec(chal)![1];
    const tok = (await fetch(`${realm}?service=damselfly-test&scope=repository:test/app:pull`).then((x) => x.json())) as { token: string };
    const ok = await fetch(`${reg.url}/v2/test/app/manifests/v1`, { headers: { authorization: `Bearer ${tok.token}`, accept: 'application/vnd.oci.image.manifest.v1+json' } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('docker-content-digest')).toBe(image.manifestDigest);
  }, 60_000);
});
