/**
 * modelscope:// end to end: `damselfly get` (single file and --recursive) as real processes through
 * a real cluster (scheduler, seed peer, 2 agents; test/support/procs.ts) against the local ModelScope
 * hub (test/support/modelscope-hub.ts). It tries to break: both agents asking for the large file at
 * once (the CDN must send it about once), a private repository without the token, a missing file,
 * the hub moving master under a listing, malformed URLs and misplaced flags, and the token leaking
 * into a log, an output or the state file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redact } from '../../adapters/log.js';
import { MS_HEADERS, modelScopeSource } from '../../adapters/source/modelscope.js';
import { cliBuilt, cliPath } from '../support/cli.js';
import { startModelScopeHub, type ModelScopeHub } from '../support/modelscope-hub.js';
import { fileSha256, generatedSha256, MiB, type Generated } from '../support/origin.js';
import { cleanupTempDirs, killAll, makeTempDir, runCli, startCluster, type Cluster, type RoleProcess } from '../support/procs.js';
import { requireOrSkip } from '../support/require.js';

const TOKEN = 'ms_secret_test_token_7c1e';
const LARGE: Generated = { size: 24 * MiB + 7, seed: `ms-large-${Date.now()}` };
// nextPowerOfTwo(24 MiB / 500) < 4 MiB → 4 MiB pieces; one extra piece tolerated, as in the swarm test.
const PIECE = 4 * MiB;
const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

describe('the ModelScope token in structured logs', () => {
  it('is redacted wherever the request headers are nested (they travel agent → scheduler → seed peer)', () => {
    const headers = { [MS_HEADERS.token]: 'MS-TOKEN', [MS_HEADERS.endpoint]: 'http://127.0.0.1:9' };
    const text = JSON.stringify(redact({ download: { request_header: headers }, list: [headers] }));
    expect(text).not.toContain('MS-TOKEN');
    expect(text).toContain('http://127.0.0.1:9');
  });
});

describe.skipIf(!requireOrSkip(cliBuilt(), `compiled CLI at ${cliPath()}`, 'run npm run build'))('modelscope:// through real agents', () => {
  let hub: ModelScopeHub;
  let cluster: Cluster;
  let out: string;
  let commit1: string;
  const small: Record<string, Buffer> = {
    'configuration.json': Buffer.from('{"framework":"pytorch","task":"text-generation"}'),
    'config.json': Buffer.from('{"architectures":["Test"]}'),
    'tokenizer/tokenizer.json': Buffer.from('{"version":"1.0"}'),
    'tokenizer/vocab with space.txt': Buffer.from('a\nb\n'),
    'weights/part-2.bin': randomBytes(2 * MiB + 3),
  };
  const secret = { 'weights.bin': randomBytes(300_000), 'README.md': Buffer.from('# private') };
  let largeSha: string;
  const cliLogs: string[] = [];
  const get = async (agent: RoleProcess, args: string[], env: Record<string, string> = {}) => {
    const r = await runCli(['get', ...args, '--endpoint', String(agent.ready.socket), '--no-progress'], { timeoutMs: 120_000, env: { DAMSELFLY_ENDPOINT: '', ...env } });
    cliLogs.push(r.stdout, r.stderr);
    return r;
  };
  const hubFlags = () => ['--ms-base-url', hub.base];

  beforeAll(async () => {
    // A CDN at 32 MiB/s keeps the seed peer downloading the large file while the second agent asks.
    hub = await startModelScopeHub({ token: TOKEN, cdn: { rate: 32 * MiB } });
    commit1 = hub.commit('org/tiny', { ...small, 'model.safetensors': LARGE }, { tag: 'v1.0' });
    hub.commit('org/secret', secret, { private: true });
    largeSha = generatedSha256(LARGE);
    cluster = await startCluster({ agents: 2 });
    out = makeTempDir('damselfly-ms-out-');
  }, 90_000);
  afterAll(async () => {
    await killAll();
    await hub?.close();
    cleanupTempDirs();
  });

  it('two agents get the large file at once: right bytes, and the CDN sends it about once', async () => {
    const before = hub.stats().cdnBytes;
    const rs = await Promise.all(cluster.agents.map((a, i) => get(a, ['modelscope://org/tiny/model.safetensors', '-O', path.join(out, `large-${i}.safetensors`), ...hubFlags()])));
    for (const r of rs) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr, 'a get bypassed its agent').not.toMatch(/from the origin directly/);
    }
    for (let i = 0; i < rs.length; i++) expect(await fileSha256(path.join(out, `large-${i}.safetensors`))).toBe(largeSha);
    const sent = hub.stats().cdnBytes - before;
    process.stderr.write(`modelscope: 2 agents × ${LARGE.size} B, CDN sent ${sent} B (ratio ${(sent / LARGE.size).toFixed(3)})\n`);
    expect(sent).toBeGreaterThanOrEqual(LARGE.size);
    expect(sent).toBeLessThanOrEqual(LARGE.size + PIECE);
  });

  it('get --recursive downloads the repository, each file a task, pinned to the commit master had', async () => {
    const dir = path.join(out, 'tiny');
    const r = await get(cluster.agents[0]!, ['--recursive', 'modelscope://org/tiny', '-O', dir, ...hubFlags(), '--ms-token', TOKEN], { DAMSELFLY_GET_SUMMARY_JSON: '1' });
    expect(r.code, r.stderr).toBe(0);
    for (const [p, b] of Object.entries(small)) expect(await fileSha256(path.join(dir, p)), p).toBe(sha(b));
    expect(await fileSha256(path.join(dir, 'model.safetensors'))).toBe(largeSha);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toMatchObject({ files: 6, downloaded: 6 });
    const state = readFileSync(path.join(dir, '.damselfly-get.json'), 'utf8');
    expect(state).toContain(`modelscope://org/tiny@${commit1}/model.safetensors`);
    expect(state).not.toContain(TOKEN);
  });

  it('--ms-revision (or URL@REV) reads that revision after master moved; a listing keeps its commit', async () => {
    const h = { 'x-damselfly-ms-endpoint': hub.base };
    const listed = await modelScopeSource.list('modelscope://org/tiny/tokenizer', h);
    expect(listed.map((e) => e.path)).toEqual(['tokenizer.json', 'vocab with space.txt']);
    hub.commit('org/tiny', { ...small, 'config.json': Buffer.from('{"changed":true}'), 'model.safetensors': LARGE });
    const latest = await get(cluster.agents[1]!, ['modelscope://org/tiny/config.json', '-O', path.join(out, 'config-master.json'), ...hubFlags()]);
    expect(latest.code, latest.stderr).toBe(0);
    expect(readFileSync(path.join(out, 'config-master.json'), 'utf8')).toBe('{"changed":true}');
    const tagged = await get(cluster.agents[1]!, ['modelscope://org/tiny/config.json', '--ms-revision', 'v1.0', '-O', path.join(out, 'config-v1.json'), ...hubFlags()]);
    expect(tagged.code, tagged.stderr).toBe(0);
    expect(readFileSync(path.join(out, 'config-v1.json'))).toEqual(small['config.json']);
    const parts: Buffer[] = [];
    for await (const c of (await modelScopeSource.read(listed[0]!.url, h)).body) parts.push(c as Buffer);
    expect(Buffer.concat(parts)).toEqual(small['tokenizer/tokenizer.json']);
  });

  it('a private repository: 401 without the token (exit 1, naming the URL, nothing written), its bytes with it', async () => {
    const denied = path.join(out, 'denied.bin');
    const r = await get(cluster.agents[0]!, ['modelscope://org/secret/weights.bin', '-O', denied, ...hubFlags()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/401/);
    expect(r.stderr).toContain('modelscope://org/secret/weights.bin');
    expect(existsSync(denied)).toBe(false);
    const deniedDir = path.join(out, 'denied-dir');
    const rr = await get(cluster.agents[0]!, ['-r', 'modelscope://org/secret', '-O', deniedDir, ...hubFlags()]);
    expect(rr.code).toBe(1);
    expect(rr.stderr).toMatch(/cannot list modelscope:\/\/org\/secret: origin answered 401/);
    const file = path.join(out, 'secret.bin');
    const ok = await get(cluster.agents[1]!, ['modelscope://org/secret/weights.bin', '-O', file, ...hubFlags(), '--ms-token', TOKEN]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await fileSha256(file)).toBe(sha(secret['weights.bin']));
    const dir = path.join(out, 'secret');
    const okDir = await get(cluster.agents[0]!, ['-r', 'modelscope://org/secret', '-O', dir, ...hubFlags(), '--ms-token', TOKEN]);
    expect(okDir.code, okDir.stderr).toBe(0);
    for (const [p, b] of Object.entries(secret)) expect(await fileSha256(path.join(dir, p)), p).toBe(sha(b));
  });

  it('takes the hub from MODELSCOPE_ENDPOINT and the token from MODELSCOPE_API_TOKEN when no header names them', async () => {
    const saved = { ep: process.env.MODELSCOPE_ENDPOINT, token: process.env.MODELSCOPE_API_TOKEN };
    try {
      process.env.MODELSCOPE_ENDPOINT = hub.base;
      delete process.env.MODELSCOPE_API_TOKEN;
      await expect(modelScopeSource.list('modelscope://org/secret', {})).rejects.toMatchObject({ code: 'SOURCE', status: 401 });
      process.env.MODELSCOPE_API_TOKEN = TOKEN;
      expect((await modelScopeSource.list('modelscope://org/secret', {})).map((e) => e.path)).toEqual(['README.md', 'weights.bin']);
      expect((await modelScopeSource.stat('modelscope://org/secret/weights.bin', {})).size).toBe(secret['weights.bin'].length);
      // A header wins over the environment.
      await expect(modelScopeSource.stat('modelscope://org/secret/weights.bin', { 'x-damselfly-ms-token': 'wrong' })).rejects.toMatchObject({ status: 401, message: expect.stringContaining('modelscope://org/secret/weights.bin') });
    } finally {
      for (const [k, v] of [['MODELSCOPE_ENDPOINT', saved.ep], ['MODELSCOPE_API_TOKEN', saved.token]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('a missing file is a 404 naming the URL, exit 1, nothing written', async () => {
    const file = path.join(out, 'missing.bin');
    const r = await get(cluster.agents[0]!, ['modelscope://org/tiny/no/such.bin', '-O', file, ...hubFlags()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/404/);
    expect(r.stderr).toContain('modelscope://org/tiny/no/such.bin');
    expect(existsSync(file)).toBe(false);
    const none = await get(cluster.agents[0]!, ['-r', 'modelscope://org/none', '-O', path.join(out, 'none'), ...hubFlags()]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/cannot list modelscope:\/\/org\/none: origin answered 404/);
  });

  it('rejects bad URLs and misplaced flags with exit 2 and the expected form, writing nothing', async () => {
    const target = path.join(out, 'never');
    const cases: Array<[string[], RegExp]> = [
      [['modelscope://just-one-part', '-O', target], /URL modelscope:\/\/just-one-part is not valid: expected modelscope:\/\/\[datasets\/\]OWNER\/REPO\[@REVISION\]\[\/PATH\]/],
      [['modelscope://o/r?x=1', '-O', target], /expected modelscope:\/\//],
      [['https://example.com/f', '-O', target, '--ms-token', TOKEN], /--ms-\* options are for modelscope:\/\/ URLs only/],
      [['modelscope://o/r@v1/f', '-O', target, '--ms-revision', 'v2'], /--ms-revision v2 and the URL's @v1 disagree/],
      [['modelscope://o/r/f', '-O', target, '--ms-base-url', 'ftp://x'], /--ms-base-url ftp:\/\/x must be http\(s\)/],
      [['modelscope://o/r/a/../b', '-O', target], /its path has '\.', '\.\.' or empty segments/],
      [['modelscope://o/r/a%2', '-O', target], /malformed percent-escape/],
    ];
    for (const [args, re] of cases) {
      const r = await get(cluster.agents[0]!, args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(re);
    }
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(out).filter((f) => f.includes('never'))).toEqual([]);
  });

  it('never writes the token to a log, an output or a role log', () => {
    for (const s of cliLogs) expect(s).not.toContain(TOKEN);
    for (const p of cluster.all()) expect(readFileSync(p.logFile, 'utf8'), p.name).not.toContain(TOKEN);
  });
});
