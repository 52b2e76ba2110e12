/**
 * A real HTTP origin for tests and benchmarks, on 127.0.0.1 port 0.
 *
 *   const origin = await startOrigin({ rate: 20 * MiB });
 *   const url = origin.add('/big.bin', { size: 64 * MiB, seed: 'a' }); // or a Buffer
 *   origin.sha256('/big.bin')  // "sha256:<hex>" computed without storing the bytes
 *   origin.stats().bytes       // body bytes served so far (also GET /__stats)
 *
 * Generated content is AES-128-CTR keystream keyed by the seed: deterministic, incompressible, and
 * random-access (any byte range is computed directly), so a 128 MiB file costs no memory and its
 * sha256 is known without storing it twice. Paths `/gen/<seed>/<size>` serve generated content
 * without registering it first (a fresh seed = a fresh task ID).
 *
 * Supports HEAD, GET with a single Range (206 + Content-Range; 416 if unsatisfiable), a shared token
 * bucket on total egress (`rate` bytes/s, so N concurrent clients share it as they would share a
 * real uplink), per-path and total counters, `/redirect/<path>` (307 to `<path>`), `redirectTo`
 * (307 every data request to another base URL), and `requireAuth` (401 unless the Authorization
 * header matches exactly).
 *
 * Faults on command (`origin.fault(f, times)`): the next `times` data GETs (of `f.path`, or of any
 * path) are answered with `status` (e.g. 500), or have their body reset (connection destroyed),
 * stalled for `ms`, or ended early (Content-Length longer than the body) after `afterBytes` bytes.
 */
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { createCipheriv, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/**
 * A FIFO token bucket: `take(n)` resolves when n bytes may be sent. A taker may drive the balance
 * negative (debt), and later takers wait for it to be repaid, so chunks larger than the burst still
 * pass and the long-run rate is exact. rate ≤ 0 or Infinity = unlimited.
 */
export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  private readonly queue: Array<{ n: number; resolve: () => void }> = [];
  private timer: NodeJS.Timeout | undefined;
  readonly burst: number;

  /** `initial`: tokens at the start (default: a full burst; 0 = never ahead of rate × elapsed time). */
  constructor(
    private rate: number,
    burst?: number,
    initial?: number,
  ) {
    this.burst = burst ?? Math.max(64 * KiB, rate / 50);
    this.tokens = initial ?? this.burst;
  }

  get unlimited(): boolean {
    return !(this.rate > 0 && Number.isFinite(this.rate));
  }

  /** Resolves once `n` bytes fit in the rate. */
  take(n: number): Promise<void> {
    if (this.unlimited) return Promise.resolve();
    return new Promise((resolve) => {
      this.queue.push({ n, resolve });
      this.pump();
    });
  }

  /** Drops the tokens saved up (keeps any debt). */
  empty(): void {
    this.refill();
    this.tokens = Math.min(0, this.tokens);
  }

  setRate(rate: number): void {
    this.refill();
    this.rate = rate;
    this.pump();
  }

  private refill(): void {
    const now = performance.now();
    if (!this.unlimited) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
  }

  private pump(): void {
    this.refill();
    while (this.queue.length > 0 && (this.tokens >= 0 || this.unlimited)) {
      const head = this.queue.shift()!;
      this.tokens -= head.n;
      head.resolve();
    }
    if (this.queue.length > 0 && !this.timer) {
      const waitMs = Math.max(1, (-this.tokens / this.rate) * 1000);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, waitMs);
    }
  }
}

export type Fault =
  | { kind: 'status'; status: number; path?: string }
  | { kind: 'reset'; afterBytes: number; path?: string }
  | { kind: 'stall'; afterBytes: number; ms: number; path?: string }
  | { kind: 'short'; afterBytes: number; path?: string };

export interface Generated {
  size: number;
  seed: string;
}
export type Content = Buffer | Generated;

interface Entry {
  content: Content;
  headers: Record<string, string>;
}

export interface PathStats {
  bytes: number;
  /** performance.now() when the first and the last body byte of this path were handed to a socket. */
  firstByteAt?: number;
  lastByteAt?: number;
  requests: number;
  gets: number;
  heads: number;
  ranges: number;
  /** The W3C `traceparent` header of each request that carried one. */
  traceparents: string[];
}

export interface OriginStats {
  /** Body bytes written to clients (all paths). */
  bytes: number;
  requests: number;
  unauthorized: number;
  redirects: number;
  byPath: Record<string, PathStats>;
}

export interface OriginOptions {
  /** Listen address (default 127.0.0.1; the netns bench runs an origin inside a namespace on 0.0.0.0). */
  host?: string;
  /** Shared egress limit in bytes/s (all connections together); default unlimited. */
  rate?: number;
  /** Every data request must carry exactly this Authorization header, else 401. */
  requireAuth?: string;
  /** Answer every data request with 307 to `${redirectTo}${path}`. */
  redirectTo?: string;
  /** Bytes per write (and per token-bucket take); default 64 KiB. */
  chunk?: number;
  /**
   * Token-bucket burst in bytes (default max(64 KiB, rate / 50)): how far the origin may catch up
   * after its own process was late to send. With `startEmpty` the bucket starts at 0, so the bytes
   * sent by time t never exceed rate × t.
   */
  burst?: number;
  startEmpty?: boolean;
}

export interface Origin {
  /** "http://127.0.0.1:PORT" */
  base: string;
  port: number;
  /** Registers content at `path`; returns its full URL. */
  add(path: string, content: Content, headers?: Record<string, string>): string;
  url(path: string): string;
  /** "sha256:<hex>" of the content at `path` (registered or /gen/...). */
  sha256(path: string): string;
  size(path: string): number;
  /** The bytes at [start, end) of `path` (for tests comparing slices). */
  slice(path: string, start: number, end: number): Buffer;
  stats(): OriginStats;
  /** Resolves once no response body is being written (a reader that went away has been noticed). */
  idle(): Promise<void>;
  resetStats(): void;
  setRate(bytesPerSec: number): void;
  /** Empties the token bucket: from now on the origin sends at most rate × elapsed time. */
  emptyBucket(): void;
  /** Applies `f` to the next `times` matching data GETs (see the header). */
  fault(f: Fault, times?: number): void;
  /** Faults applied so far. */
  faultsApplied(): number;
  close(): Promise<void>;
}

/** Deterministic bytes [start, end) of the generated content `seed`. */
export function generateBytes(seed: string, start: number, end: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const aligned = Math.floor(start / 16) * 16;
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(aligned / 16), 8);
  const cipher = createCipheriv('aes-128-ctr', key, iv);
  return cipher.update(Buffer.alloc(end - aligned)).subarray(start - aligned);
}

/** Yields the generated content's bytes [start, end) in chunks of `chunk` bytes. */
export function* generateChunks(seed: string, start: number, end: number, chunk = 256 * KiB): Generator<Buffer> {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const aligned = Math.floor(start / 16) * 16;
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(aligned / 16), 8);
  const cipher = createCipheriv('aes-128-ctr', key, iv);
  let skip = start - aligned;
  let pos = aligned;
  const zeros = Buffer.alloc(chunk + 16);
  while (pos < end) {
    const n = Math.min(chunk + skip, end - pos);
    const out = cipher.update(zeros.subarray(0, n));
    pos += n;
    yield skip > 0 ? out.subarray(skip) : out;
    skip = 0;
  }
}

const shaCache = new Map<string, string>();

/** "sha256:<hex>" of generated content, computed by streaming (cached per seed and size). */
export function generatedSha256(g: Generated): string {
  const k = `${g.seed}\0${g.size}`;
  let v = shaCache.get(k);
  if (!v) {
    const h = createHash('sha256');
    for (const c of generateChunks(g.seed, 0, g.size, 4 * MiB)) h.update(c);
    v = `sha256:${h.digest('hex')}`;
    shaCache.set(k, v);
  }
  return v;
}

function sizeOf(c: Content): number {
  return Buffer.isBuffer(c) ? c.length : c.size;
}

/** Parses a single `bytes=` range against `size`; undefined = no/ignored header, null = unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined; // multi-range or malformed: serve the whole body, as many servers do
  const [, a, b] = m;
  if (a === '' && b === '') return undefined;
  let start: number;
  let end: number; // exclusive
  if (a === '') {
    const n = Number(b);
    if (n === 0) return null;
    start = Math.max(0, size - n);
    end = size;
  } else {
    start = Number(a);
    end = b === '' ? size : Math.min(size, Number(b) + 1);
    if (b !== '' && Number(b) < start) return undefined;
  }
  if (start >= size) return null;
  return { start, end };
}

/** Starts the origin on 127.0.0.1:0. */
export async function startOrigin(opts: OriginOptions = {}): Promise<Origin> {
  const entries = new Map<string, Entry>();
  const bucket = new TokenBucket(opts.rate ?? 0, opts.burst, opts.startEmpty ? 0 : undefined);
  const chunkSize = opts.chunk ?? 64 * KiB;
  let stats: OriginStats = { bytes: 0, requests: 0, unauthorized: 0, redirects: 0, byPath: {} };
  const faults: { f: Fault; left: number }[] = [];
  let applied = 0;
  const takeFault = (p: string): Fault | undefined => {
    const i = faults.findIndex((x) => x.left > 0 && (x.f.path === undefined || x.f.path === p));
    if (i < 0) return undefined;
    const x = faults[i]!;
    if (--x.left === 0) faults.splice(i, 1);
    applied++;
    return x.f;
  };

  const lookup = (p: string): Entry | undefined => {
    const e = entries.get(p);
    if (e) return e;
    const m = /^\/gen\/([^/]+)\/(\d+)$/.exec(p);
    if (m) return { content: { seed: decodeURIComponent(m[1]!), size: Number(m[2]) }, headers: {} };
    return undefined;
  };
  // Bodies being written, and who waits for there to be none (idle()).
  let openBodies = 0;
  let idleWaiters: (() => void)[] = [];
  const bodyOpened = (): void => void openBodies++;
  const bodyClosed = (): void => {
    if (--openBodies > 0) return;
    const w = idleWaiters;
    idleWaiters = [];
    for (const f of w) f();
  };
  const pathStats = (p: string): PathStats => (stats.byPath[p] ??= { bytes: 0, requests: 0, gets: 0, heads: 0, ranges: 0, traceparents: [] });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://origin');
    const p = url.pathname;
    if (p === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
      return;
    }
    stats.requests++;
    if (p.startsWith('/redirect/')) {
      stats.redirects++;
      res.writeHead(307, { location: p.slice('/redirect'.length) + url.search, 'content-length': '0' }).end();
      return;
    }
    if (opts.requireAuth !== undefined && req.headers.authorization !== opts.requireAuth) {
      stats.unauthorized++;
      res.writeHead(401, { 'www-authenticate': 'Basic realm="origin"', 'content-length': '0' }).end();
      return;
    }
    if (opts.redirectTo) {
      stats.redirects++;
      res.writeHead(307, { location: `${opts.redirectTo}${p}${url.search}`, 'content-length': '0' }).end();
      return;
    }
    const entry = lookup(p);
    if (!entry) {
      res.writeHead(404, { 'content-length': '0' }).end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-length': '0' }).end();
      return;
    }
    const ps = pathStats(p);
    ps.requests++;
    if (typeof req.headers.traceparent === 'string') ps.traceparents.push(req.headers.traceparent);
    const size = sizeOf(entry.content);
    const base: Record<string, string> = {
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      'last-modified': 'Mon, 02 Jan 2006 15:04:05 GMT',
      etag: Buffer.isBuffer(entry.content) ? `"b${size}"` : `"${entry.content.seed}-${size}"`,
      ...entry.headers,
    };
    const range = parseRange(req.headers.range, size);
    if (range === null) {
      res.writeHead(416, { ...base, 'content-range': `bytes */${size}`, 'content-length': '0' }).end();
      return;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size;
    const headers: Record<string, string> = { ...base, 'content-length': String(end - start) };
    if (range) {
      ps.ranges++;
      headers['content-range'] = `bytes ${start}-${end - 1}/${size}`;
    }
    if (req.method === 'HEAD') {
      ps.heads++;
      res.writeHead(range ? 206 : 200, headers).end();
      return;
    }
    ps.gets++;
    const fault = takeFault(p);
    if (fault?.kind === 'status') {
      res.writeHead(fault.status, { 'content-length': '0' }).end();
      return;
    }
    res.writeHead(range ? 206 : 200, headers);
    bodyOpened();
    res.once('close', bodyClosed);
    let sent = 0;
    let faultAt = fault ? fault.afterBytes : Infinity;
    let closed = false;
    res.once('close', () => (closed = true));
    const chunks: Iterable<Buffer> = Buffer.isBuffer(entry.content)
      ? (function* (buf: Buffer) {
          for (let o = start; o < end; o += chunkSize) yield buf.subarray(o, Math.min(end, o + chunkSize));
        })(entry.content)
      : generateChunks(entry.content.seed, start, end, chunkSize);
    for (let c of chunks) {
      if (fault && sent + c.length > faultAt) {
        const head = c.subarray(0, Math.max(0, faultAt - sent));
        if (head.length > 0) {
          await bucket.take(head.length);
          stats.bytes += head.length;
          ps.bytes += head.length;
          res.write(head);
          sent += head.length;
        }
        c = c.subarray(head.length);
        if (fault.kind === 'reset') {
          res.destroy();
          return;
        }
        if (fault.kind === 'short') {
          res.end();
          return;
        }
        await new Promise((r) => setTimeout(r, fault.ms));
        if (closed) return;
        faultAt = Infinity; // stalled once per request
      }
      sent += c.length;
      await bucket.take(c.length);
      if (closed) return;
      stats.bytes += c.length;
      ps.bytes += c.length;
      ps.firstByteAt ??= performance.now();
      ps.lastByteAt = performance.now();
      if (!res.write(c)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
      if (closed) return;
    }
    res.end();
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, opts.host ?? '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const baseUrl = `http://127.0.0.1:${port}`;

  const need = (p: string): Entry => {
    const e = lookup(p);
    if (!e) throw new Error(`origin: nothing at ${p}`);
    return e;
  };

  return {
    base: baseUrl,
    port,
    add(p, content, headers = {}) {
      entries.set(p, { content, headers });
      return baseUrl + p;
    },
    url: (p) => baseUrl + p,
    sha256(p) {
      const c = need(p).content;
      return Buffer.isBuffer(c) ? `sha256:${createHash('sha256').update(c).digest('hex')}` : generatedSha256(c);
    },
    size: (p) => sizeOf(need(p).content),
    slice(p, s, e) {
      const c = need(p).content;
      return Buffer.isBuffer(c) ? Buffer.from(c.subarray(s, e)) : generateBytes(c.seed, s, e);
    },
    stats: () => structuredClone(stats),
    idle: () => (openBodies === 0 ? Promise.resolve() : new Promise<void>((r) => idleWaiters.push(r))),
    resetStats() {
      stats = { bytes: 0, requests: 0, unauthorized: 0, redirects: 0, byPath: {} };
    },
    setRate: (r) => bucket.setRate(r),
    emptyBucket: () => bucket.empty(),
    fault: (f, times = 1) => faults.push({ f, left: times }),
    faultsApplied: () => applied,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** sha256 of a file on disk as "sha256:<hex>" (streams; for checking downloaded outputs). */
export async function fileSha256(file: string): Promise<string> {
  const { createReadStream } = await import('node:fs');
  const h = createHash('sha256');
  for await (const c of createReadStream(file, { highWaterMark: 1024 * 1024 })) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}
