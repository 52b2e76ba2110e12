// The agent's local API answers every failure with the status of adapters/http-status.ts and the
// error's stable code: a bad URL is a 400 naming `url` (it was a 416), an origin 404 is a 404 with
// the origin's status beside it, a range outside the content a 416.
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../adapters/log.js';
import { startOrigin, MiB, type Origin } from '../test/support/origin.js';
import { createAgent, type Agent } from './agent.js';
import { parseAgentConfig } from './config.js';

let dir: string;
let agent: Agent;
let origin: Origin;
let socket: string;

function get(pathAndQuery: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, path: pathAndQuery, headers }, (res) => {
      let body = '';
      res.on('data', (c) => (body += String(c)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-local-api-'));
  socket = path.join(dir, 'agent.sock');
  origin = await startOrigin();
  const any = { ip: '127.0.0.1', port: 0 };
  agent = createAgent(
    parseAgentConfig({
      host: { hostname: 'local-api', ip: '127.0.0.1' },
      storage: { dir: path.join(dir, 'storage') },
      scheduler: { addrs: ['127.0.0.1:1'], announceInterval: '5s', scheduleTimeout: '2s' },
      upload: { server: any, pieceServer: any },
      download: { server: { socket } },
      proxy: { server: any },
      metrics: { server: any },
    }),
    silentLogger,
  );
  await agent.start();
});

afterAll(async () => {
  await agent?.stop();
  await origin?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('local API error statuses', () => {
  it.each([
    ['ftp://example.com/a', 'unsupported scheme'],
    ['', 'missing'],
    ['http://', 'is not valid'],
  ])('url=%j is a 400 INVALID naming the url field', async (url, words) => {
    const r = await get(`/v1/download?url=${encodeURIComponent(url)}`);
    expect(r.status).toBe(400);
    const body = JSON.parse(r.body) as { code: string; message: string };
    expect(body.code).toBe('INVALID');
    expect(body.message).toContain('url');
    expect(body.message).toContain(words);
  });

  it('an origin 404 is a 404 with code SOURCE and the origin status beside it', async () => {
    const r = await get(`/v1/download?url=${encodeURIComponent(`${origin.base}/does-not-exist`)}`);
    expect(r.status).toBe(404);
    expect(r.headers['x-damselfly-source-status']).toBe('404');
    expect((JSON.parse(r.body) as { code: string }).code).toBe('SOURCE');
  });

  it('a range outside the content is a 416 RANGE; inside it is a 206 of exactly those bytes', async () => {
    const url = origin.add('/ranged.bin', { size: 2 * MiB, seed: 'ranged' });
    const full = await get(`/v1/download?url=${encodeURIComponent(url)}`);
    expect(full.status).toBe(200);
    const bad = await get(`/v1/download?url=${encodeURIComponent(url)}`, { range: `bytes=${4 * MiB}-${5 * MiB}` });
    expect(bad.status).toBe(416);
    expect((JSON.parse(bad.body) as { code: string }).code).toBe('RANGE');
    const ok = await get(`/v1/download?url=${encodeURIComponent(url)}`, { range: 'bytes=10-19' });
    expect([200, 206]).toContain(ok.status);
    expect(Buffer.from(ok.body, 'latin1').length).toBe(10);
  });
});
