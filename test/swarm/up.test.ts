// `damselfly up` end to end: it starts the manager, a scheduler registered to it, a seed peer and an
// agent under one data dir, a `damselfly get` through its agent socket works, the generated secrets
// stay out of configs and logs, and SIGTERM stops every child. With --mtls the scheduler, seed peer
// and agent require mutual TLS with certificates bought from the manager for the join token.
import tls from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { startOrigin, fileSha256, MiB, type Origin } from '../support/origin.js';
import { spawnRole, runCli, killAll, makeTempDir, cleanupTempDirs, waitFor } from '../support/procs.js';

let origin: Origin | undefined;
afterAll(async () => {
  await killAll();
  await origin?.close();
  cleanupTempDirs();
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('damselfly up', () => {
  it('prints its options with --help', async () => {
    const r = await runCli(['up', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--data-dir/);
    const bad = await runCli(['up', '--bogus']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--bogus/);
    expect(r.stdout).toMatch(/--mtls/);
    const badMode = await runCli(['up', '--mtls=sometimes']);
    expect(badMode.code).not.toBe(0);
    expect(badMode.stderr).toMatch(/--mtls: expected off, optional or required, got "sometimes"/);
  });

  it('runs the roles, serves a download, and stops them all on SIGTERM', async () => {
    origin = await startOrigin();
    const dataDir = makeTempDir('damselfly-up-');
    const up = await spawnRole('up', null, {
      args: ['--data-dir', dataDir, '--proxy-port', '0', '--scheduler-port', '0', '--manager-port', '0', '--json'],
      readyTimeoutMs: 60_000,
    });
    const roles = up.ready.roles as Record<string, Record<string, unknown> & { pid: number }>;
    expect(Object.keys(roles)).toEqual(['manager', 'scheduler', 'seed-peer', 'agent']);
    for (const r of Object.values(roles)) expect(alive(r.pid)).toBe(true);
    expect(roles.agent!.socket).toBe(path.join(dataDir, 'agent.sock'));
    expect(existsSync(path.join(dataDir, 'agent.yaml'))).toBe(true);
    expect(existsSync(path.join(dataDir, 'logs', 'scheduler.log'))).toBe(true);

    // The scheduler registered with the manager: agents can discover it through the search API.
    const manager = `http://${String(roles.manager!.http)}`;
    expect((await fetch(`${manager}/healthy`)).status).toBe(200);
    await waitFor(async () => (await fetch(`${manager}/api/v1/schedulers/search?hostname=x&ip=127.0.0.1`)).status === 200, 'the scheduler to register with the manager', 20_000);
    const found = (await (await fetch(`${manager}/api/v1/schedulers/search?hostname=x&ip=127.0.0.1`)).json()) as { schedulers: { port: number }[] };
    expect(found.schedulers.map((x) => x.port)).toContain(Number(String(roles.scheduler!.grpc).split(':').pop()));

    // Secrets live only in secrets.json (0600): not in any config file or log.
    const secretsFile = path.join(dataDir, 'secrets.json');
    expect(statSync(secretsFile).mode & 0o077).toBe(0);
    const secrets = JSON.parse(readFileSync(secretsFile, 'utf8')) as Record<string, string>;
    const signin = await fetch(`${manager}/api/v1/users/signin`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'root', password: secrets.rootPassword }) });
    expect(signin.status).toBe(200);
    const texts = [
      ...readdirSync(dataDir).filter((f) => f.endsWith('.yaml')).map((f) => path.join(dataDir, f)),
      ...readdirSync(path.join(dataDir, 'logs')).map((f) => path.join(dataDir, 'logs', f)),
    ].map((f) => readFileSync(f, 'utf8'));
    for (const t of texts) {
      expect(t).not.toContain(secrets.rootPassword);
      expect(t).not.toContain(secrets.schedulerSecret);
    }

    const url = origin.add('/up/file.bin', { size: 9 * MiB + 3, seed: `up-${Date.now()}` });
    const out = path.join(dataDir, 'out.bin');
    const r = await runCli(['get', url, '-O', out, '--endpoint', path.join(dataDir, 'agent.sock')], { timeoutMs: 60_000 });
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(r.stderr).not.toMatch(/from the origin directly/);
    expect(await fileSha256(out)).toBe(origin.sha256('/up/file.bin'));

    const exit = await up.stop(15_000);
    expect(exit.code).toBe(0);
    await waitFor(() => Object.values(roles).every((x) => !alive(x.pid)), 'every child of up to exit', 5_000);
  });

  it('--mtls: every link between scheduler, seed peer and agent needs a certificate from the manager; a download still goes P2P', async () => {
    origin ??= await startOrigin();
    const dataDir = makeTempDir('damselfly-up-mtls-');
    const up = await spawnRole('up', null, {
      args: ['--data-dir', dataDir, '--proxy-port', '0', '--scheduler-port', '0', '--manager-port', '0', '--mtls', '--json'],
      readyTimeoutMs: 90_000,
    });
    expect(up.ready.mtls).toBe('required');
    const roles = up.ready.roles as Record<string, Record<string, unknown> & { pid: number }>;
    expect(roles.agent!.mtls).toBe('required');
    expect(roles['seed-peer']!.mtls).toBe('required');
    // The certificates were issued for the join token kept in secrets.json, which is in no config or log.
    const secrets = JSON.parse(readFileSync(path.join(dataDir, 'secrets.json'), 'utf8')) as Record<string, string>;
    expect(secrets.joinToken!.length).toBeGreaterThanOrEqual(16);
    expect(existsSync(path.join(dataDir, 'agent', 'tls', 'cert.pem'))).toBe(true);
    expect(existsSync(path.join(dataDir, 'scheduler-tls', 'cert.pem'))).toBe(true);

    const url = origin.add('/up/mtls.bin', { size: 9 * MiB + 5, seed: `up-mtls-${Date.now()}` });
    const out = path.join(dataDir, 'out.bin');
    const r = await runCli(['get', url, '-O', out, '--endpoint', path.join(dataDir, 'agent.sock')], { timeoutMs: 60_000 });
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    // Scheduled over mTLS, not an origin fallback of an agent the scheduler refused.
    expect(r.stderr).not.toMatch(/from the origin directly/);
    expect(await fileSha256(out)).toBe(origin.sha256('/up/mtls.bin'));

    // No certificate, no service: plaintext to the piece server fails, and a TLS client without a
    // certificate gets no HTTP/2 answer from the scheduler.
    await expect(fetch(`http://${String(roles.agent!.pieces)}/v1/tasks/x/pieces/0`)).rejects.toThrow();
    const [host, port] = String(roles.scheduler!.grpc).split(':');
    const received = await new Promise<number>((resolve) => {
      let n = 0;
      const sock = tls.connect({ host, port: Number(port), rejectUnauthorized: false, ALPNProtocols: ['h2'] });
      sock.on('secureConnect', () => sock.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')));
      sock.on('data', (d: Buffer) => (n += d.length));
      sock.on('error', () => undefined);
      sock.on('close', () => resolve(n));
      setTimeout(() => sock.destroy(), 5_000);
    });
    expect(received).toBe(0);

    const texts = [
      ...readdirSync(dataDir).filter((f) => f.endsWith('.yaml')).map((f) => path.join(dataDir, f)),
      ...readdirSync(path.join(dataDir, 'logs')).map((f) => path.join(dataDir, 'logs', f)),
    ].map((f) => readFileSync(f, 'utf8'));
    for (const t of texts) expect(t).not.toContain(secrets.joinToken);

    const exit = await up.stop(15_000);
    expect(exit.code).toBe(0);
  });
});
