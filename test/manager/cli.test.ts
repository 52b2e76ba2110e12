/** `damselfly manager` as a process: ready line, first-start password shown once, SIGTERM, config errors, /metrics. */
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, killAll, makeTempDir, runCli, spawnRole } from '../support/procs.js';
import { http } from './flow.js';

const noSecrets = { DAMSELFLY_ROOT_PASSWORD: undefined, DAMSELFLY_JWT_SECRET: undefined, DAMSELFLY_SCHEDULER_SECRET: undefined };

describe('damselfly manager (process)', () => {
  afterAll(async () => {
    await killAll();
    cleanupTempDirs();
  });

  it('first start prints a generated root password once; it survives a restart; SIGTERM exits 0', async () => {
    const dir = makeTempDir('damselfly-manager-cli-');
    const config = { server: { ip: '127.0.0.1', port: 0 }, store: { dataDir: path.join(dir, 'data') } };
    const first = await spawnRole('manager', config, { dir, name: 'm1', env: noSecrets });
    expect(first.ready).toMatchObject({ ready: true, role: 'manager' });
    expect(String(first.ready.http)).toMatch(/^127\.0\.0\.1:\d+$/);
    const url = `http://${String(first.ready.http)}`;
    expect((await http('GET', `${url}/healthy`)).status).toBe(200);
    const metrics = await fetch(`${url}/metrics`);
    expect(await metrics.text()).toMatch(/dragonfly_manager_requests_total/);
    const m = /generated password for user "root".*: (\S+)$/m.exec(first.tail(200));
    expect(m).not.toBeNull();
    const password = m![1];
    // Printed for the operator, never in a structured log line.
    expect(first.logs().some((l) => JSON.stringify(l).includes(password))).toBe(false);
    expect((await http('POST', `${url}/api/v1/users/signin`, { body: { name: 'root', password } })).status).toBe(200);
    expect(await first.stop()).toEqual({ code: 0, signal: null });

    const second = await spawnRole('manager', config, { dir, name: 'm2', env: noSecrets });
    const url2 = `http://${String(second.ready.http)}`;
    expect(readFileSync(second.logFile, 'utf8')).not.toMatch(/generated password/);
    const signin = await http('POST', `${url2}/api/v1/users/signin`, { body: { name: 'root', password } });
    expect(signin.status).toBe(200);
    expect(await second.stop()).toEqual({ code: 0, signal: null });
  }, 60_000);

  it('--help exits 0; an unknown config key exits 2 naming it', async () => {
    const help = await runCli(['manager', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/usage: damselfly manager/);
    const dir = makeTempDir('damselfly-manager-bad-');
    const file = path.join(dir, 'bad.yaml');
    (await import('node:fs')).writeFileSync(file, 'server:\n  port: 0\n  colour: blue\n');
    const bad = await runCli(['manager', '--config', file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/server\.colour: unknown key/);
  }, 30_000);
});
