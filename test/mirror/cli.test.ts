/** `damselfly ca init` and `damselfly config` as a user runs them (compiled CLI). */
import { afterAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { runCli } from '../support/procs.js';
import { cliBuilt } from '../support/cli.js';
import { requireOrSkip } from '../support/require.js';

const cliOk = cliBuilt();

describe.skipIf(!requireOrSkip(cliOk, 'compiled damselfly CLI', 'run npm run build or set DAMSELFLY_CLI'))('damselfly ca / config CLIs', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dfly-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('ca init writes a CA with a 0600 key and refuses to overwrite without --force', async () => {
    const r = await runCli(['ca', 'init', '--dir', path.join(dir, 'ca')]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { caCert: string; caKey: string };
    expect(statSync(out.caKey).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(readFileSync(out.caCert));
    expect(cert.ca).toBe(true);
    const again = await runCli(['ca', 'init', '--dir', path.join(dir, 'ca')]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/--force/);
    expect(new X509Certificate(readFileSync(out.caCert)).fingerprint256).toBe(cert.fingerprint256);
    const forced = await runCli(['ca', 'init', '--dir', path.join(dir, 'ca'), '--force']);
    expect(forced.code).toBe(0);
    expect(new X509Certificate(readFileSync(out.caCert)).fingerprint256).not.toBe(cert.fingerprint256);
  });

  it('config containerd --write lays out <host>/hosts.toml that parses; unknown client and bad flags exit 2', async () => {
    const w = path.join(dir, 'certs.d');
    const r = await runCli(['config', 'containerd', '--mirror', 'http://127.0.0.1:4001', '--registry', 'docker.io', '--registry', '127.0.0.1:5000', '--write', w]);
    expect(r.code, r.stderr).toBe(0);
    const hub = parseToml(readFileSync(path.join(w, 'docker.io', 'hosts.toml'), 'utf8')) as { server: string };
    expect(hub.server).toBe('https://index.docker.io');
    const snippet = parseToml(readFileSync(path.join(w, 'containerd-1.x-config.toml'), 'utf8')) as { plugins: Record<string, { registry: { config_path: string } }> };
    expect(snippet.plugins['io.containerd.grpc.v1.cri']!.registry.config_path).toBe(w);
    const printed = await runCli(['config', 'nydusd']);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toContain('"X-Dragonfly-Registry": "https://index.docker.io"');
    expect((await runCli(['config', 'rkt'])).code).toBe(2);
    expect((await runCli(['config', 'podman', '--nope'])).code).toBe(2);
    expect((await runCli(['config', '--help'])).stdout).toMatch(/usage: damselfly config/);
  });
});
