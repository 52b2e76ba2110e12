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

  it('the output shares the full file system with storage.dir: the export runs out of space, the get still delivers the file whole, nothing is left behind, and the agent goes on', async () => {
    const base = makeTempDir('damselfly-diskfull-export-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', base]);
    mounts.push(base);
    const storage = path.join(base, 'storage');
    const out = path.join(base, 'out');
    mkdirSync(storage);
    mkdirSync(out);
    origin = await startOrigin({ rate: 64 * MiB });
    const cluster = await startCluster({ agents: 1, agent: () => ({ storage: { dir: storage } }) });
    const agent = cluster.agents[0] as RoleProcess;
    // 24 MiB fits once, not twice (the store's pieces and the export's scratch file: 48 MiB > 40 MiB).
    const big = origin.add('/full/export.bin', { size: 24 * MiB, seed: `export-${Date.now()}` });
    const want = origin.sha256('/full/export.bin');
    const r = await getThrough(agent, big, path.join(out, 'export.bin'), ['--digest', want]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/no space left on device for storage\.dir/);
    expect(await fileSha256(path.join(out, 'export.bin'))).toBe(want);
    // The output directory holds the file and nothing else (no temporary, no half of it); the
    // store dropped the task and its scratch file, so the disk holds the file once.
    expect(filesUnder(out)).toEqual([path.join(out, 'export.bin')]);
    await waitFor(() => filesUnder(storage).length === 0 || undefined, 'the partial task and the scratch file to be freed', 10_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}: ${filesUnder(storage).join(', ')}`);
    });

    // The agent goes on: a file that fits twice is served (through it) and exported whole.
    const small = origin.add('/full/after.bin', { size: 4 * MiB, seed: `after-${Date.now()}` });
    const r2 = await getThrough(agent, small, path.join(out, 'after.bin'), ['--digest', origin.sha256('/full/after.bin')]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr).not.toMatch(/from the origin directly/);
    expect(await fileSha256(path.join(out, 'after.bin'))).toBe(origin.sha256('/full/after.bin'));
    expect(filesUnder(out).sort()).toEqual([path.join(out, 'after.bin'), path.join(out, 'export.bin')]);
  }, 120_000);
});
