// Failure tests with real processes: a parent agent SIGKILLed mid-transfer, the scheduler stopped
// mid-transfer, and a parent whose content file is corrupted on disk while it runs (a realistic fault:
// no test switch in production code). In every case each download must complete with the right bytes.
import { describe, expect, it } from 'vitest';
import { openSync, writeSync, closeSync, statSync } from 'node:fs';
import path from 'node:path';
import { startOrigin, fileSha256, MiB, type Origin } from '../support/origin.js';
import {
  startCluster,
  getThrough,
  apiGet,
  makeTempDir,
  type Cluster,
  type RoleProcess,
  type RunResult,
  scrapeMetric,
  waitFor,
} from '../support/procs.js';
import { useRoleTeardown } from '../support/teardown.js';
import { filesUnder } from '../faults/support.js';

const PIECE = 4 * MiB; // Dragonfly's piece length for files ≤ 2 GiB

let origin: Origin | undefined;
let cluster: Cluster | undefined;

useRoleTeardown(() => origin);

interface Timed extends RunResult {
  file: string;
  agent: string;
  doneAt: number;
}
function timedGet(a: RoleProcess, url: string, dir: string): Promise<Timed> {
  const file = path.join(dir, `${a.name}.bin`);
  return getThrough(a, url, file).then((r) => ({ ...r, file, agent: a.name, doneAt: performance.now() }));
}

/** `damselfly get` falls back to the origin when its agent fails; these tests are about the agents. */
function expectServedByAgent(r: Timed): void {
  expect(r.code, `${r.agent}: ${r.stderr.slice(-2000)}`).toBe(0);
  expect(r.stderr, `${r.agent}'s get bypassed its agent`).not.toMatch(/from the origin directly/);
}

/** Lines of `p`'s JSON log at warn/error level mentioning `needle`. */
function complaints(p: RoleProcess, needle: string): Array<Record<string, unknown>> {
  return p.logs().filter((l) => (l.level === 'warn' || l.level === 'error') && JSON.stringify(l).includes(needle));
}


describe('failures', () => {
  it('a parent agent killed mid-transfer: its children finish from others', async () => {
    const SIZE = 32 * MiB;
    const UPLOAD = 6 * MiB; // the two parents' upload rate: the children's transfer lasts ~3 s
    origin = await startOrigin();
    cluster = await startCluster({ agents: 4, agent: (i) => (i < 2 ? { upload: { rateLimit: UPLOAD } } : undefined) });
    const url = origin.add('/fail/killed.bin', { size: SIZE, seed: `killed-${Date.now()}` });
    const want = origin.sha256('/fail/killed.bin');
    const out = makeTempDir('damselfly-fail-out-');
    const [victim, helper, ...children] = cluster.agents as [RoleProcess, RoleProcess, ...RoleProcess[]];

    // 1. The victim and a helper get the file; then the seed leaves, so they are the only parents the
    //    scheduler can hand out: the victim is certainly a parent of the children.
    for (const r of await Promise.all([timedGet(victim, url, out), timedGet(helper, url, out)])) expectServedByAgent(r);
    await cluster.seed!.stop();
    cluster.seed = undefined;
    const originBefore = origin.stats().bytes;

    // 2. The children start; the victim dies while they are still downloading.
    const childGets = children.map((c) => timedGet(c, url, out));
    // Mid-transfer for real: the victim has started serving the children (not a fixed sleep, which a
    // loaded machine could stretch past the start or the end of the transfer).
    await waitFor(
      async () => (await scrapeMetric(victim.ready.metrics, 'dragonfly_client_upload_traffic')) >= 2 * MiB,
      'the victim to serve the children',
      60_000,
      50,
    );
    const killedAt = performance.now();
    victim.kill('SIGKILL');
    const results = await Promise.all(childGets);

    for (const r of results) {
      expectServedByAgent(r);
      // The kill happened while every child was still downloading.
      expect(r.doneAt).toBeGreaterThan(killedAt);
    }
    expect(await Promise.all(results.map((r) => fileSha256(r.file)))).toEqual(results.map(() => want));
    const reported = children.flatMap((c) => complaints(c, victim.ready.hostId as string));
    process.stderr.write(`killed parent: ${reported.length} child log lines name the dead parent\n`);
    // The children noticed the dead parent (else this test proved nothing about its children)...
    expect(reported.length).toBeGreaterThan(0);
    // ...and finished from the helper (and each other): the origin did not have to send the file again.
    expect(origin.stats().bytes - originBefore).toBeLessThanOrEqual(SIZE);
    expect(helper.alive()).toBe(true);
  });

  it('the scheduler stopped mid-transfer: every download still completes', async () => {
    const SIZE = 32 * MiB;
    origin = await startOrigin({ rate: 16 * MiB });
    cluster = await startCluster({ agents: 3 });
    const url = origin.add('/fail/nosched.bin', { size: SIZE, seed: `nosched-${Date.now()}` });
    const want = origin.sha256('/fail/nosched.bin');
    const out = makeTempDir('damselfly-fail-out-');
    const gets = cluster.agents.map((a) => timedGet(a, url, out));
    // Stop once the transfer is really under way (a quarter of the file left the origin).
    await waitFor(() => origin!.stats().bytes >= SIZE / 4, 'the transfer to start', 60_000, 20);
    const stoppedAt = performance.now();
    expect(origin.stats().bytes).toBeLessThan(SIZE);
    const exit = await cluster.scheduler.stop();
    expect(exit.code === 0 || exit.signal === 'SIGKILL').toBe(true);
    const results = await Promise.all(gets);
    for (const r of results) {
      expectServedByAgent(r);
      expect(r.doneAt).toBeGreaterThan(stoppedAt);
    }
    expect(await Promise.all(results.map((r) => fileSha256(r.file)))).toEqual(results.map(() => want));
    // Without a scheduler each peer fetches its missing pieces itself: at most one copy per peer.
    expect(origin.stats().bytes).toBeLessThanOrEqual((cluster.agents.length + 1) * SIZE);
    for (const a of cluster.agents) expect(a.alive(), `${a.name} died; log ${a.logFile}`).toBe(true);
  });

  it('a parent serving corrupted bytes: rejected, never written, the parent avoided', async () => {
    const SIZE = 32 * MiB; // 8 pieces
    const SLOTS = 2; // the children's download.concurrentPieceCount
    origin = await startOrigin();
    // Few download slots make "avoided" measurable: a child that kept asking the bad parent would
    // fetch all 8 pieces from it; one that drops it after the first failure fetches at most SLOTS.
    cluster = await startCluster({ agents: 3, agent: (i) => (i > 0 ? { download: { concurrentPieceCount: SLOTS } } : undefined) });
    const url = origin.add('/fail/corrupt.bin', { size: SIZE, seed: `corrupt-${Date.now()}` });
    const want = origin.sha256('/fail/corrupt.bin');
    const out = makeTempDir('damselfly-fail-out-');
    const [bad, ...children] = cluster.agents as [RoleProcess, ...RoleProcess[]];

    // 1. `bad` gets the file (through the seed), then the seed leaves: `bad` is the only holder.
    const first = await timedGet(bad, url, out);
    expectServedByAgent(first);
    expect(await fileSha256(first.file)).toBe(want);
    await cluster.seed!.stop();
    cluster.seed = undefined;

    // 2. Corrupt `bad`'s stored content in place (same inode, so the running agent reads it): one
    //    byte flipped in every piece.
    const content = filesUnder(path.join(bad.dir, 'storage', 'content')).filter((f) => statSync(f).size === SIZE);
    expect(content, `content file of ${SIZE} bytes under ${bad.dir}/storage/content`).toHaveLength(1);
    const fd = openSync(content[0]!, 'r+');
    for (let off = 1000; off < SIZE; off += PIECE) writeSync(fd, Buffer.from([0x5a ^ (off & 0xff)]), 0, 1, off);
    closeSync(fd);
    const originBefore = origin.stats().bytes;

    // 3. The children can only get the task from `bad` or the origin.
    const results = await Promise.all(children.map((c) => timedGet(c, url, out)));
    for (const r of results) expectServedByAgent(r);
    expect(await Promise.all(results.map((r) => fileSha256(r.file)))).toEqual(results.map(() => want));

    // 4. Someone noticed: a child rejected `bad`'s bytes, or `bad` refused to serve what no longer
    //    matches its digest. Either way the origin had to send the file again — about once.
    const badId = '127.0.0.1-agent-0';
    const childComplaints = children.flatMap((c) => complaints(c, badId));
    const badComplaints = bad.logs().filter((l) => l.level === 'warn' || l.level === 'error');
    process.stderr.write(
      `corrupt parent: ${childComplaints.length} child complaints, ${badComplaints.length} warnings on the bad parent\n`,
    );
    expect(childComplaints.length + badComplaints.length).toBeGreaterThan(0);
    // The children reported the bad parent to the scheduler (which blocklists it for them)...
    const failedPieces = await scrapeMetric(cluster.scheduler.ready.metrics, 'dragonfly_scheduler_download_piece_finished_failure_total');
    expect(failedPieces).toBeGreaterThan(0);
    // ...and stopped asking it: at most one round of download slots each.
    const uploadsByBad = await scrapeMetric(bad.ready.metrics, 'dragonfly_client_upload_task_total');
    process.stderr.write(`corrupt parent: scheduler saw ${failedPieces} failed pieces; bad parent served ${uploadsByBad}\n`);
    expect(uploadsByBad).toBeLessThanOrEqual(children.length * SLOTS);
    const again = origin.stats().bytes - originBefore;
    expect(again).toBeGreaterThanOrEqual(PIECE);
    expect(again).toBeLessThanOrEqual(SIZE + 2 * PIECE);
    for (const a of cluster.agents) expect(a.alive(), `${a.name} died; log ${a.logFile}`).toBe(true);
  });
});
