/** resolveImage against a real registry (docker-registry): OCI index by platform, Basic and token auth. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { buildImage, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../../test/support/registry.js';
import { requireOrSkip } from '../../test/support/require.js';
import { resolveImage, selectPlatform } from './image.js';

const tools = registryToolsAvailable();

describe('selectPlatform', () => {
  const m = (os: string, architecture: string, variant?: string) => ({ digest: `sha256:${os}-${architecture}-${variant ?? ''}`, size: 1, platform: { os, architecture, variant } });
  it('picks os/arch, prefers no variant unless asked, and names what the index has when nothing matches', () => {
    const index = [m('linux', 'amd64'), m('linux', 'arm64', 'v8'), m('linux', 'arm64'), m('linux', 'arm', 'v7')];
    expect(selectPlatform(index, 'linux/amd64').digest).toBe('sha256:linux-amd64-');
    expect(selectPlatform(index, 'linux/arm64').digest).toBe('sha256:linux-arm64-');
    expect(selectPlatform(index, 'linux/arm64/v8').digest).toBe('sha256:linux-arm64-v8');
    expect(selectPlatform(index, 'linux/arm/v7').digest).toBe('sha256:linux-arm-v7');
    expect(() => selectPlatform(index, 'windows/amd64')).toThrow(/no manifest for platform windows\/amd64 \(index has: linux\/amd64, linux\/arm64\/v8/);
  });
});

describe.skipIf(!requireOrSkip(tools.ok, 'docker-registry/umoci/skopeo', `missing: ${tools.missing.join(', ')}`))('resolveImage against real registries', () => {
  let amd: BuiltImage;
  let arm: BuiltImage;
  let plain: RunningRegistry;
  let basic: RunningRegistry;
  let token: RunningRegistry;
  beforeAll(async () => {
    [amd, arm, plain, basic, token] = await Promise.all([
      buildImage({ layers: [10_000, 20_000], seed: 'amd' }),
      buildImage({ layers: [30_000], seed: 'arm' }),
      startRegistry(),
      startRegistry({ auth: 'htpasswd' }),
      startRegistry({ auth: 'token', anonymousPull: false }),
    ]);
    await pushImage(amd, `${plain.host}/multi/app:amd64`);
    await pushImage(arm, `${plain.host}/multi/app:arm64`);
    const size = async (img: BuiltImage) =>
      Buffer.from(await (await request(`${plain.url}/v2/multi/app/manifests/${img.manifestDigest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).body.arrayBuffer()).length;
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: amd.manifestDigest, size: await size(amd), platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: arm.manifestDigest, size: await size(arm), platform: { os: 'linux', architecture: 'arm64' } },
      ],
    };
    const put = await request(`${plain.url}/v2/multi/app/manifests/v1`, { method: 'PUT', headers: { 'content-type': index.mediaType }, body: JSON.stringify(index) });
    expect(put.statusCode).toBe(201);
    await put.body.dump();
    await pushImage(amd, `${basic.host}/multi/app:v1`, { creds: basic.creds });
    await pushImage(amd, `${token.host}/multi/app:v1`, { creds: token.creds });
  }, 120_000);
  afterAll(async () => {
    await Promise.all([plain, basic, token].filter(Boolean).map((r) => r.close()));
    await Promise.all([amd, arm].filter(Boolean).map((i) => i.cleanup()));
  });

  it('resolves an OCI index by platform (default linux/amd64) to config + layers with blob URLs a pull uses', async () => {
    const def = await resolveImage(`${plain.url}/v2/multi/app/manifests/v1`);
    expect(def.blobs.map((b) => b.digest)).toEqual(amd.blobs);
    expect(def.blobs[0].url).toBe(`${plain.url}/v2/multi/app/blobs/${amd.blobs[0]}`);
    const a = await resolveImage(`${plain.url}/v2/multi/app/manifests/v1`, { platform: 'linux/arm64' });
    expect(a.blobs.map((b) => b.digest)).toEqual(arm.blobs);
    await expect(resolveImage(`${plain.url}/v2/multi/app/manifests/v1`, { platform: 'linux/s390x' })).rejects.toMatchObject({ code: 'INVALID' });
    await expect(resolveImage(`${plain.url}/v2/multi/nothing/manifests/v1`)).rejects.toMatchObject({ code: 'SOURCE', status: 404 });
  });

  it('answers a Basic challenge with username/password, and a token challenge by asking the token service', async () => {
    const b = await resolveImage(`${basic.url}/v2/multi/app/manifests/v1`, { username: basic.creds!.username, password: basic.creds!.password });
    expect(b.blobs.map((x) => x.digest)).toEqual(amd.blobs);
    expect(b.headers.Authorization).toMatch(/^Basic /);
    await expect(resolveImage(`${basic.url}/v2/multi/app/manifests/v1`, { username: basic.creds!.username, password: 'wrong' })).rejects.toMatchObject({ status: 401 });
    const before = token.tokensIssued;
    const t = await resolveImage(`${token.url}/v2/multi/app/manifests/v1`, { username: token.creds!.username, password: token.creds!.password });
    expect(t.blobs.map((x) => x.digest)).toEqual(amd.blobs);
    expect(t.headers.Authorization).toMatch(/^Bearer /);
    expect(token.tokensIssued).toBe(before + 1);
    // The token works for the blobs the peers will fetch.
    const blob = await request(t.blobs[1].url, { headers: t.headers });
    expect(blob.statusCode).toBe(200);
    await blob.body.dump();
  });
});
