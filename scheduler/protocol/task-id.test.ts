import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { DEFAULT_FILTERED_QUERY_PARAMS, blobDigestHex, filterUrl, goEncodeQuery, goParseQuery, goQueryEscape, hfTaskUrl, modelScopeTaskUrl, pieceBounds, pieceCount, pieceLengthFor, piecesCovering, taskId, taskIdOf, MIN_PIECE_LENGTH, MAX_PIECE_LENGTH } from './task-id.js';

const MiB = 1024 * 1024;

describe('task ID (Dragonfly TaskIDV2ByURLBased vectors)', () => {
  it('matches the published vector with tag, application, revision and piece length', () => {
    expect(taskId('https://example.com', { pieceLength: 1024, tag: 'foo', application: 'bar', revision: 'v1.0' })).toBe(
      '5844f27a257287e9b734256bb25603d8005422ced8c0377f15063ec11963b25f',
    );
  });
  it('matches the published vector with tag and application', () => {
    expect(taskId('https://example.com', { tag: 'foo', application: 'bar' })).toBe('06408fbf247ddaca478f8cb9565fe5591c28efd0994b8fea80a6a87d3203c5ca');
  });
  it('matches the published vector with every query param filtered', () => {
    expect(taskId('https://example.com?foo=foo&bar=bar', { filteredQueryParams: ['foo', 'bar'] })).toBe('457b4328cde278e422c9e243f7bfd1e97f511fec43a80f535cf6b0ef6b086776');
  });
  it('ignores signature params by default list, so presigned URLs share a task', () => {
    const a = taskId('https://bucket.s3.amazonaws.com/blob?X-Amz-Signature=aaa&X-Amz-Date=1&v=2', { filteredQueryParams: DEFAULT_FILTERED_QUERY_PARAMS });
    const b = taskId('https://bucket.s3.amazonaws.com/blob?v=2&X-Amz-Signature=bbb&X-Amz-Date=2', { filteredQueryParams: DEFAULT_FILTERED_QUERY_PARAMS });
    expect(a).toBe(b);
    expect(a).not.toBe(taskId('https://bucket.s3.amazonaws.com/blob?v=3', { filteredQueryParams: DEFAULT_FILTERED_QUERY_PARAMS }));
  });
  it('a bare "/" path and no path are the same task; other paths keep their slash', () => {
    expect(taskId('https://example.com/')).toBe(taskId('https://example.com'));
    expect(filterUrl('https://example.com/a/')).toBe('https://example.com/a/');
  });
  it('a user piece length changes the ID; zero/absent does not', () => {
    expect(taskId('https://e.com/x', { pieceLength: 4 * MiB })).not.toBe(taskId('https://e.com/x'));
    expect(taskId('https://e.com/x', { pieceLength: 0 })).toBe(taskId('https://e.com/x'));
  });
});

describe("Go's url.Values encoding", () => {
  it('escapes like QueryEscape', () => {
    expect(goQueryEscape('a b+c/d?e=f&g~h-i_j.k')).toBe('a+b%2Bc%2Fd%3Fe%3Df%26g~h-i_j.k');
    expect(goQueryEscape('é')).toBe('%C3%A9');
  });
  it('sorts keys and keeps value order when re-encoding remaining params', () => {
    expect(filterUrl('https://e.com/p?z=1&a=2&a=1&drop=x', ['drop'])).toBe('https://e.com/p?a=2&a=1&z=1');
    expect(filterUrl('https://e.com/p?q=a%20b&r=c+d', ['x'])).toBe('https://e.com/p?q=a+b&r=c+d');
  });
  it('skips pairs with bad escapes or semicolons like ParseQuery', () => {
    const v = goParseQuery('a=1;b=2&c=%zz&d=ok&e');
    expect([...v.keys()]).toEqual(['d', 'e']);
    expect(goEncodeQuery(v)).toBe('d=ok&e=');
  });
  it('leaves the URL untouched when nothing is filtered', () => {
    expect(filterUrl('https://e.com/p?b=1&a=2')).toBe('https://e.com/p?b=1&a=2');
  });
});

describe('piece math', () => {
  it('piece length follows nextPowerOfTwo(len/500) clamped to 4..64 MiB', () => {
    expect(pieceLengthFor(0)).toBe(MIN_PIECE_LENGTH);
    expect(pieceLengthFor(128 * MiB)).toBe(4 * MiB);
    expect(pieceLengthFor(2000 * MiB)).toBe(4 * MiB); // 4 MiB exactly → not > 4 MiB → 4 MiB
    expect(pieceLengthFor(2001 * MiB)).toBe(8 * MiB);
    expect(pieceLengthFor(10_000 * MiB)).toBe(32 * MiB);
    expect(pieceLengthFor(16_000 * MiB)).toBe(32 * MiB);
    expect(pieceLengthFor(16_001 * MiB)).toBe(MAX_PIECE_LENGTH);
    expect(pieceLengthFor(1e13)).toBe(MAX_PIECE_LENGTH);
  });
  it('counts pieces and bounds the last one', () => {
    expect(pieceCount(0, 4 * MiB)).toBe(0);
    expect(pieceCount(1, 4 * MiB)).toBe(1);
    expect(pieceCount(8 * MiB, 4 * MiB)).toBe(2);
    expect(pieceCount(8 * MiB + 1, 4 * MiB)).toBe(3);
    expect(pieceBounds(2, 8 * MiB + 1, 4 * MiB)).toEqual({ offset: 8 * MiB, length: 1 });
    expect(pieceBounds(0, 10, 4 * MiB)).toEqual({ offset: 0, length: 10 });
    expect(() => pieceBounds(3, 8 * MiB + 1, 4 * MiB)).toThrow(RangeError);
    expect(() => pieceBounds(-1, 8 * MiB, 4 * MiB)).toThrow(RangeError);
  });
  it('finds the pieces covering a byte range', () => {
    expect(piecesCovering(0, 0, 100, 10)).toEqual({ first: 0, last: 0 });
    expect(piecesCovering(9, 10, 100, 10)).toEqual({ first: 0, last: 1 });
    expect(piecesCovering(95, 99, 100, 10)).toEqual({ first: 9, last: 9 });
    expect(() => piecesCovering(50, 100, 100, 10)).toThrow(RangeError);
    expect(() => piecesCovering(5, 4, 100, 10)).toThrow(RangeError);
  });

});

describe('task ID precedence (dragonfly-client dfdaemon_download.rs)', () => {
  it('takes content_for_calculating_task_id first, then an OCI blob digest when enabled, then the URL', () => {
    const blob = 'https://registry.example/v2/library/alpine/blobs/sha256:ABCDEF0123456789?X-Amz-Signature=x';
    // sha256("hello"), Dragonfly's sha256_hex of the content.
    expect(taskIdOf('https://a.example/x', { contentForCalculatingTaskId: 'hello' })).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    expect(taskIdOf(blob, { contentForCalculatingTaskId: 'hello', enableTaskIdBasedBlobDigest: true })).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    expect(taskIdOf(blob, { enableTaskIdBasedBlobDigest: true })).toBe('abcdef0123456789');
    expect(taskIdOf('http://mirror:4001/v2/other/name/blobs/sha512:00ff', { enableTaskIdBasedBlobDigest: true })).toBe('00ff');
    // Disabled, not a blob URL, or an algorithm Dragonfly does not take: the URL-based ID.
    expect(taskIdOf(blob)).toBe(taskId(blob));
    expect(taskIdOf('https://registry.example/v2/library/alpine/manifests/latest', { enableTaskIdBasedBlobDigest: true })).toBe(taskId('https://registry.example/v2/library/alpine/manifests/latest'));
    expect(taskIdOf('https://r.example/v2/a/blobs/md5:00ff', { enableTaskIdBasedBlobDigest: true })).toBe(taskId('https://r.example/v2/a/blobs/md5:00ff'));
    expect(blobDigestHex('https://r.example/v2/a/b/c/blobs/sha256%3Aabc')).toBe('abc');
    // A malformed escape is not a digest (and not an exception): the URL-based ID.
    expect(blobDigestHex('https://r.example/v2/a/blobs/sha256%3')).toBeUndefined();
    expect(taskIdOf('https://r.example/v2/a/blobs/sha256%3', { enableTaskIdBasedBlobDigest: true })).toBe(taskId('https://r.example/v2/a/blobs/sha256%3'));
  });
});

describe('task IDs of s3:// and hf:// URLs (URL-based, as Dragonfly computes them)', () => {
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  it('s3://: the URL as written, like any other', () => {
    expect(taskIdOf('s3://models/org/m1/config.json')).toBe(sha('s3://models/org/m1/config.jsonSTANDARD'));
    expect(taskIdOf('s3://models/org/m1/config.json')).toBe('c60cfa59ee95154ab98187d1de8c68dd2331d0075aa8382a32f443f4eac2a1d4'); // sha256sum of the same string
  });
  it('hf://: the URL without @revision, the revision as its own part (main by default)', () => {
    expect(taskIdOf('hf://org/m1/model.safetensors')).toBe(sha('hf://org/m1/model.safetensorsmainSTANDARD'));
    expect(taskIdOf('hf://org/m1/model.safetensors')).toBe('66cffe9e8cee4f9ecee88329f23325b2706b28d6976d389d97aac1236fd85143');
    expect(taskIdOf('hf://org/m1@main/model.safetensors')).toBe(taskIdOf('hf://org/m1/model.safetensors'));
    expect(taskIdOf('hf://models/org/m1/model.safetensors')).toBe(taskIdOf('hf://org/m1/model.safetensors'));
    const commit = 'a'.repeat(40);
    expect(taskIdOf(`hf://org/m1@${commit}/model.safetensors`)).toBe(sha(`hf://org/m1/model.safetensors${commit}STANDARD`));
    expect(taskIdOf('hf://datasets/org/d1@v1.0/train.parquet', { tag: 't', pieceLength: 1024 })).toBe(sha('hf://datasets/org/d1/train.parquettv1.01024STANDARD'));
    // an explicit revision option (the download request's) wins over the URL's
    expect(taskIdOf('hf://org/m1@v2/f', { revision: 'v3' })).toBe(sha('hf://org/m1/fv3STANDARD'));
  });
  it('hfTaskUrl leaves other URLs alone and decodes an escaped revision', () => {
    expect(hfTaskUrl('https://huggingface.co/org/m1/resolve/main/f')).toBeUndefined();
    expect(hfTaskUrl('hf://org/m1@refs%2Fpr%2F1/f')).toEqual({ url: 'hf://org/m1/f', revision: 'refs/pr/1' });
  });
});

describe('task IDs of modelscope:// URLs (Dragonfly: the URL as dfget got it, plus --ms-revision, default master)', () => {
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  it('hashes the URL without @revision and the revision as its own part, master by default', () => {
    expect(taskIdOf('modelscope://qwen/Qwen2-0.5B/config.json')).toBe(sha('modelscope://qwen/Qwen2-0.5B/config.jsonmasterSTANDARD'));
    expect(taskIdOf('modelscope://qwen/Qwen2-0.5B/config.json')).toBe('fd643b5be1b08f46ad598e9982254ded5767a456a6995e76b823bf2e5c9cabdb'); // sha256sum of the same string
    // dfget modelscope://qwen/Qwen2-0.5B/config.json --ms-revision v1.0 = our URL with @v1.0
    expect(taskIdOf('modelscope://qwen/Qwen2-0.5B@v1.0/config.json')).toBe('ba1ebec56e732be569c2abcac6b1b022374cdba57e73de2902ce0ab1e6fcbd35');
    expect(taskIdOf('modelscope://qwen/Qwen2-0.5B@master/config.json')).toBe(taskIdOf('modelscope://qwen/Qwen2-0.5B/config.json'));
    const commit = 'b'.repeat(40);
    expect(taskIdOf(`modelscope://datasets/o/d@${commit}/train/a.jsonl`, { tag: 't', pieceLength: 1024 })).toBe(sha(`modelscope://datasets/o/d/train/a.jsonlt${commit}1024STANDARD`));
    expect(taskIdOf('modelscope://o/r@v2/f', { revision: 'v3' })).toBe(sha('modelscope://o/r/fv3STANDARD'));
  });
  it('differs from hf://: the default revision is master, and a written models/ stays in the hashed URL as Dragonfly keeps it', () => {
    expect(taskIdOf('modelscope://models/o/r/f')).toBe(sha('modelscope://models/o/r/fmasterSTANDARD'));
    expect(taskIdOf('modelscope://models/o/r/f')).not.toBe(taskIdOf('modelscope://o/r/f'));
    expect(modelScopeTaskUrl('hf://o/r/f')).toBeUndefined();
    expect(modelScopeTaskUrl('modelscope://o/r@release%2Fv1/f')).toEqual({ url: 'modelscope://o/r/f', revision: 'release/v1' });
  });
});
