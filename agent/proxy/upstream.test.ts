import { describe, expect, it } from 'vitest';
import { proxyConfigSchema } from '../proxy-config.js';
import { blobDigest, chooseUpstream, registryOrigin, upstreamRequestHeaders } from './upstream.js';
import { downloadOptions, parseMultiRange, parseRange, wantsP2P } from './p2p.js';
import type { IncomingMessage } from 'node:http';

const config = proxyConfigSchema.parse({ registryMirror: { addr: 'https://mirror.example' } });
const D = `sha256:${'a'.repeat(64)}`;

describe('upstream choice', () => {
  it('normalises registries: scheme by loopback, docker.io to its API host', () => {
    expect(registryOrigin('127.0.0.1:5000').href).toBe('http://127.0.0.1:5000/');
    expect(registryOrigin('localhost:5000').href).toBe('http://localhost:5000/');
    expect(registryOrigin('ghcr.io').href).toBe('https://ghcr.io/');
    expect(registryOrigin('docker.io').href).toBe('https://registry-1.docker.io/');
    expect(registryOrigin('http://10.0.0.1:80/some/path').href).toBe('http://10.0.0.1/');
    expect(() => registryOrigin('ftp://x')).toThrow(/http/);
  });
  it('header beats ns beats default; ns is stripped and other params kept', () => {
    const p = `/v2/lib/app/blobs/${D}?ns=127.0.0.1%3A5000&x=1`;
    expect(chooseUpstream(p, { 'x-dragonfly-registry': 'https://reg.example:8443' }, config)).toMatchObject({ via: 'header' });
    expect(chooseUpstream(p, { 'x-dragonfly-registry': 'https://reg.example:8443' }, config).url.href).toBe(`https://reg.example:8443/v2/lib/app/blobs/${D}?x=1`);
    expect(chooseUpstream(p, {}, config).url.href).toBe(`http://127.0.0.1:5000/v2/lib/app/blobs/${D}?x=1`);
    expect(chooseUpstream('/v2/lib/app/manifests/v1?ns=docker.io', {}, config).url.href).toBe('https://registry-1.docker.io/v2/lib/app/manifests/v1');
    const d = chooseUpstream('/v2/', {}, config);
    expect(d.via).toBe('default');
    expect(d.url.href).toBe('https://mirror.example/v2/');
  });
  it('a damselfly-upstream path prefix (containers/image mirrors) names the upstream and is stripped', () => {
    expect(chooseUpstream('/v2/damselfly-upstream/127.0.0.1_5000/test/app/manifests/v1', {}, config)).toMatchObject({ via: 'path' });
    expect(chooseUpstream('/v2/damselfly-upstream/127.0.0.1_5000/test/app/manifests/v1', {}, config).url.href).toBe('http://127.0.0.1:5000/v2/test/app/manifests/v1');
    expect(chooseUpstream(`/v2/damselfly-upstream/docker.io/library/alpine/blobs/${D}`, {}, config).url.href).toBe(`https://registry-1.docker.io/v2/library/alpine/blobs/${D}`);
    expect(chooseUpstream('/v2/damselfly-upstream/ghcr.io/o/r/manifests/v1', {}, config).url.href).toBe('https://ghcr.io/v2/o/r/manifests/v1');
  });
  it('rule useTLS / redirect rewrite the upstream of matching paths only', () => {
    const c = proxyConfigSchema.parse({ rules: [{ regex: 'blobs/sha256.*', useTLS: true, redirect: 'cache.example:9000' }], registryMirror: { addr: 'http://reg.local' } });
    expect(chooseUpstream(`/v2/a/blobs/${D}`, {}, c).url.href).toBe(`https://cache.example:9000/v2/a/blobs/${D}`);
    expect(chooseUpstream('/v2/a/manifests/v1', {}, c).url.href).toBe('http://reg.local/v2/a/manifests/v1');
  });
  it('request headers: hop-by-hop, Connection-listed and X-Dragonfly-* dropped; Authorization kept', () => {
    const h = upstreamRequestHeaders({
      host: 'x', connection: 'keep-alive, x-secret-hop', 'keep-alive': '5', 'x-secret-hop': '1', 'transfer-encoding': 'chunked',
      authorization: 'Bearer t', accept: 'a', 'x-dragonfly-tag': 't', 'proxy-authorization': 'p',
    });
    expect(h).toEqual({ authorization: 'Bearer t', accept: 'a' });
  });
  it('blob digests are taken from the path only', () => {
    expect(blobDigest(`/v2/a/b/blobs/${D}`)).toBe(D);
    expect(blobDigest(`/v2/a/manifests/${D}`)).toBeUndefined();
  });
});

describe('P2P decisions', () => {
  it('parses single ranges; suffix, multi and junk are left to the origin', () => {
    expect(parseRange(undefined)).toEqual({ kind: 'none' });
    expect(parseRange('bytes=0-99')).toEqual({ kind: 'single', start: 0, end: 99 });
    expect(parseRange('bytes=100-')).toEqual({ kind: 'single', start: 100, end: undefined });
    expect(parseRange('bytes=-100')).toEqual({ kind: 'passthrough' });
    expect(parseRange('bytes=0-1,5-9')).toEqual({ kind: 'passthrough' });
    expect(parseRange('bytes=9-1')).toEqual({ kind: 'passthrough' });
    expect(parseRange('items=0-1')).toEqual({ kind: 'passthrough' });
  });
  it('only GET goes P2P: by rule, or by X-Dragonfly-Use-P2P', () => {
    const blob = new URL(`http://r/v2/a/blobs/${D}`);
    const man = new URL('http://r/v2/a/manifests/v1');
    expect(wantsP2P('GET', blob, {}, config)).toBe(true);
    expect(wantsP2P('HEAD', blob, {}, config)).toBe(false);
    expect(wantsP2P('GET', man, {}, config)).toBe(false);
    expect(wantsP2P('GET', man, { 'x-dragonfly-use-p2p': 'true' }, config)).toBe(true);
  });
  it('download options carry digest, range, priority default 6 and the default filtered params', () => {
    const req = { headers: { range: 'bytes=5-9', authorization: 'Basic x', 'accept-encoding': 'zstd, gzip', 'x-dragonfly-piece-length': '8mib' } } as unknown as IncomingMessage;
    const o = downloadOptions(new URL(`http://r/v2/a/blobs/${D}`), req, config, parseRange('bytes=5-9'));
    expect(o).toMatchObject({ digest: D, range: { start: 5, end: 9 }, priority: 6, requestHeaders: { authorization: 'Basic x' } });
    expect(o.requestHeaders!.range).toBeUndefined();
    expect(o.requestHeaders!['accept-encoding']).toBeUndefined();
    expect(o.pieceLength).toBe(8 * 1024 * 1024);
    expect(o.filteredQueryParams).toContain('X-Amz-Signature');
    expect(o.filteredQueryParams).toContain('ns');
    expect(o.enableTaskIdBasedBlobDigest).toBeUndefined();
    expect(o.contentForCalculatingTaskId).toBeUndefined();
  });
  it('task ID hints: X-Dragonfly-Enable-Task-ID-Based-Blob-Digest overrides registryMirror.enableTaskIDBasedBlobDigest; content for the task ID', () => {
    const blob = new URL(`http://r/v2/a/blobs/${D}`);
    const on = { ...config, registryMirror: { ...config.registryMirror, enableTaskIDBasedBlobDigest: true } };
    const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
    expect(downloadOptions(blob, req({}), on, parseRange(undefined)).enableTaskIdBasedBlobDigest).toBe(true);
    expect(downloadOptions(blob, req({ 'x-dragonfly-enable-task-id-based-blob-digest': 'false' }), on, parseRange(undefined)).enableTaskIdBasedBlobDigest).toBeUndefined();
    expect(downloadOptions(blob, req({ 'x-dragonfly-enable-task-id-based-blob-digest': 'TRUE' }), config, parseRange(undefined)).enableTaskIdBasedBlobDigest).toBe(true);
    const c = downloadOptions(blob, req({ 'x-dragonfly-content-for-calculating-task-id': 'model-v1' }), config, parseRange(undefined));
    expect(c.contentForCalculatingTaskId).toBe('model-v1');
    expect(c.requestHeaders!['x-dragonfly-content-for-calculating-task-id']).toBeUndefined();
  });
  it('multi-range headers resolve against the length in request order; anything malformed or unsatisfiable is left to the origin', () => {
    expect(parseMultiRange('bytes=0-9, 100-199,-50', 1000)).toEqual([{ start: 0, end: 9 }, { start: 100, end: 199 }, { start: 950, end: 999 }]);
    expect(parseMultiRange('bytes=990-, 5-2000', 1000)).toEqual([{ start: 990, end: 999 }, { start: 5, end: 999 }]);
    expect(parseMultiRange('bytes=0-9,1000-1001', 1000)).toBeUndefined();
    expect(parseMultiRange('bytes=9-1,0-1', 1000)).toBeUndefined();
    expect(parseMultiRange('bytes=0-1,-0', 1000)).toBeUndefined();
    expect(parseMultiRange('items=0-1,2-3', 1000)).toBeUndefined();
    expect(parseMultiRange('bytes=0-1,,2-3', 1000)).toBeUndefined();
  });
});
