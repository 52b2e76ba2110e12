import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, LeafSigner } from '../../agent/proxy/ca.js';
import { configureSourceTls, sourceGet, sourceTls, upstreamTls } from './client.js';

interface Seen {
  auth?: string;
  cookie?: string;
  range?: string;
  path?: string;
}

const body = Buffer.from('0123456789abcdef');
let a: http.Server;
let b: http.Server;
let aBase = '';
let bBase = '';
const seenA: Seen[] = [];
const seenB: Seen[] = [];

function serve(seen: Seen[], route: (req: http.IncomingMessage, res: http.ServerResponse) => boolean): http.Server {
  return http.createServer((req, res) => {
    seen.push({ auth: req.headers.authorization, cookie: req.headers.cookie, range: req.headers.range, path: req.url });
    if (route(req, res)) return;
    const r = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? '');
    if (r) {
      const s = Number(r[1]);
      const e = r[2] ? Number(r[2]) : body.length - 1;
      res.writeHead(206, { 'content-range': `bytes ${s}-${e}/${body.length}`, 'content-length': e - s + 1, 'set-cookie': 'sid=1' });
      res.end(body.subarray(s, e + 1));
      return;
    }
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/x-test', 'set-cookie': 'sid=1' });
    res.end(body);
  });
}

async function listen(s: http.Server): Promise<string> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  b = serve(seenB, () => false);
  bBase = await listen(b);
  a = serve(seenA, (req, res) => {
    if (req.url === '/elsewhere') {
      res.writeHead(307, { location: `${bBase}/blob` }).end();
      return true;
    }
    if (req.url === '/same') {
      res.writeHead(302, { location: '/blob' }).end();
      return true;
    }
    if (req.url === '/loop') {
      res.writeHead(302, { location: '/loop' }).end();
      return true;
    }
    if (req.url === '/missing') {
      res.writeHead(404, { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="x"', 'set-cookie': 'secret=1' }).end('{"errors":[]}');
      return true;
    }
    return false;
  });
  aBase = await listen(a);
});

afterAll(async () => {
  a.closeAllConnections();
  b.closeAllConnections();
  await new Promise((r) => a.close(r));
  await new Promise((r) => b.close(r));
});

const read = async (s: NodeJS.ReadableStream) => {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
};

describe('sourceGet', () => {
  it('drops Authorization and Cookie when a redirect changes host', async () => {
    seenA.length = seenB.length = 0;
    const res = await sourceGet(`${aBase}/elsewhere`, { Authorization: 'Bearer s3cret', Cookie: 'c=1', 'X-Keep': 'y' });
    expect(await read(res.body)).toBe(body.toString());
    expect(seenA[0].auth).toBe('Bearer s3cret');
    expect(seenB[0].auth).toBeUndefined();
    expect(seenB[0].cookie).toBeUndefined();
  });

  it('keeps credentials on a same-host redirect', async () => {
    seenA.length = 0;
    const res = await sourceGet(`${aBase}/same`, { Authorization: 'Bearer s3cret' });
    await read(res.body);
    expect(seenA.map((s) => s.auth)).toEqual(['Bearer s3cret', 'Bearer s3cret']);
  });

  it('sends Range and reports offset and total length from Content-Range', async () => {
    seenA.length = 0;
    const res = await sourceGet(`${aBase}/blob`, {}, { start: 4, end: 7 });
    expect(seenA[0].range).toBe('bytes=4-7');
    expect(res.status).toBe(206);
    expect(res.offset).toBe(4);
    expect(res.totalLength).toBe(16);
    expect(await read(res.body)).toBe('4567');
  });

  it('reports the length of a plain 200 and never returns Set-Cookie', async () => {
    const res = await sourceGet(`${aBase}/blob`);
    expect(res.totalLength).toBe(16);
    expect(res.headers['content-type']).toBe('application/x-test');
    expect(res.headers['set-cookie']).toBeUndefined();
    await read(res.body);
  });

  it('turns non-2xx into SourceError with status, headers (no cookies) and body', async () => {
    const err = await sourceGet(`${aBase}/missing`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SOURCE', status: 404 });
    const e = err as { headers: Record<string, string>; body: Buffer };
    expect(e.headers['www-authenticate']).toBe('Bearer realm="x"');
    expect(e.headers['set-cookie']).toBeUndefined();
    expect(e.body.toString()).toBe('{"errors":[]}');
  });

  it('gives up after 10 redirects', async () => {
    await expect(sourceGet(`${aBase}/loop`)).rejects.toMatchObject({ code: 'SOURCE', status: 508 });
  });

  it('an unreachable origin is UnavailableError', async () => {
    const s = http.createServer();
    const base = await listen(s);
    await new Promise((r) => s.close(r));
    await expect(sourceGet(`${base}/x`)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});

describe('origin TLS (proxy.registryMirror.certs / insecureSkipVerify)', () => {
  let server: https.Server;
  let base = '';
  let dir = '';
  beforeAll(async () => {
    const ca = createCa('Private registry CA');
    const leaf = new LeafSigner(ca).serverOptions('127.0.0.1');
    server = https.createServer(leaf, (_req, res) => {
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dir = mkdtempSync(path.join(tmpdir(), 'damselfly-tls-'));
    writeFileSync(path.join(dir, 'ca.crt'), ca.cert);
  });
  afterAll(async () => {
    configureSourceTls({ rejectUnauthorized: true });
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('rejects an origin signed by an unknown CA, trusts it once its CA is configured, and can skip verification', async () => {
    configureSourceTls({ rejectUnauthorized: true });
    await expect(sourceGet(`${base}/blob`)).rejects.toMatchObject({ code: 'UNAVAILABLE' });

    configureSourceTls(upstreamTls({ certs: path.join(dir, 'ca.crt'), insecureSkipVerify: false }));
    const res = await sourceGet(`${base}/blob`);
    expect(res.status).toBe(200);
    expect(await read(res.body)).toBe(body.toString());

    configureSourceTls(upstreamTls({ insecureSkipVerify: true }));
    const res2 = await sourceGet(`${base}/blob`);
    await res2.body.resume();
    expect(res2.status).toBe(200);
  });

  it('names the file when the CA bundle cannot be read', () => {
    expect(() => upstreamTls({ certs: path.join(dir, 'missing.crt'), insecureSkipVerify: false })).toThrow(/proxy\.registryMirror\.certs .*missing\.crt/);
  });
});

describe('per-host insecure origins (proxy.hijackHTTPS.hosts[].insecure)', () => {
  // A really self-signed certificate (no CA at all), as a registry set up by hand has; valid for
  // both loopback addresses so only the per-host rule decides.
  const servers: https.Server[] = [];
  let port = 0;
  let dir = '';
  const noHijack = { registryMirror: { insecureSkipVerify: false } };
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'damselfly-selfsigned-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=self-signed origin',
      '-addext', 'subjectAltName=IP:127.0.0.1,IP:127.0.0.2', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    const opts = { key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) };
    for (const ip of ['127.0.0.2', '127.0.0.1']) {
      const s = https.createServer(opts, (req, res) => {
        if (req.url === '/away') {
          // From the insecure host to one that is verified: the rule is applied per hop.
          res.writeHead(307, { location: `https://127.0.0.1:${port}/blob` }).end();
          return;
        }
        res.writeHead(200, { 'content-length': body.length });
        res.end(body);
      });
      await new Promise<void>((r) => s.listen(port, ip, () => r()));
      port = (s.address() as AddressInfo).port;
      servers.push(s);
    }
  });
  afterAll(async () => {
    configureSourceTls({ rejectUnauthorized: true });
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('reaches a self-signed origin only on a host marked insecure, first matching rule deciding, re-checked after a redirect', async () => {
    configureSourceTls(sourceTls({ ...noHijack, hijackHTTPS: { hosts: [{ regx: '.*', insecure: false }] } }));
    await expect(sourceGet(`https://127.0.0.2:${port}/blob`)).rejects.toMatchObject({ code: 'UNAVAILABLE' });

    configureSourceTls(sourceTls({ ...noHijack, hijackHTTPS: { hosts: [{ regx: '^127\\.0\\.0\\.2$', insecure: true }, { regx: '.*', insecure: false }] } }));
    const res = await sourceGet(`https://127.0.0.2:${port}/blob`);
    expect(res.status).toBe(200);
    expect(await read(res.body)).toBe(body.toString());
    // The other host (same certificate) is still verified, also as a redirect target.
    await expect(sourceGet(`https://127.0.0.1:${port}/blob`)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(sourceGet(`https://127.0.0.2:${port}/away`)).rejects.toMatchObject({ code: 'UNAVAILABLE' });

    // As in the proxy's CONNECT matching, an earlier secure rule wins over a later insecure one.
    configureSourceTls(sourceTls({ ...noHijack, hijackHTTPS: { hosts: [{ regx: '.*', insecure: false }, { regx: '^127\\.0\\.0\\.2$', insecure: true }] } }));
    await expect(sourceGet(`https://127.0.0.2:${port}/blob`)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
