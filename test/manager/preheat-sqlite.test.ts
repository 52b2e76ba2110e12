/**
 * Preheat end to end on the embedded SQLite store and queue, posted exactly as Harbor posts it;
 * then a pull of every blob through an agent is served from the P2P cache (the registry counts one
 * GET per blob in total). Needs the compiled CLI (DAMSELFLY_CLI) and docker-registry/umoci/skopeo.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath } from '../support/cli.js';
import { cleanupTempDirs, killAll, makeTempDir, runCli } from '../support/procs.js';
import { buildImage, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
import { requireOrSkip } from '../support/require.js';
import { startOrigin } from '../support/origin.js';
import { harborBody, http, pollJob, pullBlobs, startStack, type Stack } from './flow.js';

const tools = registryToolsAvailable();

describe.skipIf(!requireOrSkip(tools.ok, 'docker-registry/umoci/skopeo', `missing: ${tools.missing.join(', ')}`))('preheat end to end (SQLite)', () => {
  let registry: RunningRegistry;
  let image: BuiltImage;
  let stack: Stack;
  beforeAll(async () => {
    const dir = makeTempDir('damselfly-e2e-sqlite-');
    const store = { kv: { kind: 'sqlite', path: path.join(dir, 'kv.db') }, queue: { kind: 'sqlite', path: path.join(dir, 'queue.db'), visibilityMs: 5_000 } };
    [registry, image] = await Promise.all([startRegistry(), buildImage({ layers: [1_500_000, 3_000_000] })]);
    await pushImage(image, `${registry.host}/test/app:v1`);
    registry.resetCounters();
    stack = await startStack(cliPath(), store);
  }, 120_000);
  afterAll(async () => {
    await killAll();
    await registry?.close();
    await image?.cleanup();
    cleanupTempDirs();
  });

  it('Harbor-style preheat reaches SUCCESS, then every blob is pulled from the P2P cache', async () => {
    const started = Date.now();
    const created = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: harborBody(`${registry.url}/v2/test/app/manifests/v1`) });
    expect(created.status).toBe(200);
    expect(created.json).toMatchObject({ state: 'PENDING' });
    expect(typeof created.json.id).toBe('number');
    const job = await pollJob(stack, created.json.id);
    expect(job.state, JSON.stringify(job.result)).toBe('SUCCESS');
    const [js] = job.result.job_states;
    expect(js.state).toBe('SUCCESS');
    const urls = js.results[0].success_tasks.map((t: { url: string }) => t.url).sort();
    expect(urls).toEqual(image.blobs.map((d) => `${registry.url}/v2/test/app/blobs/${d}`).sort());
    expect(js.results[0].success_tasks.every((t: { hostname: string }) => t.hostname === 'seed')).toBe(true);
    process.stderr.write(`preheat of ${image.blobs.length} blobs took ${Date.now() - started} ms\n`);
    for (const d of image.blobs) expect(registry.blobGets.get(d)).toBe(1);

    expect(await pullBlobs(stack.agent, registry, 'test/app', image)).toEqual(image.blobs);
    // The origin still saw one GET per blob in total: the pulls came from the P2P cache.
    for (const d of image.blobs) expect(registry.blobGets.get(d)).toBe(1);
    expect(registry.totalBlobGets()).toBe(image.blobs.length);
  }, 120_000);

  it('get_task lists the peers holding a blob; delete_task evicts it everywhere, so the next pull goes to the origin', async () => {
    const blob = image.layers[1].digest;
    const url = `${registry.url}/v2/test/app/blobs/${blob}`;
    const got = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: { type: 'get_task', args: { url } } });
    expect(got.status).toBe(200);
    const gjob = await pollJob(stack, got.json.id);
    expect(gjob.state).toBe('SUCCESS');
    const hosts = gjob.result.job_states[0].results[0].peers.map((p: { hostname: string }) => p.hostname).sort();
    expect(hosts).toEqual(['agent-0', 'seed']);
    const del = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: { type: 'delete_task', args: { url } } });
    const djob = await pollJob(stack, del.json.id);
    expect(djob.state, JSON.stringify(djob.result)).toBe('SUCCESS');
    expect(djob.result.job_states[0].results[0].success_tasks.map((t: { hostname: string }) => t.hostname).sort()).toEqual(['agent-0', 'seed']);
    const before = registry.blobGets.get(blob) ?? 0;
    await pullBlobs(stack.agent, registry, 'test/app', { ...image, blobs: [blob] });
    expect(registry.blobGets.get(blob)).toBe(before + 1);
  }, 60_000);

  it('a registry behind a token service, with the Authorization header Harbor sends: SUCCESS, and the token is never stored, returned or logged', async () => {
    const tokenReg = await startRegistry({ auth: 'token' });
    try {
      await pushImage(image, `${tokenReg.host}/test/app:v1`, { creds: tokenReg.creds });
      tokenReg.resetCounters();
      // What Harbor does: a pull-scoped registry token, passed as headers.Authorization.
      const challenge = (await fetch(`${tokenReg.url}/v2/`)).headers.get('www-authenticate') ?? '';
      const realm = /realm="([^"]+)"/.exec(challenge)![1];
      const service = /service="([^"]+)"/.exec(challenge)?.[1] ?? '';
      const basic = Buffer.from(`${tokenReg.creds!.username}:${tokenReg.creds!.password}`).toString('base64');
      const tokenRes = await fetch(`${realm}?service=${encodeURIComponent(service)}&scope=repository:test/app:pull`, { headers: { authorization: `Basic ${basic}` } });
      const token = ((await tokenRes.json()) as { token: string }).token;
      expect(token).toBeTruthy();
      const created = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: harborBody(`${tokenReg.url}/v2/test/app/manifests/v1`, `Bearer ${token}`) });
      expect(created.status).toBe(200);
      const job = await pollJob(stack, created.json.id);
      expect(job.state, JSON.stringify(job.result)).toBe('SUCCESS');
      for (const d of image.blobs) expect(tokenReg.blobGets.get(d)).toBe(1);
      const listed = await http('GET', `${stack.managerUrl}/oapi/v1/jobs?per_page=100`, { token: stack.pat });
      for (const text of [JSON.stringify(created.json), JSON.stringify(job), JSON.stringify(listed.json), stack.manager.tail(10_000), stack.scheduler.tail(10_000)]) {
        expect(text).not.toContain(token);
      }
    } finally {
      await tokenReg.close();
    }
  }, 60_000);

  it('damselfly preheat IMAGE: progress on stderr, exit 0 on SUCCESS; exit 1 with the error on FAILURE; 2 on usage errors', async () => {
    const other = await buildImage({ layers: [700_000] });
    try {
      await pushImage(other, `${registry.host}/test/cli:v1`);
      const before = registry.totalBlobGets();
      const ok = await runCli(['preheat', `${registry.host}/test/cli:v1`, '--manager', stack.managerUrl, '--token', stack.pat, '--interval', '200ms'], { timeoutMs: 60_000 });
      expect(ok.code, ok.stderr).toBe(0);
      expect(JSON.parse(ok.stdout.trim())).toMatchObject({ state: 'SUCCESS', success_tasks: other.blobs.length });
      expect(ok.stderr).toMatch(/preheat job \d+ created/);
      expect(registry.totalBlobGets() - before).toBe(other.blobs.length);
      const bad = await runCli(['preheat', `${registry.host}/test/nothing:v1`, '--manager', stack.managerUrl, '--token', stack.pat, '--interval', '200ms'], { timeoutMs: 60_000 });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/404/);
      const denied = await runCli(['preheat', `${registry.host}/test/cli:v1`, '--manager', stack.managerUrl, '--token', 'wrong'], { timeoutMs: 30_000 });
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/401/);
      const usage = await runCli(['preheat', `${registry.host}/test/cli:v1`, '--manager', stack.managerUrl], { timeoutMs: 30_000, env: { DAMSELFLY_TOKEN: undefined } });
      expect(usage.code).toBe(2);
    } finally {
      await other.cleanup();
    }
  }, 120_000);

  it('scope all_peers drives the normal peers (here agent-0) instead of a seed peer', async () => {
    const origin = await startOrigin();
    try {
      const url = origin.add('/all-peers.bin', { size: 5 * 1024 * 1024, seed: 'all-peers' });
      const created = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: { type: 'preheat', args: { type: 'file', url, scope: 'all_peers' } } });
      const job = await pollJob(stack, created.json.id, 30_000);
      expect(job.state, JSON.stringify(job.result)).toBe('SUCCESS');
      expect(job.result.job_states[0].results[0].success_tasks).toEqual([{ url, hostname: 'agent-0', ip: '127.0.0.1' }]);
      expect(origin.stats().byPath['/all-peers.bin'].bytes).toBe(5 * 1024 * 1024);
    } finally {
      await origin.close();
    }
  }, 60_000);

  it('a job past its timeout is FAILURE at the deadline, and a late result does not change it', async () => {
    const origin = await startOrigin({ rate: 1024 * 1024 });
    try {
      const url = origin.add('/slow.bin', { size: 8 * 1024 * 1024, seed: 'slow' });
      const t0 = Date.now();
      const created = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: { type: 'preheat', args: { type: 'file', url, timeout: 2e9 } } });
      const job = await pollJob(stack, created.json.id, 20_000);
      const took = Date.now() - t0;
      expect(job.state).toBe('FAILURE');
      expect(job.result.job_states[0].error).toMatch(/timed out|deadline/);
      expect(took).toBeGreaterThanOrEqual(1_900);
      expect(took).toBeLessThan(4_000);
      await new Promise((r) => setTimeout(r, 1_500));
      expect((await http('GET', `${stack.managerUrl}/oapi/v1/jobs/${created.json.id}`, { token: stack.pat })).json.state).toBe('FAILURE');
    } finally {
      await origin.close();
    }
  }, 60_000);

  it('a preheat of an image that does not exist ends in FAILURE with the registry error', async () => {
    const created = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: harborBody(`${registry.url}/v2/test/missing/manifests/v1`) });
    const job = await pollJob(stack, created.json.id);
    expect(job.state).toBe('FAILURE');
    expect(job.result.job_states[0].error).toMatch(/404/);
  }, 60_000);
});
