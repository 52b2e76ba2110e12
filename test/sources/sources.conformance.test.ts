/**
 * Runs the source-port conformance suite (conformance.ts) against every backend with a real server:
 * http(s) against a static directory origin with nginx-style index pages, s3:// against s3rver,
 * hf:// against the local hub (test/support/hub.ts: API, resolve/, LFS redirects to a signed CDN URL),
 * modelscope:// against the local ModelScope hub (test/support/modelscope-hub.ts: a private repository,
 * large files redirected to a signed CDN URL).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe } from 'vitest';
import { httpSource } from '../../adapters/source/http.js';
import { s3Source, s3Url } from '../../adapters/source/s3.js';
import { startDirOrigin, type DirOrigin } from '../support/dir-origin.js';
import { startS3, type TestS3 } from '../support/s3.js';
import { startHub, type Hub } from '../support/hub.js';
import { hfSource } from '../../adapters/source/hf.js';
import { modelScopeSource } from '../../adapters/source/modelscope.js';
import { startModelScopeHub, type ModelScopeHub } from '../support/modelscope-hub.js';
import { sourceConformance } from './conformance.js';

/** A port nothing listens on (bound, then released). */
export async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('source: http', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'damselfly-src-http-'));
  let origin: DirOrigin;
  let dead: number;
  afterAll(async () => {
    await origin?.close();
    rmSync(root, { recursive: true, force: true });
  });
  sourceConformance(async () => {
    origin = await startDirOrigin(root);
    dead = await deadPort();
    return {
      backend: httpSource,
      async put(p, body) {
        mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
        writeFileSync(path.join(root, p), body);
        return origin.url('/' + p);
      },
      dirUrl: (p) => origin.url('/' + p),
      missingUrl: () => origin.url('/no/such/file.bin'),
      headers: {},
      unreachable: () => ({ url: `http://127.0.0.1:${dead}/x`, headers: {} }),
      listSizes: false,
    };
  });
});

describe('source: s3', () => {
  let s3: TestS3;
  const bucket = 'conformance';
  afterAll(async () => {
    await s3?.close();
  });
  sourceConformance(async () => {
    s3 = await startS3();
    await s3.createBucket(bucket);
    const dead = await deadPort();
    return {
      backend: s3Source,
      async put(p, body) {
        await s3.put(bucket, p, body);
        return s3Url(bucket, p);
      },
      dirUrl: (p) => `s3://${bucket}/${p}`,
      missingUrl: () => `s3://${bucket}/no/such/object`,
      headers: s3.headers(),
      unreachable: () => ({ url: `s3://${bucket}/x`, headers: { ...s3.headers(), 'x-damselfly-s3-endpoint': `http://127.0.0.1:${dead}` } }),
      listSizes: true,
    };
  });
});

describe('source: hf', () => {
  let hub: Hub;
  const files: Record<string, Buffer> = {};
  afterAll(async () => {
    await hub?.close();
  });
  sourceConformance(async () => {
    hub = await startHub({ token: 'hf_test_token' });
    const dead = await deadPort();
    const headers = { 'x-damselfly-hf-endpoint': hub.base, 'x-damselfly-hf-token': 'hf_test_token' };
    return {
      backend: hfSource,
      async put(p, body) {
        files[p] = body;
        // Every put is a new commit of the whole tree; larger files go through LFS (302 to the CDN).
        hub.commit('models', 'conf/repo', Object.fromEntries(Object.entries(files).map(([k, v]) => [k, { content: v, lfs: v.length > 50_000 }])));
        return `hf://conf/repo/${p.split('/').map(encodeURIComponent).join('/')}`;
      },
      dirUrl: (p) => `hf://conf/repo/${p}`,
      missingUrl: () => 'hf://conf/repo/no/such/file.bin',
      headers,
      unreachable: () => ({ url: 'hf://conf/repo/x', headers: { ...headers, 'x-damselfly-hf-endpoint': `http://127.0.0.1:${dead}` } }),
      listSizes: true,
    };
  });
});

describe('source: modelscope', () => {
  let hub: ModelScopeHub;
  const files: Record<string, Buffer> = {};
  afterAll(async () => {
    await hub?.close();
  });
  sourceConformance(async () => {
    hub = await startModelScopeHub({ token: 'ms_test_token' });
    const dead = await deadPort();
    const headers = { 'x-damselfly-ms-endpoint': hub.base, 'x-damselfly-ms-token': 'ms_test_token' };
    return {
      backend: modelScopeSource,
      async put(p, body) {
        files[p] = body;
        // Every put is a new commit of the whole (private) tree; larger files come from the CDN (302).
        hub.commit('conf/repo', Object.fromEntries(Object.entries(files).map(([k, v]) => [k, { content: v, lfs: v.length > 50_000 }])), { private: true });
        return `modelscope://conf/repo/${p.split('/').map(encodeURIComponent).join('/')}`;
      },
      dirUrl: (p) => `modelscope://conf/repo/${p}`,
      missingUrl: () => 'modelscope://conf/repo/no/such/file.bin',
      headers,
      unreachable: () => ({ url: 'modelscope://conf/repo/x', headers: { ...headers, 'x-damselfly-ms-endpoint': `http://127.0.0.1:${dead}` } }),
      listSizes: true,
    };
  });
});
