import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { cliPath } from '../test/support/cli.js';
import { hostMsg, schedulerClient, unaryCall } from '../test/scheduler/support.js';

const dir = mkdtempSync(path.join(tmpdir(), 'damselfly-sched-main-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function run(args: string[]): { child: ChildProcess; ready: Promise<Record<string, string>>; exit: Promise<number | null>; stderr: () => string; stdout: () => string } {
  const child = spawn(process.execPath, [cliPath(), 'scheduler', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  let out = '';
  child.stderr!.on('data', (d) => (err += d));
  const ready = new Promise<Record<string, string>>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (l) => {
      out = l;
      try {
        resolve(JSON.parse(l));
      } catch {
        reject(new Error(`not a ready line: ${l}`));
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code} before ready: ${err}`)));
  });
  ready.catch(() => {}); // only the tests that wait for ready look at it
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, ready, exit, stderr: () => err, stdout: () => out };
}

describe('damselfly scheduler (compiled CLI)', () => {
  it('prints a ready line, serves gRPC and metrics, and exits 0 on SIGTERM', async () => {
    const cfg = path.join(dir, 'scheduler.yaml');
    writeFileSync(cfg, 'server:\n  ip: 127.0.0.1\nmetrics:\n  ip: 127.0.0.1\n');
    const s = run(['--config', cfg, '--port', '0', '--metrics-port', '0']);
    const ready = await s.ready;
    expect(ready).toMatchObject({ ready: true, role: 'scheduler', grpc: expect.stringMatching(/^127\.0\.0\.1:\d+$/), metrics: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    const client = schedulerClient(ready.grpc);
    await unaryCall(client, 'AnnounceHost', { host: hostMsg('cli-host'), interval_ms: 1000 });
    const hosts = await unaryCall<{ hosts: { id: string }[] }>(client, 'ListHosts', {});
    expect(hosts.hosts.map((h) => h.id)).toEqual(['cli-host']);
    client.close();
    const text = await (await fetch(`http://${ready.metrics}/metrics`)).text();
    expect(text).toMatch(/dragonfly_scheduler_announce_host_total\{[^}]*\} 1/);
    expect(text).toMatch(/dragonfly_scheduler_hosts\{host_type="normal"\} 1/);
    s.child.kill('SIGTERM');
    expect(await s.exit).toBe(0);
    expect(s.stderr()).toContain('"msg":"shutting down"');
  });

  it('prints help and rejects a bad config naming the key', async () => {
    const h = run(['--help']);
    expect(await h.exit).toBe(0);
    expect(h.stdout()).toContain('usage: damselfly scheduler');
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'scheduling:\n  nope: 1\n');
    const b = run(['--config', bad]);
    expect(await b.exit).toBe(1);
    expect(b.stderr()).toContain('scheduling.nope: unknown key');
  });
});
