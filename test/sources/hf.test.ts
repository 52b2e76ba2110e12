/**
 * hf:// end to end: `damselfly get` (single file and --recursive) as a real process through an
 * in-process agent against the local hub (test/support/hub.ts). It tries to break: a missing token,
 * the hub moving `main` during a download, paginated listings, and signed CDN URLs that differ on
 * every redirect (the task ID must not, so the second download is the agent's, not the CDN's).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../adapters/log.js';
import { createAgent, type Agent } from '../../agent/agent.js';
import { parseAgentConfig } from '../../agent/config.js';
import { hfSource } from '../../adapters/source/hf.js';
import { taskIdOf } from '../../scheduler/protocol/task-id.js';
import { repoRoot } from '../support/cli.js';
import { startHub, type Hub } from '../support/hub.js';
import { requireOrSkip } from '../support/require.js';

const cli = process.env.DAMSELFLY_CLI ?? path.join(repoRoot, 'dist', 'control', 'cli.js');
const MiB = 1024 * 1024;
const TOKEN = 'hf_secret_test_token';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cli, 'get', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DAMSELFLY_ENDPOINT: '', ...env } });
    let stderr = '';
    let stdout = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.stdout.on('data', (d) => (stdout += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stderr, stdout }));
  });
}

describe.skipIf(!requireOrSkip(existsSync(cli), `compiled CLI at ${cli}`, 'run npm run build or set DAMSELFLY_CLI'))('hf:// through the agent', () => {
  let dir: string;
  let agent: Agent;
  let socket: string;
  let hub: Hub;
  let commit1: string;
  const files = {
    'config.json': Buffer.from('{"architectures":["Test"]}'),
    'model.safetensors': randomBytes(6 * MiB + 5),
    'tokenizer/tokenizer.json': Buffer.from('{"version":"1.0"}'),
    'tokenizer/special_tokens_map.json': Buffer.from('{}'),
    'weights/part-2.bin': randomBytes(2 * MiB),
  };
  const flags = () => ['--endpoint', socket, '--no-progress', '--hf-endpoint', hub.base, '--hf-token', TOKEN];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-hf-'));
    socket = path.join(dir, 'agent.sock');
    const any = { ip: '127.0.0.1', port: 0 };
    agent = createAgent(
      parseAgentConfig({
        host: { hostname: 'hf-test', ip: '127.0.0.1' },
        storage: { dir: path.join(dir, 'storage') },
        scheduler: { addrs: ['127.0.0.1:1'] },
        upload: { server: any, pieceServer: any },
        download: { server: { socket } },
        proxy: { server: any },
        metrics: { server: any },
      }),
      silentLogger,
    );
    await agent.start();
    hub = await startHub({ token: TOKEN, pageSize: 2 });
    commit1 = hub.commit('models', 'org/tiny', files);
  });
  afterAll(async () => {
    await agent?.stop();
    await hub?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('downloads a repository with --recursive, pinned to the commit main had when listed', async () => {
    const out = path.join(dir, 'tiny');
    const r = await run(['-r', 'hf://org/tiny', '-O', out, ...flags()], { DAMSELFLY_GET_SUMMARY_JSON: '1' });
    expect(r.code, r.stderr).toBe(0);
    for (const [p, b] of Object.entries(files)) expect(sha(readFileSync(path.join(out, p))), p).toBe(sha(b));
    const sum = JSON.parse(r.stdout.trim()) as { files: number; downloaded: number; fromOrigin: number };
    expect(sum).toMatchObject({ files: 5, downloaded: 5 });
    // Each file a task of its own, its ID from hf://org/tiny/PATH and the commit.
    expect(agent.taskManager.stat(taskIdOf(`hf://org/tiny@${commit1}/model.safetensors`))?.complete).toBe(true);
    // The token never reaches the output directory's state file.
    expect(readFileSync(path.join(out, '.damselfly-get.json'), 'utf8')).not.toContain(TOKEN);
  });

  it('keeps task IDs equal whatever signed URL the hub redirects to: the second get is served by the agent', async () => {
    const before = hub.stats().cdnBytes;
    const a = await run([`hf://org/tiny@${commit1}/model.safetensors`, '-O', path.join(dir, 'a.safetensors'), ...flags()]);
    expect(a.code, a.stderr).toBe(0);
    expect(sha(readFileSync(path.join(dir, 'a.safetensors')))).toBe(sha(files['model.safetensors']));
    // Already a complete task from the recursive get (other signature params then): no CDN bytes now.
    expect(hub.stats().cdnBytes).toBe(before);
  });

  it('lists every page of a paginated tree (pageSize 2) and a sub-directory on its own', async () => {
    const h = { 'x-damselfly-hf-endpoint': hub.base, 'x-damselfly-hf-token': TOKEN };
    expect((await hfSource.list('hf://org/tiny', h)).map((e) => e.path)).toEqual(Object.keys(files).sort());
    expect((await hfSource.list('hf://org/tiny/tokenizer', h)).map((e) => e.path)).toEqual(['special_tokens_map.json', 'tokenizer.json']);
  });

  it('a listing made before main moves still reads the old commit', async () => {
    const h = { 'x-damselfly-hf-endpoint': hub.base, 'x-damselfly-hf-token': TOKEN };
    const listed = await hfSource.list('hf://org/tiny', h);
    hub.commit('models', 'org/tiny', { ...files, 'config.json': Buffer.from('{"changed":true}') });
    const cfg = listed.find((e) => e.path === 'config.json')!;
    const parts: Buffer[] = [];
    for await (const c of (await hfSource.read(cfg.url, h)).body) parts.push(c as Buffer);
    expect(Buffer.concat(parts).toString()).toBe(files['config.json'].toString());
  });

  it('without the token the hub refuses: exit 1 naming the 401, nothing written', async () => {
    const out = path.join(dir, 'denied');
    const r = await run(['-r', 'hf://org/tiny', '-O', out, '--endpoint', socket, '--no-progress', '--hf-endpoint', hub.base]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot list hf:\/\/org\/tiny: origin answered 401/);
    expect(r.stderr).not.toContain(TOKEN);
  });

  it('takes the token from HF_TOKEN and the hub from HF_ENDPOINT when no flag names them', async () => {
    const out = path.join(dir, 'from-env');
    const r = await run(['-r', `hf://org/tiny@${commit1}`, '-O', out, '--endpoint', socket, '--no-progress'], { HF_TOKEN: TOKEN, HF_ENDPOINT: hub.base });
    expect(r.code, r.stderr).toBe(0);
    expect(sha(readFileSync(path.join(out, 'config.json')))).toBe(sha(files['config.json']));
  });

  it('names the expected form for a malformed hf:// URL and a missing repository', async () => {
    const bad = await run(['hf://just-one-part', '-O', path.join(dir, 'x')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expected hf:\/\/\[datasets\/\|spaces\/\]OWNER\/REPO\[@REVISION\]\[\/PATH\]/);
    const missing = await run(['-r', 'hf://org/none', '-O', path.join(dir, 'none'), ...flags()]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/404/);
  });
});
