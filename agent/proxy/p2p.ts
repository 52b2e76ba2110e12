/**
 * The P2P path: a GET matching a proxy rule (or carrying `X-Dragonfly-Use-P2P: true`) becomes a
 * TaskManager download. Until the first body byte is out, any failure lets the caller fall back to
 * a direct upstream fetch within the same request; after it, a failure destroys the socket so the
 * client sees a broken transfer, never a wrong 200.
 */
import { close as fsClose, open as fsOpen, read as fsRead } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { parseSize } from '../../adapters/config.js';
import { IntegrityError, SourceError, UnavailableError } from '../../adapters/errors.js';
import type { ProxyConfig } from '../proxy-config.js';
import { DEFAULT_FILTERED_QUERY_PARAMS } from '../../scheduler/protocol/task-id.js';
import { blobDigest, clientResponseHeaders, DF_HEADER, firstHeader, matchRule, upstreamRequestHeaders } from './upstream.js';

/** The part of the agent's TaskManager (agent/download/manager.ts) the proxy uses. */
export type { DownloadOptions, TaskStream } from '../download/manager.js';
import type { DownloadOptions, TaskStream } from '../download/manager.js';
export interface ProxyTaskManager {
  download(o: DownloadOptions): Promise<TaskStream>;
  prefetch(o: DownloadOptions): void;
  /** A complete cached task's whole content, or undefined (never starts a download). */
  cached?(o: DownloadOptions): Promise<TaskStream | undefined>;
}

/** Multi-range answers from the cache are built in memory: above this many bytes the origin answers. */
export const MULTIRANGE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The ranges of a multi-range header (`bytes=a-b, c-, -n`) resolved against `length`, in request
 * order; undefined when any part is malformed or unsatisfiable (the origin then answers, as it would
 * have). RFC 9110 §14.1.2.
 */
export function parseMultiRange(header: string, length: number): { start: number; end: number }[] | undefined {
  const m = /^\s*bytes\s*=(.*)$/i.exec(header);
  if (!m) return undefined;
  const out: { start: number; end: number }[] = [];
  for (const spec of m[1]!.split(',')) {
    const r = /^\s*(\d*)\s*-\s*(\d*)\s*$/.exec(spec);
    if (!r || (r[1] === '' && r[2] === '')) return undefined;
    let start: number;
    let end: number;
    if (r[1] === '') {
      const n = Number(r[2]);
      if (n === 0) return undefined;
      start = Math.max(0, length - n);
      end = length - 1;
    } else {
      start = Number(r[1]);
      end = r[2] === '' ? length - 1 : Math.min(Number(r[2]), length - 1);
      if (r[2] !== '' && Number(r[2]) < start) return undefined;
    }
    if (!Number.isSafeInteger(start) || start >= length) return undefined;
    out.push({ start, end });
  }
  return out.length > 0 ? out : undefined;
}

/** Dragonfly's default priority for proxy downloads (LEVEL6). */
export const DEFAULT_PRIORITY = 6;

export type ParsedRange =
  | { kind: 'none' }
  | { kind: 'single'; start: number; end?: number }
  /** Suffix (`bytes=-N`), multi-range or a unit we do not serve from pieces: let the origin answer. */
  | { kind: 'passthrough' };

/** Parses a Range header for the P2P path; anything but one `bytes=a-b` / `bytes=a-` is passthrough. */
export function parseRange(header: string | undefined): ParsedRange {
  if (header === undefined || header.trim() === '') return { kind: 'none' };
  const m = /^\s*bytes\s*=\s*(\d+)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return { kind: 'passthrough' };
  const start = Number(m[1]);
  const end = m[2] === '' ? undefined : Number(m[2]);
  if (!Number.isSafeInteger(start) || (end !== undefined && (!Number.isSafeInteger(end) || end < start))) return { kind: 'passthrough' };
  return { kind: 'single', start, end };
}

/** True when this request should go through P2P: GET and (a rule matches or X-Dragonfly-Use-P2P). */
export function wantsP2P(method: string | undefined, url: URL, headers: IncomingMessage['headers'], config: ProxyConfig): boolean {
  if (method !== 'GET') return false;
  if ((firstHeader(headers[DF_HEADER.useP2P]) ?? '').toLowerCase() === 'true') return true;
  return matchRule(url.pathname, config) !== undefined;
}

/** Builds the TaskManager options for a P2P request from its target URL and X-Dragonfly-* headers. */
export function downloadOptions(target: URL, req: IncomingMessage, config: ProxyConfig, range: ParsedRange): DownloadOptions {
  const h = req.headers;
  const filteredHeader = firstHeader(h[DF_HEADER.filteredQueryParams]);
  const rule = matchRule(target.pathname, config);
  const priority = Number.parseInt(firstHeader(h[DF_HEADER.priority]) ?? '', 10);
  const opts: DownloadOptions = {
    url: target.href,
    // No Range (pieces are fetched by the agent) and no Accept-Encoding: a content-encoded origin
    // answer would be cached as the blob's bytes and fail its digest.
    requestHeaders: upstreamRequestHeaders(h, ['range', 'accept-encoding']),
    priority: Number.isInteger(priority) ? priority : DEFAULT_PRIORITY,
    filteredQueryParams: filteredHeader
      ? filteredHeader.split(',').map((s) => s.trim()).filter(Boolean)
      : (rule?.filteredQueryParams ?? DEFAULT_FILTERED_QUERY_PARAMS),
    disableBackToSource: config.disableBackToSource,
  };
  const pieceLength = firstHeader(h[DF_HEADER.pieceLength]);
  if (pieceLength) {
    try {
      opts.pieceLength = parseSize(pieceLength);
    } catch {
      // A malformed hint is ignored: the agent picks the piece length itself.
    }
  }
  const tag = firstHeader(h[DF_HEADER.tag]);
  const application = firstHeader(h[DF_HEADER.application]);
  if (tag) opts.tag = tag;
  if (application) opts.application = application;
  const digest = blobDigest(target.pathname);
  if (digest) opts.digest = digest;
  const content = firstHeader(h[DF_HEADER.contentForTaskId]);
  if (content) opts.contentForCalculatingTaskId = content;
  const byDigest = firstHeader(h[DF_HEADER.blobDigestTaskId]);
  if (byDigest === undefined ? config.registryMirror.enableTaskIDBasedBlobDigest : byDigest.toLowerCase() === 'true') opts.enableTaskIdBasedBlobDigest = true;
  if (range.kind === 'single') opts.range = range.end === undefined ? { start: range.start } : { start: range.start, end: range.end };
  return opts;
}

function taskOptions(target: URL, req: IncomingMessage, deps: P2PDeps, range: ParsedRange): DownloadOptions {
  const opts = downloadOptions(target, req, deps.config, range);
  if (deps.task) {
    opts.url = deps.task.url;
    opts.requestHeaders = { ...deps.task.requestHeaders };
    // Its ID is that of the URL alone, as `damselfly get` of it computes: no digest from a registry path.
    delete opts.digest;
    delete opts.enableTaskIdBasedBlobDigest;
  }
  return opts;
}

/** Resolves with the first chunk (null at end of stream) or rejects with the stream's error. */
function firstChunk(body: Readable): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      body.off('readable', onReadable);
      body.off('end', onEnd);
      body.off('error', onError);
    };
    const onReadable = () => {
      const c = body.read() as Buffer | null;
      if (c === null) return;
      cleanup();
      resolve(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(null);
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    body.on('readable', onReadable);
    body.once('end', onEnd);
    body.once('error', onError);
  });
}

/**
 * `task`: the task to serve instead of `target`'s URL, with exactly these origin request headers
 * (the client's are not sent), and headers added to the answer; the Hugging Face mirror
 * (hf-mirror.ts) serves a resolve URL as the task of its hf:// URL this way.
 */
export interface P2PDeps {
  config: ProxyConfig;
  taskManager: ProxyTaskManager;
  onBytes?: (n: number) => void;
  /** `wholeFirst`: a ranged request starts the whole task in the background first (the task is then a whole one). */
  task?: { url: string; requestHeaders: Record<string, string>; responseHeaders?: Record<string, string>; wholeFirst?: boolean };
}

export type P2PResult =
  /** `fromCache`: a complete task the agent already held (no download ran). */
  | { outcome: 'served'; taskId: string; peerId?: string; fromCache?: boolean; bytes: number }
  | { outcome: 'source_error'; status: number }
  | { outcome: 'fallback'; reason: string; error?: unknown }
  | { outcome: 'broken'; error: unknown };

/**
 * Serves a P2P request. Resolves 'fallback' (nothing written yet) when the caller should fetch
 * directly; 'source_error' after relaying the origin's non-2xx answer unchanged; 'broken' when the
 * body failed after bytes went out (the socket has been destroyed).
 */
export async function serveP2P(req: IncomingMessage, res: ServerResponse, target: URL, deps: P2PDeps): Promise<P2PResult> {
  const rangeHeader = firstHeader(req.headers.range);
  const range = parseRange(rangeHeader);
  if (range.kind === 'passthrough') {
    // Several ranges (podman/CRI-O partial pulls): from a complete cached blob we answer them
    // ourselves; otherwise the origin does (fetching the whole blob would defeat a partial pull).
    const multi = rangeHeader?.includes(',') === true;
    if (multi && deps.taskManager.cached) {
      const served = await serveMultiRange(req, res, target, rangeHeader!, deps);
      if (served) return served;
    }
    return { outcome: 'fallback', reason: multi ? 'multirange' : 'range' };
  }
  const opts = taskOptions(target, req, deps, range);
  if (opts.range && deps.task?.wholeFirst) {
    const { range: _r, ...whole } = opts;
    deps.taskManager.prefetch(whole);
  }
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  res.once('close', onClose);
  opts.signal = abort.signal;
  let stream: TaskStream;
  try {
    stream = await deps.taskManager.download(opts);
  } catch (error) {
    if (error instanceof SourceError) {
      // The origin's own answer (401 + challenge, 404 + error JSON): relay it as the origin sent it.
      res.writeHead(error.status, clientResponseHeaders(error.headers, ['content-length']));
      res.end(req.method === 'HEAD' ? undefined : error.body);
      return { outcome: 'source_error', status: error.status };
    }
    res.off('close', onClose);
    return { outcome: 'fallback', reason: 'download', error };
  }
  if (opts.range && !stream.range) {
    stream.body.destroy();
    res.off('close', onClose);
    return { outcome: 'fallback', reason: 'range' };
  }
  const file = cachedFile(stream);
  if (file) {
    try {
      return await serveFile(req, res, stream, file, opts, deps);
    } finally {
      res.off('close', onClose);
    }
  }
  let first: Buffer | null;
  try {
    first = await firstChunk(stream.body);
  } catch (error) {
    stream.body.destroy();
    res.off('close', onClose);
    return { outcome: 'fallback', reason: 'first-byte', error };
  }
  writeHead(req, res, stream, opts, deps);

  let bytes = 0;
  const body = stream.body;
  // The first chunk was already taken off the stream (to decide on fallback); the body may even
  // have ended meanwhile, so the rest is read through an async iterator, which copes with both.
  async function* rest(): AsyncGenerator<Buffer> {
    if (first === null) return;
    bytes += first.length;
    deps.onBytes?.(first.length);
    yield first;
    for await (const c of body) {
      bytes += (c as Buffer).length;
      deps.onBytes?.((c as Buffer).length);
      yield c as Buffer;
    }
  }
  try {
    await pipeline(rest(), res);
  } catch (error) {
    body.destroy();
    res.destroy(error instanceof Error ? error : new Error(String(error)));
    return { outcome: 'broken', error };
  } finally {
    res.off('close', onClose);
  }
  return { outcome: 'served', taskId: stream.taskId, peerId: stream.peerId, fromCache: stream.fromCache, bytes };
}

/**
 * Answers a multi-range request from a complete cached task: 206 multipart/byteranges, one part per
 * range in request order. Undefined (nothing written) when the task is not cached complete, the
 * ranges do not parse or are too large, or the file cannot be read: the caller falls back.
 */
async function serveMultiRange(
  req: IncomingMessage,
  res: ServerResponse,
  target: URL,
  header: string,
  deps: P2PDeps,
): Promise<P2PResult | undefined> {
  const opts = taskOptions(target, req, deps, { kind: 'none' });
  const stream = await deps.taskManager.cached!(opts);
  if (!stream) return undefined;
  const file = stream.file;
  const ranges = parseMultiRange(header, stream.contentLength);
  const total = (ranges ?? []).reduce((a, r) => a + r.end - r.start + 1, 0);
  if (!file || !ranges || total > MULTIRANGE_MAX_BYTES) {
    if (file) file.done(0);
    else stream.body.destroy();
    return undefined;
  }
  stream.body.on('error', () => undefined);
  let fd: number | undefined;
  const parts: Buffer[] = [];
  const boundary = `damselfly-${Math.random().toString(16).slice(2)}${Date.now().toString(16)}`;
  const type = stream.responseHeaders['content-type'] ?? 'application/octet-stream';
  try {
    fd = await openFile(file.path);
    for (const r of ranges) {
      const buf = Buffer.allocUnsafe(r.end - r.start + 1);
      await readFull(fd, buf, buf.length, r.start);
      parts.push(Buffer.from(`\r\n--${boundary}\r\ncontent-type: ${type}\r\ncontent-range: bytes ${r.start}-${r.end}/${stream.contentLength}\r\n\r\n`, 'latin1'), buf);
    }
    // Proven unchanged before (cached()) and after the reads: the parts hold verified bytes.
    if (!(await file.intact())) throw new Error('cached content changed while it was read');
  } catch {
    file.done(0);
    return undefined;
  } finally {
    if (fd !== undefined) fsClose(fd, () => undefined);
  }
  parts.push(Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1'));
  const body = Buffer.concat(parts);
  const headers = clientResponseHeaders(stream.responseHeaders, ['content-length', 'content-range', 'content-type', 'accept-ranges']);
  headers[DF_HEADER.taskId] = stream.taskId;
  headers['accept-ranges'] = 'bytes';
  headers['content-type'] = `multipart/byteranges; boundary=${boundary}`;
  headers['content-length'] = String(body.length);
  Object.assign(headers, deps.task?.responseHeaders);
  res.writeHead(206, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
  deps.onBytes?.(total);
  file.done(total);
  try {
    await finished(res);
  } catch (error) {
    return { outcome: 'broken', error };
  }
  return { outcome: 'served', taskId: stream.taskId, peerId: stream.peerId, fromCache: true, bytes: total };
}

/** Sends the status and headers for a task's body, and starts the whole-blob prefetch of a ranged request. */
function writeHead(req: IncomingMessage, res: ServerResponse, stream: TaskStream, opts: DownloadOptions, deps: P2PDeps): void {
  const headers = clientResponseHeaders(stream.responseHeaders, ['content-length', 'content-range', 'accept-ranges']);
  Object.assign(headers, deps.task?.responseHeaders);
  headers[DF_HEADER.taskId] = stream.taskId;
  headers['accept-ranges'] = 'bytes';
  if (opts.digest && !headers['docker-content-digest']) headers['docker-content-digest'] = opts.digest;
  let status = 200;
  if (stream.range) {
    status = 206;
    headers['content-range'] = `bytes ${stream.range.start}-${stream.range.end}/${stream.contentLength >= 0 ? stream.contentLength : '*'}`;
    headers['content-length'] = String(stream.range.end - stream.range.start + 1);
  } else if (stream.contentLength >= 0) {
    headers['content-length'] = String(stream.contentLength);
  }
  res.writeHead(status, headers);

  const prefetchHeader = firstHeader(req.headers[DF_HEADER.prefetch]);
  const prefetch = prefetchHeader === undefined ? deps.config.prefetch : prefetchHeader.toLowerCase() === 'true';
  if (opts.range && prefetch) {
    const { range: _r, signal: _s, ...whole } = opts;
    deps.taskManager.prefetch(whole);
  }
}

// ---------------------------------------------------------------------------------------------
// Complete cached tasks: served from the content file with reused buffers.

/** Bytes per read (and per socket write) when serving a cached file. */
export const FILE_CHUNK = 1024 * 1024;
/** Reads/writes in flight per response: the next chunk is read while the previous one is sent. */
const FILE_DEPTH = 2;
/** Idle read buffers kept for the next responses (FILE_CHUNK each). */
const FILE_POOL_MAX = 8;
/** Below this many bytes the task's own stream is used (one or two reads: nothing to gain). */
const FILE_MIN_BYTES = 2 * FILE_CHUNK;
const freeBuffers: Buffer[] = [];

/**
 * A complete task in the agent's cache comes with its content file (`TaskStream.file`; the digest
 * was checked when the task completed, agent/download/manager.ts). Reading that file here into a few
 * reused buffers, instead of through `body`, saves a fresh 1 MiB allocation per chunk: at ~1 GiB/s
 * those allocations (page faults, and a full GC every few dozen MiB of external memory) cost the
 * agent more CPU than the socket writes. Small ranges still go through `body`.
 */
function cachedFile(stream: TaskStream): NonNullable<TaskStream['file']> | undefined {
  const file = stream.file;
  if (!file || file.end + 1 - file.start < FILE_MIN_BYTES) return undefined;
  // `body` is not read on this path (file.done() closes it); if it fails to open the file, that
  // error surfaces as ours when we open the file ourselves.
  stream.body.on('error', () => undefined);
  return file;
}

function openFile(path: string): Promise<number> {
  return new Promise((resolve, reject) => fsOpen(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
}

/** Reads exactly `length` bytes at `position` into `buf`; a file shorter than that is an error. */
function readFull(fd: number, buf: Buffer, length: number, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = () =>
      fsRead(fd, buf, done, length - done, position + done, (err, n) => {
        if (err) return reject(err);
        if (n === 0) return reject(new UnavailableError(`cached content ends before byte ${position + length}`));
        done += n;
        if (done < length) step();
        else resolve();
      });
    step();
  });
}

/** Resolves when `chunk` has been handed to the socket (its buffer may be reused); rejects when the response closed first. */
function send(res: ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onClose = () => reject(new Error('client closed the connection'));
    res.once('close', onClose);
    res.write(chunk, (err) => {
      res.off('close', onClose);
      if (err) reject(err);
      else resolve();
    });
  });
}

async function serveFile(
  req: IncomingMessage,
  res: ServerResponse,
  stream: TaskStream,
  file: NonNullable<TaskStream['file']>,
  opts: DownloadOptions,
  deps: P2PDeps,
): Promise<P2PResult> {
  let fd: number | undefined;
  const bufs: Buffer[] = [];
  const sending: (Promise<void> | undefined)[] = [];
  let bytes = 0;
  try {
    try {
      fd = await openFile(file.path);
      bufs.push(freeBuffers.pop() ?? Buffer.allocUnsafeSlow(FILE_CHUNK));
      await readFull(fd, bufs[0]!, Math.min(FILE_CHUNK, file.end + 1 - file.start), file.start);
    } catch (error) {
      return { outcome: 'fallback', reason: 'first-byte', error };
    }
    writeHead(req, res, stream, opts, deps);
    try {
      for (let i = 0, pos = file.start; pos <= file.end; i++) {
        const slot = i % FILE_DEPTH;
        const n = Math.min(FILE_CHUNK, file.end + 1 - pos);
        if (i > 0) {
          // This slot's previous chunk must be on the socket before its buffer is read into again.
          await sending[slot];
          bufs[slot] ??= freeBuffers.pop() ?? Buffer.allocUnsafeSlow(FILE_CHUNK);
          await readFull(fd, bufs[slot]!, n, pos);
        }
        // The file was proven unchanged when the download was asked for (its seal, see
        // agent/storage/store.ts); the last chunk goes out only if it still is, so a response whose
        // file changed mid-way is aborted, never completed with other bytes.
        if (pos + n > file.end && !(await file.intact())) throw new IntegrityError(`cached content of task ${stream.taskId} changed while it was sent`);
        const p = send(res, bufs[slot]!.subarray(0, n));
        p.catch(() => undefined); // awaited before the slot is reused, or below
        sending[slot] = p;
        pos += n;
        bytes += n;
        deps.onBytes?.(n);
      }
      await Promise.all(sending);
      res.end();
      await finished(res);
    } catch (error) {
      res.destroy(error instanceof Error ? error : new Error(String(error)));
      return { outcome: 'broken', error };
    }
    return { outcome: 'served', taskId: stream.taskId, peerId: stream.peerId, fromCache: stream.fromCache, bytes };
  } finally {
    if (fd !== undefined) fsClose(fd, () => undefined);
    file.done(bytes);
    // Every write settles (sent, or the response closed and the socket let go of it) before its
    // buffer goes back to the pool.
    await Promise.allSettled(sending);
    for (const b of bufs) if (b && freeBuffers.length < FILE_POOL_MAX) freeBuffers.push(b);
  }
}
