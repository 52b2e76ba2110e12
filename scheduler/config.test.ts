import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSchedulerConfig, schedulerConfig } from './config.js';

const dir = mkdtempSync(path.join(tmpdir(), 'damselfly-sched-cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
}

describe('scheduler config', () => {
  it('has defaults for everything', () => {
    const c = loadSchedulerConfig();
    expect(c.server).toEqual({ ip: '0.0.0.0', port: 8002 });
    expect(c.metrics.port).toBe(8000);
    expect(c.scheduling).toMatchObject({ candidateParentLimit: 4, filterParentLimit: 15, backToSourceCount: 1, retryInterval: 200 });
    expect(c.seedPeer.enable).toBe(true);
    expect(c.manager).toEqual({ keepAliveInterval: 5000, clusterId: 1 });
    expect(c.job.enable).toBe(true);
  });

  it('reads YAML with durations', () => {
    const c = loadSchedulerConfig(
      file('ok.yaml', 'server:\n  ip: 127.0.0.1\n  port: 0\nscheduling:\n  retryInterval: 50ms\n  backToSourceCount: 2\ngc:\n  hostTTL: 5m\n'),
    );
    expect(c.server.port).toBe(0);
    expect(c.scheduling.retryInterval).toBe(50);
    expect(c.scheduling.backToSourceCount).toBe(2);
    expect(c.gc.hostTTL).toBe(300_000);
  });

  it('names the file and the unknown or bad key', () => {
    const bad = file('bad.yaml', 'scheduling:\n  candidateParentLimt: 3\n');
    expect(() => loadSchedulerConfig(bad)).toThrow(expect.objectContaining({ code: 'CONFIG', message: expect.stringContaining('scheduling.candidateParentLimt: unknown key') }));
    expect(() => loadSchedulerConfig(bad)).toThrow(bad);
    expect(() => schedulerConfig({ gc: { interval: 'soon' } })).toThrow(/gc\.interval/);
    expect(() => schedulerConfig({ server: { port: 70000 } })).toThrow(/server\.port/);
  });
});
