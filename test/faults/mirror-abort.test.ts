// A registry blob cut off mid-body, through the mirror, with real components (issue 13: "a mirror
// response that already started is aborted, never completed with wrong bytes"): Debian's registry
// behind a front that destroys the connection after 1 MiB of one layer on every GET (no retry can
// finish a piece), a scheduler, a seed peer and an agent. The mirror client (a raw GET, then skopeo)
// sees an error, never a short blob passed off as complete; once the registry behaves, the next pull
// succeeds and every blob matches its digest.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { cleanupTempDirs, killAll, makeTempDir, proxyUrl, runCli, startCluster, type Cluster } from '../support/procs.js';
import { buildImage, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
import { requireOrSkip } from '../support/require.js';
import { cliBuilt } from '../support/cli.js';
import { getViaProxy } from './support.js';

const execFileP = promisify(execFile);
const tools = registryToolsAvailable();

async function sha256File(file: string): Promise<string> {
  return `sha256:${createHash('sha256').update(await readFile(file)).digest('hex')}`;
}

/** Blob files under an OCI layout whose content does not match their name (a truncated blob kept). */
async function badBlobs(out: string): Promise<string[]> {
  const dir = path.join(out, 'blobs', 'sha256');
  if (!existsSync(dir)) return [];
  const bad: string[] = [];
  for (const name of readdirSync(dir)) if ((await sha256File(path.join(dir, name))) !== `sha256:${name}`) bad.push(name);
  return bad;
}

describe.skipIf(
  !requireOrSkip(tools.ok, 'docker-registry/umoci/skopeo', `missing: ${tools.missing.join(', ')}`) ||
    !requireOrSkip(cliBuilt(), 'compiled damselfly CLI', 'run npm run build or set DAMSELFLY_CLI'),
)('mirror: a registry blob cut off mid-body', () => {
  let reg: RunningRegistry;
  let image: BuiltImage;
  let cluster: Cluster;
  let work: string;
  let big: string;

  beforeAll(async () => {
    work = makeTempDir('damselfly-mirror-abort-');
    [reg, image] = await Promise.all([startRegistry(), buildImage({ layers: [12 << 20], seed: `abort-${Date.now()}` })]);
    expect(await pushImage(image, `${reg.host}/test/abort:v1`)).toBe(image.manifestDigest);
    big = image.blobs.find((d) => d !== image.configDigest) ?? image.blobs[0]!;
    cluster = await startCluster({
      agents: 1,
      agent: () => ({ proxy: { registryMirror: { addr: reg.url } } }),
      seedOverrides: { proxy: { registryMirror: { addr: reg.url } } },
      readyTimeoutMs: 30_000,
    });
  }, 180_000);

  afterAll(async () => {
    await killAll();
    await reg?.close();
    await image?.cleanup();
    cleanupTempDirs();
  });

  it('the client sees an error, never a short blob as complete; after the registry recovers the pull succeeds, verified', async () => {
    const agent = cluster.agents[0]!;
    reg.cutBlob = { digest: big, afterBytes: 1 << 20 };
    const blobUrl = `${reg.url}/v2/test/abort/blobs/${big}`;
    const r = await getViaProxy(agent, blobUrl);
    expect(reg.cuts, 'the registry cut the blob off').toBeGreaterThan(0);
    expect(r.status === 200 && r.complete, `a ${r.bytes}-byte body answered ${r.status} and completed`).toBe(false);
    expect(r.sha256).not.toBe(big);

    const dir = path.join(work, 'skopeo');
    const gen = await runCli(['config', 'podman', '--mirror', proxyUrl(agent), '--registry', reg.host, '--write', dir]);
    expect(gen.code, gen.stderr).toBe(0);
    const copy = (out: string) => execFileP('skopeo', ['--registries-conf', path.join(dir, 'registries.conf'), 'copy', '--insecure-policy', '--src-tls-verify=false', `docker://${reg.host}/test/abort:v1`, `oci:${out}:v1`], { timeout: 180_000 });
    const failedOut = path.join(dir, 'failed');
    await expect(copy(failedOut), 'skopeo accepted the cut-off blob').rejects.toThrow();
    expect(await badBlobs(failedOut)).toEqual([]);

    reg.cutBlob = undefined;
    const out = path.join(dir, 'out');
    await copy(out);
    const index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    expect(index.manifests[0]!.digest).toBe(image.manifestDigest);
    for (const d of [image.manifestDigest, ...image.blobs]) expect(await sha256File(path.join(out, 'blobs', 'sha256', d.slice(7)))).toBe(d);
    const again = await getViaProxy(agent, blobUrl);
    expect(again).toMatchObject({ status: 200, complete: true, sha256: big });
  }, 300_000);
});
