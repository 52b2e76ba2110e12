/**
 * Preheat of a whole hf:// or modelscope:// repository (type file, the repository as the URL): the scheduler lists it
 * at one commit and every file becomes a task on the seed peer; a later `get --recursive` of the
 * same repository through another agent then takes every byte from peers, none from the hub.
 * Real manager, scheduler, seed peer and agent processes (test/manager/flow.ts) on SQLite.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliBuilt, cliPath } from '../support/cli.js';
import { startHub, type Hub } from '../support/hub.js';
import { startModelScopeHub, type ModelScopeHub } from '../support/modelscope-hub.js';
import { cleanupTempDirs, killAll, makeTempDir, runCli } from '../support/procs.js';
import { requireOrSkip } from '../support/require.js';
import { http, pollJob, startStack, type Stack } from '../manager/flow.js';
import { isDirectoryUrl } from '../../scheduler/job/runner.js';

const MiB = 1024 * 1024;

describe('isDirectoryUrl', () => {
  it('takes an hf:// repository root or a URL ending in / as a directory, anything else as a file', () => {
    expect(isDirectoryUrl('hf://org/model')).toBe(true);
    expect(isDirectoryUrl('hf://datasets/org/d@v1')).toBe(true);
    expect(isDirectoryUrl('hf://org/model/tokenizer/')).toBe(true);
    expect(isDirectoryUrl('s3://bucket/prefix/')).toBe(true);
    expect(isDirectoryUrl('https://files.example.com/v3/')).toBe(true);
    expect(isDirectoryUrl('modelscope://org/model')).toBe(true);
    expect(isDirectoryUrl('modelscope://datasets/org/d@v1/')).toBe(true);
    expect(isDirectoryUrl('modelscope://org/model/sub/')).toBe(true);
    expect(isDirectoryUrl('modelscope://org/model/config.json')).toBe(false);
    expect(isDirectoryUrl('hf://org/model/config.json')).toBe(false);
    expect(isDirectoryUrl('s3://bucket/key')).toBe(false);
    expect(isDirectoryUrl('https://files.example.com/v3/a.bin?x=/')).toBe(false);
  });
});

describe.skipIf(!requireOrSkip(cliBuilt(), `compiled CLI at ${cliPath()}`, 'run npm run build'))('preheat of an hf:// or modelscope:// repository', () => {
  let hub: Hub;
  let ms: ModelScopeHub;
  let stack: Stack;
  const files = {
    'config.json': Buffer.from('{"a":1}'),
    'model.safetensors': randomBytes(9 * MiB),
    'tokenizer.json': randomBytes(2 * MiB),
  };
  beforeAll(async () => {
    hub = await startHub();
    hub.commit('models', 'org/pre', files);
    ms = await startModelScopeHub();
    ms.commit('org/ms-pre', files);
    const dir = makeTempDir('damselfly-preheat-hf-');
    const store = { kv: { kind: 'sqlite', path: path.join(dir, 'kv.db') }, queue: { kind: 'sqlite', path: path.join(dir, 'queue.db'), visibilityMs: 5_000 } };
    stack = await startStack(cliPath(), store);
  }, 120_000);
  afterAll(async () => {
    await killAll();
    await hub?.close();
    await ms?.close();
    cleanupTempDirs();
  });

  it('makes every file a task on the seed peer; a later get --recursive takes nothing from the hub', async () => {
    const headers = { 'x-damselfly-hf-endpoint': hub.base };
    const created = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: { type: 'preheat', args: { type: 'file', url: 'hf://org/pre', headers } } });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const job = await pollJob(stack, created.json.id, 60_000);
    expect(job.state, JSON.stringify(job.result)).toBe('SUCCESS');
    const ok = job.result.job_states[0].results[0].success_tasks as Array<{ url: string; hostname: string }>;
    expect(ok.map((t) => t.url.replace(/@[0-9a-f]{40}/, '@COMMIT')).sort()).toEqual(Object.keys(files).map((p) => `hf://org/pre@COMMIT/${p}`).sort());
    expect(new Set(ok.map((t) => t.hostname))).toEqual(new Set(['seed']));
    const preheated = hub.stats().cdnBytes + hub.stats().hubBytes;
    expect(preheated).toBe(Object.values(files).reduce((n, b) => n + b.length, 0));

    const out = makeTempDir('damselfly-preheat-hf-out-');
    const r = await runCli(['get', '-r', 'hf://org/pre', '-O', out, '--endpoint', String(stack.agent.ready.socket), '--no-progress', '--hf-endpoint', hub.base], { env: { DAMSELFLY_GET_SUMMARY_JSON: '1' } });
    expect(r.code, r.stderr).toBe(0);
    const sum = JSON.parse(r.stdout.trim()) as { downloaded: number; fromOrigin: number; fromPeers: number };
    expect(sum.downloaded).toBe(3);
    expect(sum.fromOrigin).toBe(0);
    expect(hub.stats().cdnBytes + hub.stats().hubBytes).toBe(preheated);
  }, 120_000);

  it('a modelscope:// repository: every file a task on the seed peer, pinned to its commit; a later get --recursive takes nothing from the hub', async () => {
    const headers = { 'x-damselfly-ms-endpoint': ms.base };
    const created = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: { type: 'preheat', args: { type: 'file', url: 'modelscope://org/ms-pre', headers } } });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const job = await pollJob(stack, created.json.id, 60_000);
    expect(job.state, JSON.stringify(job.result)).toBe('SUCCESS');
    const ok = job.result.job_states[0].results[0].success_tasks as Array<{ url: string; hostname: string }>;
    expect(ok.map((t) => t.url.replace(/@[0-9a-f]{40}/, '@COMMIT')).sort()).toEqual(Object.keys(files).map((p) => `modelscope://org/ms-pre@COMMIT/${p}`).sort());
    expect(new Set(ok.map((t) => t.hostname))).toEqual(new Set(['seed']));
    const preheated = ms.stats().cdnBytes + ms.stats().hubBytes;
    expect(preheated).toBe(Object.values(files).reduce((n, b) => n + b.length, 0));

    const out = makeTempDir('damselfly-preheat-ms-out-');
    const r = await runCli(['get', '-r', 'modelscope://org/ms-pre', '-O', out, '--endpoint', String(stack.agent.ready.socket), '--no-progress', '--ms-endpoint', ms.base], { env: { DAMSELFLY_GET_SUMMARY_JSON: '1' } });
    expect(r.code, r.stderr).toBe(0);
    const sum = JSON.parse(r.stdout.trim()) as { downloaded: number; fromOrigin: number; fromPeers: number };
    expect(sum.downloaded).toBe(3);
    expect(sum.fromOrigin).toBe(0);
    expect(ms.stats().cdnBytes + ms.stats().hubBytes).toBe(preheated);
  }, 120_000);

  it('fails the job naming the repository when it cannot be listed', async () => {
    const created = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: { type: 'preheat', args: { type: 'file', url: 'hf://org/absent', headers: { 'x-damselfly-hf-endpoint': hub.base } } } });
    const job = await pollJob(stack, created.json.id, 30_000);
    expect(job.state).toBe('FAILURE');
    expect(JSON.stringify(job.result)).toMatch(/list hf:\/\/org\/absent: .*404/);
  }, 60_000);
});
