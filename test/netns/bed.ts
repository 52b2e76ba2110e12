/**
 * A test bed of virtual hosts on real (virtual) networks: every host is a Linux network namespace
 * with its own address, every network a bridge, and one router namespace holds the bridges and
 * forwards between them, so hosts on 10.81.1.0/24 reach hosts on 10.81.2.0/24 through a kernel
 * router. Links are shaped with `tc` (HTB for rate; netem for delay and loss where the kernel has it) on both ends of a host's veth:
 * its eth0 (what the host sends, its upload) and the router's side (what it receives, its download).
 *
 *   const bed = await Bed.create();
 *   bed.network('a', 1);                        // 10.81.1.0/24, gateway 10.81.1.1
 *   const h = await bed.addHost('agent-0', 'a'); // namespace dfly-<run>-agent-0, eth0 10.81.1.2
 *   await bed.shape(h, { up: { rate: 20 * MiB }, down: { rate: 40 * MiB, delayMs: 5 } });
 *   await h.run('ping', ['-c1', '10.81.2.2']);   // a process inside the host
 *   spawnRole('agent', cfg, { exec: h.execPrefix }); // a role inside the host
 *   await bed.destroy();
 *
 * Only 10.81.0.0/16, only inside namespaces this code creates: the root namespace gets no address,
 * no interface, no route. The test process reaches a service inside a host, and a host reaches a
 * server of the test process, through relays over Unix sockets (file-system objects, not bound to a
 * network namespace): `reach()` and `expose()`.
 *
 * Namespaces are named `dfly-<pid>x<random>-<host>`, so concurrent runs never collide and a later
 * run can tell a dead run's leftovers (its pid is gone) and remove them (`Bed.create` does). A bed is
 * torn down by `destroy()`, on process exit and on SIGTERM/SIGINT/SIGHUP; after a SIGKILL the next
 * run cleans up.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const NS_PREFIX = 'dfly-';
const SUBNET = '10.81';

export interface LinkShape {
  /** Bytes per second. */
  rate?: number;
  /** One-way delay added on this side of the link, milliseconds. */
  delayMs?: number;
  /** Packet loss on this side, percent (0–100). */
  lossPct?: number;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface NetHost {
  name: string;
  /** The namespace's name. */
  ns: string;
  /** Its address on its network. */
  ip: string;
  network: string;
  /** `['ip', 'netns', 'exec', ns]`: prepend to a command to run it inside the host. */
  execPrefix: string[];
  /** Runs a command inside the host to completion; never throws for a non-zero exit. */
  run(cmd: string, args: string[], opts?: { timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<RunResult>;
  /** Starts a command inside the host (killed with the bed). */
  spawn(cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
}

interface Network {
  name: string;
  index: number;
  bridge: string;
  nextHost: number;
}

const live = new Set<Bed>();

function sh(cmd: string, args: string[], timeoutMs = 15_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code !== 0 ? String(err.message) : '') });
    });
  });
}

/** Runs `ip ...` (or another tool) and throws naming the command when it fails. */
async function must(cmd: string, args: string[]): Promise<string> {
  const r = await sh(cmd, args);
  if (r.code !== 0) throw new Error(`netns bed: \`${cmd} ${args.join(' ')}\` failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

function listNamespaces(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.startsWith(NS_PREFIX));
  } catch {
    return [];
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kills every process inside `ns` and deletes it; synchronous so it can run in an exit handler. */
function removeNamespaceSync(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  } catch {
    // namespace already gone
  }
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

/** Removes the namespaces of runs whose process no longer exists; returns their names. */
export function cleanStale(): string[] {
  const removed: string[] = [];
  for (const ns of listNamespaces()) {
    const m = /^dfly-(\d+)x[0-9a-f]+-/.exec(ns);
    if (!m || pidAlive(Number(m[1]))) continue;
    removeNamespaceSync(ns);
    removed.push(ns);
  }
  return removed;
}

let netemState: { ok: boolean; reason: string } | undefined;

/** Whether `tc netem` (delay, loss) works here; known after netnsAvailable() (false before). */
export function netemAvailable(): { ok: boolean; reason: string } {
  return netemState ?? { ok: false, reason: 'netnsAvailable() not called yet' };
}

/** Whether this process may create namespaces, veth pairs and qdiscs (root with iproute2 and tc). */
export async function netnsAvailable(): Promise<{ ok: boolean; reason: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux, this is ${process.platform}` };
  const probe = `${NS_PREFIX}${process.pid}x${randomBytes(2).toString('hex')}-probe`;
  const add = await sh('ip', ['netns', 'add', probe]);
  if (add.code !== 0) return { ok: false, reason: `\`ip netns add\` failed: ${add.stderr.trim() || 'ip not found'} (needs root and iproute2)` };
  try {
    const veth = await sh('ip', ['-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1']);
    if (veth.code !== 0) return { ok: false, reason: `veth pairs not permitted: ${veth.stderr.trim()}` };
    const tc = await sh('tc', ['-n', probe, 'qdisc', 'add', 'dev', 'p0', 'root', 'handle', '1:', 'htb', 'default', '1']);
    if (tc.code !== 0) return { ok: false, reason: `tc htb not usable: ${tc.stderr.trim() || 'tc not found'} (needs iproute2 and the sch_htb module)` };
    const netem = await sh('tc', ['-n', probe, 'qdisc', 'add', 'dev', 'p1', 'root', 'netem', 'delay', '1ms']);
    netemState = netem.code === 0 ? { ok: true, reason: '' } : { ok: false, reason: `tc netem not usable: ${netem.stderr.trim()} (the kernel lacks sch_netem, CONFIG_NET_SCH_NETEM)` };
    return { ok: true, reason: '' };
  } finally {
    await sh('ip', ['netns', 'del', probe]);
  }
}

/** HTB for the rate (a single default class), netem below it for delay and loss. */
async function applyShape(ns: string, dev: string, shape: LinkShape): Promise<void> {
  await sh('tc', ['-n', ns, 'qdisc', 'del', 'dev', dev, 'root']);
  if (!shape.rate && !shape.delayMs && !shape.lossPct) return;
  const netemArgs: string[] = [];
  if (shape.delayMs) netemArgs.push('delay', `${shape.delayMs}ms`);
  if (shape.lossPct) netemArgs.push('loss', `${shape.lossPct}%`);
  // netem's default queue (1000 packets) tail-drops at Gbit rates; a deep one leaves the delay alone.
  netemArgs.push('limit', '100000');
  if (netemArgs.length > 2 && !netemAvailable().ok) {
    throw new Error(`netns bed: delay/loss on ${dev} needs tc netem: ${netemAvailable().reason}`);
  }
  if (!shape.rate) {
    await must('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'netem', ...netemArgs]);
    return;
  }
  const bits = `${Math.round(shape.rate * 8)}bit`;
  // Burst: 10 ms of the rate, at least a few TSO segments, so the average rate is the limit and
  // HTB's timer granularity is not.
  const burst = String(Math.max(Math.round(shape.rate / 100), 192 * 1024));
  await must('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '1']);
  await must('tc', ['-n', ns, 'class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:1', 'htb', 'rate', bits, 'ceil', bits, 'burst', burst, 'cburst', burst, 'quantum', '60000']);
  if (netemArgs.length > 2) await must('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'parent', '1:1', 'handle', '10:', 'netem', ...netemArgs]);
}

// Forwards TCP or Unix-socket connections; run with `node -e RELAY LISTEN CONNECT` inside a namespace,
// where LISTEN/CONNECT are tcp:IP:PORT or unix:PATH. Prints {"ready":true,"port":N} when listening.
const RELAY = String.raw`
const net = require('net');
const [listen, connect] = process.argv.slice(1);
const parse = (s) => s.startsWith('unix:') ? { path: s.slice(5) } : (([, h, p]) => ({ host: h, port: Number(p) }))(/^tcp:(.+):(\d+)$/.exec(s));
const to = parse(connect);
const server = net.createServer((a) => {
  const b = net.connect(to);
  a.setNoDelay(true);
  b.on('connect', () => b.setNoDelay && to.port && b.setNoDelay(true));
  a.pipe(b); b.pipe(a);
  a.on('error', () => b.destroy()); b.on('error', () => a.destroy());
  a.on('close', () => b.destroy()); b.on('close', () => a.destroy());
});
const l = parse(listen);
const ready = () => process.stdout.write(JSON.stringify({ ready: true, port: l.path ? 0 : server.address().port }) + '\n');
if (l.path) server.listen(l.path, ready); else server.listen(l.port, l.host, ready);
`;

export class Bed {
  readonly id: string;
  readonly router: string;
  /** Temp dir for relay sockets; removed with the bed. */
  readonly dir: string;
  private readonly networks = new Map<string, Network>();
  private readonly hosts = new Map<string, NetHost & { veth: string }>();
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly servers = new Set<net.Server>();
  private vethCount = 0;
  private destroyed = false;

  private constructor(id: string) {
    this.id = id;
    this.router = `${NS_PREFIX}${id}-router`;
    this.dir = mkdtempSync(path.join(tmpdir(), `${NS_PREFIX}${id}-`));
  }

  /** Cleans up dead runs' namespaces, then makes the router namespace. Throws if namespaces cannot be made. */
  static async create(): Promise<Bed> {
    const stale = cleanStale();
    if (!netemState) await netnsAvailable();
    if (stale.length) process.stderr.write(`netns bed: removed ${stale.length} namespace(s) of dead runs: ${stale.join(' ')}\n`);
    const bed = new Bed(`${process.pid}x${randomBytes(3).toString('hex')}`);
    live.add(bed);
    try {
      await bed.addNamespace(bed.router);
      await must('ip', ['netns', 'exec', bed.router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    } catch (err) {
      await bed.destroy();
      throw err;
    }
    return bed;
  }

  private async addNamespace(ns: string): Promise<void> {
    await must('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }

  /** Declares network `name` as 10.81.<index>.0/24 (index 0–254), a bridge in the router namespace. */
  async network(name: string, index: number): Promise<void> {
    if (!Number.isInteger(index) || index < 0 || index > 254) throw new Error(`netns bed: network index must be 0..254, got ${index}`);
    if (this.networks.has(name) || [...this.networks.values()].some((n) => n.index === index)) throw new Error(`netns bed: network ${name}/${index} exists`);
    const bridge = `br${index}`;
    await must('ip', ['-n', this.router, 'link', 'add', bridge, 'type', 'bridge']);
    await must('ip', ['-n', this.router, 'addr', 'add', `${SUBNET}.${index}.1/24`, 'dev', bridge]);
    await must('ip', ['-n', this.router, 'link', 'set', bridge, 'up']);
    this.networks.set(name, { name, index, bridge, nextHost: 2 });
  }

  /** CIDR of a network, e.g. "10.81.1.0/24". */
  cidr(network: string): string {
    const n = this.networks.get(network);
    if (!n) throw new Error(`netns bed: no network ${network}`);
    return `${SUBNET}.${n.index}.0/24`;
  }

  /** Makes host `name` on `network`, with the network's next free address and a default route via the router. */
  async addHost(name: string, network: string): Promise<NetHost> {
    const n = this.networks.get(network);
    if (!n) throw new Error(`netns bed: no network ${network} (declare it with network())`);
    if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(name)) throw new Error(`netns bed: host name must be [a-z0-9-], ≤ 31 chars, got ${JSON.stringify(name)}`);
    if (this.hosts.has(name)) throw new Error(`netns bed: host ${name} exists`);
    if (n.nextHost > 254) throw new Error(`netns bed: network ${network} is full`);
    const ns = `${NS_PREFIX}${this.id}-${name}`;
    const ip = `${SUBNET}.${n.index}.${n.nextHost++}`;
    const veth = `v${this.vethCount++}`;
    await this.addNamespace(ns);
    await must('ip', ['-n', this.router, 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await must('ip', ['-n', this.router, 'link', 'set', veth, 'master', n.bridge, 'up']);
    await must('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await must('ip', ['-n', ns, 'route', 'add', 'default', 'via', `${SUBNET}.${n.index}.1`]);
    const execPrefix = ['ip', 'netns', 'exec', ns];
    const host: NetHost & { veth: string } = {
      name,
      ns,
      ip,
      network,
      veth,
      execPrefix,
      run: (cmd, args, opts = {}) =>
        new Promise((resolve) => {
          const child = this.spawnIn(ns, cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
          child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
          const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
          child.once('close', (code) => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
          });
          child.once('error', (err) => {
            clearTimeout(timer);
            resolve({ code: null, stdout, stderr: String(err) });
          });
        }),
      spawn: (cmd, args, opts = {}) => this.spawnIn(ns, cmd, args, opts),
    };
    this.hosts.set(name, host);
    return host;
  }

  host(name: string): NetHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`netns bed: no host ${name}`);
    return h;
  }

  private spawnIn(ns: string, cmd: string, args: string[], opts: SpawnOptions): ChildProcess {
    // `ip netns exec` execs the command in place (no fork), so the child's pid is the command's.
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], opts);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /**
   * Shapes a host's link: `up` on its eth0 (what it sends), `down` on the router's side of its veth
   * (what it receives). An empty shape removes the qdisc. Delay or loss without netem in the kernel
   * throws, naming the missing module.
   */
  async shape(host: NetHost, s: { up?: LinkShape; down?: LinkShape }): Promise<void> {
    const h = this.hosts.get(host.name);
    if (!h) throw new Error(`netns bed: no host ${host.name}`);
    const apply = async (ns: string, dev: string, shape: LinkShape | undefined) => {
      if (shape !== undefined) await applyShape(ns, dev, shape);
    };
    await apply(h.ns, 'eth0', s.up);
    await apply(this.router, h.veth, s.down);
  }

  /** Runs the relay inside `ns`; resolves with its TCP port once it listens. */
  private async relay(ns: string, listen: string, connect: string): Promise<number> {
    const child = this.spawnIn(ns, process.execPath, ['-e', RELAY, listen, connect], { stdio: ['ignore', 'pipe', 'pipe'] });
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`netns bed: relay ${listen} -> ${connect} in ${ns} not ready: ${err}`)), 10_000);
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) {
          clearTimeout(timer);
          resolve((JSON.parse(line) as { port: number }).port);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`netns bed: relay in ${ns} exited (${code}): ${err}`));
      });
    });
  }

  private sockPath(): string {
    return path.join(this.dir, `r${randomBytes(4).toString('hex')}.sock`);
  }

  private pipeServer(listen: (s: net.Server) => void, to: net.NetConnectOpts): net.Server {
    const server = net.createServer((a) => {
      const b = net.connect(to);
      a.setNoDelay(true);
      a.pipe(b);
      b.pipe(a);
      a.on('error', () => b.destroy());
      b.on('error', () => a.destroy());
      a.on('close', () => b.destroy());
      b.on('close', () => a.destroy());
    });
    this.servers.add(server);
    listen(server);
    return server;
  }

  /**
   * Makes a TCP server of this process (on 127.0.0.1:`localPort` of the root namespace) reachable
   * inside `host` at host.ip:`port` (0 = any); resolves with "ip:port". Bytes leave the host through
   * its eth0, so its shaping applies to what the server sends.
   */
  async expose(host: NetHost, localPort: number, port = 0): Promise<string> {
    const sock = this.sockPath();
    await new Promise<void>((resolve, reject) => {
      const s = this.pipeServer((srv) => srv.listen(sock, () => resolve()), { host: '127.0.0.1', port: localPort });
      s.once('error', reject);
    });
    const p = await this.relay(host.ns, `tcp:${host.ip}:${port}`, `unix:${sock}`);
    return `${host.ip}:${p}`;
  }

  /** Makes `addr` ("ip:port", as seen inside `host`) reachable from this process; resolves with "127.0.0.1:PORT". */
  async reach(host: NetHost, addr: string): Promise<string> {
    const sock = this.sockPath();
    await this.relay(host.ns, `unix:${sock}`, `tcp:${addr}`);
    return new Promise((resolve, reject) => {
      const s = this.pipeServer((srv) => srv.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(srv.address() as net.AddressInfo).port}`)), { path: sock });
      s.once('error', reject);
    });
  }

  /** Namespaces this bed made (router first). */
  namespaceNames(): string[] {
    return [...this.namespaces];
  }

  /** Kills every process in the bed's namespaces and deletes them. Idempotent, never throws. */
  async destroy(): Promise<void> {
    this.destroySync();
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const s of this.servers) s.close();
    for (const c of this.children) c.kill('SIGKILL');
    // Hosts first, router last: deleting a host namespace removes its veth pair.
    for (const ns of [...this.namespaces].reverse()) removeNamespaceSync(ns);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// A bed never outlives its process: exit handlers run synchronously; a signal is re-raised after
// cleanup when nobody else handles it, so its default action (exit) still happens.
process.once('exit', () => {
  for (const b of live) b.destroySync();
});
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(sig, () => {
    for (const b of live) b.destroySync();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  });
}
