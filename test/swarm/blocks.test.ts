// Verified blocks (agent/download/blocks.ts) across real processes: when every agent uploads as fast as the
// origin sends, the scheduler's acyclic parent graph is a chain, and a piece must cross it block by
// block (each block checked against the digests the seed published) rather than piece by piece.
import { afterAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { startOrigin, fileSha256, MiB, type Origin } from '../support/origin.js';
import { startCluster, apiGet, killAll, makeTempDir, cleanupTempDirs, scrapeMetric, type Cluster } from '../support/procs.js';

let origin: Origin | undefined;
let cluster: Cluster | undefined;

afterAll(async () => {
  await killAll();
  await origin?.close();
  cleanupTempDirs();
});

describe('verified blocks', () => {
  it('a chain of rate-limited agents forwards pieces while they arrive; every output is right, the origin sends once', async () => {
    const RATE = 8 * MiB;
    const SIZE = 24 * MiB;
    origin = await startOrigin({ rate: RATE });
    cluster = await startCluster({ agents: 4, agent: () => ({ upload: { rateLimit: RATE }, download: { rateLimit: 2 * RATE } }), seedOverrides: { upload: { rateLimit: RATE } } });
    const url = origin.add('/blocks/chain.bin', { size: SIZE, seed: `blocks-${Date.now()}` });
    const want = origin.sha256('/blocks/chain.bin');
    const out = makeTempDir('damselfly-blocks-out-');
    const results = await Promise.all(
      cluster.agents.map(async (a, i) => {
        const file = path.join(out, `out-${i}.bin`);
        return { ...(await apiGet(a, url, file, { timeoutMs: 120_000, exportTo: true })), file };
      }),
    );
    for (const r of results) expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(await Promise.all(results.map((r) => fileSha256(r.file)))).toEqual(results.map(() => want));
    expect(origin.stats().byPath['/blocks/chain.bin']?.bytes).toBe(SIZE);
    const arriving = await Promise.all(cluster.agents.map((a) => scrapeMetric(a.ready.metrics, 'dragonfly_client_upload_piece_arriving_total')));
    process.stderr.write(`verified blocks: pieces sent while arriving, per agent: ${arriving.join(' ')}\n`);
    expect(arriving.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  });
});
