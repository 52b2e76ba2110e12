/**
 * The one conformance suite of the source port (adapters/source/port.ts), run against every backend
 * with its real server (sources.conformance.test.ts). It tries to break the promises: exact bytes
 * for every range (all 256 byte values, a range straddling the end, a range past the end), missing
 * objects, empty objects, names with spaces and non-ASCII, prefix boundaries (`dir/` must not list
 * `dir2/`), and an origin that is not there.
 */
import { createHash, randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { SourceBackend, SourceResponse } from '../../adapters/source/port.js';

export interface SourceFixture {
  backend: SourceBackend;
  /** Stores `body` at relative path `p` (parents created) and returns its URL in the backend's scheme. */
  put(p: string, body: Buffer): Promise<string>;
  /** The URL of directory `p` ('' = the fixture's root), as a user would write it (no trailing slash). */
  dirUrl(p: string): string;
  /** The URL an absent object would have. */
  missingUrl(): string;
  /** Request headers every call needs (endpoint, credentials). */
  headers: Record<string, string>;
  /** A URL whose origin is not listening, with the headers to reach it. */
  unreachable(): { url: string; headers: Record<string, string> };
  /** False when the backend cannot tell sizes in a listing (http index pages). */
  listSizes: boolean;
}

async function bytesOf(res: SourceResponse): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of res.body) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

export function sourceConformance(open: () => Promise<SourceFixture>): void {
  let f: SourceFixture;
  let blob: Buffer;
  let blobUrl: string;
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  beforeAll(async () => {
    f = await open();
    // Every byte value, then random bytes: a backend that re-encodes text would show here.
    blob = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(300_000)]);
    blobUrl = await f.put('conf/blob.bin', blob);
  });

  describe('stat', () => {
    it('gives the exact size', async () => {
      const st = await f.backend.stat(blobUrl, f.headers);
      expect(st.size).toBe(blob.length);
    });
    it('gives size 0 for an empty object', async () => {
      const url = await f.put('conf/empty', Buffer.alloc(0));
      expect((await f.backend.stat(url, f.headers)).size).toBe(0);
    });
    it('throws SourceError 404 for a missing object', async () => {
      await expect(f.backend.stat(f.missingUrl(), f.headers)).rejects.toMatchObject({ code: 'SOURCE', status: 404 });
    });
  });

  describe('read', () => {
    it('reads the whole object byte for byte', async () => {
      const res = await f.backend.read(blobUrl, f.headers);
      expect(res.totalLength).toBe(blob.length);
      expect(res.offset).toBe(0);
      expect(sha(await bytesOf(res))).toBe(sha(blob));
    });
    it('reads an inclusive range in the middle', async () => {
      const res = await f.backend.read(blobUrl, f.headers, { start: 100, end: 70_000 });
      expect(res.status).toBe(206);
      expect(res.offset).toBe(100);
      expect(res.totalLength).toBe(blob.length);
      expect((await bytesOf(res)).equals(blob.subarray(100, 70_001))).toBe(true);
    });
    it('reads an open range to the end', async () => {
      const res = await f.backend.read(blobUrl, f.headers, { start: blob.length - 1000 });
      expect(res.offset).toBe(blob.length - 1000);
      expect((await bytesOf(res)).equals(blob.subarray(blob.length - 1000))).toBe(true);
    });
    it('clips a range that runs past the end', async () => {
      const res = await f.backend.read(blobUrl, f.headers, { start: blob.length - 10, end: blob.length + 5000 });
      expect((await bytesOf(res)).equals(blob.subarray(blob.length - 10))).toBe(true);
    });
    it('reads a one-byte range (each piece boundary is one)', async () => {
      const res = await f.backend.read(blobUrl, f.headers, { start: 255, end: 255 });
      expect((await bytesOf(res))[0]).toBe(255);
    });
    it('throws SourceError 416 for a range starting past the end', async () => {
      await expect(f.backend.read(blobUrl, f.headers, { start: blob.length + 1 })).rejects.toMatchObject({ code: 'SOURCE', status: 416 });
    });
    it('throws SourceError 404 for a missing object', async () => {
      await expect(f.backend.read(f.missingUrl(), f.headers)).rejects.toMatchObject({ code: 'SOURCE', status: 404 });
    });
    it('reads names with spaces, percent signs and non-ASCII', async () => {
      const body = Buffer.from('strange name');
      const url = await f.put('conf/we ird/%25 ü名.txt', body);
      expect((await bytesOf(await f.backend.read(url, f.headers))).equals(body)).toBe(true);
    });
    it('throws UnavailableError when the origin is not there', async () => {
      const u = f.unreachable();
      await expect(f.backend.read(u.url, u.headers)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    });
  });

  describe('list', () => {
    const files: Record<string, Buffer> = {
      'config.json': Buffer.from('{"a":1}'),
      'model.safetensors': randomBytes(70_000),
      'sub/deeper/tokenizer.json': Buffer.from('{}'),
      'sub/notes with space.md': Buffer.from('# hi'),
    };
    beforeAll(async () => {
      for (const [p, b] of Object.entries(files)) await f.put(`repo/${p}`, b);
      await f.put('repo2/not-mine.bin', Buffer.from('sibling with a shared prefix'));
      await f.put('repo.txt', Buffer.from('a file beside the directory'));
    });
    it('lists every file below, recursively, sorted, with paths relative to the directory', async () => {
      const list = await f.backend.list(f.dirUrl('repo'), f.headers);
      expect(list.map((e) => e.path)).toEqual(Object.keys(files).sort());
      if (f.listSizes) expect(list.map((e) => e.size)).toEqual(Object.keys(files).sort().map((p) => files[p]!.length));
    });
    it('gives each entry a URL the backend reads back to the same bytes', async () => {
      const list = await f.backend.list(f.dirUrl('repo'), f.headers);
      for (const e of list) expect((await bytesOf(await f.backend.read(e.url, f.headers))).equals(files[e.path]!)).toBe(true);
    });
    it('lists a nested directory on its own', async () => {
      const list = await f.backend.list(f.dirUrl('repo/sub'), f.headers);
      expect(list.map((e) => e.path)).toEqual(['deeper/tokenizer.json', 'notes with space.md']);
    });
    it('throws SourceError 404 for a directory that does not exist', async () => {
      await expect(f.backend.list(f.dirUrl('no-such-dir'), f.headers)).rejects.toMatchObject({ code: 'SOURCE', status: 404 });
    });
  });
}
