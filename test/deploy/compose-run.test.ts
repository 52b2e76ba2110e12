/**
 * The configuration files docker compose mounts, run for real as processes on this machine: each
 * profile's manager, scheduler, seed peer and agent start from infra/compose/*.yaml with the
 * environment the compose file gives them. Only what a container network provides is rewritten:
 * service host names become 127.0.0.1 with ephemeral ports, container paths become temp dirs, and
 * the store servers are this machine's (PostgreSQL/Redis, or DynamoDB Local + fauxqs standing in
 * for LocalStack through the same AWS_ENDPOINT_URL_* overrides), and the compose secret
 * /run/secrets/damselfly-join-token becomes a temp file. Then the scheduler must register with the
 * manager and a file must download through the agent, with mutual TLS required between scheduler,
 * seed peer and agent (certificates bought from the manager with that join token): the agents
 * report mtls required, the pull is not an origin fallback, and a plaintext piece request is refused.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';
import { fileSha256, startOrigin, MiB, type Origin } from '../support/origin.js';
import { cleanupTempDirs, getThrough, killAll, makeTempDir, spawnRole, waitFor, type RoleProcess } from '../support/procs.js';
import { requireOrSkip } from '../support/require.js';
import { probePostgres, probeRedis, startDynamoLocal, startFauxqs, type Server } from '../support/servers.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
interface Service {
  command: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  secrets?: string[];
}

const compose = parse(readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };
const JOIN_SECRET = 'damselfly-join-token';
const secrets = { DAMSELFLY_ROOT_PASSWORD: randomBytes(12).toString('hex'), DAMSELFLY_SCHEDULER_SECRET: randomBytes(16).toString('hex') };

/** Compose variable interpolation for the forms the file uses: ${X}, ${X:-default}, ${X:?error}. */
function interpolate(value: string, vars: Record<string, string | undefined>): string {
  return value.replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_, name: string, op: string | undefined, arg: string) => {
    const v = vars[name];
    if (v) return v;
    if (op === '?') throw new Error(`compose would refuse to start: ${arg}`);
    return op === '-' ? arg : '';
  });
}

/**
 * The service's config file (as compose mounts it) and its environment (as compose interpolates it);
 * the join-token secret's container path is replaced by `tokenFile` (what compose would mount there).
 */
function serviceFiles(name: string, tokenFile: string): { doc: Obj; env: Record<string, string> } {
  const s = compose.services[name];
  const target = s.command[2];
  const source = s.volumes!.map((v) => v.split(':')).find(([, t]) => t === target)![0];
  const doc = parse(readFileSync(path.resolve(repoRoot, source), 'utf8')) as Obj;
  const env = Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(String(v), secrets)]));
  // The token reaches the container only as the secret file, never through its environment.
  expect(s.secrets, `${name}: secrets`).toContain(JOIN_SECRET);
  expect(Object.keys(env), name).not.toContain('DAMSELFLY_JOIN_TOKEN');
  expect(doc.security?.joinTokenFile, `${name}: security.joinTokenFile`).toBe(`/run/secrets/${JOIN_SECRET}`);
  doc.security = { ...doc.security, joinTokenFile: tokenFile };
  return { doc, env };
}

/** Listeners to loopback with ephemeral ports; everything else untouched. */
function loopback(doc: Obj): Obj {
  const out: Obj = Array.isArray(doc) ? [] : {};
  for (const [k, v] of Object.entries(doc)) {
    if (k === 'ip' && v === '0.0.0.0') out[k] = '127.0.0.1';
    else if (k === 'port' && typeof v === 'number') out[k] = 0;
    else out[k] = v && typeof v === 'object' ? loopback(v) : v;
  }
  return out;
}

interface Stores {
  /** Rewrites a store section that points at a compose service to this machine's server. */
  store(s: Obj): Obj;
  /** Rewrites the AWS endpoint overrides that point at LocalStack. */
  env(e: Record<string, string>): Record<string, string>;
}

async function runProfile(profile: 'postgres' | 'sqlite' | 'localstack', stores: Stores, origin: Origin): Promise<void> {
  const suffix = profile === 'postgres' ? '' : `-${profile}`;
  const dir = makeTempDir(`damselfly-compose-${profile}-`);
  const procs: RoleProcess[] = [];
  try {
    // Container paths of the sqlite profile's shared volume → one temp dir shared the same way.
    const paths = (s: Obj): Obj => (s.path ? { ...s, path: path.join(dir, 'store', path.basename(s.path)) } : s);
    const tokenFile = path.join(dir, JOIN_SECRET);
    writeFileSync(tokenFile, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });

    const m = serviceFiles(`manager${suffix}`, tokenFile);
    const managerDoc = loopback(m.doc);
    managerDoc.store = { ...managerDoc.store, dataDir: path.join(dir, 'manager-data'), kv: paths(stores.store(managerDoc.store.kv)), queue: paths(stores.store(managerDoc.store.queue)) };
    const manager = await spawnRole('manager', managerDoc, { dir, name: `manager${suffix}`, env: stores.env(m.env) });
    procs.push(manager);
    const managerUrl = `http://${String(manager.ready.http)}`;

    const s = serviceFiles(`scheduler${suffix}`, tokenFile);
    const schedulerDoc = loopback(s.doc);
    expect(schedulerDoc.manager.addr).toBe('http://manager:8080');
    schedulerDoc.manager = { ...schedulerDoc.manager, addr: managerUrl, keepAliveInterval: '1s' };
    schedulerDoc.job = { ...schedulerDoc.job, queue: paths(stores.store(schedulerDoc.job.queue)) };
    const scheduler = await spawnRole('scheduler', schedulerDoc, { dir, name: `scheduler${suffix}`, env: stores.env(s.env) });
    procs.push(scheduler);
    const schedulerAddr = String(scheduler.ready.grpc);

    const agents: RoleProcess[] = [];
    for (const name of ['seed-peer', 'agent']) {
      const a = serviceFiles(name, tokenFile);
      const doc = loopback(a.doc);
      expect(doc.scheduler.addrs).toEqual(['scheduler:8002']);
      expect(doc.manager.addr).toBe('http://manager:8080');
      const agentDir = path.join(dir, name);
      doc.host = { ...doc.host, ip: '127.0.0.1' };
      doc.scheduler = { ...doc.scheduler, addrs: [schedulerAddr] };
      doc.manager = { ...doc.manager, addr: managerUrl };
      doc.storage = { ...doc.storage, dir: path.join(agentDir, 'cache') };
      doc.download = { ...doc.download, server: { socket: path.join(agentDir, 'agent.sock') } };
      // A port left at its default (not in the file) would still be a fixed one: pin it to 0.
      doc.proxy = { ...doc.proxy, server: { ...doc.proxy?.server, ip: '127.0.0.1', port: 0 } };
      const p = await spawnRole('agent', doc, { dir: agentDir, name, env: a.env });
      procs.push(p);
      agents.push(p);
    }
    expect(agents[0].ready.role).toBe('seed-peer');
    for (const a of agents) expect(a.ready.mtls).toBe('required');

    const search = await waitFor(
      async () => {
        const res = await fetch(`${managerUrl}/api/v1/schedulers/search?ip=127.0.0.1`);
        return res.status === 200 ? ((await res.json()) as { schedulers: { port: number }[] }) : undefined;
      },
      'the scheduler registered with the manager',
      20_000,
    );
    expect(search.schedulers.map((x) => x.port)).toContain(Number(schedulerAddr.split(':').pop()));

    const url = origin.add(`/compose-${profile}.bin`, { size: 4 * MiB, seed: profile });
    const out = path.join(dir, 'out.bin');
    const got = await getThrough(agents[1], url, out);
    expect(got.code, got.stderr).toBe(0);
    // Registered with the scheduler over mTLS: the pull was scheduled, not an origin fallback.
    expect(got.stderr).not.toMatch(/from the origin directly/);
    expect(await fileSha256(out)).toBe(origin.sha256(`/compose-${profile}.bin`));
    // The piece servers speak TLS only: a plaintext request gets no answer.
    await expect(fetch(`http://${String(agents[0].ready.pieces)}/v1/tasks/x/pieces/0`)).rejects.toThrow();
  } finally {
    await Promise.all(procs.reverse().map((p) => p.stop()));
  }
}

describe('compose configuration files, run as processes', () => {
  let origin: Origin;
  const servers: Server[] = [];
  afterAll(async () => {
    await killAll();
    await origin?.close();
    for (const s of servers) await s.stop();
    cleanupTempDirs();
  });
  const getOrigin = async () => (origin ??= await startOrigin());

  it('profile sqlite: manager and scheduler share the SQLite store files; a download goes through the agent', async () => {
    await runProfile('sqlite', { store: (s) => s, env: (e) => e }, await getOrigin());
  }, 120_000);

  it('profile postgres: manager on PostgreSQL + Redis, scheduler on the same Redis queue', async (ctx) => {
    const [pg, redis] = await Promise.all([probePostgres(), probeRedis()]);
    if (!requireOrSkip(pg.ok && redis.ok, 'PostgreSQL and Redis on 127.0.0.1', [pg.reason, redis.reason].filter(Boolean).join('; '))) return ctx.skip();
    const run = randomBytes(4).toString('hex');
    const store = (s: Obj): Obj => {
      if (s.kind === 'postgres') return { ...s, url: pg.url, schema: `compose_${run}` };
      if (s.kind === 'redis') return { ...s, url: redis.url, prefix: `compose-${run}:` };
      return s;
    };
    await runProfile('postgres', { store, env: (e) => e }, await getOrigin());
  }, 120_000);

  it('profile localstack: the AWS adapters reached through AWS_ENDPOINT_URL_* (DynamoDB Local and fauxqs)', async (ctx) => {
    const [dynamo, sqs] = await Promise.all([startDynamoLocal(), startFauxqs()]);
    servers.push(dynamo, sqs);
    if (!requireOrSkip(dynamo.ok && sqs.ok, 'DynamoDB Local and fauxqs', [dynamo.reason, sqs.reason].filter(Boolean).join('; '))) return ctx.skip();
    const env = (e: Record<string, string>) => {
      const out = { ...e };
      // Exactly the compose file's variables, pointed at the two local servers instead of LocalStack.
      expect(e.AWS_ENDPOINT_URL_DYNAMODB).toBe('http://localstack:4566');
      expect(e.AWS_ENDPOINT_URL_SQS).toBe('http://localstack:4566');
      out.AWS_ENDPOINT_URL_DYNAMODB = dynamo.endpoint!;
      out.AWS_ENDPOINT_URL_SQS = sqs.endpoint!;
      return out;
    };
    await runProfile('localstack', { store: (s) => s, env }, await getOrigin());
  }, 180_000);
});
