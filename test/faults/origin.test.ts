// Origin faults with real processes (issue 13, findings 4 and 6): a reset or a stall mid-body and
// transient 5xx are retried by the peer reading the origin (Range resume, bounded backoff) while
// the others wait for its pieces, so the origin still sends each byte about once.
import { describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileSha256, MiB, startOrigin, type Fault, type Origin } from '../support/origin.js';
import { getThrough, makeTempDir, startCluster, type Cluster, type RunResult } from '../support/procs.js';
import { useRoleTeardown } from '../support/teardown.js';

let origin: Origin | undefined;
let cluster: Cluster | undefined;

useRoleTeardown(() => origin);

/** All agents get one file while `fault` hits the origin; returns the origin ratio and the time until all were done. */
async function faultRun(name: string, size: number, fault: Fault | undefined, times: number, agents: number): Promise<{ ratio: number; ms: number; results: RunResult[] }> {
  const p = `/fault/${name}.bin`;
  const url = origin!.add(p, { size, seed: `${name}-${Date.now()}` });
  const want = origin!.sha256(p);
  if (fault) origin!.fault({ ...fault, path: p }, times);
  const out = makeTempDir(`damselfly-fault-${name}-`);
  const t0 = performance.now();
  const results = await Promise.all(cluster!.agents.slice(0, agents).map((a) => getThrough(a, url, path.join(out, `${a.name}.bin`), ['--digest', want], 120_000)));
  const ms = performance.now() - t0;
  for (const [i, r] of results.entries()) {
    expect(r.code, `agent-${i}: ${r.stderr.slice(-1500)}\n${cluster!.agents[i]!.tail(20)}`).toBe(0);
    expect(r.stderr, `agent-${i} bypassed its agent`).not.toMatch(/from the origin directly/);
  }
  expect(await Promise.all(results.map((_, i) => fileSha256(path.join(out, `agent-${i}.bin`))))).toEqual(results.map(() => want));
  expect(readdirSync(out).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  if (fault) expect(origin!.faultsApplied(), 'the fault happened').toBeGreaterThan(0);
  const ratio = (origin!.stats().byPath[p]?.bytes ?? 0) / size;
  process.stderr.write(`origin fault ${name}: ratio ${ratio.toFixed(3)}, all done in ${(ms / 1000).toFixed(1)} s\n`);
  return { ratio, ms, results };
}

describe('origin faults', () => {
  it('a connection reset mid-body with 4 agents: every get completes, origin ratio ≤ 1.10', async () => {
    origin = await startOrigin({ rate: 16 * MiB });
    cluster = await startCluster({ agents: 4 });
    const r = await faultRun('reset', 32 * MiB, { kind: 'reset', afterBytes: 12 * MiB }, 1, 4);
    expect(r.ratio).toBeLessThanOrEqual(1.1);
  }, 120_000);

  it('two transient 500s: two concurrent gets both succeed', async () => {
    origin = await startOrigin({ rate: 32 * MiB });
    cluster = await startCluster({ agents: 2 });
    const r = await faultRun('5xx', 16 * MiB, { kind: 'status', status: 500 }, 2, 2);
    expect(r.ratio).toBeLessThanOrEqual(1.1);
  }, 120_000);

  it('a body stalled for 60 s: cut off and resumed, every get completes long before the stall ends, ratio ≤ 1.10', async () => {
    origin = await startOrigin({ rate: 16 * MiB });
    cluster = await startCluster({ agents: 4, env: { DAMSELFLY_SOURCE_IDLE_MS: '2000' } });
    const r = await faultRun('stall', 24 * MiB, { kind: 'stall', afterBytes: 8 * MiB, ms: 60_000 }, 1, 4);
    expect(r.ratio).toBeLessThanOrEqual(1.1);
    expect(r.ms).toBeLessThan(30_000);
  }, 120_000);
});
