// Disk full with real processes (issue 13, finding 3): storage.dir on a small tmpfs and a download
// larger than it. The get still succeeds (straight from the origin, saying why), the partial task is
// freed at once, and the agent serves the next download itself, without a restart.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileSha256, MiB, startOrigin, type Origin } from '../support/origin.js';
import { cleanupTempDirs, getThrough, killAll, makeTempDir, startCluster, waitFor, type RoleProcess } from '../support/procs.js';
import { requireOrSkip } from '../support/require.js';
import { filesUnder } from './support.js';

const isRoot = process.getuid?.() === 0;
let origin: Origin | undefined;
const mounts: string[] = [];

afterEach(async () => {
  await killAll();
  await origin?.close();
  origin = undefined;
  // Unmounted also when the test failed; lazily, in case a process still holds a file there.
  for (const m of mounts.splice(0)) execFileSync('umount', ['-l', m]);
});
afterAll(() => cleanupTempDirs());

describe.skipIf(!requireOrSkip(isRoot, 'root (to mount a small tmpfs)'))('disk full', () => {
  it('a download larger than storage.dir: the get succeeds, the partial task is freed, the next download goes through the agent', async () => {
    const mnt = path.join(makeTempDir('damselfly-diskfull-'), 'storage');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', mnt]);
    mounts.push(mnt);
    origin = await startOrigin({ rate: 64 * MiB });
    const cluster = await startCluster({ agents: 1, agent: () => ({ storage: { dir: mnt } }) });
    const agent = cluster.agents[0] as RoleProcess;
    const out = makeTempDir('damselfly-diskfull-out-');

    const big = origin.add('/full/big.bin', { size: 64 * MiB, seed: `big-${Date.now()}` });
    const r = await getThrough(agent, big, path.join(out, 'big.bin'), ['--digest', origin.sha256('/full/big.bin')]);
    expect(r.code, r.stderr).toBe(0);
    expect(await fileSha256(path.join(out, 'big.bin'))).toBe(origin.sha256('/full/big.bin'));
    // The user is told why the agent was bypassed, naming the directory.
    expect(r.stderr).toMatch(/no space left on device for storage\.dir/);
    expect(r.stderr).toContain(mnt);
    // The partial task is gone: content and metadata.
    await waitFor(() => filesUnder(mnt).length === 0 || undefined, 'the partial task to be freed', 10_000);

    const small = origin.add('/full/small.bin', { size: 12 * MiB, seed: `small-${Date.now()}` });
    const r2 = await getThrough(agent, small, path.join(out, 'small.bin'), ['--digest', origin.sha256('/full/small.bin')]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr, 'the second get bypassed the agent').not.toMatch(/from the origin directly/);
    expect(await fileSha256(path.join(out, 'small.bin'))).toBe(origin.sha256('/full/small.bin'));
    expect(filesUnder(path.join(mnt, 'content')).length).toBe(1);
    expect(readdirSync(out).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  }, 120_000);
});
