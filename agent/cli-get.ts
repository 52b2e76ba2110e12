/**
 * `damselfly get URL -O FILE`: downloads through the local agent (like dfget). The bytes go to a
 * temporary file beside FILE that is renamed at the end, so on any failure FILE is untouched. When no
 * agent answers (or it breaks off), the file comes straight from the origin: P2P failing never fails
 * a download.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, createReadStream, createWriteStream, existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import http from 'node:http';
import type { Span } from '@opentelemetry/api';
import { IntegrityError, SourceError, errorMessage } from '../adapters/errors.js';
import { formatSize as fmt } from '../adapters/config.js';
import { HELP, parseGetArgs, tracingEndpoint, UsageError, type FetchHooks, type FetchResult, type GetArgs } from './cli-get-args.js';

export { HELP, parseGetArgs, UsageError, type FetchHooks, type FetchResult, type GetArgs } from './cli-get-args.js';

/**
 * adapters/tracing.ts, loaded only when $DAMSELFLY_TRACING_ENDPOINT is set: with tracing off `get`
 * loads neither the OpenTelemetry SDK nor zod, and sends no traceparent.
 */
let tracing: typeof import('../adapters/tracing.js') | undefined;

/** Runs `fn` in a span `name` (below the active one) when tracing is on; else just runs it. */
function spanned<T>(name: string, url: string, attrs: Record<string, string | number | boolean | undefined>, fn: (span: Span | undefined) => Promise<T>): Promise<T> {
  if (!tracing) return fn(undefined);
  return tracing.inSpan(name, { 'url.full': tracing.redactUrl(url), ...attrs }, (s) => fn(s));
}

/** The agent socket to use: --endpoint, $DAMSELFLY_ENDPOINT, then the first of the defaults that exists. */
export function resolveEndpoint(explicit?: string): string {
  if (explicit) return explicit;
  if (process.env.DAMSELFLY_ENDPOINT) return process.env.DAMSELFLY_ENDPOINT;
  const home = path.join(os.homedir(), '.damselfly', 'agent.sock');
  return existsSync(home) ? home : '/var/run/damselfly/damselfly.sock';
}

class Progress extends Transform {
  private done = 0;
  private last = 0;
  private readonly t0 = performance.now();
  constructor(private total: number, private enabled: boolean) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.done += chunk.length;
    const now = performance.now();
    if (this.enabled && now - this.last > 100) {
      this.last = now;
      this.draw(now);
    }
    this.push(chunk);
    cb();
  }
  override _flush(cb: () => void): void {
    if (this.enabled) {
      this.draw(performance.now());
      process.stderr.write('\n');
    }
    cb();
  }
  /** For progress learned out of band (export mode). */
  set(done: number): void {
    this.done = done;
    this.draw(performance.now());
  }
  finish(): void {
    process.stderr.write('\n');
  }
  private draw(now: number): void {
    const secs = Math.max((now - this.t0) / 1000, 1e-3);
    const rate = this.done / secs;
    const pct = this.total > 0 ? this.done / this.total : 0;
    const width = 30;
    const bar = '#'.repeat(Math.round(pct * width)).padEnd(width, ' ');
    const eta = rate > 0 && this.total > 0 ? Math.max(0, (this.total - this.done) / rate) : 0;
    process.stderr.write(`\r[${bar}] ${(pct * 100).toFixed(1).padStart(5)}% ${fmt(this.done)}/${fmt(this.total)} ${fmt(rate)}/s ETA ${eta.toFixed(0)}s `);
  }
}

/** Thrown when the agent could not be used and the origin should be tried directly. */
class AgentUnusable extends Error {}

interface Body {
  length: number;
  body: Readable;
}

function downloadQuery(args: GetArgs): URLSearchParams {
  const q = new URLSearchParams({ url: args.url });
  if (args.tag) q.set('tag', args.tag);
  if (args.application) q.set('application', args.application);
  if (args.digest) q.set('digest', args.digest);
  if (args.pieceLength) q.set('piece_length', String(args.pieceLength));
  if (args.priority !== undefined) q.set('priority', String(args.priority));
  if (args.disableBackToSource) q.set('disable_back_to_source', 'true');
  if (args.contentForTaskId) q.set('content_for_calculating_task_id', args.contentForTaskId);
  for (const f of args.filtered) q.append('filtered_query_param', f);
  return q;
}

function originHeaders(args: GetArgs): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(args.headers)) headers[`x-damselfly-header-${k.toLowerCase()}`] = v;
  return headers;
}

// node:http, not undici, for the agent socket: `get` runs once per download and undici's import
// alone costs ~0.1 s of CPU; undici loads only when the origin must be read directly.
function socketGet(socket: string, pathAndQuery: string, signal: AbortSignal, headers: Record<string, string> = {}): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, path: pathAndQuery, headers, signal }, resolve);
    req.on('error', reject);
    req.end();
  });
}

async function readText(res: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const c of res) text += String(c);
  return text;
}

async function agentRequest(socket: string, pathAndQuery: string, signal: AbortSignal, headers: Record<string, string> = {}): Promise<http.IncomingMessage> {
  let res: http.IncomingMessage;
  try {
    // The active span's traceparent (get's own span), so the agent's spans join this trace.
    res = await socketGet(socket, pathAndQuery, signal, { ...tracing?.traceHeaders(), ...headers });
  } catch (err) {
    if (signal.aborted) throw err;
    throw new AgentUnusable(`no agent at ${socket} (${errorMessage(err)})`);
  }
  if (res.statusCode !== 200) {
    const text = await readText(res).catch(() => '');
    let message = text;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch {
      /* not JSON */
    }
    // The origin's own refusal (its status in x-damselfly-source-status, adapters/http-status.ts),
    // a digest mismatch, a bad request or range are answers; anything else is the agent failing.
    const status = res.statusCode ?? 0;
    if (res.headers['x-damselfly-source-status'] !== undefined || status === 502 || status === 416 || status === 400) throw new Error(message || `agent answered ${status}`);
    throw new AgentUnusable(`agent answered ${status}: ${message}`);
  }
  return res;
}

async function viaAgent(args: GetArgs, socket: string, signal: AbortSignal): Promise<Body> {
  const res = await agentRequest(socket, `/v1/download?${downloadQuery(args)}`, signal, originHeaders(args));
  return { length: Number(res.headers['content-length'] ?? -1), body: res };
}

/** The agent could not place the file itself (e.g. it cannot see this directory): stream instead. */
class ExportUnsupported extends Error {}

/**
 * Asks the agent to put the finished content at `tmp` itself (hard link or copy): no bytes cross the
 * socket. Progress, on a terminal, comes from polling the task's stat.
 */
async function exportViaAgent(args: GetArgs, socket: string, tmp: string, signal: AbortSignal, hooks: FetchHooks): Promise<string> {
  const q = downloadQuery(args);
  q.set('output', tmp);
  const res = await agentRequest(socket, `/v1/download?${q}`, signal, originHeaders(args));
  const total = Number(res.headers['x-damselfly-content-length'] ?? -1);
  const taskId = String(res.headers['x-damselfly-task-id'] ?? '');
  const progress = args.progress && process.stderr.isTTY === true ? new Progress(total, true) : undefined;
  let polling = true;
  const poll = async () => {
    while (polling && (progress || hooks.onBytes) && taskId) {
      try {
        const r = await socketGet(socket, `/v1/tasks/${taskId}`, signal);
        const st = JSON.parse(await readText(r)) as { finishedPieces?: number; pieceCount?: number };
        const done = st.pieceCount ? Math.min(total, Math.round((total * (st.finishedPieces ?? 0)) / st.pieceCount)) : 0;
        progress?.set(done);
        hooks.onBytes?.(done);
      } catch {
        /* progress is best effort */
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  void poll();
  let result: { ok: boolean; code?: string; message?: string; status?: number; contentLength?: number };
  try {
    result = JSON.parse(await readText(res)) as typeof result;
  } catch (err) {
    throw new AgentUnusable(`agent broke off: ${errorMessage(err)}`);
  } finally {
    polling = false;
  }
  if (result.ok) {
    const st = await fs.stat(tmp);
    if (total >= 0 && st.size !== total) throw new AgentUnusable(`agent placed ${st.size} of ${total} bytes`);
    if (progress) {
      progress.set(total);
      progress.finish();
    }
    return taskId;
  }
  if (result.code === 'SOURCE') throw new Error(`origin answered ${result.status ?? 'an error'} for ${args.url}`);
  if (result.code === 'INTEGRITY') throw new IntegrityError(result.message ?? 'digest mismatch');
  if (result.code === 'INTERNAL' || result.code === 'INVALID') throw new ExportUnsupported(result.message ?? 'agent cannot write the output');
  throw new AgentUnusable(`agent failed: ${result.message ?? result.code}`);
}

/**
 * Checks, before anything is downloaded, that `output` can be created: its directory exists and is
 * writable, and it is not itself a directory. Throws UsageError naming the path.
 */
async function checkOutput(output: string): Promise<void> {
  const st = await fs.stat(output).catch(() => undefined);
  if (st?.isDirectory()) throw new UsageError(`-O ${output} is a directory; expected a file path (e.g. ${path.join(output, 'FILE')})`);
  const dir = path.dirname(output);
  const dst = await fs.stat(dir).catch(() => undefined);
  if (!dst) throw new UsageError(`cannot write -O ${output}: directory ${dir} does not exist`);
  if (!dst.isDirectory()) throw new UsageError(`cannot write -O ${output}: ${dir} is not a directory`);
  try {
    await fs.access(dir, fsConstants.W_OK);
  } catch {
    throw new UsageError(`cannot write -O ${output}: directory ${dir} is not writable`);
  }
}

/** "sha256:<hex>" of a file, for checking what the agent placed. */
async function fileDigest(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file, { highWaterMark: 1024 * 1024 })) h.update(c as Buffer);
  return 'sha256:' + h.digest('hex');
}

async function direct(args: GetArgs, signal: AbortSignal): Promise<Body> {
  const { sourceRead } = await import('../adapters/source/sources.js');
  const res = await sourceRead(args.url, args.headers, undefined, signal);
  return { length: res.totalLength, body: res.body };
}

/** Streams `src` into `tmp`, checking length and digest. Throws on short bodies or a digest mismatch. */
async function writeBody(src: Body, tmp: string, args: GetArgs, hooks: FetchHooks = {}): Promise<number> {
  const hash = createHash('sha256');
  let n = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _e, cb) {
      n += chunk.length;
      hooks.onBytes?.(n);
      if (args.digest) hash.update(chunk);
      cb(null, chunk);
    },
  });
  const progress = new Progress(src.length, args.progress && process.stderr.isTTY === true);
  await pipeline(src.body, counter, progress, createWriteStream(tmp));
  if (src.length >= 0 && n !== src.length) throw new Error(`download ended after ${n} of ${src.length} bytes`);
  if (args.digest) {
    const got = 'sha256:' + hash.digest('hex');
    if (got !== args.digest) throw new IntegrityError(`digest mismatch: want ${args.digest}, got ${got}`);
  }
  // The rename must not publish a file whose bytes are still only in the page cache.
  const fh = await fs.open(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  return n;
}

/**
 * Downloads args.url to `output`: through the agent at `socket` (it places the file, or streams
 * it), else straight from the origin. Bytes go to a temporary file beside `output`, renamed at the
 * end; on any failure it is removed and `output` is untouched. Throws the reason.
 */
export async function fetchToFile(args: GetArgs, output: string, socket: string, signal: AbortSignal, hooks: FetchHooks = {}): Promise<FetchResult> {
  const tmp = path.join(path.dirname(output), `.${path.basename(output)}.damselfly-${randomBytes(4).toString('hex')}.tmp`);
  let result: FetchResult;
  try {
    try {
      try {
        const taskId = await exportViaAgent(args, socket, tmp, signal, hooks);
        // The agent checked the digest too; this checks the file that was actually placed.
        if (args.digest) {
          const got = await fileDigest(tmp);
          if (got !== args.digest) throw new IntegrityError(`digest mismatch: want ${args.digest}, got ${got} (placed by the agent)`);
        }
        result = { taskId: taskId || undefined, via: 'agent', bytes: (await fs.stat(tmp)).size };
      } catch (err) {
        if (!(err instanceof ExportUnsupported)) throw err;
        await fs.rm(tmp, { force: true });
        result = { via: 'agent', bytes: await writeBody(await viaAgent(args, socket, signal), tmp, args, hooks) };
      }
    } catch (err) {
      await fs.rm(tmp, { force: true });
      if (signal.aborted || args.disableBackToSource || err instanceof IntegrityError || !(err instanceof AgentUnusable || isStreamBreak(err))) throw err;
      const reason = errorMessage(err);
      (hooks.warn ?? ((l: string) => process.stderr.write(l + '\n')))(`damselfly get: warning: ${reason}; downloading from the origin directly`);
      const bytes = await spanned('cli.get.back_to_source', args.url, { 'damselfly.fallback_reason': reason }, async (span) => {
        const n = await writeBody(await direct(args, signal), tmp, args, hooks);
        span?.setAttribute('damselfly.bytes', n);
        return n;
      });
      result = { via: 'origin', bytes, fallbackReason: reason };
    }
    await fs.rename(tmp, output);
    return result;
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    if (signal.aborted) throw err;
    const fsPath = (err as NodeJS.ErrnoException | undefined)?.path;
    if (err instanceof SourceError) throw new Error(`origin answered ${err.status} for ${args.url}`, { cause: err });
    if (fsPath === tmp) throw new Error(`cannot write -O ${output}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`, { cause: err });
    throw err;
  }
}

export async function main(argv: string[]): Promise<number> {
  let args: GetArgs | 'help';
  let endpoint: string | undefined;
  try {
    args = await parseGetArgs(argv);
    endpoint = tracingEndpoint(process.env);
  } catch (err) {
    process.stderr.write(`damselfly get: ${errorMessage(err)}\n`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  let stopTracing: () => Promise<void> = async () => undefined;
  if (endpoint) {
    tracing = await import('../adapters/tracing.js');
    stopTracing = await tracing.startTracing({ endpoint, sampleRatio: 1 }, 'damselfly-get', { 'host.name': os.hostname() });
  }
  const a = args;
  try {
    // One get is one trace: this root span, the agent's below it (traceparent), and so on.
    return await spanned('cli.get', a.url, { 'damselfly.recursive': a.recursive }, (span) => run(a, span));
  } finally {
    // A collector that does not answer must not hold the download's exit for long.
    await Promise.race([stopTracing(), new Promise((r) => setTimeout(r, 3000).unref())]);
  }
}

async function run(args: GetArgs, span: Span | undefined): Promise<number> {
  const traceId = span?.spanContext().traceId;
  if (args.recursive) {
    const single = { fetchToFile, resolveEndpoint, traceId, inSpan: <T>(name: string, attrs: Record<string, string | number | boolean | undefined>, fn: () => Promise<T>) => spanned(name, String(attrs['url.full'] ?? ''), attrs, fn) };
    const code = await (await import('./cli-get-recursive.js')).getRecursive(args, single);
    span?.setAttribute('damselfly.exit_code', code);
    return code;
  }
  const json = (o: Record<string, unknown>) => {
    if (args.json) process.stdout.write(JSON.stringify({ ...o, ...(traceId ? { trace_id: traceId } : {}) }) + '\n');
  };
  const output = path.resolve(args.output);
  try {
    await checkOutput(output);
  } catch (err) {
    process.stderr.write(`damselfly get: ${errorMessage(err)}\n`);
    json({ ok: false, error: errorMessage(err) });
    return 2;
  }
  const signal = AbortSignal.timeout(args.timeoutMs);
  try {
    const r = await fetchToFile(args, output, resolveEndpoint(args.endpoint), signal);
    span?.setAttributes({ 'damselfly.via': r.via, 'damselfly.bytes': r.bytes, ...(r.taskId ? { 'damselfly.task_id': r.taskId } : {}), ...(r.fallbackReason ? { 'damselfly.fallback_reason': r.fallbackReason } : {}) });
    json({ ok: true, output, via: r.via, bytes: r.bytes, ...(r.taskId ? { task_id: r.taskId } : {}), ...(r.fallbackReason ? { fallback_reason: r.fallbackReason } : {}) });
    return 0;
  } catch (err) {
    const why = signal.aborted ? `timed out after ${args.timeoutMs} ms` : errorMessage(err);
    process.stderr.write(`damselfly get: ${why}\n`);
    json({ ok: false, error: why });
    span?.setStatus({ code: 2 /* SpanStatusCode.ERROR, not imported: the API loads only with tracing on */, message: why });
    return 1;
  }
}

/** A body that broke off mid-way (agent killed, socket reset): the origin can still deliver. */
function isStreamBreak(err: unknown): boolean {
  const code = (err as { code?: string })?.code ?? '';
  return /^(UND_ERR_SOCKET|ECONNRESET|EPIPE|ERR_STREAM_PREMATURE_CLOSE|UND_ERR_ABORTED)$/.test(code) || /ended after \d+ of/.test(errorMessage(err));
}
