/**
 * `damselfly get --recursive` as a real process against an in-process agent, over s3:// (s3rver) and
 * an http directory origin. It tries to break: a rerun must not fetch again, a flipped byte on disk
 * must be fetched again, kill -9 mid-way must leave no partial file under its final name and a rerun
 * must finish it, a refused file must fail alone, and bad usage must exit 2 before anything is written.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../adapters/log.js';
import { createAgent, type Agent } from '../../agent/agent.js';
import { parseAgentConfig } from '../../agent/config.js';
import { s3Url } from '../../adapters/source/s3.js';
import { repoRoot } from '../support/cli.js';
import { startDirOrigin, type DirOrigin } from '../support/dir-origin.js';
import { requireOrSkip } from '../support/require.js';
import { S3_KEY, startS3, type TestS3 } from '../support/s3.js';

const cli = process.env.DAMSELFLY_CLI ?? path.join(repoRoot, 'dist', 'control', 'cli.js');
const haveCli = existsSync(cli);
const MiB = 1024 * 1024;

function start(args: string[]): { p: ChildProcess; done: Promise<{ code: number; stderr: string }> } {
  const p = spawn(process.execPath, [cli, 'get', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DAMSELFLY_ENDPOINT: '' } });
  let stderr = '';
  p.stderr!.on('data', (d) => (stderr += d));
  return { p, done: new Promise((resolve) => p.on('close', (code, sig) => resolve({ code: code ?? (sig ? 128 : -1), stderr }))) };
}
const run = (args: string[]) => start(args).done;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Every file below `dir` (relative, '/'-separated), temporary and state files included. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name), rel + e.name + '/');
      else out.push(rel + e.name);
    }
  };
  walk(dir, '');
  return out.sort();
}

describe.skipIf(!requireOrSkip(haveCli, `compiled CLI at ${cli}`, 'run npm run build or set DAMSELFLY_CLI'))('damselfly get --recursive', () => {
  let dir: string;
  let agent: Agent;
  let socket: string;
  let s3: TestS3;
  let web: DirOrigin;
  const webRoot = () => path.join(dir, 'web');
  const repo: Record<string, Buffer> = {
    'config.json': Buffer.from('{"model_type":"test"}'),
    'model-00001-of-00002.safetensors': randomBytes(5 * MiB + 17),
    'model-00002-of-00002.safetensors': randomBytes(3 * MiB),
    'tokenizer/tokenizer.json': Buffer.from('{"v":1}'),
    'tokenizer/vocab with space.txt': Buffer.from('a\nb\n'),
    'README.md': Buffer.from('# test model'),
  };
  const s3Flags = () => ['--storage-endpoint', s3.endpoint, '--storage-access-key-id', S3_KEY.accessKeyId, '--storage-access-key-secret', S3_KEY.secretAccessKey];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-getr-'));
    socket = path.join(dir, 'agent.sock');
    const any = { ip: '127.0.0.1', port: 0 };
    agent = createAgent(
      parseAgentConfig({
        host: { hostname: 'getr-test', ip: '127.0.0.1' },
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
    s3 = await startS3();
    for (const [p, b] of Object.entries(repo)) await s3.put('models', `org/m1/${p}`, b);
    await s3.put('models', 'org/m1-other/not-mine.bin', Buffer.from('x'));
    for (const [p, b] of Object.entries(repo)) {
      mkdirSync(path.dirname(path.join(webRoot(), 'm1', p)), { recursive: true });
      writeFileSync(path.join(webRoot(), 'm1', p), b);
    }
    web = await startDirOrigin(webRoot(), { refuse: new Set(['/m1/README.md']) });
  });
  afterAll(async () => {
    await agent?.stop();
    await s3?.close();
    await web?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('downloads an s3:// prefix through the agent, each file a task, and says what it did', async () => {
    const out = path.join(dir, 'out-s3');
    const r = await run(['--recursive', 's3://models/org/m1', '-O', out, '--endpoint', socket, '--no-progress', ...s3Flags()]);
    expect(r.code, r.stderr).toBe(0);
    expect(tree(out)).toEqual([...Object.keys(repo), '.damselfly-get.json'].sort());
    for (const [p, b] of Object.entries(repo)) expect(sha(readFileSync(path.join(out, p))), p).toBe(sha(b));
    // Each file went through the agent as its own task (its ID from the s3:// URL).
    for (const p of Object.keys(repo)) expect(agent.taskManager.stat(agent.taskManager.taskIdOf({ url: s3Url('models', `org/m1/${p}`) }))?.complete, p).toBe(true);
    expect(r.stderr).toMatch(/damselfly get: 6 files \(6 downloaded, 0 already complete, 0 failed\), 8\.0MiB in [\d.]+s: 0B from peers, 8\.0MiB from the origin/);
    // The credentials passed on the command line are nowhere in the output directory or the agent's storage metadata.
    expect(readFileSync(path.join(out, '.damselfly-get.json'), 'utf8')).not.toContain(S3_KEY.secretAccessKey + '"');
  });

  it('skips on a rerun what is complete and verified, and fetches again a file with a flipped byte', async () => {
    const out = path.join(dir, 'out-s3');
    const again = await run(['-r', 's3://models/org/m1/', '-O', out, '--endpoint', socket, '--no-progress', ...s3Flags()]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/6 files \(0 downloaded, 6 already complete, 0 failed\)/);
    const victim = path.join(out, 'model-00002-of-00002.safetensors');
    const bytes = readFileSync(victim);
    bytes[12345] ^= 0x01;
    writeFileSync(victim, bytes);
    const fixed = await run(['-r', 's3://models/org/m1', '-O', out, '--endpoint', socket, '--no-progress', ...s3Flags()]);
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(fixed.stderr).toMatch(/6 files \(1 downloaded, 5 already complete, 0 failed\)/);
    expect(sha(readFileSync(victim))).toBe(sha(repo['model-00002-of-00002.safetensors']!));
  });

  it('keeps to --include and --exclude over an http index page, and fails a refused file alone', async () => {
    const out = path.join(dir, 'out-web');
    const r = await run(['-r', `${web.base}/m1/`, '-O', out, '--endpoint', socket, '--no-progress', '--include', '*.safetensors', '--include', 'tokenizer/**', '--exclude', 'vocab*']);
    expect(r.code, r.stderr).toBe(0);
    expect(tree(out)).toEqual(['.damselfly-get.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'tokenizer/tokenizer.json']);
    const all = path.join(dir, 'out-web-all');
    const r2 = await run(['-r', `${web.base}/m1`, '-O', all, '--endpoint', socket, '--no-progress']);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/README\.md: failed: origin answered 403/);
    expect(r2.stderr).toMatch(/6 files \(5 downloaded, 0 already complete, 1 failed\)/);
    expect(existsSync(path.join(all, 'README.md'))).toBe(false);
    expect(tree(all).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('survives kill -9 mid-way: no partial file under its final name, and a rerun completes it', async () => {
    const big = randomBytes(24 * MiB);
    mkdirSync(path.join(webRoot(), 'slow'), { recursive: true });
    writeFileSync(path.join(webRoot(), 'slow', 'big.safetensors'), big);
    writeFileSync(path.join(webRoot(), 'slow', 'small.json'), '{}');
    const slow = await startDirOrigin(webRoot(), { rate: 8 * MiB });
    try {
      const out = path.join(dir, 'out-kill');
      // --concurrency 1 and sorted order: small.json lands after big; kill while big is under way.
      const c = start(['-r', `${slow.base}/slow`, '-O', out, '--no-progress', '--concurrency', '1', '--endpoint', path.join(dir, 'no-agent.sock')]);
      const t0 = Date.now();
      while (Date.now() - t0 < 20_000 && !(existsSync(out) && readdirSync(out).some((f) => f.endsWith('.tmp') && statSync(path.join(out, f)).size > 2 * MiB))) await new Promise((r) => setTimeout(r, 50));
      c.p.kill('SIGKILL');
      await c.done;
      expect(existsSync(path.join(out, 'big.safetensors'))).toBe(false);
      const r = await run(['-r', `${slow.base}/slow`, '-O', out, '--no-progress', '--endpoint', path.join(dir, 'no-agent.sock')]);
      expect(r.code, r.stderr).toBe(0);
      expect(sha(readFileSync(path.join(out, 'big.safetensors')))).toBe(sha(big));
      expect(tree(out)).toEqual(['.damselfly-get.json', 'big.safetensors', 'small.json']);
    } finally {
      await slow.close();
    }
  });

  it('rejects bad usage with exit 2 and a reason, writing nothing', async () => {
    const file = path.join(dir, 'a-file');
    writeFileSync(file, 'x');
    const notDir = await run(['-r', 's3://models/org/m1', '-O', file]);
    expect(notDir.code).toBe(2);
    expect(notDir.stderr).toMatch(/is not a directory/);
    expect((await run(['s3://models/org/m1/config.json', '-O', path.join(dir, 'x'), '--include', '*.json'])).stderr).toMatch(/need --recursive/);
    const leak = await run(['-r', `${web.base}/m1`, '-O', path.join(dir, 'never'), '--storage-access-key-secret', 'nope']);
    expect(leak.code).toBe(2);
    expect(leak.stderr).toMatch(/s3:\/\/ URLs only/);
    expect(existsSync(path.join(dir, 'never'))).toBe(false);
    const glob = await run(['-r', 's3://models/org/m1', '-O', path.join(dir, 'never'), '--include', 'model[12.bin']);
    expect(glob.code).toBe(2);
    expect(glob.stderr).toMatch(/--include glob model\[12\.bin: '\[' without '\]'/);
    expect((await run(['-r', 'gs://bucket/x', '-O', path.join(dir, 'never')])).stderr).toMatch(/unsupported scheme: expected one of http:\/\/, https:\/\/, s3:\/\//);
  });

  it('exits 1 naming the URL when the prefix is empty or the bucket is missing', async () => {
    const empty = await run(['-r', 's3://models/org/none', '-O', path.join(dir, 'out-none'), '--endpoint', socket, ...s3Flags()]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/cannot list s3:\/\/models\/org\/none: .*404|nothing below s3:\/\/models\/org\/none/);
    const nob = await run(['-r', 's3://no-such-bucket/x', '-O', path.join(dir, 'out-nob'), '--endpoint', socket, ...s3Flags()]);
    expect(nob.code).toBe(1);
    expect(nob.stderr).toMatch(/cannot list s3:\/\/no-such-bucket\/x: object store answered 404/);
  });
});
