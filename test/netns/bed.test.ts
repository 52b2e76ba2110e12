// The netns test bed itself: hosts on two networks reach each other through the router with their
// own addresses, tc shaping is what limits rate and adds delay, the root namespace stays untouched,
// and a bed is gone after destroy(), after SIGTERM of its process, and (by the next run) after SIGKILL.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';
import { requireOrSkip } from '../support/require.js';
import { Bed, cleanStale, netemAvailable, netnsAvailable, type NetHost } from './bed.js';

const avail = await netnsAvailable();
const MiB = 1 << 20;

const nsList = (): string[] => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);

// A TCP server inside `host` that sends `bytes` to each client, then closes; prints its port.
const SENDER = String.raw`
const net = require('net');
const [ip, bytes] = process.argv.slice(1);
const buf = Buffer.alloc(1 << 20, 7);
net.createServer((s) => {
  process.stderr.write(JSON.stringify({ peer: s.remoteAddress }) + '\n');
  let left = Number(bytes);
  const more = () => { while (left > 0) { const n = Math.min(left, buf.length); left -= n; if (!s.write(buf.subarray(0, n))) return s.once('drain', more); } s.end(); };
  more();
}).listen(0, ip, function () { process.stdout.write(JSON.stringify({ port: this.address().port }) + '\n'); });
`;
// Connects to ip:port from inside a host, reads everything; prints connect time and total time in ms.
const RECEIVER = String.raw`
const net = require('net');
const [ip, port] = process.argv.slice(1);
const t0 = performance.now(); let tc = 0; let n = 0;
const s = net.connect(Number(port), ip, () => { tc = performance.now() - t0; });
s.on('data', (d) => { n += d.length; });
s.on('end', () => { process.stdout.write(JSON.stringify({ connectMs: tc, totalMs: performance.now() - t0, bytes: n }) + '\n'); });
s.on('error', (e) => { process.stderr.write(String(e)); process.exit(2); });
`;

async function startSender(host: NetHost, bytes: number): Promise<{ port: number; peers: string[]; stop: () => void }> {
  const child = host.spawn(process.execPath, ['-e', SENDER, host.ip, String(bytes)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const peers: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    for (const l of d.split('\n')) if (l.startsWith('{')) peers.push((JSON.parse(l) as { peer: string }).peer);
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').once('data', (d: string) => resolve((JSON.parse(d) as { port: number }).port));
    child.once('exit', (c) => reject(new Error(`sender exited ${c}`)));
  });
  return { port, peers, stop: () => child.kill('SIGKILL') };
}

async function receive(host: NetHost, addr: string, port: number): Promise<{ connectMs: number; totalMs: number; bytes: number }> {
  const r = await host.run(process.execPath, ['-e', RECEIVER, addr, String(port)], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`receiver in ${host.name} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as { connectMs: number; totalMs: number; bytes: number };
}

describe.skipIf(!requireOrSkip(avail.ok, 'network namespaces (root, iproute2, tc htb)', avail.reason))('netns test bed', () => {
  let bed: Bed;
  let a: NetHost;
  let b: NetHost;
  let rootLinks: string;

  beforeAll(async () => {
    rootLinks = execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' });
    bed = await Bed.create();
    await bed.network('one', 1);
    await bed.network('two', 2);
    a = await bed.addHost('a', 'one');
    b = await bed.addHost('b', 'two');
  });
  afterAll(async () => {
    await bed?.destroy();
  });

  it('gives each host its own address on its network and routes between networks', async () => {
    expect(a.ip).toBe('10.81.1.2');
    expect(b.ip).toBe('10.81.2.2');
    expect(bed.cidr('two')).toBe('10.81.2.0/24');
    const addrs = (await a.run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout;
    expect(addrs).toContain('inet 10.81.1.2/24');
    const srv = await startSender(b, MiB);
    try {
      const r = await receive(a, b.ip, srv.port);
      expect(r.bytes).toBe(MiB);
      // b sees a's own address: what CIDR scopes match against.
      expect(srv.peers).toEqual(['10.81.1.2']);
    } finally {
      srv.stop();
    }
    // The root namespace got no interface and cannot reach the hosts.
    expect(execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' })).toBe(rootLinks);
    expect(execFileSync('ip', ['-4', '-o', 'addr'], { encoding: 'utf8' })).not.toContain('10.81.');
  });

  it('limits rate with tc, on the upload and the download side', async () => {
    const srv = await startSender(b, 4 * MiB);
    try {
      const free = await receive(a, b.ip, srv.port);
      // b uploads at 8 MiB/s: 4 MiB take ≥ 0.5 s; then a downloads at 4 MiB/s: ≥ 1 s.
      await bed.shape(b, { up: { rate: 8 * MiB } });
      const up = await receive(a, b.ip, srv.port);
      await bed.shape(b, { up: {} });
      await bed.shape(a, { down: { rate: 4 * MiB } });
      const down = await receive(a, b.ip, srv.port);
      await bed.shape(a, { down: {} });
      const again = await receive(a, b.ip, srv.port);
      expect(free.bytes + up.bytes + down.bytes + again.bytes).toBe(16 * MiB);
      expect(up.totalMs).toBeGreaterThan(430);
      expect(up.totalMs).toBeLessThan(1500);
      expect(down.totalMs).toBeGreaterThan(880);
      expect(down.totalMs).toBeLessThan(2500);
      expect(free.totalMs).toBeLessThan(up.totalMs / 2);
      expect(again.totalMs).toBeLessThan(up.totalMs / 2);
    } finally {
      srv.stop();
    }
  });

  it('adds delay with netem where the kernel has it, and says so where it does not', async () => {
    const srv = await startSender(b, 1000);
    try {
      if (!netemAvailable().ok) {
        await expect(bed.shape(a, { up: { rate: MiB, delayMs: 5 } })).rejects.toThrow(/netem/);
        process.stderr.write(`netns bed: ${netemAvailable().reason}; delay and loss shaping are unavailable here\n`);
        return;
      }
      await bed.shape(a, { up: { delayMs: 40 } });
      const delayed = await receive(a, b.ip, srv.port);
      await bed.shape(a, { up: {} });
      const free = await receive(a, b.ip, srv.port);
      // The SYN leaves a through the delayed eth0: the handshake takes ≥ 40 ms.
      expect(delayed.connectMs).toBeGreaterThan(38);
      expect(free.connectMs).toBeLessThan(20);
    } finally {
      srv.stop();
    }
  });

  it('relays between the test process and a host both ways', async () => {
    const http = await import('node:http');
    const server = http.createServer((req, res) => res.end(`hello ${req.socket.remoteAddress}`));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (server.address() as { port: number }).port;
      const inside = await bed.expose(b, port);
      expect(inside.startsWith('10.81.2.2:')).toBe(true);
      const [ip, p] = inside.split(':');
      const got = await a.run(process.execPath, ['-e', `fetch('http://${ip}:${p}/').then(r=>r.text()).then(t=>process.stdout.write(t))`]);
      expect(got.stdout).toMatch(/^hello /);
      const srv = await startSender(a, 1000);
      try {
        const local = await bed.reach(a, `${a.ip}:${srv.port}`);
        const net = await import('node:net');
        const [lh, lp] = local.split(':');
        const n = await new Promise<number>((resolve, reject) => {
          let k = 0;
          net.connect(Number(lp), lh!).on('data', (d) => (k += d.length)).on('end', () => resolve(k)).on('error', reject);
        });
        expect(n).toBe(1000);
      } finally {
        srv.stop();
      }
    } finally {
      server.close();
    }
  });

  it('rejects bad input with a message naming it', async () => {
    await expect(bed.addHost('x', 'nope')).rejects.toThrow(/no network nope/);
    await expect(bed.addHost('Bad_Name', 'one')).rejects.toThrow(/host name/);
    await expect(bed.network('big', 300)).rejects.toThrow(/0\.\.254/);
  });
});

describe.skipIf(!requireOrSkip(avail.ok && existsSync(path.join(repoRoot, 'dist-test/test/netns/bed.js')), 'network namespaces and dist-test/ (npm run build:test)', avail.reason))('netns bed teardown', () => {
  // A separate process builds a bed with a host running a sleeper, then is killed.
  const script = `
    import { Bed } from ${JSON.stringify(path.join(repoRoot, 'dist-test/test/netns/bed.js'))};
    const bed = await Bed.create();
    await bed.network('n', 5);
    const h = await bed.addHost('h', 'n');
    h.spawn('sleep', ['600'], { stdio: 'ignore', detached: true });
    process.stdout.write(JSON.stringify(bed.namespaceNames()) + '\\n');
    setInterval(() => {}, 1000);
  `;
  const start = async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const names = await new Promise<string[]>((resolve, reject) => {
      child.stdout.setEncoding('utf8').once('data', (d: string) => resolve(JSON.parse(d) as string[]));
      child.once('exit', (c) => reject(new Error(`bed process exited ${c}`)));
    });
    return { child, names, exited: new Promise((r) => child.once('exit', r)) };
  };

  it('is gone after SIGTERM of its process', async () => {
    const { child, names, exited } = await start();
    expect(names).toHaveLength(2);
    expect(nsList()).toEqual(expect.arrayContaining(names));
    child.kill('SIGTERM');
    await exited;
    expect(nsList().filter((n) => names.includes(n))).toEqual([]);
  });

  it('is removed, with its processes, by the next run after SIGKILL', async () => {
    const { child, names, exited } = await start();
    const sleeper = execFileSync('ip', ['netns', 'pids', names[1]!], { encoding: 'utf8' }).trim().split('\n').map(Number);
    expect(sleeper.length).toBe(1);
    child.kill('SIGKILL');
    await exited;
    expect(nsList()).toEqual(expect.arrayContaining(names));
    expect(cleanStale()).toEqual(expect.arrayContaining(names));
    expect(nsList().filter((n) => names.includes(n))).toEqual([]);
    // Gone, or a zombie waiting for whoever inherited it to reap it: not running either way.
    const running = () => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${sleeper[0]}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 50 && running(); i++) await new Promise((r) => setTimeout(r, 20));
    expect(running()).toBe(false);
  });
});
