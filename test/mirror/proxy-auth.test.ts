/**
 * proxy.basicAuth: the agent's proxy port refuses every request without the proxy credentials (407
 * with a Basic challenge) — mirror mode, forward-proxy mode and CONNECT — and never passes them on
 * to the upstream. Against a real origin; the health check stays open for probes.
 */
import http from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../adapters/log.js';
import { proxyConfigSchema } from '../../agent/proxy-config.js';
import { startProxy, type RunningProxy } from '../../agent/proxy/server.js';
import { startOrigin, type Origin } from '../support/origin.js';
import { OriginTaskManager } from './origin-task-manager.js';

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

function connect(port: number, authority: string, headers = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${headers}\r\n`));
    let got = '';
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) {
        s.destroy();
        resolve(got.slice(0, got.indexOf('\r\n')));
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(got.slice(0, got.indexOf('\r\n'))));
  });
}

describe('proxy.basicAuth', () => {
  let origin: Origin;
  let proxy: RunningProxy;
  const seen: (string | undefined)[] = [];
  let upstream: http.Server;
  let upstreamPort = 0;
  beforeAll(async () => {
    origin = await startOrigin();
    origin.add('/v2/lib/app/blobs/plain', Buffer.from('hello through the proxy\n'));
    // A second origin that records what reached it: the proxy's credentials must not.
    upstream = http.createServer((req, res) => {
      seen.push(req.headers['proxy-authorization']);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('upstream\n');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    upstreamPort = (upstream.address() as net.AddressInfo).port;
    const config = proxyConfigSchema.parse({ server: { ip: '127.0.0.1', port: 0 }, basicAuth: { username: 'puller', password: 's3cret:with:colons' }, registryMirror: { addr: origin.base } });
    proxy = await startProxy({ config: { proxy: config }, taskManager: new OriginTaskManager(), logger: createLogger({}, { write: () => undefined }) });
  });
  afterAll(async () => {
    await proxy?.close();
    await origin?.close();
    await new Promise<void>((r) => upstream?.close(() => r()));
  });

  it('mirror mode: 407 with a Basic challenge without or with wrong credentials, the origin bytes with them', async () => {
    for (const headers of <Record<string, string>[]>[{}, { 'proxy-authorization': basic('puller', 'wrong') }, { 'proxy-authorization': basic('other', 's3cret:with:colons') }, { 'proxy-authorization': 'Bearer x' }, { authorization: basic('puller', 's3cret:with:colons') }]) {
      const r = await get(proxy.port, '/v2/lib/app/blobs/plain', headers);
      expect(r.status).toBe(407);
      expect(r.headers['proxy-authenticate']).toBe('Basic realm="damselfly"');
      expect(r.body.toString()).not.toContain('hello');
    }
    const ok = await get(proxy.port, '/v2/lib/app/blobs/plain', { 'proxy-authorization': basic('puller', 's3cret:with:colons') });
    expect(ok.status).toBe(200);
    expect(createHash('sha256').update(ok.body).digest('hex')).toBe(origin.sha256('/v2/lib/app/blobs/plain').slice(7));
    // The scheme is case-insensitive.
    const lower = await get(proxy.port, '/v2/lib/app/blobs/plain', { 'proxy-authorization': basic('puller', 's3cret:with:colons').replace('Basic', 'basic') });
    expect(lower.status).toBe(200);
  });

  it('forward-proxy mode: 407 without credentials, and the credentials never reach the upstream', async () => {
    const target = `http://127.0.0.1:${upstreamPort}/anything`;
    expect((await get(proxy.port, target)).status).toBe(407);
    expect(seen).toEqual([]);
    const ok = await get(proxy.port, target, { 'proxy-authorization': basic('puller', 's3cret:with:colons') });
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe('upstream\n');
    expect(seen).toEqual([undefined]);
  });

  it('CONNECT: 407 without credentials, tunneled with them', async () => {
    expect(await connect(proxy.port, `127.0.0.1:${upstreamPort}`)).toBe('HTTP/1.1 407 Proxy Authentication Required');
    expect(await connect(proxy.port, `127.0.0.1:${upstreamPort}`, `Proxy-Authorization: ${basic('puller', 'nope')}\r\n`)).toBe('HTTP/1.1 407 Proxy Authentication Required');
    expect(await connect(proxy.port, `127.0.0.1:${upstreamPort}`, `Proxy-Authorization: ${basic('puller', 's3cret:with:colons')}\r\n`)).toBe('HTTP/1.1 200 Connection Established');
  });

  it('/healthy needs no credentials (probes)', async () => {
    expect((await get(proxy.port, '/healthy')).status).toBe(200);
  });

  it('config: an empty password or a username with ":" is refused, naming the key', () => {
    expect(() => proxyConfigSchema.parse({ basicAuth: { username: 'a', password: '' } })).toThrow(/password/);
    expect(() => proxyConfigSchema.parse({ basicAuth: { username: 'a:b', password: 'x' } })).toThrow(/must not contain/);
  });
});
