/**
 * Multi-cluster end to end on the netns bed: a central network (10.81.0.0/24: manager, registry,
 * the default cluster's scheduler), two cluster networks (10.81.1.0/24, 10.81.2.0/24: per cluster a
 * scheduler, a seed peer and 4 agents, each with a real containerd), and a stray network
 * (10.81.3.0/24) no scope matches. Clusters are created through the manager API with CIDR scopes;
 * schedulers listen on 0.0.0.0 and advertise their own address; agents are given only the manager's
 * URL and learn their own address from their interface. Then: a Harbor-style preheat to both
 * clusters, every agent pulls through its mirror with containerd, the registry serves each layer
 * once per cluster, the bytes stay in their cluster, the stray agent lands in the default cluster,
 * and killing cluster A's scheduler and seed peer leaves cluster B pulling.
 *
 * The manager's SQLite queue file is shared with the schedulers through the file system (as in the
 * other preheat tests); everything else goes over the namespaces' links.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliBuilt } from '../support/cli.js';
import { cleanupTempDirs, killAll, makeTempDir, portOf, runCli, schedulerConfigFor, spawnRole, waitFor, type RoleProcess } from '../support/procs.js';
import { buildImage, onPath, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
import { requireOrSkip } from '../support/require.js';
import { harborBody, http, listHosts, pollJob, ROOT_PASSWORD, SCHEDULER_SECRET } from '../manager/flow.js';
import { Bed, netnsAvailable, type NetHost } from './bed.js';
import { startContainerd, type Containerd } from './containerd.js';

const MiB = 1 << 20;
const AGENTS_PER_CLUSTER = 4;
const avail = await netnsAvailable();
const tools = registryToolsAvailable();
const ctrd = onPath('containerd') && onPath('ctr');

interface Node {
  host: NetHost;
  proc: RoleProcess;
  dir: string;
  containerd?: Containerd;
  hostsDir?: string;
}

describe.skipIf(
  !requireOrSkip(avail.ok, 'network namespaces (root, iproute2, tc htb)', avail.reason) ||
    !requireOrSkip(tools.ok, 'docker-registry/umoci/skopeo', `missing: ${tools.missing.join(', ')}`) ||
    !requireOrSkip(ctrd, 'containerd + ctr') ||
    !requireOrSkip(cliBuilt(), 'compiled damselfly CLI', 'run npm run build'),
)('multi-cluster on virtual networks: scopes, preheat, containerd through the mirrors, isolation', () => {
  let bed: Bed;
  let reg: RunningRegistry;
  let regAddr: string; // the registry as hosts see it, 10.81.0.x:5000
  let img: BuiltImage;
  let img2: BuiltImage;
  let managerInside: string; // http://10.81.0.2:PORT
  let managerLocal: string; // via a relay, for this process
  let jwt: string;
  let pat: string;
  const clusterIds: Record<string, number> = {};
  const schedulers: Record<string, { host: NetHost; proc: RoleProcess; local: string }> = {};
  const seeds: Record<string, Node> = {};
  const agents: Record<string, Node[]> = { a: [], b: [] };
  let stray: Node;

  const startScheduler = async (name: string, network: string, clusterId: number, queue: unknown) => {
    const host = await bed.addHost(name, network);
    const proc = await spawnRole(
      'scheduler',
      schedulerConfigFor({
        server: { ip: '0.0.0.0', port: 0 },
        metrics: { enable: false },
        manager: { addr: managerInside, keepAliveInterval: '1s', clusterId },
        job: { enable: true, queue },
      }),
      { name, exec: host.execPrefix, env: { DAMSELFLY_SCHEDULER_SECRET: SCHEDULER_SECRET } },
    );
    // It bound 0.0.0.0 and must advertise the address others reach it at.
    expect(String(proc.ready.grpc)).toBe(`${host.ip}:${portOf(proc.ready.grpc)}`);
    schedulers[name] = { host, proc, local: await bed.reach(host, String(proc.ready.grpc)) };
  };

  const startAgent = async (name: string, network: string, seed = false): Promise<Node> => {
    const host = await bed.addHost(name, network);
    const dir = makeTempDir(`dfly-${name}-`);
    const any = { ip: '0.0.0.0', port: 0 };
    const proc = await spawnRole(
      'agent',
      {
        // No host.ip and no scheduler address: the agent learns its address from eth0 and its
        // scheduler from the manager, by that address.
        host: { hostname: name },
        seedPeer: { enable: seed },
        storage: { dir: path.join(dir, 'storage'), keep: false },
        scheduler: { addrs: [], announceInterval: '2s' },
        manager: { addr: managerInside, refreshInterval: '2s' },
        upload: { server: any, pieceServer: any },
        download: { server: { socket: path.join(dir, 'agent.sock') } },
        proxy: { server: { ip: '127.0.0.1', port: 0 } },
        metrics: { server: any },
      },
      { dir, name, exec: host.execPrefix, readyTimeoutMs: 60_000 },
    );
    return { host, proc, dir };
  };

  /** A metric of a role inside its namespace, summed over label sets. */
  const metric = async (n: Node, name: string): Promise<number> => {
    const port = portOf(n.proc.ready.metrics);
    const r = await n.host.run(process.execPath, ['-e', `fetch('http://127.0.0.1:${port}/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))`]);
    let sum = 0;
    for (const line of r.stdout.split('\n')) {
      const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (m && m[1] === name) sum += Number(m[3]);
    }
    return sum;
  };

  const withContainerd = async (n: Node): Promise<void> => {
    n.containerd = await startContainerd(n.host, path.join(n.dir, 'ctrd'));
    n.hostsDir = path.join(n.dir, 'hosts');
    const gen = await runCli(['config', 'containerd', '--mirror', `http://127.0.0.1:${portOf(n.proc.ready.proxy)}`, '--registry', `http://${regAddr}`, '--write', n.hostsDir]);
    if (gen.code !== 0) throw new Error(`damselfly config containerd: ${gen.stderr}`);
  };

  const layerBytes = (i: BuiltImage) => i.layers.reduce((a, l) => a + l.size, 0);

  beforeAll(async () => {
    bed = await Bed.create();
    await bed.network('central', 0);
    await bed.network('a', 1);
    await bed.network('b', 2);
    await bed.network('stray', 3);

    reg = await startRegistry();
    img = await buildImage({ layers: [4 * MiB, 12 * MiB], seed: `netns-${bed.id}` });
    img2 = await buildImage({ layers: [6 * MiB], seed: `netns2-${bed.id}` });
    await pushImage(img, `${reg.host}/netns/app:v1`);
    await pushImage(img2, `${reg.host}/netns/app:v2`);
    const regHost = await bed.addHost('registry', 'central');
    regAddr = await bed.expose(regHost, portOf(reg.host), 5000);
    reg.resetCounters();

    const dir = makeTempDir('dfly-manager-');
    const store = { kv: { kind: 'sqlite', path: path.join(dir, 'kv.db') }, queue: { kind: 'sqlite', path: path.join(dir, 'queue.db'), visibilityMs: 5_000 } };
    const mgrHost = await bed.addHost('manager', 'central');
    const manager = await spawnRole(
      'manager',
      { server: { ip: mgrHost.ip, port: 0 }, store: { dataDir: path.join(dir, 'data'), ...store }, auth: { rootPassword: ROOT_PASSWORD, schedulerSecret: SCHEDULER_SECRET } },
      { dir, name: 'manager', exec: mgrHost.execPrefix },
    );
    managerInside = `http://${String(manager.ready.http)}`;
    managerLocal = `http://${await bed.reach(mgrHost, String(manager.ready.http))}`;
    jwt = (await http('POST', `${managerLocal}/api/v1/users/signin`, { body: { name: 'root', password: ROOT_PASSWORD } })).json.token as string;
    pat = (await http('POST', `${managerLocal}/api/v1/personal-access-tokens`, { token: jwt, body: { name: 'harbor', scopes: ['job'], expired_at: new Date(Date.now() + 86_400_000).toISOString() } })).json.token as string;
    for (const c of ['a', 'b'] as const) {
      const r = await http('POST', `${managerLocal}/api/v1/clusters`, { token: jwt, body: { name: `cluster-${c}`, scopes: { cidrs: [bed.cidr(c)] } } });
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      clusterIds[c] = r.json.id as number;
    }
    const clusters = (await http('GET', `${managerLocal}/api/v1/clusters`, { token: jwt })).json as Array<{ id: number; is_default: boolean }>;
    clusterIds.default = clusters.find((c) => c.is_default)!.id;

    await Promise.all([
      startScheduler('sched-a', 'a', clusterIds.a!, store.queue),
      startScheduler('sched-b', 'b', clusterIds.b!, store.queue),
      startScheduler('sched-default', 'central', clusterIds.default!, store.queue),
    ]);
    await waitFor(
      async () => (await http('GET', `${managerLocal}/api/v1/schedulers/search?ip=10.81.2.77`)).json?.scheduler_cluster_id === clusterIds.b || undefined,
      'schedulers registered with the manager',
      20_000,
    );
    const started = await Promise.all([
      startAgent('seed-a', 'a', true),
      startAgent('seed-b', 'b', true),
      ...Array.from({ length: AGENTS_PER_CLUSTER }, (_, i) => startAgent(`a${i}`, 'a')),
      ...Array.from({ length: AGENTS_PER_CLUSTER }, (_, i) => startAgent(`b${i}`, 'b')),
      startAgent('stray-0', 'stray'),
    ]);
    seeds.a = started[0]!;
    seeds.b = started[1]!;
    agents.a = started.slice(2, 2 + AGENTS_PER_CLUSTER);
    agents.b = started.slice(2 + AGENTS_PER_CLUSTER, 2 + 2 * AGENTS_PER_CLUSTER);
    stray = started[started.length - 1]!;
    await Promise.all([...agents.a, ...agents.b].map(withContainerd));
  }, 240_000);

  afterAll(async () => {
    for (const n of [...agents.a, ...agents.b]) await n.containerd?.stop();
    await killAll();
    await bed?.destroy();
    await reg?.close();
    await img?.cleanup();
    await img2?.cleanup();
    cleanupTempDirs();
  }, 60_000);

  it('each host joins the cluster whose CIDR scope holds its own address; the stray host joins the default cluster', async () => {
    const expected: Record<string, string[]> = {
      'sched-a': ['seed-a', ...agents.a.map((n) => n.host.name)],
      'sched-b': ['seed-b', ...agents.b.map((n) => n.host.name)],
      'sched-default': ['stray-0'],
    };
    for (const [name, want] of Object.entries(expected)) {
      const got = await waitFor(
        async () => {
          const hosts = (await listHosts(schedulers[name]!.local)).map((h) => h.hostname).sort();
          return hosts.length >= want.length ? hosts : undefined;
        },
        `${name} to see its hosts`,
        20_000,
      );
      expect(got, name).toEqual([...want].sort());
    }
    // What each agent was told (its discovery cache), and the address it announced.
    for (const [c, list] of [['a', [seeds.a!, ...agents.a]], ['b', [seeds.b!, ...agents.b]], ['default', [stray]]] as const) {
      for (const n of list) {
        const cache = JSON.parse(readFileSync(path.join(n.dir, 'storage', 'dynconfig.json'), 'utf8')) as { scheduler_cluster_id: number; schedulers: Array<{ ip: string }> };
        expect(cache.scheduler_cluster_id, n.host.name).toBe(clusterIds[c]);
        expect(cache.schedulers.map((s) => s.ip)).toEqual([schedulers[c === 'default' ? 'sched-default' : `sched-${c}`]!.host.ip]);
      }
    }
  });

  it('a Harbor-style preheat to both clusters, then containerd on every agent pulls through its mirror: each layer leaves the registry once per cluster, and the bytes stay in their cluster', async () => {
    const manifestUrl = `http://${regAddr}/v2/netns/app/manifests/v1`;
    const job = await http('POST', `${managerLocal}/oapi/v1/jobs`, { token: pat, body: { ...harborBody(manifestUrl), scheduler_cluster_ids: [clusterIds.a, clusterIds.b] } });
    expect(job.status, JSON.stringify(job.json)).toBe(200);
    const t0 = Date.now();
    const done = await pollJob({ managerUrl: managerLocal, pat }, job.json.id as number, 90_000);
    expect(done.state, JSON.stringify(done)).toBe('SUCCESS');
    process.stderr.write(`netns e2e: preheat took ${Date.now() - t0} ms\n`);
    for (const l of img.layers) expect(reg.blobGets.get(l.digest), `preheat GETs of ${l.digest}`).toBe(2);

    const uploaders = [seeds.a!, seeds.b!, ...agents.a, ...agents.b];
    const before = new Map<Node, number>((await Promise.all(uploaders.map((n) => metric(n, 'dragonfly_client_upload_traffic')))).map((v, i) => [uploaders[i]!, v]));
    const t1 = Date.now();
    await Promise.all(
      [...agents.a, ...agents.b].map(async (n) => {
        await n.containerd!.pull(`${regAddr}/netns/app:v1`, n.hostsDir!);
        process.stderr.write(`netns e2e: ${n.host.name} pulled in ${Date.now() - t1} ms\n`);
      }),
    );
    const contents = await Promise.all([...agents.a, ...agents.b].map(async (n) => [n.host.name, await n.containerd!.content()] as const));
    // containerd checks every blob against its digest as it writes it.
    for (const [name, content] of contents) for (const d of img.blobs) expect(content, `${name} has ${d}`).toContain(d);
    // No agent went to the registry (nor did containerd fall back to it): still one GET per cluster.
    for (const l of img.layers) expect(reg.blobGets.get(l.digest), `GETs of ${l.digest} after the pulls`).toBe(2);
    // Every layer byte the 4 agents of a cluster received was uploaded by that cluster's own peers.
    for (const c of ['a', 'b'] as const) {
      const after = await Promise.all([seeds[c]!, ...agents[c]].map(async (n) => (await metric(n, 'dragonfly_client_upload_traffic')) - before.get(n)!));
      const up = after.reduce((a, b) => a + b, 0);
      expect(up, `bytes uploaded inside cluster ${c}`).toBeGreaterThanOrEqual(AGENTS_PER_CLUSTER * layerBytes(img));
    }
  });

  it("losing cluster A's scheduler and seed peer does not affect cluster B", async () => {
    schedulers['sched-a']!.proc.kill('SIGKILL');
    seeds.a!.proc.kill('SIGKILL');
    await schedulers['sched-a']!.proc.exited;
    reg.resetCounters();
    const manifestUrl = `http://${regAddr}/v2/netns/app/manifests/v2`;
    const job = await http('POST', `${managerLocal}/oapi/v1/jobs`, { token: pat, body: { ...harborBody(manifestUrl), scheduler_cluster_ids: [clusterIds.b] } });
    const done = await pollJob({ managerUrl: managerLocal, pat }, job.json.id as number, 90_000);
    expect(done.state, JSON.stringify(done)).toBe('SUCCESS');
    await Promise.all(agents.b.map((n) => n.containerd!.pull(`${regAddr}/netns/app:v2`, n.hostsDir!)));
    for (const n of agents.b) for (const d of img2.blobs) expect(await n.containerd!.content(), n.host.name).toContain(d);
    for (const l of img2.layers) expect(reg.blobGets.get(l.digest), `GETs of ${l.digest}`).toBe(1);
    // Cluster B's scheduler still knows exactly its own hosts.
    expect((await listHosts(schedulers['sched-b']!.local)).map((h) => h.hostname).sort()).toEqual(['seed-b', ...agents.b.map((n) => n.host.name)].sort());
    // And cluster A's agents still pull (back to source without their scheduler): a pull never fails.
    await agents.a[0]!.containerd!.pull(`${regAddr}/netns/app:v2`, agents.a[0]!.hostsDir!);
    expect(await agents.a[0]!.containerd!.content()).toContain(img2.layers[0]!.digest);
  });
});
