// `damselfly get` as a real process against an in-process agent and a local origin.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { Agent as UndiciAgent, request } from 'undici';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileSha256, startOrigin, MiB, type Origin } from '../test/support/origin.js';
import { requireOrSkip } from '../test/support/require.js';
import { repoRoot } from '../test/support/cli.js';
import { schedulerlessAgent } from '../test/support/local-agent.js';
import type { Agent } from './agent.js';

const cli = process.env.DAMSELFLY_CLI ?? path.join(repoRoot, 'dist', 'control', 'cli.js');
const haveCli = existsSync(cli);

function run(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cli, 'get', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DAMSELFLY_ENDPOINT: '' } });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

let dir: string;
let origin: Origin;
let agent: Agent;
let socket: string;

describe.skipIf(!requireOrSkip(haveCli, `compiled CLI at ${cli}`, 'build it or set DAMSELFLY_CLI'))('damselfly get', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-get-'));
    origin = await startOrigin();
    socket = path.join(dir, 'agent.sock');
    agent = schedulerlessAgent('get-test', dir, socket);
    await agent.start();
  });
  afterAll(async () => {
    await agent?.stop();
    await origin?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('downloads through the agent and checks the digest', async () => {
    const url = origin.add('/get/a.bin', { size: 5 * MiB + 1, seed: 'get-a' });
    const out = path.join(dir, 'a.bin');
    const r = await run([url, '-O', out, '--endpoint', socket, '--digest', origin.sha256('/get/a.bin')]);
    expect(r.code, r.stderr).toBe(0);
    expect(await fileSha256(out)).toBe(origin.sha256('/get/a.bin'));
    expect(agent.taskManager.stat(agent.taskManager.taskIdOf({ url }))?.complete).toBe(true);
  });

  it('leaves the output untouched and exits non-zero with one line on a digest mismatch', async () => {
    const url = origin.add('/get/b.bin', { size: 1 * MiB, seed: 'get-b' });
    const out = path.join(dir, 'b.bin');
    writeFileSync(out, 'previous content');
    const r = await run([url, '-O', out, '--endpoint', socket, '--digest', 'sha256:' + 'f'.repeat(64)]);
    expect(r.code).not.toBe(0);
    // (the agent breaks the body off; get may warn and retry the origin, then fails with one reason)
    expect(r.stderr.trim().split('\n').filter((l) => l.startsWith('damselfly get:') && !l.includes('warning:'))).toHaveLength(1);
    expect(r.stderr).toMatch(/digest/);
    expect(readFileSync(out, 'utf8')).toBe('previous content');
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('reports an origin 404 and writes nothing', async () => {
    const out = path.join(dir, 'missing.bin');
    const r = await run([`${origin.base}/nope`, '-O', out, '--endpoint', socket]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/damselfly get: .*404/);
    expect(existsSync(out)).toBe(false);
  });

  it('without an agent, warns and downloads from the origin', async () => {
    const url = origin.add('/get/c.bin', { size: 3 * MiB, seed: 'get-c' });
    const out = path.join(dir, 'c.bin');
    origin.resetStats();
    const r = await run([url, '-O', out, '--endpoint', path.join(dir, 'no-agent.sock')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: no agent/);
    expect(await fileSha256(out)).toBe(origin.sha256('/get/c.bin'));
    expect(origin.stats().bytes).toBe(3 * MiB);
  });

  it('an origin that sends no Content-Length (chunked) is not distributed, but get still downloads it directly', async () => {
    const body = Buffer.alloc(3 * MiB + 17);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31 + 7) & 0xff;
    const chunked = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }); // no length: chunked encoding
      for (let off = 0; off < body.length; off += 256 * 1024) res.write(body.subarray(off, off + 256 * 1024));
      res.end();
    });
    await new Promise<void>((r) => chunked.listen(0, '127.0.0.1', r));
    try {
      const out = path.join(dir, 'chunked.bin');
      const r = await run([`http://127.0.0.1:${(chunked.address() as AddressInfo).port}/chunked.bin`, '-O', out, '--endpoint', socket]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/warning: .*content length.*downloading from the origin directly/);
      expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(createHash('sha256').update(body).digest('hex'));
      expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
    } finally {
      await new Promise((r) => chunked.close(r));
    }
  });

  it('the local API also streams the bytes (what get falls back to when the agent cannot write the file)', async () => {
    const url = origin.add('/get/d.bin', { size: 2 * MiB + 3, seed: 'get-d' });
    const res = await request(`http://localhost/v1/download?${new URLSearchParams({ url })}`, { dispatcher: new UndiciAgent({ connect: { socketPath: socket } }) });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBe(String(2 * MiB + 3));
    const h = createHash('sha256');
    for await (const c of res.body) h.update(c as Buffer);
    expect('sha256:' + h.digest('hex')).toBe(origin.sha256('/get/d.bin'));
    const health = await request('http://localhost/v1/healthy', { dispatcher: new UndiciAgent({ connect: { socketPath: socket } }) });
    expect(await health.body.json()).toEqual({ ok: true });
  });

  it('rejects bad usage with exit 2', async () => {
    expect((await run(['ftp://x/y', '-O', path.join(dir, 'x')])).code).toBe(2);
    expect((await run(['http://127.0.0.1:1/x'])).code).toBe(2);
    expect((await run(['http://127.0.0.1:1/x', '-O', 'o', '--digest', 'md5:abc'])).code).toBe(2);
  });
});
