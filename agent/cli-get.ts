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
import { IntegrityError, SourceError, errorMessage } from '../adapters/errors.js';
import { globToRegExp } from './glob.js';
import { checkSourceUrl, schemeOf } from '../adapters/source/sources.js';

const HELP = `usage: damselfly get URL -O FILE [options]
       damselfly get --recursive URL -O DIR [--include GLOB]... [--exclude GLOB]... [options]

Downloads URL through the local agent (P2P), or straight from the origin when no agent answers.
FILE is only replaced once the whole content arrived (and matched --digest).
URL: http(s)://…, s3://BUCKET/KEY, hf://[datasets/|spaces/]OWNER/REPO[@REVISION][/PATH].

options:
  -O, --output FILE              where to write (required; a directory with --recursive)
  -r, --recursive                download every file below URL (an s3:// prefix, an hf:// repository,
                                 an http index page) into DIR, in parallel, each file a task of its own; a rerun skips
                                 files already complete and verified
  --include GLOB                 with -r: only paths matching GLOB (repeatable; * ? [..] **; a glob
                                 without '/' matches the file name at any depth)
  --exclude GLOB                 with -r: leave out paths matching GLOB (repeatable; wins over --include)
  --concurrency N                with -r: files at once (default 5)
  --storage-endpoint URL         s3://: S3-compatible endpoint (default: AWS, or $AWS_ENDPOINT_URL_S3)
  --storage-region REGION        s3://: region (default $AWS_REGION or us-east-1)
  --storage-access-key-id ID     s3://: credentials for this download (default: the agent's AWS chain)
  --storage-access-key-secret S
  --storage-session-token T
  --hf-endpoint URL              hf://: hub or mirror (default $HF_ENDPOINT or https://huggingface.co)
  --hf-token TOKEN               hf://: access token (default the agent's $HF_TOKEN)
  --digest sha256:HEX            check the whole file against this digest
  -H, --header 'Name: value'     request header for the origin (repeatable)
  --tag TAG                      task tag (part of the task ID)
  --application APP              application (part of the task ID)
  --filtered-query-param NAME    query param ignored for the task ID (repeatable)
  --piece-length SIZE            fixed piece length (part of the task ID), e.g. 8MiB
  --content-for-calculating-task-id STRING
                                 task ID = sha256 of STRING instead of the URL-based ID (the same
                                 content under changing URLs stays one task)
  --priority N                   0..6 (default 6)
  --disable-back-to-source       never let the agent read the origin (P2P only)
  -e, --endpoint SOCKET          agent socket (default $DAMSELFLY_ENDPOINT, ~/.damselfly/agent.sock,
                                 /var/run/damselfly/damselfly.sock)
  --timeout DURATION             give up after e.g. 30m (default 2h)
  --no-progress                  no progress bar (none is drawn unless stderr is a terminal)
  --help                         this text
`;

export interface GetArgs {
  url: string;
  output: string;
  recursive: boolean;
  include: string[];
  exclude: string[];
  concurrency: number;
  digest?: string;
  headers: Record<string, string>;
  tag?: string;
  application?: string;
  filtered: string[];
  pieceLength?: number;
  contentForTaskId?: string;
  priority?: number;
  disableBackToSource: boolean;
  endpoint?: string;
  timeoutMs: number;
  progress: boolean;
}

export class UsageError extends Error {}

// adapters/config.js pulls in zod and yaml; `get` runs once per download, so it loads them only
// when a size or duration flag needs parsing.
let parsers: typeof import('../adapters/config.js') | undefined;
async function loadParsers(): Promise<typeof import('../adapters/config.js')> {
  parsers ??= await import('../adapters/config.js');
  return parsers;
}

/** Parses argv; throws UsageError with a one-line reason. */
export async function parseGetArgs(argv: string[]): Promise<GetArgs | 'help'> {
  const a: Partial<GetArgs> & { headers: Record<string, string>; filtered: string[]; include: string[]; exclude: string[] } = { headers: {}, filtered: [], include: [], exclude: [], recursive: false, concurrency: 5, disableBackToSource: false, timeoutMs: 2 * 3_600_000, progress: true };
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let inline: string | undefined;
    if (arg.startsWith('--') && arg.includes('=')) {
      inline = arg.slice(arg.indexOf('=') + 1);
      arg = arg.slice(0, arg.indexOf('='));
    }
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case '--help':
      case '-h':
        return 'help';
      case '-O':
      case '--output':
        a.output = value();
        break;
      case '--digest': {
        const d = value();
        if (!/^sha256:[0-9a-fA-F]{64}$/.test(d)) throw new UsageError(`--digest must be sha256:<64 hex digits>`);
        a.digest = d.toLowerCase();
        break;
      }
      case '-H':
      case '--header': {
        const h = value();
        const c = h.indexOf(':');
        if (c <= 0) throw new UsageError(`--header must look like 'Name: value'`);
        a.headers[h.slice(0, c).trim()] = h.slice(c + 1).trim();
        break;
      }
      case '-r':
      case '--recursive':
        a.recursive = true;
        break;
      case '--include':
      case '--exclude': {
        const g = value();
        try {
          globToRegExp(g);
        } catch (err) {
          throw new UsageError(`${arg} ${errorMessage(err)}`);
        }
        (arg === '--include' ? a.include : a.exclude).push(g);
        break;
      }
      case '--concurrency':
        a.concurrency = Number(value());
        if (!Number.isInteger(a.concurrency) || a.concurrency < 1 || a.concurrency > 64) throw new UsageError('--concurrency must be 1..64');
        break;
      case '--storage-endpoint': {
        const v = value();
        if (!/^https?:\/\/[^/]+/i.test(v)) throw new UsageError(`--storage-endpoint ${v} must be http(s)://HOST[:PORT]`);
        a.headers['x-damselfly-s3-endpoint'] = v;
        break;
      }
      case '--storage-region':
        a.headers['x-damselfly-s3-region'] = value();
        break;
      case '--storage-access-key-id':
        a.headers['x-damselfly-s3-access-key-id'] = value();
        break;
      case '--storage-access-key-secret':
        a.headers['x-damselfly-s3-secret-access-key'] = value();
        break;
      case '--storage-session-token':
        a.headers['x-damselfly-s3-session-token'] = value();
        break;
      case '--hf-endpoint':
      case '--hf-base-url': {
        const v = value();
        if (!/^https?:\/\/[^/]+/i.test(v)) throw new UsageError(`${arg} ${v} must be http(s)://HOST[:PORT]`);
        a.headers['x-damselfly-hf-endpoint'] = v;
        break;
      }
      case '--hf-token':
        a.headers['x-damselfly-hf-token'] = value();
        break;
      case '--tag':
        a.tag = value();
        break;
      case '--application':
        a.application = value();
        break;
      case '--filtered-query-param':
        a.filtered.push(value());
        break;
      case '--content-for-calculating-task-id':
        a.contentForTaskId = value();
        if (!a.contentForTaskId) throw new UsageError('--content-for-calculating-task-id needs a non-empty value');
        break;
      case '--piece-length':
        a.pieceLength = (await loadParsers()).parseSize(value());
        break;
      case '--priority':
        a.priority = Number(value());
        if (!Number.isInteger(a.priority) || a.priority < 0 || a.priority > 6) throw new UsageError('--priority must be 0..6');
        break;
      case '--disable-back-to-source':
        a.disableBackToSource = true;
        break;
      case '-e':
      case '--endpoint':
        a.endpoint = value();
        break;
      case '--timeout':
        a.timeoutMs = (await loadParsers()).parseDuration(value());
        break;
      case '--no-progress':
        a.progress = false;
        break;
      default:
        if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg}`);
        rest.push(arg);
    }
  }
  if (rest.length !== 1) throw new UsageError(rest.length === 0 ? 'a URL is required' : 'exactly one URL is expected');
  try {
    checkSourceUrl(rest[0]);
  } catch (err) {
    throw new UsageError(errorMessage(err).replace(/^url /, 'URL '));
  }
  if (Object.keys(a.headers).some((k) => k.startsWith('x-damselfly-s3-')) && schemeOf(rest[0]) !== 's3') throw new UsageError('--storage-* options are for s3:// URLs only (they would be sent to this origin)');
  if (Object.keys(a.headers).some((k) => k.startsWith('x-damselfly-hf-')) && schemeOf(rest[0]) !== 'hf') throw new UsageError('--hf-* options are for hf:// URLs only (they would be sent to this origin)');
  if (!a.output) throw new UsageError(a.recursive ? '-O DIR is required' : '-O FILE is required');
  if (!a.recursive && (a.include.length > 0 || a.exclude.length > 0)) throw new UsageError('--include and --exclude need --recursive');
  if (a.recursive && a.digest) throw new UsageError('--digest names one file; it cannot be used with --recursive');
  a.url = rest[0];
  return a as GetArgs;
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

function fmt(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)}${units[i]}`;
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
    res = await socketGet(socket, pathAndQuery, signal, headers);
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

export interface FetchHooks {
  /** Bytes of this file done so far (polled, so it may lag). */
  onBytes?(done: number): void;
  /** A warning line (already prefixed); default: to stderr. */
  warn?(line: string): void;
}

export interface FetchResult {
  /** The agent's task ID, when the agent placed the file. */
  taskId?: string;
  via: 'agent' | 'origin';
  bytes: number;
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
      (hooks.warn ?? ((l: string) => process.stderr.write(l + '\n')))(`damselfly get: warning: ${errorMessage(err)}; downloading from the origin directly`);
      result = { via: 'origin', bytes: await writeBody(await direct(args, signal), tmp, args, hooks) };
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
  try {
    args = await parseGetArgs(argv);
  } catch (err) {
    process.stderr.write(`damselfly get: ${errorMessage(err)}\n`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (args.recursive) return (await import('./cli-get-recursive.js')).getRecursive(args, { fetchToFile, resolveEndpoint });
  const output = path.resolve(args.output);
  try {
    await checkOutput(output);
  } catch (err) {
    process.stderr.write(`damselfly get: ${errorMessage(err)}\n`);
    return 2;
  }
  const signal = AbortSignal.timeout(args.timeoutMs);
  try {
    await fetchToFile(args, output, resolveEndpoint(args.endpoint), signal);
    return 0;
  } catch (err) {
    process.stderr.write(`damselfly get: ${signal.aborted ? `timed out after ${args.timeoutMs} ms` : errorMessage(err)}\n`);
    return 1;
  }
}

/** A body that broke off mid-way (agent killed, socket reset): the origin can still deliver. */
function isStreamBreak(err: unknown): boolean {
  const code = (err as { code?: string })?.code ?? '';
  return /^(UND_ERR_SOCKET|ECONNRESET|EPIPE|ERR_STREAM_PREMATURE_CLOSE|UND_ERR_ABORTED)$/.test(code) || /ended after \d+ of/.test(errorMessage(err));
}
