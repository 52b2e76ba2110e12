/** Builds a manager app on the in-memory stores with a controllable clock, and signs in as root. */
import { MemoryKvStore } from '../../adapters/kv/memory.js';
import { MemoryQueue } from '../../adapters/queue/memory.js';
import { silentLogger } from '../../adapters/log.js';
import { createApp, type ManagerDeps } from '../../control/manager/app.js';
import { bootstrap } from '../../control/manager/bootstrap.js';
import { managerConfig } from '../../control/manager/config.js';
import { createManagerMetrics } from '../../control/manager/metrics.js';

export const ROOT_PASSWORD = 'root-password-123';
export const SCHEDULER_SECRET = 'scheduler-secret-0123456789';

export async function testManager(overrides: Record<string, unknown> = {}) {
  let nowMs = Date.parse('2026-01-01T00:00:00Z');
  const clock = { now: () => nowMs };
  const kv = new MemoryKvStore(clock.now);
  const queue = new MemoryQueue({ maxReceives: 5, visibilityMs: 30_000 });
  const config = managerConfig({ auth: { rootPassword: ROOT_PASSWORD, schedulerSecret: SCHEDULER_SECRET }, ...overrides });
  await bootstrap(kv, { rootPassword: config.auth.rootPassword, jobRateLimit: config.jobs.rateLimitPerCluster, now: new Date(nowMs), logger: silentLogger });
  const deps: ManagerDeps = { kv, queue, config, clock, logger: silentLogger, metrics: createManagerMetrics() };
  const app = createApp(deps);
  const req = (method: string, path: string, opts: { body?: unknown; token?: string; headers?: Record<string, string> } = {}) =>
    app.request(path, {
      method,
      headers: {
        ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...opts.headers,
      },
      body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
    });
  const signin = async (name = 'root', password = ROOT_PASSWORD): Promise<string> => {
    const res = await req('POST', '/api/v1/users/signin', { body: { name, password } });
    if (res.status !== 200) throw new Error(`signin ${res.status}: ${await res.text()}`);
    return ((await res.json()) as { token: string }).token;
  };
  const registerScheduler = async (clusterId = 1, hostname = 'sched-1', ip = '127.0.0.1', port = 8002, features = ['schedule', 'preheat']) => {
    const res = await req('POST', '/api/v1/schedulers', { token: SCHEDULER_SECRET, body: { hostname, ip, port, scheduler_cluster_id: clusterId, features } });
    if (res.status !== 200) throw new Error(`register ${res.status}: ${await res.text()}`);
    return (await res.json()) as { id: number };
  };
  return {
    app,
    deps,
    kv,
    queue,
    req,
    signin,
    registerScheduler,
    advance: (ms: number) => {
      nowMs += ms;
    },
    now: () => nowMs,
  };
}
