import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, UnavailableError } from './errors.js';
import { ManagerClient, ManagerRefusedError } from './manager-client.js';

// A real HTTP server standing in for the manager: the path names the status it answers with.
let server: Server;
let base: string;
const seen: { auth?: string; type?: string; body: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ auth: req.headers.authorization, type: req.headers['content-type'], body });
      const status = Number(req.url!.split('/')[1]);
      if (req.url!.includes('slow')) return void setTimeout(() => res.end('{}'), 2_000);
      if (req.url!.includes('text')) return void res.writeHead(status).end('plain words');
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ status, echo: body ? JSON.parse(body) : null }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('ManagerClient', () => {
  it('sends the bearer token and JSON, strips trailing slashes from the base, parses the answer', async () => {
    const c = new ManagerClient(base + '//', { token: 's3cret' });
    expect(c.base).toBe(base.slice(0, -1));
    const got = await c.json<{ status: number; echo: unknown }>('POST', '/200/x', { a: 1 });
    expect(got).toEqual({ status: 200, echo: { a: 1 } });
    expect(seen.at(-1)).toMatchObject({ auth: 'Bearer s3cret', type: 'application/json', body: '{"a":1}' });
    await c.request('GET', '/200/y');
    expect(seen.at(-1)).toMatchObject({ type: undefined, body: '' });
  });

  it('maps answers to typed errors: 404 not found, other 4xx refused, 408/429/5xx unavailable', async () => {
    const c = new ManagerClient(base);
    await expect(c.json('GET', '/404/a')).rejects.toBeInstanceOf(NotFoundError);
    for (const s of [400, 401, 403, 409, 413]) {
      const err = await c.json('GET', `/${s}/a`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ManagerRefusedError);
      expect((err as ManagerRefusedError).status).toBe(s);
      expect((err as Error).message).toContain(`refused (${s})`);
    }
    expect(((await c.json('GET', '/401/a').catch((e: unknown) => e)) as ManagerRefusedError).code).toBe('UNAUTHORIZED');
    for (const s of [408, 429, 500, 503]) await expect(c.json('GET', `/${s}/a`)).rejects.toBeInstanceOf(UnavailableError);
    await expect(c.json('GET', '/200/text')).rejects.toThrow(/not JSON/);
  });

  it('returns any answer as it is from request(), and throws only when there is no answer', async () => {
    const c = new ManagerClient(base, { timeoutMs: 300 });
    expect(await c.request('GET', '/500/text')).toEqual({ status: 500, text: 'plain words', json: 'plain words' });
    const slow = await c.request('GET', '/200/slow').catch((e: unknown) => e);
    expect(slow).toBeInstanceOf(UnavailableError);
    expect((slow as Error).message).toMatch(/unreachable/);
    const dead = new ManagerClient('http://127.0.0.1:1');
    await expect(dead.request('GET', '/x')).rejects.toBeInstanceOf(UnavailableError);
  });
});
