/**
 * The manager link in-process against a real manager HTTP server (memory stores shared with the
 * worker's queue): registration and keepalive, idempotent consumption (a job whose part is already
 * terminal is acked without work), and jobs that fail for want of peers report FAILURE promptly.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryKvStore } from '../adapters/kv/memory.js';
import { jobQueue } from '../adapters/keys.js';
import { silentLogger } from '../adapters/log.js';
import { MemoryQueue } from '../adapters/queue/memory.js';
import { managerConfig } from '../control/manager/config.js';
import { startManager, type StartedManager } from '../control/manager/server.js';
import { schedulerConfig } from './config.js';
import { startManagerLink, type ManagerLink } from './manager-link.js';
import { createScheduler, type Scheduler } from './server.js';
import { MAX_REPORT_ERROR } from './job/limits.js';
import { unseal } from './job/sealed.js';
import { hostMsg, schedulerClient, unaryCall } from '../test/scheduler/support.js';

const SECRET = 'link-test-secret-0123456789';
const PASSWORD = 'link-test-password';

interface Env {
  manager: StartedManager;
  queue: MemoryQueue;
  scheduler: Scheduler;
  link?: ManagerLink;
  jwt: string;
}
const envs: Env[] = [];

async function setup(): Promise<Env> {
  const kv = new MemoryKvStore();
  const queue = new MemoryQueue({ maxReceives: 5, visibilityMs: 5_000 });
  const manager = await startManager(managerConfig({ server: { ip: '127.0.0.1', port: 0 }, auth: { rootPassword: PASSWORD, schedulerSecret: SECRET }, schedulerKeepAliveInterval: '200ms' }), {
    kv,
    queue,
    logger: silentLogger,
  });
  const scheduler = createScheduler(
    schedulerConfig({ server: { ip: '127.0.0.1', port: 0 }, metrics: { enable: false }, manager: { addr: manager.url, keepAliveInterval: '200ms', clusterId: 1 }, job: { enable: true } }),
  );
  await scheduler.start();
  const jwt = ((await (await fetch(`${manager.url}/api/v1/users/signin`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'root', password: PASSWORD }) })).json()) as { token: string }).token;
  const env: Env = { manager, queue, scheduler, jwt };
  envs.push(env);
  return env;
}

async function api(env: Env, method: string, path: string, body?: unknown, token = env.jwt): Promise<{ status: number; json: any }> {
  const res = await fetch(`${env.manager.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

async function until<T>(fn: () => Promise<T | undefined>, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

afterEach(async () => {
  for (const e of envs.splice(0)) {
    await e.link?.stop();
    await e.scheduler.stop();
    await e.manager.close();
  }
});

describe('manager link', () => {
  it('refuses to start without a scheduler secret', async () => {
    const env = await setup();
    const saved = process.env.DAMSELFLY_SCHEDULER_SECRET;
    delete process.env.DAMSELFLY_SCHEDULER_SECRET;
    try {
      await expect(startManagerLink(env.scheduler, env.scheduler.config, silentLogger)).rejects.toMatchObject({ code: 'CONFIG' });
    } finally {
      if (saved !== undefined) process.env.DAMSELFLY_SCHEDULER_SECRET = saved;
    }
  });

  it('registers, keeps alive, and goes inactive after it stops', async () => {
    const env = await setup();
    env.link = await startManagerLink(env.scheduler, env.scheduler.config, silentLogger, { secret: SECRET, queue: env.queue, hostname: 'sched-a' });
    expect(env.link.registered).toBe(true);
    const search = await api(env, 'GET', '/api/v1/schedulers/search?ip=127.0.0.1');
    expect(search.json).toEqual({ scheduler_cluster_id: 1, schedulers: [{ ip: '127.0.0.1', port: Number(env.scheduler.addresses!.grpc.split(':')[1]), hostname: 'sched-a' }] });
    await new Promise((r) => setTimeout(r, 800)); // 4 intervals: alive only through keepalives
    expect((await api(env, 'GET', '/api/v1/schedulers')).json[0].state).toBe('active');
    await env.link.stop();
    env.link = undefined;
    await until(async () => ((await api(env, 'GET', '/api/v1/schedulers')).json[0].state === 'inactive' ? true : undefined), 'inactive', 3_000);
  });

  it('a job whose cluster part is already terminal is acked without work (idempotent redelivery)', async () => {
    const env = await setup();
    // Registered (so the manager accepts jobs) but not consuming yet.
    await api(env, 'POST', '/api/v1/schedulers', { hostname: 'x', ip: '127.0.0.1', port: 1, scheduler_cluster_id: 1 }, SECRET);
    const job = await api(env, 'POST', '/api/v1/jobs', { type: 'get_task', args: { task_id: 'abc' } });
    await api(env, 'POST', `/api/v1/jobs/${job.json.id}/report`, { scheduler_cluster_id: 1, state: 'FAILURE', error: 'done elsewhere' }, SECRET);
    env.link = await startManagerLink(env.scheduler, env.scheduler.config, silentLogger, { secret: SECRET, queue: env.queue, hostname: 'sched-a' });
    await until(async () => {
      const waiting = await env.queue.receive(jobQueue('1'), { visibilityMs: 0 });
      return waiting.length === 0 ? true : undefined;
    }, 'the message to be acked');
    const after = await api(env, 'GET', `/api/v1/jobs/${job.json.id}`);
    expect(after.json.state).toBe('FAILURE');
    expect(after.json.result.job_states[0].error).toBe('done elsewhere');
  });

  it('a message for a job the manager never stored (crash between enqueue and store) is retried, then dropped', async () => {
    const env = await setup();
    await env.queue.send(jobQueue('1'), { job_id: 999, scheduler_cluster_id: 1, type: 'get_task', args: { task_id: 'x' }, deadline_ms: Date.now() + 60_000, task_uuid: 'task_x' });
    env.link = await startManagerLink(env.scheduler, env.scheduler.config, silentLogger, { secret: SECRET, queue: env.queue, hostname: 'sched-a', unknownJobGraceMs: 300 });
    await until(async () => {
      const waiting = await env.queue.receive(jobQueue('1'), { visibilityMs: 0 });
      return waiting.length === 0 ? true : undefined;
    }, 'the orphan message to be dropped', 5_000);
    expect((await api(env, 'GET', '/api/v1/jobs')).json).toEqual([]);
  });

  it('runs get_task and a preheat without seed peers (past the seed-peer wait) to terminal states within a second', async () => {
    const env = await setup();
    env.link = await startManagerLink(env.scheduler, env.scheduler.config, silentLogger, { secret: SECRET, queue: env.queue, hostname: 'sched-a', hostWaitMs: 300 });
    const t0 = Date.now();
    const get = await api(env, 'POST', '/api/v1/jobs', { type: 'get_task', args: { task_id: 'abc' } });
    const pre = await api(env, 'POST', '/api/v1/jobs', { type: 'preheat', args: { type: 'file', url: 'http://127.0.0.1:1/file' } });
    const done = async (id: number) => until(async () => {
      const j = await api(env, 'GET', `/api/v1/jobs/${id}`);
      return j.json.state === 'PENDING' ? undefined : j.json;
    }, `job ${id}`);
    const g = await done(get.json.id);
    expect(g.state).toBe('SUCCESS');
    expect(g.result.job_states[0].results).toEqual([{ task_id: 'abc', peers: [], scheduler_cluster_id: 1 }]);
    const p = await done(pre.json.id);
    expect(p.state).toBe('FAILURE');
    expect(p.result.job_states[0].error).toMatch(/no seed peer/);
    expect(Date.now() - t0).toBeLessThan(1_000);
  });

  const finished = async (env: Env, id: number, ms = 15_000) =>
    until(async () => {
      const j = await api(env, 'GET', `/api/v1/jobs/${id}`);
      return j.json.state === 'PENDING' ? undefined : j.json;
    }, `job ${id}`, ms);

  const announceSeed = async (env: Env, id = 'seed-1') => {
    const client = schedulerClient(env.scheduler.addresses!.grpc);
    // Port 1: every download from it is refused at once, which is what a poisoned job needs.
    await unaryCall(client, 'AnnounceHost', { host: hostMsg(id, { type: 'SUPER_SEED', port: 1 }), interval_ms: 60_000 });
    client.close();
  };

  it('10 poisoned jobs (failure text far past the report cap) end as FAILURE; a normal job after them runs as fast as alone', async () => {
    const env = await setup();
    await announceSeed(env);
    env.link = await startManagerLink(env.scheduler, env.scheduler.config, silentLogger, { secret: SECRET, queue: env.queue, hostname: 'sched-a' });
    let t0 = Date.now();
    const alone = await api(env, 'POST', '/api/v1/jobs', { type: 'get_task', args: { task_id: 'alone' } });
    expect((await finished(env, alone.json.id)).state).toBe('SUCCESS');
    const aloneMs = Date.now() - t0;
    // ~50 URLs of 4000 characters fit the default body limit; each failure names its URL twice,
    // ~400 KB of error text, beyond the 64 KiB the manager's report accepts.
    const urls = Array.from({ length: 50 }, (_, i) => `http://127.0.0.1:1/${String(i).padStart(4, '0')}/${'x'.repeat(3980)}`);
    const poisoned: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await api(env, 'POST', '/api/v1/jobs', { type: 'preheat', args: { type: 'file', urls: urls.map((u) => `${u}?j=${i}`) } });
      expect(r.status).toBe(200);
      poisoned.push(r.json.id);
    }
    t0 = Date.now();
    const normal = await api(env, 'POST', '/api/v1/jobs', { type: 'get_task', args: { task_id: 'after' } });
    expect((await finished(env, normal.json.id)).state).toBe('SUCCESS');
    const afterMs = Date.now() - t0;
    expect(afterMs).toBeLessThan(Math.max(3 * aloneMs, aloneMs + 1_500));
    for (const id of poisoned) {
      const j = await finished(env, id);
      expect(j.state).toBe('FAILURE');
      const err = j.result.job_states[0].error as string;
      expect(err.length).toBeGreaterThan(100);
      expect(err.length).toBeLessThanOrEqual(MAX_REPORT_ERROR);
    }
    // Nothing left in the queue: every poisoned message was acked, none is retried forever.
    await until(async () => ((await env.queue.receive(jobQueue('1'), { visibilityMs: 0 })).length === 0 ? true : undefined), 'an empty queue');
  }, 40_000);

  it('a preheat queued before any seed peer announced (scheduler restart) waits for one instead of failing', async () => {
    const env = await setup();
    env.link = await startManagerLink(env.scheduler, env.scheduler.config, silentLogger, { secret: SECRET, queue: env.queue, hostname: 'sched-a' });
    const pre = await api(env, 'POST', '/api/v1/jobs', { type: 'preheat', args: { type: 'file', url: 'http://127.0.0.1:1/file' } });
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await api(env, 'GET', `/api/v1/jobs/${pre.json.id}`)).json.state).toBe('PENDING');
    await announceSeed(env, 'late-seed');
    const j = await finished(env, pre.json.id);
    // It reached the seed peer that announced late (whose port refuses), not "no seed peer".
    expect(j.state).toBe('FAILURE');
    expect(j.result.job_states[0].error).not.toMatch(/no seed peer/);
    expect(JSON.stringify(j.result.job_states[0].results)).toContain('late-seed');
  }, 20_000);

  it('a timeout past 24.8 days (setTimeout overflow) does not fail the job at once', async () => {
    const env = await setup();
    env.link = await startManagerLink(env.scheduler, env.scheduler.config, silentLogger, { secret: SECRET, queue: env.queue, hostname: 'sched-a' });
    const thirtyDaysNs = 30 * 24 * 3_600 * 1e9;
    const pre = await api(env, 'POST', '/api/v1/jobs', { type: 'preheat', args: { type: 'file', url: 'http://127.0.0.1:1/file', timeout: thirtyDaysNs } });
    expect(pre.status).toBe(200);
    await new Promise((r) => setTimeout(r, 800));
    const j = await api(env, 'GET', `/api/v1/jobs/${pre.json.id}`);
    expect(j.json.state).toBe('PENDING'); // waiting for a seed peer, not failed for "deadline passed"
  }, 10_000);

  it('credentials travel sealed in the queue, the worker opens them, and the message is gone when the job ends', async () => {
    const env = await setup();
    await announceSeed(env);
    await api(env, 'POST', '/api/v1/schedulers', { hostname: 'sched-a', ip: '127.0.0.1', port: 1, scheduler_cluster_id: 1 }, SECRET);
    const password = 'planted-Pa55word-xyzzy';
    const pre = await api(env, 'POST', '/api/v1/jobs', { type: 'preheat', args: { type: 'file', url: 'http://127.0.0.1:1/f', username: 'u', password, headers: { Authorization: `Bearer ${password}` } } });
    expect(pre.status).toBe(200);
    expect(JSON.stringify(pre.json)).not.toContain(password);
    const [m] = await env.queue.receive<any>(jobQueue('1'), { visibilityMs: 0 });
    expect(JSON.stringify(m.body)).not.toContain(password);
    expect(m.body.args.password).toBeUndefined();
    expect(unseal<any>(SECRET, m.body.sealed_credentials)).toEqual({ password, headers: { Authorization: `Bearer ${password}` } });
    expect(() => unseal('another-secret-0123456789', m.body.sealed_credentials)).toThrow(/cannot be opened/);
    env.link = await startManagerLink(env.scheduler, env.scheduler.config, silentLogger, { secret: SECRET, queue: env.queue, hostname: 'sched-a' });
    const j = await finished(env, pre.json.id);
    expect(j.state).toBe('FAILURE');
    expect(j.result.job_states[0].error).not.toMatch(/cannot be opened/);
    expect(JSON.stringify(j)).not.toContain(password);
    await until(async () => ((await env.queue.receive(jobQueue('1'), { visibilityMs: 0 })).length === 0 ? true : undefined), 'the message to be deleted');
  }, 15_000);
});
