// The swarm: a counting origin, a scheduler, a seed peer and 8 agents as separate processes on
// loopback; all 8 download the same 64 MiB file at once through `damselfly get`. Every output must
// hash right, and the origin must have sent the file's bytes once (one extra piece tolerated).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { startOrigin, fileSha256, MiB, type Origin } from '../support/origin.js';
import { startCluster, getThrough, killAll, makeTempDir, cleanupTempDirs, type Cluster } from '../support/procs.js';

const AGENTS = 8;
const SIZE = 64 * MiB;
// Dragonfly's rule (research/dragonfly.md §4.1): nextPowerOfTwo(64 MiB / 500) < 4 MiB → 4 MiB pieces.
const PIECE = 4 * MiB;

let origin: Origin;
let cluster: Cluster;

beforeAll(async () => {
  // A limited origin (48 MiB/s) keeps the seed downloading while children already fetch from it,
  // which is the case the swarm exists for; unlimited, the seed would finish before anyone asked.
  origin = await startOrigin({ rate: 48 * MiB });
  cluster = await startCluster({ agents: AGENTS });
});

afterAll(async () => {
  await killAll();
  await origin?.close();
  cleanupTempDirs();
});

describe('swarm of 8 agents', () => {
  it('every agent gets the same 64 MiB file at once; the origin sends it once', async () => {
    const url = origin.add('/swarm/blob-64m.bin', { size: SIZE, seed: `swarm-${Date.now()}` });
    const want = origin.sha256('/swarm/blob-64m.bin');
    const out = makeTempDir('damselfly-swarm-out-');
    const t0 = performance.now();
    const results = await Promise.all(
      cluster.agents.map(async (a, i) => {
        const file = path.join(out, `out-${i}.bin`);
        const r = await getThrough(a, url, file);
        return { ...r, file, agent: a.name };
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    for (const r of results) {
      expect(r.code, `${r.agent}: get failed: ${r.stderr.slice(-2000)}`).toBe(0);
      // `damselfly get` falls back to the origin when its agent fails: that would hide a broken swarm.
      expect(r.stderr, `${r.agent}'s get bypassed its agent`).not.toMatch(/from the origin directly/);
    }
    const digests = await Promise.all(results.map((r) => fileSha256(r.file)));
    expect(digests).toEqual(results.map(() => want));

    const served = origin.stats().byPath['/swarm/blob-64m.bin']?.bytes ?? 0;
    const ratio = served / SIZE;
    process.stderr.write(`swarm: ${AGENTS} agents × 64 MiB in ${seconds.toFixed(2)} s, origin ratio ${ratio.toFixed(3)}\n`);
    expect(served).toBeGreaterThanOrEqual(SIZE);
    expect(served).toBeLessThanOrEqual(SIZE + PIECE);
    // Everyone is still alive: nothing crashed while serving.
    for (const p of cluster.all()) expect(p.alive(), `${p.name} died; log ${p.logFile}`).toBe(true);
  });

  it('a second round is served from the swarm without touching the origin', async () => {
    const before = origin.stats().bytes;
    const url = origin.url('/swarm/blob-64m.bin');
    const want = origin.sha256('/swarm/blob-64m.bin');
    const fresh = await cluster.addAgent('late-joiner');
    const file = path.join(makeTempDir('damselfly-swarm-late-'), 'out.bin');
    const r = await getThrough(fresh, url, file, ['--digest', want]);
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(r.stderr).not.toMatch(/from the origin directly/);
    expect(await fileSha256(file)).toBe(want);
    expect(origin.stats().bytes - before).toBe(0);
  });
});
