// One way to be a process (adapters/process.ts, control/up.ts), tried as an impatient operator
// would: SIGTERM while `damselfly up` is still starting, kill -9 of `up`, usage and configuration
// errors, --log-level, and two agents on one host given nothing but --data-dir.
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliPath } from '../support/cli.js';
import { startOrigin, fileSha256, MiB, type Origin } from '../support/origin.js';
import { cleanupTempDirs, killAll, makeTempDir, runCli, spawnRole, waitFor } from '../support/procs.js';

let origin: Origin | undefined;
afterAll(async () => {
  await killAll();
  await origin?.close();
  cleanupTempDirs();
});

/** Pids of live processes whose command line mentions `dir` (every role `up` starts has its config there). */
function processesUnder(dir: string): number[] {
  const r = spawnSync('pgrep', ['-f', dir], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => pid !== process.pid);
}

const ZERO_PORTS = ['--proxy-port', '0', '--scheduler-port', '0', '--manager-port', '0'];

function spawnUp(dataDir: string): { child: ReturnType<typeof spawn>; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>; stdout: () => string } {
  const child = spawn(process.execPath, [cliPath(), 'up', '--data-dir', dataDir, ...ZERO_PORTS, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, exited, stdout: () => out };
}

describe('process lifecycle', () => {
  it('up given SIGTERM 1.5 s after it starts (mid start-up) exits 0 and leaves no role running', async () => {
    const dataDir = makeTempDir('damselfly-life-early-');
    const up = spawnUp(dataDir);
    await new Promise((r) => setTimeout(r, 1500));
    up.child.kill('SIGTERM');
    const exit = await Promise.race([up.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 30_000))]);
    if (exit === 'hung') up.child.kill('SIGKILL');
    expect(exit).toEqual({ code: 0, signal: null });
    await waitFor(() => processesUnder(dataDir).length === 0, `no process left under ${dataDir}`, 15_000);
  }, 60_000);

  it('kill -9 of up: every role notices its parent is gone and exits', async () => {
    const dataDir = makeTempDir('damselfly-life-kill-');
    const up = spawnUp(dataDir);
    await waitFor(() => up.stdout().includes('"ready":true'), 'up to be ready', 60_000);
    const roles = (JSON.parse(up.stdout().trim().split('\n').pop()!) as { roles: Record<string, { pid: number }> }).roles;
    expect(Object.keys(roles)).toEqual(['manager', 'scheduler', 'seed-peer', 'agent']);
    up.child.kill('SIGKILL');
    await up.exited;
    await waitFor(() => processesUnder(dataDir).length === 0, `the roles of a killed up to exit (left: ${processesUnder(dataDir).join(', ')})`, 20_000);
  }, 90_000);

  it('usage and configuration errors exit 2 and name the flag or file; --help exits 0', async () => {
    const dir = makeTempDir('damselfly-life-usage-');
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'storage: [unclosed\n');
    const unknownKey = path.join(dir, 'unknown.yaml');
    writeFileSync(unknownKey, 'stroage: {}\n');
    const cases: Array<[string[], RegExp]> = [
      [['up', '--bogus'], /--bogus/],
      [['up', '--port', 'agent.bogus=1'], /agent\.bogus/],
      [['up', '--port', 'agent.grpc=70000'], /agent\.grpc.*0-65535/],
      [['up', '--port', 'agent.grpc=9000', '--port', 'seed-peer.grpc=9000'], /both ask for port 9000/],
      [['up', '--log-level', 'loud'], /--log-level/],
      [['agent', '--config', path.join(dir, 'missing.yaml')], /missing\.yaml/],
      [['agent', '--config', bad], /bad\.yaml.*YAML/],
      [['agent', '--config', unknownKey], /stroage/],
      [['agent', '--log-level', 'loud'], /--log-level/],
      [['agent', 'stray'], /stray/],
      [['scheduler', '--port', 'x'], /--port/],
      [['scheduler', '--nope'], /--nope/],
      [['manager', '--port', '-1'], /--port/],
      [['manager', '--config', path.join(dir, 'missing.yaml')], /missing\.yaml/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args, { timeoutMs: 30_000 });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
    for (const role of ['up', 'agent', 'scheduler', 'manager']) {
      const r = await runCli([role, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/--log-level/);
    }
  }, 120_000);

  it('an agent given SIGTERM while it starts exits 0', async () => {
    const dir = makeTempDir('damselfly-life-agent-');
    const child = spawn(process.execPath, [cliPath(), 'agent', '--data-dir', dir], { stdio: ['ignore', 'ignore', 'ignore'] });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    await new Promise((r) => setTimeout(r, 150));
    child.kill('SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
  }, 30_000);

  it('--log-level: debug shows debug lines, error hides the info ones', async () => {
    const quiet = await spawnRole('scheduler', null, { args: ['--port', '0', '--metrics-port', '0', '--log-level', 'error'] });
    const loud = await spawnRole('scheduler', null, { args: ['--port', '0', '--metrics-port', '0', '--log-level', 'debug'] });
    await quiet.stop();
    await loud.stop();
    expect(quiet.logs().filter((l) => l.level === 'info')).toEqual([]);
    expect(loud.logs().some((l) => l.level === 'debug' || l.level === 'info')).toBe(true);
    expect(loud.logs().some((l) => l.msg === 'shutting down')).toBe(true);
  }, 60_000);

  it('two agents on one host given only --data-dir run side by side, each serving downloads', async () => {
    origin = await startOrigin();
    const url = origin.add('/life/two.bin', { size: 5 * MiB + 7, seed: `two-${Date.now()}` });
    const a = await spawnRole('agent', null, { name: 'agent-a', args: ['--data-dir', makeTempDir('damselfly-life-a-')] });
    const b = await spawnRole('agent', null, { name: 'agent-b', args: ['--data-dir', makeTempDir('damselfly-life-b-')] });
    for (const key of ['grpc', 'pieces', 'metrics', 'proxy', 'socket']) expect(a.ready[key], key).not.toEqual(b.ready[key]);
    for (const agent of [a, b]) {
      const out = path.join(agent.dir, 'out.bin');
      const r = await runCli(['get', url, '-O', out, '--endpoint', String(agent.ready.socket)], { timeoutMs: 60_000 });
      expect(r.code, r.stderr.slice(-2000)).toBe(0);
      expect(await fileSha256(out)).toBe(origin.sha256('/life/two.bin'));
    }
    expect((await a.stop()).code).toBe(0);
    expect((await b.stop()).code).toBe(0);
  }, 120_000);
});
