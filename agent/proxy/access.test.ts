/**
 * AccessChecker against a small real HTTP server playing the registry's blob HEAD (the whole path
 * against docker-registry is test/mirror/private.test.ts): what counts as allowed, what is
 * remembered, for whom and how long (controlled time), and that a refusal or an unreachable
 * registry never turns into an allowance.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../adapters/log.js';
import { AccessChecker } from './access.js';

const D = `sha256:${'b'.repeat(64)}`;
const OK = 'Basic b2s6b2s=';

describe('AccessChecker', () => {
  let server: http.Server;
  let base = '';
  const seen: { method: string; url: string; auth?: string }[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization });
      if (req.url?.startsWith('/v2/redirected/')) return void res.writeHead(307, { location: 'http://storage.example/x?sig=1' }).end();
      if (req.url?.startsWith('/v2/gone/')) return void res.writeHead(307).end(); // a 3xx without a location is no answer
      if (req.headers.authorization !== OK) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end();
      res.writeHead(200, { 'content-length': '10' }).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const blob = (repo: string) => new URL(`${base}/v2/${repo}/blobs/${D}`);

  it('allows URLs that are not registry blobs without asking anyone', async () => {
    const c = new AccessChecker({ ttlMs: 1000, logger: silentLogger });
    const before = seen.length;
    expect(await c.check(new URL(`${base}/files/big.iso`), {})).toEqual({ allowed: true, cached: true });
    expect(await c.check(new URL(`${base}/v2/team/app/manifests/v1`), {})).toEqual({ allowed: true, cached: true });
    expect(seen.length).toBe(before);
  });

  it('remembers an allowance per credential, repository and blob for ttl, and asks again after it', async () => {
    let now = 1_000_000;
    const c = new AccessChecker({ ttlMs: 60_000, logger: silentLogger, now: () => now });
    const before = seen.length;
    expect(await c.check(blob('team/app'), { authorization: OK })).toEqual({ allowed: true, cached: false });
    expect(seen.at(-1)).toMatchObject({ method: 'HEAD', url: `/v2/team/app/blobs/${D}`, auth: OK });
    expect(await c.check(blob('team/app'), { authorization: OK })).toEqual({ allowed: true, cached: true });
    expect(seen.length).toBe(before + 1);
    // Someone else, or the same person for another repository: asked afresh.
    const other = await c.check(blob('team/app'), { authorization: 'Basic bm86bm8=' });
    expect(other.allowed).toBe(false);
    expect(await c.check(blob('team/other'), { authorization: OK })).toEqual({ allowed: true, cached: false });
    expect(seen.length).toBe(before + 3);
    now += 60_001;
    expect(await c.check(blob('team/app'), { authorization: OK })).toEqual({ allowed: true, cached: false });
    expect(seen.length).toBe(before + 4);
  });

  it('relays a refusal as the registry status and challenge, and never remembers it', async () => {
    const c = new AccessChecker({ ttlMs: 60_000, logger: silentLogger });
    const before = seen.length;
    for (let i = 0; i < 2; i++) {
      const d = await c.check(blob('team/app'), {});
      expect(d.allowed).toBe(false);
      if (d.allowed) return;
      expect(d.status).toBe(401);
      expect(d.headers['www-authenticate']).toBe('Basic realm="r"');
      expect(JSON.parse(d.body.toString()).errors[0].code).toBe('UNAUTHORIZED');
    }
    expect(seen.length).toBe(before + 2);
  });

  it('a redirect to storage is an allowance; a 3xx without a location is not', async () => {
    const c = new AccessChecker({ ttlMs: 60_000, logger: silentLogger });
    expect((await c.check(blob('redirected/app'), {})).allowed).toBe(true);
    const d = await c.check(blob('gone/app'), {});
    expect(d.allowed).toBe(false);
  });

  it('an unreachable registry fails closed with a 502 naming why', async () => {
    const dead = http.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const c = new AccessChecker({ ttlMs: 60_000, logger: silentLogger });
    const d = await c.check(new URL(`http://127.0.0.1:${port}/v2/team/app/blobs/${D}`), { authorization: OK });
    expect(d.allowed).toBe(false);
    if (d.allowed) return;
    expect(d.status).toBe(502);
    expect(d.body.toString()).toMatch(/could not confirm access/);
  });
});
