/**
 * The preheat flow end to end with real processes: a registry origin (docker-registry, umoci image,
 * skopeo push), `damselfly manager`, `damselfly scheduler` registered to it and consuming its job
 * queue, a seed peer and an agent. Shared by the per-backend test files.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { request } from 'undici';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../scheduler/protocol/loader.js';
import { agentConfigFor, makeTempDir, schedulerConfigFor, spawnRole, waitFor, type RoleProcess } from '../support/procs.js';
import type { BuiltImage, RunningRegistry } from '../support/registry.js';

export const ROOT_PASSWORD = 'e2e-root-password';
export const SCHEDULER_SECRET = 'e2e-scheduler-secret-0123456789';

export interface Stack {
  manager: RoleProcess;
  managerUrl: string;
  scheduler: RoleProcess;
  seed: RoleProcess;
  agent: RoleProcess;
  jwt: string;
  pat: string;
}

export async function http(method: string, url: string, opts: { token?: string; body?: unknown } = {}) {
  const res = await request(url, {
    method: method as 'GET',
    headers: { accept: 'application/json', ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.body.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.statusCode, json };
}

/** Hosts the scheduler knows (ListHosts over its gRPC API). */
export async function listHosts(schedulerGrpc: string): Promise<Array<{ id: string; type: string; hostname: string }>> {
  const { Scheduler } = loadProto();
  const client = new Scheduler(schedulerGrpc, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    ListHosts(req: unknown, cb: (err: Error | null, res?: { hosts: Array<{ id: string; type: string; hostname: string }> }) => void): void;
  };
  try {
    return await new Promise((resolve, reject) => client.ListHosts({}, (err, res) => (err ? reject(err) : resolve(res!.hosts))));
  } finally {
    client.close();
  }
}

export async function startManager(cli: string, store: { kv: unknown; queue: unknown }, dir: string): Promise<RoleProcess> {
  return spawnRole(
    'manager',
    { server: { ip: '127.0.0.1', port: 0 }, store: { dataDir: path.join(dir, 'data'), ...store }, auth: { rootPassword: ROOT_PASSWORD, schedulerSecret: SCHEDULER_SECRET } },
    { cli, dir, name: 'manager' },
  );
}

export async function startScheduler(cli: string, managerUrl: string, queue: unknown, name = 'scheduler'): Promise<RoleProcess> {
  return spawnRole(
    'scheduler',
    schedulerConfigFor({ manager: { addr: managerUrl, keepAliveInterval: '1s', clusterId: 1 }, job: { enable: true, queue } }),
    { cli, name, env: { DAMSELFLY_SCHEDULER_SECRET: SCHEDULER_SECRET } },
  );
}

export async function startStack(cli: string, store: { kv: unknown; queue: unknown }): Promise<Stack> {
  const dir = makeTempDir('damselfly-e2e-manager-');
  const manager = await startManager(cli, store, dir);
  const managerUrl = `http://${String(manager.ready.http)}`;
  const scheduler = await startScheduler(cli, managerUrl, store.queue);
  const schedAddr = String(scheduler.ready.grpc);
  const seedDir = makeTempDir('damselfly-e2e-seed-');
  const agentDir = makeTempDir('damselfly-e2e-agent-');
  const [seed, agent] = await Promise.all([
    spawnRole('agent', agentConfigFor('seed', seedDir, [schedAddr], { seed: true }), { cli, dir: seedDir, name: 'seed' }),
    spawnRole('agent', agentConfigFor('agent-0', agentDir, [schedAddr]), { cli, dir: agentDir, name: 'agent-0' }),
  ]);
  await waitFor(async () => (await http('GET', `${managerUrl}/api/v1/schedulers/search?ip=127.0.0.1`)).status === 200 || undefined, 'scheduler registered with the manager', 15_000);
  await waitFor(async () => (await listHosts(schedAddr)).some((h) => h.type !== 'NORMAL') || undefined, 'seed peer announced', 15_000);
  const signin = await http('POST', `${managerUrl}/api/v1/users/signin`, { body: { name: 'root', password: ROOT_PASSWORD } });
  const jwt = signin.json.token as string;
  const pat = await http('POST', `${managerUrl}/api/v1/personal-access-tokens`, {
    token: jwt,
    body: { name: 'harbor', scopes: ['job'], expired_at: new Date(Date.now() + 86_400_000).toISOString() },
  });
  return { manager, managerUrl, scheduler, seed, agent, jwt, pat: pat.json.token };
}

/** The body Harbor's Dragonfly provider posts (every field, empty strings and zeros included). */
export function harborBody(manifestUrl: string, authorization = '') {
  return {
    type: 'preheat',
    args: {
      type: 'image',
      url: manifestUrl,
      tag: '',
      filtered_query_params: '',
      headers: authorization ? { Authorization: authorization } : {},
      scope: '',
      concurrent_count: 0,
      timeout: 0,
    },
    scheduler_cluster_ids: null,
  };
}

/** Polls like Harbor (GET /oapi/v1/jobs/:id), faster; returns the terminal job. */
export async function pollJob(stack: Pick<Stack, 'managerUrl' | 'pat'>, id: number, timeoutMs = 60_000): Promise<any> {
  return waitFor(
    async () => {
      const r = await http('GET', `${stack.managerUrl}/oapi/v1/jobs/${id}`, { token: stack.pat });
      if (r.status !== 200) return undefined;
      return r.json.state === 'PENDING' ? undefined : r.json;
    },
    `job ${id} to finish`,
    timeoutMs,
    100,
  );
}

/** Pulls every blob through the agent's registry mirror; returns their sha256 digests. */
export async function pullBlobs(agent: RoleProcess, registry: RunningRegistry, repo: string, image: BuiltImage): Promise<string[]> {
  const out: string[] = [];
  for (const digest of image.blobs) {
    const res = await request(`http://${String(agent.ready.proxy)}/v2/${repo}/blobs/${digest}?ns=${encodeURIComponent(registry.host)}`);
    const body = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) throw new Error(`pull ${digest}: ${res.statusCode} ${body.toString().slice(0, 200)}`);
    out.push(`sha256:${createHash('sha256').update(body).digest('hex')}`);
  }
  return out;
}
