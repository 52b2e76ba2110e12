// Scheduler loss with real processes (issue 13, finding 5): a scheduler that is killed and restarted
// knows nothing; the agents announce again and tell it which complete tasks they hold, so the next
// peer gets the file from them, not from the origin. Likewise an agent restarted with SIGTERM
// offers its complete tasks again at once.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { fileSha256, MiB, startOrigin, type Origin } from '../support/origin.js';
import { cleanupTempDirs, getThrough, killAll, makeTempDir, portOf, schedulerConfigFor, spawnRole, startCluster, waitFor, type RoleProcess } from '../support/procs.js';

let origin: Origin | undefined;
afterEach(async () => {
  await killAll();
  await origin?.close();
  origin = undefined;
});
afterAll(() => cleanupTempDirs());

describe('scheduler loss', () => {
  it('kill -9 of the scheduler, restarted on its address: held tasks are announced and the next peer reads none of the file from the origin', async () => {
    const SIZE = 16 * MiB;
    origin = await startOrigin({ rate: 64 * MiB });
    // No seed peer: a scheduler that knows no holder sends the next peer to the origin.
    const cluster = await startCluster({ agents: 2, seed: false });
    const [holder, next] = cluster.agents as [RoleProcess, RoleProcess];
    const url = origin.add('/sched/held.bin', { size: SIZE, seed: `held-${Date.now()}` });
    const want = origin.sha256('/sched/held.bin');
    const out = makeTempDir('damselfly-sched-out-');
    const first = await getThrough(holder, url, path.join(out, 'holder.bin'), ['--digest', want]);
    expect(first.code, first.stderr).toBe(0);

    const port = portOf(cluster.scheduler.ready.grpc);
    cluster.scheduler.kill('SIGKILL');
    await cluster.scheduler.exited;
    await spawnRole('scheduler', schedulerConfigFor({ server: { ip: '127.0.0.1', port } }), { name: 'scheduler-2' });
    await waitFor(() => holder.logs().some((l) => l.msg === 'announced held tasks to scheduler' && (l as { tasks?: number }).tasks === 1) || undefined, 'the holder to announce its task to the new scheduler', 20_000);

    const before = origin.stats().bytes;
    const r = await getThrough(next, url, path.join(out, 'next.bin'), ['--digest', want]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/from the origin directly/);
    expect(await fileSha256(path.join(out, 'next.bin'))).toBe(want);
    expect(origin.stats().bytes - before, 'origin bytes after the restart').toBe(0);
  }, 120_000);
});
