/**
 * The agent as a Hugging Face Hub mirror (HF_ENDPOINT=http://127.0.0.1:<proxy port>), driven by the
 * official JS Hub client `@huggingface/hub` (its `hubUrl` pointed at the agent) and by plain HTTP
 * requests doing what Python's huggingface_hub does (HEAD, then GET with Range). Real processes: a
 * scheduler and agents of one cluster (no seed peer), the local hub of test/support/hub.ts with its
 * rate-limited CDN. It checks the bytes, that the CDN sends an LFS file about once for two agents,
 * that the task is the one `damselfly get hf://…@COMMIT/PATH` makes, private repositories (token
 * or 401), the hub's 404s, and that the token shows in no log line.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { downloadFile, listFiles } from '@huggingface/hub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseResolvePath } from '../../agent/proxy/hf-mirror.js';
import { taskIdOf } from '../../scheduler/protocol/task-id.js';
import { cliBuilt } from '../support/cli.js';
import { generateBytes, generatedSha256 } from '../support/origin.js';
import { cleanupTempDirs, getThrough, killAll, makeTempDir, proxyUrl, startCluster, type Cluster, type RoleProcess } from '../support/procs.js';
import { startHub, type Hub } from '../support/hub.js';
import { requireOrSkip } from '../support/require.js';

const MiB = 1024 * 1024;
const TOKEN = 'hf_mirror_secret_token_4242';
const LARGE = { seed: 'hf-mirror-large', size: 24 * MiB + 77 };
const sha = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A fetch for the JS client that records every request's URL and every answer's headers. */
function recordingFetch(seen: { url: string; status: number; headers: Headers }[]): typeof fetch {
  return async (input, init) => {
    const r = await fetch(input, init);
    seen.push({ url: String(input instanceof Request ? input.url : input), status: r.status, headers: r.headers });
    return r;
  };
}

async function blobBytes(b: Blob | null): Promise<Buffer> {
  expect(b).not.toBeNull();
  return Buffer.from(await b!.arrayBuffer());
}

describe('hf mirror: resolve paths', () => {
  it('parses model, dataset and space resolve URLs, a revision with an escaped /, and refuses unsafe paths', () => {
    expect(parseResolvePath('/org/m/resolve/main/a/b.bin')).toEqual({ type: 'models', repo: 'org/m', revision: 'main', path: 'a/b.bin' });
    expect(parseResolvePath('/datasets/org/d/resolve/refs%2Fpr%2F1/x%20y.csv')).toEqual({ type: 'datasets', repo: 'org/d', revision: 'refs/pr/1', path: 'x y.csv' });
    expect(parseResolvePath('/spaces/org/s/resolve/v1/app.py')?.type).toBe('spaces');
    for (const p of ['/org/m/resolve/main', '/org/m/blob/main/a', '/org/m/resolve/main/../x', '/org/m/resolve/main/a//b', '/org/m/resolve/main/a%2Fb', '/v2/org/m/blobs/sha256:00', '/org/m/resolve/main/%E0']) expect(parseResolvePath(p), p).toBeUndefined();
  });
});

describe.skipIf(!requireOrSkip(cliBuilt(), 'compiled damselfly CLI', 'run npm run build or set DAMSELFLY_CLI'))('the agent as a Hugging Face Hub mirror', () => {
  let priv: Hub;
  let pub: Hub;
  let cluster: Cluster;
  let a0: RoleProcess;
  let a1: RoleProcess;
  let a2: RoleProcess;
  let commit: string;
  let pubCommit: string;
  let work: string;
  const small = { 'config.json': Buffer.from('{"architectures":["Mirror"]}'), 'tokenizer/vocab.txt': Buffer.from('a\nb\nc\n') };
  const largeSha = generatedSha256(LARGE).slice(7);
  const repo = { type: 'model' as const, name: 'org/private-tiny' };

  beforeAll(async () => {
    work = makeTempDir('damselfly-hf-mirror-');
    // pageSize 2: the tree listing is paged, so the Link rewrite is what lets the client see it all.
    priv = await startHub({ token: TOKEN, pageSize: 2, cdn: { rate: 16 * MiB } });
    pub = await startHub({ cdn: { rate: 16 * MiB } });
    commit = priv.commit('models', 'org/private-tiny', { ...small, 'model.safetensors': LARGE });
    pubCommit = pub.commit('models', 'org/open', { 'config.json': small['config.json'], 'weights.bin': { seed: 'hf-mirror-open', size: 6 * MiB } });
    cluster = await startCluster({
      agents: 2,
      seed: false,
      agent: () => ({ proxy: { hfMirror: { endpoint: priv.base } } }),
      env: { DAMSELFLY_LOG_LEVEL: 'debug' },
      readyTimeoutMs: 30_000,
    });
    [a0, a1] = cluster.agents as [RoleProcess, RoleProcess];
    a2 = await cluster.addAgent('agent-pub', { proxy: { hfMirror: { endpoint: pub.base } } });
  }, 120_000);

  afterAll(async () => {
    await killAll();
    await priv?.close();
    await pub?.close();
    cleanupTempDirs();
  });

  it('lists every file of a paged tree through the agent (@huggingface/hub listFiles)', async () => {
    const seen: { url: string; status: number; headers: Headers }[] = [];
    const files: string[] = [];
    for await (const f of listFiles({ repo, recursive: true, hubUrl: proxyUrl(a0), accessToken: TOKEN, fetch: recordingFetch(seen) })) if (f.type === 'file') files.push(f.path);
    expect(files.sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer/vocab.txt']);
    expect(seen.length).toBeGreaterThan(1); // paged
    for (const s of seen) expect(s.url.startsWith(proxyUrl(a0))).toBe(true);
  });

  it('downloads a small file and a 24 MiB LFS file through two agents; the CDN sends the LFS bytes about once', async () => {
    const before = priv.stats().cdnBytes;
    const seen: { url: string; status: number; headers: Headers }[] = [];
    const opts = (agent: RoleProcess) => ({ repo, hubUrl: proxyUrl(agent), accessToken: TOKEN, fetch: recordingFetch(seen) });
    expect(sha(await blobBytes(await downloadFile({ ...opts(a0), path: 'config.json' })))).toBe(sha(small['config.json']));
    expect(sha(await blobBytes(await downloadFile({ ...opts(a0), path: 'tokenizer/vocab.txt' })))).toBe(sha(small['tokenizer/vocab.txt']));
    expect(sha(await blobBytes(await downloadFile({ ...opts(a0), path: 'model.safetensors' })))).toBe(largeSha);
    expect(sha(await blobBytes(await downloadFile({ ...opts(a1), path: 'model.safetensors' })))).toBe(largeSha);
    const cdn = priv.stats().cdnBytes - before;
    expect(cdn).toBeGreaterThanOrEqual(LARGE.size);
    expect(cdn).toBeLessThanOrEqual(LARGE.size * 1.05);
    // Nothing left the agents: every request the client made went to them.
    for (const s of seen) expect(s.url.startsWith(proxyUrl(a0)) || s.url.startsWith(proxyUrl(a1)), s.url).toBe(true);
    // The task is hf://org/private-tiny@COMMIT/model.safetensors, the one `damselfly get` makes.
    const want = taskIdOf(`hf://org/private-tiny@${commit}/model.safetensors`);
    const ids = new Set(seen.filter((s) => s.url.endsWith('/model.safetensors')).map((s) => s.headers.get('x-dragonfly-task-id')));
    expect([...ids]).toEqual([want]);
    const last = seen.filter((s) => s.url.endsWith('/model.safetensors')).at(-1)!;
    expect(last.headers.get('x-repo-commit')).toBe(commit);
    expect(last.headers.get('x-linked-etag')).toBe(`"${largeSha}"`);
  }, 120_000);

  it('`damselfly get hf://…@COMMIT/PATH` shares the mirror’s task: no CDN bytes', async () => {
    const before = priv.stats().cdnBytes;
    const out = path.join(work, 'via-get.safetensors');
    const r = await getThrough(a1, `hf://org/private-tiny@${commit}/model.safetensors`, out, ['--no-progress', '--hf-endpoint', priv.base, '--hf-token', TOKEN]);
    expect(r.code, r.stderr).toBe(0);
    expect(sha(readFileSync(out))).toBe(largeSha);
    expect(priv.stats().cdnBytes).toBe(before);
  }, 60_000);

  it('a private repository without the token: 401 from the client and from a plain GET, also for a file the agent holds', async () => {
    await expect(downloadFile({ repo, path: 'model.safetensors', hubUrl: proxyUrl(a0) })).rejects.toMatchObject({ statusCode: 401 });
    const listing = (async () => {
      for await (const _ of listFiles({ repo, hubUrl: proxyUrl(a0) })) void _;
    })();
    await expect(listing).rejects.toMatchObject({ statusCode: 401 });
    for (const method of ['GET', 'HEAD']) {
      const r = await fetch(`${proxyUrl(a0)}/org/private-tiny/resolve/main/model.safetensors`, { method });
      expect(r.status).toBe(401);
      expect(r.headers.get('x-error-code')).toBe('GatedRepo');
      const body = Buffer.from(await r.arrayBuffer());
      expect(body.includes(Buffer.from(generateBytes(LARGE.seed, 0, 64)))).toBe(false);
    }
    const wrong = await fetch(`${proxyUrl(a1)}/org/private-tiny/resolve/${commit}/config.json`, { headers: { authorization: 'Bearer hf_wrong' } });
    expect(wrong.status).toBe(401);
  });

  it('a missing file or repository: 404 with the hub’s X-Error-Code (the client gets null for a file)', async () => {
    expect(await downloadFile({ repo, path: 'nope.bin', hubUrl: proxyUrl(a0), accessToken: TOKEN })).toBeNull();
    const cases = [
      ['/org/private-tiny/resolve/main/nope.bin', 'EntryNotFound'],
      ['/org/none/resolve/main/config.json', 'RepoNotFound'],
      ['/org/private-tiny/resolve/no-such-branch/config.json', 'RevisionNotFound'],
      ['/api/models/org/none/revision/main', 'RepoNotFound'],
    ] as const;
    for (const [p, code] of cases) {
      for (const method of p.startsWith('/api') ? ['GET'] : ['HEAD', 'GET']) {
        const r = await fetch(proxyUrl(a0) + p, { method, headers: { authorization: `Bearer ${TOKEN}` } });
        expect([p, method, r.status]).toEqual([p, method, 404]);
        expect(r.headers.get('x-error-code')).toBe(code);
        if (method === 'GET') expect(((await r.json()) as { error?: string }).error).toBeTruthy();
      }
    }
  });

  it('plain HTTP as huggingface_hub does it: HEAD for the metadata, then GET with Range from the agent', async () => {
    const base = proxyUrl(a2);
    const api = await fetch(`${base}/api/models/org/open/revision/main`);
    expect(api.status).toBe(200);
    expect(((await api.json()) as { sha: string }).sha).toBe(pubCommit);
    // LFS file: no redirect to the CDN, the size and etags a client needs.
    const head = await fetch(`${base}/org/open/resolve/main/weights.bin`, { method: 'HEAD', redirect: 'manual', headers: { 'accept-encoding': 'identity' } });
    expect(head.status).toBe(200);
    expect(head.headers.get('location')).toBeNull();
    expect(head.headers.get('x-repo-commit')).toBe(pubCommit);
    const wantSha = generatedSha256({ seed: 'hf-mirror-open', size: 6 * MiB }).slice(7);
    expect(head.headers.get('x-linked-etag')).toBe(`"${wantSha}"`);
    expect(head.headers.get('x-linked-size')).toBe(String(6 * MiB));
    expect(head.headers.get('content-length')).toBe(String(6 * MiB));
    expect(head.headers.get('etag')).toBeTruthy();
    const start = 5 * MiB - 10;
    const ranged = await fetch(`${base}/org/open/resolve/main/weights.bin`, { redirect: 'manual', headers: { range: `bytes=${start}-` } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes ${start}-${6 * MiB - 1}/${6 * MiB}`);
    expect(ranged.headers.get('x-dragonfly-task-id')).toBe(taskIdOf(`hf://org/open@${pubCommit}/weights.bin`));
    expect(Buffer.from(await ranged.arrayBuffer()).equals(generateBytes('hf-mirror-open', start, 6 * MiB))).toBe(true);
    const whole = await fetch(`${base}/org/open/resolve/${pubCommit}/weights.bin`);
    expect(whole.status).toBe(200);
    expect(sha(Buffer.from(await whole.arrayBuffer()))).toBe(wantSha);
    // A small (non-LFS) file: the hub's own metadata, then its bytes.
    const h2 = await fetch(`${base}/org/open/resolve/main/config.json`, { method: 'HEAD' });
    expect(h2.status).toBe(200);
    expect(h2.headers.get('content-length')).toBe(String(small['config.json'].length));
    expect(h2.headers.get('x-repo-commit')).toBe(pubCommit);
    const g2 = await fetch(`${base}/org/open/resolve/main/config.json`, { headers: { range: 'bytes=2-5' } });
    expect(g2.status).toBe(206);
    expect(Buffer.from(await g2.arrayBuffer()).toString()).toBe(small['config.json'].subarray(2, 6).toString());
  }, 60_000);

  it('the token shows in no agent log line', () => {
    for (const a of [a0, a1, a2]) {
      const text = readFileSync(a.logFile, 'utf8');
      expect(text.length).toBeGreaterThan(0);
      expect(text).not.toContain(TOKEN);
    }
  });
});
