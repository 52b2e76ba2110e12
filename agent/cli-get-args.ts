/**
 * `damselfly get`'s arguments: the help text, the parsed form (GetArgs) and its parser (node:util
 * parseArgs for the lexing; the checks below, in argument order, for the meaning), and the contract
 * of the single-file download that `get --recursive` (cli-get-recursive.ts) runs per file. Shared by
 * cli-get.ts and cli-get-recursive.ts, so neither imports the other.
 */
import { parseArgs } from 'node:util';
import { errorMessage } from '../adapters/errors.js';
import { checkSourceUrl, schemeOf } from '../adapters/source/sources.js';
import { globToRegExp } from './glob.js';

export const HELP = `usage: damselfly get URL -O FILE [options]
       damselfly get --recursive URL -O DIR [--include GLOB]... [--exclude GLOB]... [options]

Downloads URL through the local agent (P2P), or straight from the origin when no agent answers.
FILE is only replaced once the whole content arrived (and matched --digest).
URL: http(s)://…, s3://BUCKET/KEY, hf://[datasets/|spaces/]OWNER/REPO[@REVISION][/PATH],
     modelscope://[datasets/]OWNER/REPO[@REVISION][/PATH].

options:
  -O, --output FILE              where to write (required; a directory with --recursive)
  -r, --recursive                download every file below URL (an s3:// prefix, an hf:// or
                                 modelscope:// repository, an http index page) into DIR, in parallel, each file a task of its own; a rerun skips
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
  --ms-revision REV              modelscope://: branch, tag or commit (default master; same as URL@REV)
  --ms-base-url URL              modelscope://: hub or mirror (default $MODELSCOPE_ENDPOINT or
                                 https://modelscope.cn; also --ms-endpoint)
  --ms-token TOKEN               modelscope://: access token (default the agent's $MODELSCOPE_API_TOKEN)
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
  --json                         print one JSON line with the result on stdout (with trace_id when
                                 tracing is on)
  --help                         this text

environment:
  DAMSELFLY_TRACING_ENDPOINT     OTLP/HTTP endpoint (like tracing.endpoint of the roles): get starts
                                 the trace of the download and sends its traceparent to the agent
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
  /** Print one JSON result line on stdout. */
  json: boolean;
}

export class UsageError extends Error {}

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
  /** Why the origin was read directly (via 'origin'). */
  fallbackReason?: string;
}

/** What a recursive get uses of the single-file get (cli-get.ts passes its own; it loads the recursive module lazily). */
export interface SingleFileGet {
  /** Downloads args.url to `output` through the agent at `socket`, else from the origin (cli-get.ts). */
  fetchToFile(args: GetArgs, output: string, socket: string, signal: AbortSignal, hooks?: FetchHooks): Promise<FetchResult>;
  /** The agent socket for --endpoint (or its defaults). */
  resolveEndpoint(explicit?: string): string;
  /** Runs `fn` in a span of its own when tracing is on (each file of a recursive get). */
  inSpan<T>(name: string, attrs: Record<string, string | number | boolean | undefined>, fn: () => Promise<T>): Promise<T>;
  /** The trace ID of the whole run, when tracing is on. */
  traceId?: string;
}

/** OTLP/HTTP endpoint `get` exports its spans to ($DAMSELFLY_TRACING_ENDPOINT); undefined: tracing off. */
export function tracingEndpoint(env: NodeJS.ProcessEnv): string | undefined {
  const v = env.DAMSELFLY_TRACING_ENDPOINT?.trim();
  if (!v) return undefined;
  if (!/^https?:\/\/[^/]+/i.test(v)) throw new UsageError(`DAMSELFLY_TRACING_ENDPOINT ${v} must be an http(s):// URL`);
  return v;
}

// adapters/config.js pulls in zod and yaml; `get` runs once per download, so it loads them only
// when a size or duration flag needs parsing.
let parsers: typeof import('../adapters/config.js') | undefined;
async function loadParsers(): Promise<typeof import('../adapters/config.js')> {
  parsers ??= await import('../adapters/config.js');
  return parsers;
}

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  output: { type: 'string', short: 'O' },
  digest: { type: 'string' },
  header: { type: 'string', short: 'H', multiple: true },
  recursive: { type: 'boolean', short: 'r' },
  include: { type: 'string', multiple: true },
  exclude: { type: 'string', multiple: true },
  concurrency: { type: 'string' },
  'storage-endpoint': { type: 'string' },
  'storage-region': { type: 'string' },
  'storage-access-key-id': { type: 'string' },
  'storage-access-key-secret': { type: 'string' },
  'storage-session-token': { type: 'string' },
  'hf-endpoint': { type: 'string' },
  'hf-base-url': { type: 'string' },
  'hf-token': { type: 'string' },
  'ms-revision': { type: 'string' },
  'ms-base-url': { type: 'string' },
  'ms-endpoint': { type: 'string' },
  'ms-token': { type: 'string' },
  tag: { type: 'string' },
  application: { type: 'string' },
  'filtered-query-param': { type: 'string', multiple: true },
  'content-for-calculating-task-id': { type: 'string' },
  'piece-length': { type: 'string' },
  priority: { type: 'string' },
  'disable-back-to-source': { type: 'boolean' },
  endpoint: { type: 'string', short: 'e' },
  timeout: { type: 'string' },
  'no-progress': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/** Flags whose value travels to the agent as a per-request source header (adapters/source backends read them). */
const SOURCE_HEADERS = {
  'storage-region': 'x-damselfly-s3-region',
  'storage-access-key-id': 'x-damselfly-s3-access-key-id',
  'storage-access-key-secret': 'x-damselfly-s3-secret-access-key',
  'storage-session-token': 'x-damselfly-s3-session-token',
  'hf-token': 'x-damselfly-hf-token',
  'ms-token': 'x-damselfly-ms-token',
} as const;

/**
 * A checked modelscope:// URL with `revision` written in as `@REV` (dfget's --ms-revision): the
 * revision travels with the URL to the agent and into the task ID. Throws UsageError when the URL
 * already names another one.
 */
function withModelScopeRevision(url: string, revision: string): string {
  const m = /^(modelscope:\/\/(?:(?:models|datasets)\/)?[^/@?#]+\/[^/@?#]+)(?:@([^/?#]+))?(.*)$/i.exec(url)!;
  if (m[2] !== undefined) {
    let written: string;
    try {
      written = decodeURIComponent(m[2]);
    } catch {
      throw new UsageError(`URL ${url} has a malformed percent-escape`);
    }
    if (written !== revision) throw new UsageError(`--ms-revision ${revision} and the URL's @${m[2]} disagree`);
    return url;
  }
  return `${m[1]}@${encodeURIComponent(revision)}${m[3]}`;
}

/** Parses argv; throws UsageError with a one-line reason naming the flag. */
export async function parseGetArgs(argv: string[]): Promise<GetArgs | 'help'> {
  let tokens: NonNullable<ReturnType<typeof parseArgs>['tokens']>;
  try {
    tokens = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: true, tokens: true }).tokens;
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  const a: Partial<GetArgs> & { headers: Record<string, string>; filtered: string[]; include: string[]; exclude: string[] } = { headers: {}, filtered: [], include: [], exclude: [], recursive: false, concurrency: 5, disableBackToSource: false, timeoutMs: 2 * 3_600_000, progress: true, json: false };
  const rest: string[] = [];
  let msRevision: string | undefined;
  // Token by token, in the order given: a later flag overrides an earlier one, and the first bad
  // value is the one reported, as before parseArgs did the lexing.
  for (const t of tokens) {
    if (t.kind === 'positional') {
      rest.push(t.value);
      continue;
    }
    if (t.kind !== 'option') continue;
    const arg = t.rawName;
    const v = t.value ?? '';
    switch (t.name as keyof typeof OPTIONS) {
      case 'help':
        return 'help';
      case 'output':
        a.output = v;
        break;
      case 'digest':
        if (!/^sha256:[0-9a-fA-F]{64}$/.test(v)) throw new UsageError(`--digest must be sha256:<64 hex digits>`);
        a.digest = v.toLowerCase();
        break;
      case 'header': {
        const c = v.indexOf(':');
        if (c <= 0) throw new UsageError(`--header must look like 'Name: value'`);
        a.headers[v.slice(0, c).trim()] = v.slice(c + 1).trim();
        break;
      }
      case 'recursive':
        a.recursive = true;
        break;
      case 'include':
      case 'exclude':
        try {
          globToRegExp(v);
        } catch (err) {
          throw new UsageError(`${arg} ${errorMessage(err)}`);
        }
        (t.name === 'include' ? a.include : a.exclude).push(v);
        break;
      case 'concurrency':
        a.concurrency = Number(v);
        if (!Number.isInteger(a.concurrency) || a.concurrency < 1 || a.concurrency > 64) throw new UsageError('--concurrency must be 1..64');
        break;
      case 'storage-endpoint':
        if (!/^https?:\/\/[^/]+/i.test(v)) throw new UsageError(`--storage-endpoint ${v} must be http(s)://HOST[:PORT]`);
        a.headers['x-damselfly-s3-endpoint'] = v;
        break;
      case 'storage-region':
      case 'storage-access-key-id':
      case 'storage-access-key-secret':
      case 'storage-session-token':
      case 'hf-token':
      case 'ms-token':
        a.headers[SOURCE_HEADERS[t.name as keyof typeof SOURCE_HEADERS]] = v;
        break;
      case 'hf-endpoint':
      case 'hf-base-url':
        if (!/^https?:\/\/[^/]+/i.test(v)) throw new UsageError(`${arg} ${v} must be http(s)://HOST[:PORT]`);
        a.headers['x-damselfly-hf-endpoint'] = v;
        break;
      case 'ms-base-url':
      case 'ms-endpoint':
        if (!/^https?:\/\/[^/]+/i.test(v)) throw new UsageError(`${arg} ${v} must be http(s)://HOST[:PORT]`);
        a.headers['x-damselfly-ms-endpoint'] = v;
        break;
      case 'ms-revision':
        if (!v || /[\s?#]/.test(v)) throw new UsageError(`--ms-revision needs a branch, tag or commit`);
        msRevision = v;
        break;
      case 'tag':
        a.tag = v;
        break;
      case 'application':
        a.application = v;
        break;
      case 'filtered-query-param':
        a.filtered.push(v);
        break;
      case 'content-for-calculating-task-id':
        a.contentForTaskId = v;
        if (!a.contentForTaskId) throw new UsageError('--content-for-calculating-task-id needs a non-empty value');
        break;
      case 'piece-length':
        try {
          a.pieceLength = (await loadParsers()).parseSize(v);
        } catch (err) {
          throw new UsageError(`--piece-length: ${errorMessage(err)}`);
        }
        break;
      case 'priority':
        a.priority = Number(v);
        if (!Number.isInteger(a.priority) || a.priority < 0 || a.priority > 6) throw new UsageError('--priority must be 0..6');
        break;
      case 'disable-back-to-source':
        a.disableBackToSource = true;
        break;
      case 'endpoint':
        a.endpoint = v;
        break;
      case 'timeout':
        try {
          a.timeoutMs = (await loadParsers()).parseDuration(v);
        } catch (err) {
          throw new UsageError(`--timeout: ${errorMessage(err)}`);
        }
        break;
      case 'no-progress':
        a.progress = false;
        break;
      case 'json':
        a.json = true;
        break;
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
  if ((msRevision || Object.keys(a.headers).some((k) => k.startsWith('x-damselfly-ms-'))) && schemeOf(rest[0]) !== 'modelscope') throw new UsageError('--ms-* options are for modelscope:// URLs only (they would be sent to this origin)');
  if (msRevision) rest[0] = withModelScopeRevision(rest[0], msRevision);
  if (!a.output) throw new UsageError(a.recursive ? '-O DIR is required' : '-O FILE is required');
  if (!a.recursive && (a.include.length > 0 || a.exclude.length > 0)) throw new UsageError('--include and --exclude need --recursive');
  if (a.recursive && a.digest) throw new UsageError('--digest names one file; it cannot be used with --recursive');
  a.url = rest[0];
  return a as GetArgs;
}
