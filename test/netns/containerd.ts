/**
 * A real containerd daemon inside a netns host: its own root, state and sockets under `dir`, the
 * CRI plugin off, `ctr` run inside the same host so its registry traffic leaves by that host's link.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { NetHost, RunResult } from './bed.js';

export interface Containerd {
  sock: string;
  /** `ctr images pull --hosts-dir HOSTS --plain-http REF` inside the host; throws with ctr's stderr on failure. */
  pull(ref: string, hostsDir: string, timeoutMs?: number): Promise<RunResult>;
  /** Digests in the content store. */
  content(): Promise<string[]>;
  stop(): Promise<void>;
}

const NS = 'dfly';

export async function startContainerd(host: NetHost, dir: string): Promise<Containerd> {
  await mkdir(dir, { recursive: true });
  const sock = path.join(dir, 'containerd.sock');
  const config = path.join(dir, 'config.toml');
  await writeFile(
    config,
    `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n[ttrpc]\n  address = "${sock}.ttrpc"\n[debug]\n  address = "${dir}/debug.sock"\n[metrics]\n  address = ""\n`,
  );
  const child: ChildProcess = host.spawn('containerd', ['--config', config, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
  const ctr = (args: string[], timeoutMs = 30_000) => host.run('ctr', ['-a', sock, '-n', NS, ...args], { timeoutMs });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`containerd in ${host.name} exited ${child.exitCode}: ${err}`);
    if (existsSync(sock) && (await ctr(['version'], 5_000)).code === 0) break;
    if (Date.now() > deadline) throw new Error(`containerd in ${host.name} not answering on ${sock}: ${err}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    sock,
    async pull(ref, hostsDir, timeoutMs = 180_000) {
      const r = await ctr(['images', 'pull', '--hosts-dir', hostsDir, '--plain-http', '--snapshotter', 'native', ref], timeoutMs);
      if (r.code !== 0) throw new Error(`ctr pull ${ref} in ${host.name} failed (${r.code}): ${r.stderr.slice(-2000)}`);
      return r;
    },
    async content() {
      const r = await ctr(['content', 'ls', '-q']);
      return r.stdout.split('\n').filter(Boolean);
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          resolve();
        }, 5000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
}
