import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgentConfig, parseAgentConfig } from './config.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-agent-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(text: string): string {
  const f = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, text);
  return f;
}

describe('agent config', () => {
  it('has Dragonfly-like defaults', () => {
    const c = loadAgentConfig();
    expect(c.seedPeer.enable).toBe(false);
    expect(c.upload.server.port).toBe(4000);
    expect(c.upload.pieceServer.port).toBe(4005);
    expect(c.metrics.server.port).toBe(4002);
    expect(c.download.concurrentPieceCount).toBe(8);
    expect(c.download.pieceTimeout).toBe(60_000);
    expect(c.scheduler.addrs).toEqual(['127.0.0.1:8002']);
    expect(c.gc.taskTTL).toBe(6 * 3_600_000);
    expect(c.upload.rateLimit).toBe(50 * 1024 ** 3);
    expect(c.proxy.server.port).toBe(4001);
  });

  it('parses sizes and durations from YAML', () => {
    const c = loadAgentConfig(
      file(`
seedPeer: {enable: true}
upload: {rateLimit: 20MiB, pieceServer: {ip: 127.0.0.1, port: 0}}
download: {rateLimit: 1GiB, pieceTimeout: 5s}
gc: {taskTTL: 2h, diskThreshold: 10GiB}
scheduler: {announceInterval: 250ms}
`),
    );
    expect(c.seedPeer.enable).toBe(true);
    expect(c.upload.rateLimit).toBe(20 * 1024 ** 2);
    expect(c.upload.pieceServer).toEqual({ ip: '127.0.0.1', port: 0 });
    expect(c.download.rateLimit).toBe(1024 ** 3);
    expect(c.download.pieceTimeout).toBe(5_000);
    expect(c.gc.taskTTL).toBe(7_200_000);
    expect(c.gc.diskThreshold).toBe(10 * 1024 ** 3);
    expect(c.scheduler.announceInterval).toBe(250);
  });

  it('names an unknown key, with the file', () => {
    const f = file('download: {concurentPieceCount: 4}\n');
    expect(() => loadAgentConfig(f)).toThrow(/download\.concurentPieceCount: unknown key/);
    expect(() => loadAgentConfig(f)).toThrow(new RegExp(f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
  });

  it('names a key of the wrong type', () => {
    expect(() => parseAgentConfig({ upload: { pieceServer: { port: 'x' } } })).toThrow(/upload\.pieceServer\.port/);
    expect(() => parseAgentConfig({ gc: { interval: 'soon' } })).toThrow(/gc\.interval/);
    expect(() => parseAgentConfig({ proxy: { bogus: 1 } })).toThrow(/proxy\.bogus: unknown key/);
  });
});
