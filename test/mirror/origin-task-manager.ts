/**
 * Test fixture, not a replacement of the agent: a minimal TaskManager (the contract in
 * agent/download/manager.ts) that downloads whole blobs from the real origin into memory, verifies the
 * sha256 digest, caches complete tasks and serves ranges from the cache. It lets the proxy's P2P
 * path be exercised against real registries and clients in-process; the swarm tests cover the real
 * agent. It records every download() call so tests can check what the proxy passed.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { IntegrityError, SourceError, UnavailableError } from '../../adapters/errors.js';
import { upstreamRequest } from '../../agent/proxy/passthrough.js';
import type { DownloadOptions, ProxyTaskManager, TaskStream } from '../../agent/proxy/p2p.js';

interface Entry {
  bytes: Buffer;
  headers: Record<string, string>;
}

export class OriginTaskManager implements ProxyTaskManager {
  readonly calls: DownloadOptions[] = [];
  readonly prefetches: DownloadOptions[] = [];
  /** Origin GETs made (by URL without query). */
  originFetches = 0;
  /** Make the next N download() calls fail with UnavailableError (to exercise the fallback). */
  failNext = 0;
  private readonly cache = new Map<string, Entry>();

  constructor(private readonly dispatcher?: Dispatcher) {}

  taskId(o: DownloadOptions): string {
    const u = new URL(o.url);
    for (const p of o.filteredQueryParams ?? []) u.searchParams.delete(p);
    return createHash('sha256').update(`${u.href}${o.tag ?? ''}${o.application ?? ''}STANDARD`).digest('hex');
  }

  async download(o: DownloadOptions): Promise<TaskStream> {
    this.calls.push(o);
    if (this.failNext > 0) {
      this.failNext--;
      throw new UnavailableError('fixture: no peer and no source (forced)');
    }
    const taskId = this.taskId(o);
    let entry = this.cache.get(taskId);
    const fromCache = !!entry;
    if (!entry) {
      const res = await upstreamRequest(new URL(o.url), { method: 'GET', headers: o.requestHeaders ?? {}, dispatcher: this.dispatcher, signal: o.signal });
      this.originFetches++;
      const chunks: Buffer[] = [];
      for await (const c of res.body) chunks.push(c as Buffer);
      const bytes = Buffer.concat(chunks);
      const headers = Object.fromEntries(Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v]));
      if (res.status < 200 || res.status > 299) throw new SourceError(`origin answered ${res.status}`, res.status, headers, bytes);
      const got = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      if (o.digest && got !== o.digest) {
        // Like the agent: bytes flow, then the body errors and nothing is cached.
        const half = bytes.subarray(0, Math.max(1, bytes.length >> 1));
        const body = new Readable({ read() {} });
        body.push(half);
        setImmediate(() => body.destroy(new IntegrityError(`expected ${o.digest}, got ${got}`)));
        return { taskId, peerId: 'fixture', contentLength: bytes.length, responseHeaders: headers, fromCache: false, body };
      }
      entry = { bytes, headers };
      this.cache.set(taskId, entry);
    }
    const total = entry.bytes.length;
    if (o.range) {
      if (o.range.start >= total) throw new UnavailableError('fixture: range beyond content');
      const end = Math.min(o.range.end ?? total - 1, total - 1);
      return {
        taskId, peerId: 'fixture', contentLength: total, range: { start: o.range.start, end },
        responseHeaders: entry.headers, fromCache, body: Readable.from([entry.bytes.subarray(o.range.start, end + 1)]),
      };
    }
    return { taskId, peerId: 'fixture', contentLength: total, responseHeaders: entry.headers, fromCache, body: Readable.from([entry.bytes]) };
  }

  prefetch(o: DownloadOptions): void {
    this.prefetches.push(o);
    this.download(o).then((s) => s.body.resume(), () => undefined);
  }
}
