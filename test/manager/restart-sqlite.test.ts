/**
 * Restarts mid-job on the SQLite backend: the manager killed while a preheat runs (the job still
 * completes and is recorded once it is back), and a scheduler killed while it holds the message
 * (another scheduler's delivery finishes it, and the origin sends no byte twice).
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliPath } from '../support/cli.js';
import { startOrigin, type Origin } from '../support/origin.js';
import { agentConfigFor, makeTempDir, spawnRole, waitFor, type RoleProcess } from '../support/procs.js';
import { useRoleTeardown } from '../support/teardown.js';
import { freePort } from '../support/servers.js';
import { http, listHosts, pollJob, ROOT_PASSWORD, SCHEDULER_SECRET, startScheduler } from './flow.js';

const MiB = 1024 * 1024;
const cli = cliPath();

async function managerOn(port: number, dir: string, store: { kv: unknown; queue: unknown }): Promise<RoleProcess> {
  return spawnRole(
    'manager',
    { server: { ip: '127.0.0.1', port }, store: { dataDir: path.join(dir, 'data'), ...store }, auth: { rootPassword: ROOT_PASSWORD, schedulerSecret: SCHEDULER_SECRET } },
    { cli, dir, name: `manager-${Date.now()}` },
  );
}

async function tokenFor(managerUrl: string): Promise<string> {
  const jwt = (await http('POST', `${managerUrl}/api/v1/users/signin`, { body: { name: 'root', password: ROOT_PASSWORD } })).json.token;
  const pat = await http('POST', `${managerUrl}/api/v1/personal-access-tokens`, { token: jwt, body: { name: `ci-${Date.now()}`, scopes: ['job'], expired_at: new Date(Date.now() + 86_400_000).toISOString() } });
  return pat.json.token;
}

const logged = (p: RoleProcess, msg: string) => p.logs().some((l) => l.msg === msg);

/**
 * A manager on SQLite (queue visibility `visibilityMs`), schedulers named `schedulerNames` with the
 * job worker on, and a seed peer announced to all of them; resolves once a scheduler is registered,
 * with a `job`-scoped token.
 */
async function startStack(name: string, visibilityMs: number, schedulerNames: string[]) {
  const dir = makeTempDir(`damselfly-restart-${name}-`);
  const store = { kv: { kind: 'sqlite', path: path.join(dir, 'kv.db') }, queue: { kind: 'sqlite', path: path.join(dir, 'queue.db'), visibilityMs } };
  const port = await freePort();
  const managerUrl = `http://127.0.0.1:${port}`;
  const manager = await managerOn(port, dir, store);
  const schedulers: RoleProcess[] = [];
  for (const n of schedulerNames) schedulers.push(await startScheduler(cli, managerUrl, store.queue, n));
  const seedDir = makeTempDir(`damselfly-restart-seed-${name}-`);
  await spawnRole('agent', agentConfigFor('seed', seedDir, schedulers.map((s) => String(s.ready.grpc)), { seed: true }), { cli, dir: seedDir, name: 'seed' });
  for (const s of schedulers) await waitFor(async () => (await listHosts(String(s.ready.grpc))).length > 0 || undefined, 'seed announced', 15_000);
  await waitFor(async () => (await http('GET', `${managerUrl}/api/v1/schedulers/search`)).status === 200 || undefined, 'scheduler registered', 15_000);
  return { dir, store, port, managerUrl, manager, schedulers, pat: await tokenFor(managerUrl) };
}

describe('restarts mid-job (SQLite)', () => {
  let origin: Origin | undefined;
  useRoleTeardown(() => origin);

  it('manager killed while a job runs: the job completes and is recorded after the restart', async () => {
    origin = await startOrigin({ rate: 4 * MiB });
    const fileUrl = origin.add('/files/big.bin', { size: 12 * MiB, seed: 'manager-restart' });
    const stack = await startStack('m', 5_000, ['scheduler']);
    const { dir, store, port, managerUrl, pat } = stack;
    let manager = stack.manager;
    const scheduler = stack.schedulers[0]!;

    const created = await http('POST', `${managerUrl}/oapi/v1/jobs`, { token: pat, body: { type: 'preheat', args: { type: 'file', url: fileUrl } } });
    expect(created.status).toBe(200);
    await waitFor(() => logged(scheduler, 'job started') || undefined, 'scheduler to start the job', 15_000);
    manager.kill('SIGKILL');
    await manager.exited;
    // The work finishes while the manager is away; the final report is retried until it is back.
    await waitFor(() => logged(scheduler, 'job finished') || undefined, 'scheduler to finish the work', 30_000);
    await waitFor(() => logged(scheduler, 'job report failed; retrying') || undefined, 'a failed report', 10_000);
    manager = await managerOn(port, dir, store);
    const job = await pollJob({ managerUrl, pat }, created.json.id, 30_000);
    expect(job.state, JSON.stringify(job.result)).toBe('SUCCESS');
    expect(job.result.job_states[0].results[0].success_tasks).toEqual([{ url: fileUrl, hostname: 'seed', ip: '127.0.0.1' }]);
    expect(origin.stats().byPath['/files/big.bin'].bytes).toBe(12 * MiB);
  }, 120_000);

  it('scheduler killed while it holds the message: another delivery finishes it, no byte fetched twice', async () => {
    origin = await startOrigin({ rate: 3 * MiB });
    const fileUrl = origin.add('/files/big2.bin', { size: 12 * MiB, seed: 'scheduler-restart' });
    const { managerUrl, pat, schedulers } = await startStack('s', 4_000, ['scheduler-1', 'scheduler-2']);
    const [s1, s2] = schedulers as [RoleProcess, RoleProcess];

    const created = await http('POST', `${managerUrl}/oapi/v1/jobs`, { token: pat, body: { type: 'preheat', args: { type: 'file', url: fileUrl } } });
    const holder = await waitFor(() => [s1, s2].find((s) => logged(s, 'job started')), 'a scheduler to start the job', 15_000);
    const other = holder === s1 ? s2 : s1;
    await new Promise((r) => setTimeout(r, 1_000));
    holder.kill('SIGKILL');
    await holder.exited;
    const job = await pollJob({ managerUrl, pat }, created.json.id, 60_000);
    expect(job.state, JSON.stringify(job.result)).toBe('SUCCESS');
    expect(logged(other, 'job finished')).toBe(true);
    // The seed's origin read survives both the killed scheduler's DownloadTask call going away and
    // (when the task hashes to it) the loss of its AnnouncePeer stream: the redelivery joins it.
    const stats = origin.stats().byPath['/files/big2.bin'];
    expect(stats.bytes).toBe(12 * MiB);
  }, 120_000);

  it('scheduler killed after the work but before the result was recorded: the redelivery is served from the P2P cache', async () => {
    origin = await startOrigin({ rate: 8 * MiB });
    const fileUrl = origin.add('/files/big3.bin', { size: 8 * MiB, seed: 'redelivery-cached' });
    const stack = await startStack('c', 3_000, ['scheduler-1', 'scheduler-2']);
    const { dir, store, port, managerUrl, pat } = stack;
    let manager = stack.manager;
    const [s1, s2] = stack.schedulers as [RoleProcess, RoleProcess];

    const created = await http('POST', `${managerUrl}/oapi/v1/jobs`, { token: pat, body: { type: 'preheat', args: { type: 'file', url: fileUrl } } });
    const holder = await waitFor(() => [s1, s2].find((s) => logged(s, 'job started')), 'a scheduler to start the job', 15_000);
    const other = holder === s1 ? s2 : s1;
    // The manager goes away, so the holder finishes the work but cannot record it...
    manager.kill('SIGKILL');
    await manager.exited;
    await waitFor(() => logged(holder, 'job report failed; retrying') || undefined, 'the holder to fail its report', 30_000);
    // ...and dies holding the message.
    holder.kill('SIGKILL');
    await holder.exited;
    manager = await managerOn(port, dir, store);
    const job = await pollJob({ managerUrl, pat }, created.json.id, 30_000);
    expect(job.state, JSON.stringify(job.result)).toBe('SUCCESS');
    expect(logged(other, 'job finished')).toBe(true);
    // The redelivery found the blob in the seed's cache: the origin sent it once.
    expect(origin.stats().byPath['/files/big3.bin'].bytes).toBe(8 * MiB);
  }, 120_000);
});
