// Scheduler discovery through the real manager: the agent asks GET /api/v1/schedulers/search, caches
// the answer in {storage.dir}/dynconfig.json, and keeps using it when the manager is down.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../adapters/log.js';
import { managerConfig } from '../control/manager/config.js';
import { startManager, type StartedManager } from '../control/manager/server.js';
import { schedulerConfig } from '../scheduler/config.js';
import { startManagerLink, type ManagerLink } from '../scheduler/manager-link.js';
import { createScheduler, type Scheduler } from '../scheduler/server.js';
import { createAgent, type Agent } from './agent.js';
import { parseAgentConfig } from './config.js';

const SECRET = 'dynconfig-test-scheduler-secret';
let dir: string;
let manager: StartedManager | undefined;
let scheduler: Scheduler;
let link: ManagerLink;
const agents: Agent[] = [];

function agentConfig(name: string, managerAddr: string) {
  const any = { ip: '127.0.0.1', port: 0 };
  return parseAgentConfig({
    host: { hostname: name, ip: '127.0.0.1' },
    storage: { dir: path.join(dir, 'storage') },
    scheduler: { addrs: [], announceInterval: '1s' },
    manager: { addr: managerAddr, refreshInterval: '1s' },
    upload: { server: any, pieceServer: any },
    download: { server: { socket: path.join(dir, `${name}.sock`) } },
    proxy: { server: any },
    metrics: { server: any },
  });
}

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-dynconfig-'));
  manager = await startManager(
    managerConfig({ server: { ip: '127.0.0.1', port: 0 }, store: { kv: { kind: 'memory' }, queue: { kind: 'memory' } }, auth: { rootPassword: 'root-password-1', schedulerSecret: SECRET } }),
    { logger: silentLogger, metrics: false },
  );
  const cfg = schedulerConfig({ server: { ip: '127.0.0.1', port: 0 }, metrics: { enable: false }, manager: { addr: manager.url, keepAliveInterval: '1s' }, job: { enable: false } });
  scheduler = createScheduler(cfg, silentLogger);
  await scheduler.start();
  link = await startManagerLink(scheduler, cfg, silentLogger, { secret: SECRET, queue: manager.deps.queue });
});

afterAll(async () => {
  for (const a of agents) await a.stop().catch(() => undefined);
  await link?.stop();
  await scheduler?.stop();
  await manager?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('dynconfig', () => {
  it('finds its scheduler through the manager and caches the answer', async () => {
    await waitFor(() => link.registered);
    const a = createAgent(agentConfig('dyn-a', manager!.url), silentLogger);
    agents.push(a);
    await a.start();
    await waitFor(() => scheduler.resources.hosts.get(a.hostId) !== undefined);
    const cached = JSON.parse(readFileSync(path.join(dir, 'storage', 'dynconfig.json'), 'utf8')) as { schedulers: { port: number }[] };
    expect(cached.schedulers.map((s) => s.port)).toContain(Number(scheduler.addresses!.grpc.split(':').pop()));
    await a.stop();
    agents.pop();
  });

  it('uses the cached answer when the manager is down', async () => {
    const url = manager!.url;
    await manager!.close();
    manager = undefined;
    expect(existsSync(path.join(dir, 'storage', 'dynconfig.json'))).toBe(true);
    const b = createAgent(agentConfig('dyn-b', url), silentLogger);
    agents.push(b);
    await b.start();
    await waitFor(() => scheduler.resources.hosts.get(b.hostId) !== undefined);
  });
});
