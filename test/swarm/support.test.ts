// The harness itself: the origin's HTTP semantics, counters and limiter; spawnRole's ready/kill path.
import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { startOrigin, generateBytes, generateChunks, generatedSha256, parseRange, TokenBucket, MiB, KiB, type Origin } from '../support/origin.js';
import { spawnRole, killAll, makeTempDir, cleanupTempDirs, runCli } from '../support/procs.js';

const origins: Origin[] = [];
afterAll(async () => {
  await killAll();
  await Promise.all(origins.map((o) => o.close()));
  cleanupTempDirs();
});

describe('generated content', () => {
  it('is random-access: any slice equals the same bytes of the streamed whole', () => {
    const whole = Buffer.concat([...generateChunks('s', 0, 100_003, 4096)]);
    expect(whole.length).toBe(100_003);
    for (const [s, e] of [[0, 1], [15, 17], [4095, 4097], [77_777, 100_003]] as const) {
      expect(generateBytes('s', s, e).equals(whole.subarray(s, e))).toBe(true);
      expect(Buffer.concat([...generateChunks('s', s, e, 1000)]).equals(whole.subarray(s, e))).toBe(true);
    }
    expect(generatedSha256({ seed: 's', size: 100_003 })).toBe(`sha256:${createHash('sha256').update(whole).digest('hex')}`);
    expect(generateBytes('t', 0, 64).equals(whole.subarray(0, 64))).toBe(false);
  });

  it('parses ranges like an HTTP server', () => {
    expect(parseRange(undefined, 10)).toBeUndefined();
    expect(parseRange('bytes=2-4', 10)).toEqual({ start: 2, end: 5 });
    expect(parseRange('bytes=8-', 10)).toEqual({ start: 8, end: 10 });
    expect(parseRange('bytes=-3', 10)).toEqual({ start: 7, end: 10 });
    expect(parseRange('bytes=5-100', 10)).toEqual({ start: 5, end: 10 });
    expect(parseRange('bytes=10-', 10)).toBeNull();
    expect(parseRange('bytes=0-1,3-4', 10)).toBeUndefined();
  });
});

describe('origin', () => {
  it('serves HEAD, GET, Range, 416, 404 and counts body bytes', async () => {
    const o = await startOrigin();
    origins.push(o);
    const url = o.add('/f.bin', { size: 1 * MiB + 5, seed: 'x' });
    const head = await request(url, { method: 'HEAD' });
    expect(head.statusCode).toBe(200);
    expect(head.headers['content-length']).toBe(String(MiB + 5));
    expect(head.headers['accept-ranges']).toBe('bytes');
    await head.body.dump();
    const full = await request(url);
    const body = Buffer.from(await full.body.arrayBuffer());
    expect(`sha256:${createHash('sha256').update(body).digest('hex')}`).toBe(o.sha256('/f.bin'));
    const r = await request(url, { headers: { range: 'bytes=100-199' } });
    expect(r.statusCode).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 100-199/${MiB + 5}`);
    expect(Buffer.from(await r.body.arrayBuffer()).equals(o.slice('/f.bin', 100, 200))).toBe(true);
    const bad = await request(url, { headers: { range: `bytes=${MiB + 5}-` } });
    expect(bad.statusCode).toBe(416);
    await bad.body.dump();
    const missing = await request(o.url('/nope'));
    expect(missing.statusCode).toBe(404);
    await missing.body.dump();
    const s = o.stats();
    expect(s.bytes).toBe(MiB + 5 + 100);
    expect(s.byPath['/f.bin']).toMatchObject({ gets: 2, heads: 1, ranges: 1, requests: 4 });
    const viaHttp = await request(o.url('/__stats'));
    expect(((await viaHttp.body.json()) as { bytes: number }).bytes).toBe(s.bytes);
  });

  it('serves /gen/<seed>/<size> without registration, and Buffers', async () => {
    const o = await startOrigin();
    origins.push(o);
    const g = await request(o.url('/gen/abc/1000'));
    expect(Buffer.from(await g.body.arrayBuffer()).equals(generateBytes('abc', 0, 1000))).toBe(true);
    const buf = Buffer.from('hello world');
    const u = o.add('/hello', buf, { 'content-type': 'text/plain' });
    const h = await request(u);
    expect(h.headers['content-type']).toBe('text/plain');
    expect(await h.body.text()).toBe('hello world');
  });

  it('redirects with 307 and enforces Authorization', async () => {
    const target = await startOrigin({ requireAuth: 'Bearer s3cret' });
    const front = await startOrigin({ redirectTo: target.base });
    origins.push(target, front);
    target.add('/a', Buffer.from('A'));
    const r1 = await request(front.url('/a'));
    expect(r1.statusCode).toBe(307);
    expect(r1.headers.location).toBe(`${target.base}/a`);
    await r1.body.dump();
    const r2 = await request(target.url('/a'));
    expect(r2.statusCode).toBe(401);
    await r2.body.dump();
    const r3 = await request(target.url('/a'), { headers: { authorization: 'Bearer s3cret' } });
    expect(await r3.body.text()).toBe('A');
    const r4 = await request(target.url('/redirect/a'), { headers: { authorization: 'Bearer s3cret' } });
    expect(r4.statusCode).toBe(307);
    expect(r4.headers.location).toBe('/a');
    await r4.body.dump();
    expect(target.stats().unauthorized).toBe(1);
  });

  it('limits total egress across concurrent clients', async () => {
    const o = await startOrigin({ rate: 4 * MiB });
    origins.push(o);
    const url = o.add('/r', { size: 1 * MiB, seed: 'r' });
    const t0 = performance.now();
    await Promise.all([0, 1, 2, 3].map(async () => (await request(url)).body.dump({ limit: 2 * MiB })));
    const s = (performance.now() - t0) / 1000;
    // 4 MiB through a 4 MiB/s bucket with a small initial burst: close to 1 s, never much less.
    expect(s).toBeGreaterThan(0.85);
    expect(s).toBeLessThan(2.5);
    expect(o.stats().bytes).toBe(4 * MiB);
  });

  it('token bucket keeps the long-run rate with chunks larger than its burst', async () => {
    const b = new TokenBucket(1 * MiB, 16 * KiB);
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) await b.take(128 * KiB);
    const ms = performance.now() - t0;
    // 640 KiB at 1 MiB/s ≈ 625 ms, minus the first (debt) chunk: ≥ 4 × 125 ms.
    expect(ms).toBeGreaterThan(450);
    expect(ms).toBeLessThan(1000);
  });
});

describe('spawnRole', () => {
  it('waits for the ready line, logs stderr, stops with SIGTERM', async () => {
    const dir = makeTempDir();
    const cli = path.join(dir, 'fake.mjs');
    writeFileSync(
      cli,
      `const fs = await import('node:fs');
       const cfg = fs.readFileSync(process.argv[4], 'utf8');
       process.stderr.write(JSON.stringify({ level: 'info', msg: 'starting', cfg }) + '\\n');
       setTimeout(() => process.stdout.write('noise\\n' + JSON.stringify({ ready: true, role: process.argv[2] }) + '\\nafter\\n'), 100);
       process.on('SIGTERM', () => { process.stderr.write('{"msg":"bye"}\\n'); process.exit(0); });
       setInterval(() => {}, 1000);`,
    );
    const p = await spawnRole('demo', { a: { b: 1 } }, { cli });
    expect(p.ready).toEqual({ ready: true, role: 'demo' });
    expect(p.alive()).toBe(true);
    const exit = await p.stop();
    expect(exit.code).toBe(0);
    expect(p.stdoutLines).toContain('noise');
    const logs = p.logs();
    expect(logs[0]).toMatchObject({ msg: 'starting', cfg: 'a:\n  b: 1\n' });
    expect(logs.at(-1)).toMatchObject({ msg: 'bye' });
  });

  it('fails with the stderr tail when the process dies before ready', async () => {
    const dir = makeTempDir();
    const cli = path.join(dir, 'bad.mjs');
    writeFileSync(cli, `process.stderr.write('config error: key "x"\\n'); process.exit(3);`);
    await expect(spawnRole('demo', null, { cli })).rejects.toThrow(/exited \(code 3[\s\S]*config error: key "x"/);
    const r = await runCli(['x'], { cli });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('config error');
  });

  it('SIGKILLs a process that ignores SIGTERM', async () => {
    const dir = makeTempDir();
    const cli = path.join(dir, 'stubborn.mjs');
    writeFileSync(cli, `process.on('SIGTERM', () => {}); console.log(JSON.stringify({ready:true})); setInterval(() => {}, 1000);`);
    const p = await spawnRole('demo', null, { cli });
    const exit = await p.stop(300);
    expect(exit.signal).toBe('SIGKILL');
  });
});
