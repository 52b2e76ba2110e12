// Integrity at rest with real processes (issue 13, findings 1, 2, 9): what an agent hands out to
// `damselfly get` and to mirror clients is what was verified, also after its content file was
// edited, a byte flipped or the file truncated behind its back; `get` writes a file of its own.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, statSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileSha256, generatedSha256, MiB, startOrigin, type Origin } from '../support/origin.js';
import { getThrough, makeTempDir, startCluster, type Cluster, type RoleProcess } from '../support/procs.js';
import { useRoleTeardown } from '../support/teardown.js';
import { contentFiles, flipByte, getViaProxy } from './support.js';

const PIECE = 4 * MiB;
let origin: Origin | undefined;
let cluster: Cluster | undefined;

useRoleTeardown(() => origin);

function expectViaAgent(r: { code: number | null; stderr: string }, what: string): void {
  expect(r.code, `${what}: ${r.stderr.slice(-1500)}`).toBe(0);
  expect(r.stderr, `${what} bypassed the agent`).not.toMatch(/from the origin directly/);
}

/** No temp file of `get` left in `dir`. */
function noTempFiles(dir: string): void {
  expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
}

describe('integrity at rest', () => {
  it('edited outputs, flipped and truncated cache bytes: every get and mirror answer has the verified bytes, --digest is checked on cache hits', async () => {
    const SIZE = 14 * MiB; // 4 pieces, the last one short
    origin = await startOrigin();
    cluster = await startCluster({ agents: 1 });
    const agent = cluster.agents[0] as RoleProcess;
    const seed = `at-rest-${Date.now()}`;
    const want = generatedSha256({ seed, size: SIZE });
    const url = origin.add(`/v2/t/blobs/${want}`, { size: SIZE, seed });
    const out = makeTempDir('damselfly-at-rest-');
    const file = (n: string) => path.join(out, n);

    // 1. First download; the output is a file of its own (finding 2: it was a hard link).
    expectViaAgent(await getThrough(agent, url, file('a.bin'), ['--digest', want]), 'first get');
    expect(await fileSha256(file('a.bin'))).toBe(want);
    expect(statSync(file('a.bin')).nlink).toBe(1);
    const [content] = contentFiles(agent);
    expect(content).toBeDefined();
    expect(statSync(content!).nlink).toBe(1);
    expect(statSync(content!).ino).not.toBe(statSync(file('a.bin')).ino);

    // 2. Editing the output in place does not reach the cache.
    flipByte(file('a.bin'), 100);
    expectViaAgent(await getThrough(agent, url, file('b.bin')), 'get after editing an output');
    expect(await fileSha256(file('b.bin'))).toBe(want);

    // 3. A byte flipped in the cache: a cache hit would hand it out; the agent re-fetches that piece
    //    (from the seed: the origin sends nothing more).
    const originBefore = origin.stats().bytes;
    flipByte(content!, PIECE + 12345);
    expectViaAgent(await getThrough(agent, url, file('c.bin'), ['--digest', want]), 'get after a flipped cache byte');
    expect(await fileSha256(file('c.bin'))).toBe(want);
    expect(origin.stats().bytes - originBefore, 'origin bytes for one re-fetched piece').toBeLessThanOrEqual(PIECE);

    // 4. A digest that is not the content's fails on a cache hit, and leaves no file behind.
    const wrong = `sha256:${randomBytes(32).toString('hex')}`;
    const bad = await getThrough(agent, url, file('d.bin'), ['--digest', wrong]);
    expect(bad.code, bad.stderr).not.toBe(0);
    expect(bad.stderr).toMatch(/digest/);
    expect(existsSync(file('d.bin'))).toBe(false);

    // 5. The mirror path: a flipped byte is never answered with 200 and wrong bytes.
    flipByte(content!, 2 * PIECE + 7);
    const m = await getViaProxy(agent, url);
    expect(m.status).toBe(200);
    expect(m.complete).toBe(true);
    expect(m.sha256).toBe(want);

    // 6. A truncated content file (finding 9): noticed, re-fetched, not served short.
    truncateSync(content!, PIECE + 10);
    const m2 = await getViaProxy(agent, url);
    expect([m2.status, m2.complete, m2.sha256]).toEqual([200, true, want]);
    expectViaAgent(await getThrough(agent, url, file('e.bin'), ['--digest', want]), 'get after truncation');
    expect(await fileSha256(file('e.bin'))).toBe(want);
    noTempFiles(out);
    const logs = agent.logs().filter((l) => /not what was verified|differs from its seal/.test(String(l.msg)));
    expect(logs.length, 'the agent said why it re-fetched').toBeGreaterThan(0);
  }, 120_000);
});
