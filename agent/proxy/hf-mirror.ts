/**
 * Hugging Face Hub mirror mode on the proxy port (`proxy.hfMirror`): a Hub client started with
 * `HF_ENDPOINT=http://127.0.0.1:4001` talks to the agent as it would to huggingface.co.
 *   /api/...                                  passed to the hub with the client's Authorization; Link
 *                                             and Location headers naming the hub are rewritten to the
 *                                             agent, so paging goes on through it
 *   HEAD /[datasets/|spaces/]O/R/resolve/REV/P the hub's metadata (X-Repo-Commit, ETag, X-Linked-Etag,
 *                                             X-Linked-Size); an LFS file's redirect to the CDN becomes
 *                                             a 200 with its size, so the client GETs it from the agent
 *   GET  …/resolve/REV/P (ranges too)         REV resolved to the commit the hub names, the file served
 *                                             as the P2P task of hf://O/R@COMMIT/P (serveP2P, the
 *                                             registry mirror's path): the task `damselfly get` makes
 * Every resolve asks the hub first (HEAD, the client's token), so a private file the agent holds is
 * never handed to a client the hub would refuse; the hub's error (401, 404 + X-Error-Code) is relayed.
 * Xet headers are dropped: the client downloads over plain HTTP, through the agent. The token is used
 * for the hub only (the source layer drops it on the CDN redirect), never logged, not in the task ID.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request, type Dispatcher } from 'undici';
import { HF_HEADERS, hfUrl, type HfRef, type HfRepoType } from '../../adapters/source/hf.js';
import { errorCode, errorMessage } from '../../adapters/errors.js';
import type { Logger } from '../../adapters/log.js';
import type { ProxyConfig } from '../proxy-config.js';
import type { ProxyMetrics } from './metrics.js';
import { serveP2P, type ProxyTaskManager } from './p2p.js';
import { relayResponse, upstreamRequest } from './passthrough.js';
import { clientResponseHeaders, DF_HEADER, firstHeader, upstreamRequestHeaders } from './upstream.js';

export interface HfMirrorDeps {
  config: ProxyConfig;
  taskManager: ProxyTaskManager;
  dispatcher: Dispatcher;
  logger: Logger;
  metrics: ProxyMetrics;
}

/** A resolve URL's parts: the file, and the revision as the client wrote it. */
export interface HfResolve extends HfRef {
  revision: string;
}

/** Metadata headers of a resolve answer a Hub client reads; passed on with the file. */
const FILE_HEADERS = ['x-repo-commit', 'etag', 'x-linked-etag', 'x-linked-size', 'content-disposition', 'x-request-id'];
const REDIRECT = new Set([301, 302, 303, 307, 308]);
/** Same-origin redirects (a renamed repository) followed when asking the hub about a file. */
const MAX_HUB_HOPS = 5;

/** True for a path the mirror answers: `/api/...` or a resolve URL. */
export function isHfMirrorPath(pathname: string): boolean {
  return pathname.startsWith('/api/') || parseResolvePath(pathname) !== undefined;
}

/**
 * `/[datasets/|spaces/]OWNER/REPO/resolve/REV/PATH` → its parts (segments percent-decoded), or
 * undefined when the path is no resolve URL or holds '.', '..' or empty segments.
 */
export function parseResolvePath(pathname: string): HfResolve | undefined {
  let seg: string[];
  try {
    seg = pathname.split('/').slice(1).map((s) => decodeURIComponent(s));
  } catch {
    return undefined;
  }
  let type: HfRepoType = 'models';
  if (seg[0] === 'datasets' || seg[0] === 'spaces') {
    type = seg[0];
    seg = seg.slice(1);
  }
  if (seg.length < 5 || seg[2] !== 'resolve') return undefined;
  const [owner, name, , revision, ...rest] = seg;
  const bad = (s: string) => s === '' || s === '.' || s === '..' || s.includes('/') || s.includes('\\') || s.includes('\0');
  if (!owner || !name || !revision || [owner, name, ...rest].some(bad)) return undefined;
  return { type, repo: `${owner}/${name}`, revision, path: rest.join('/') };
}

/** The hub's base URL, without a trailing '/'. */
function upstreamBase(config: ProxyConfig): string {
  return config.hfMirror.endpoint.replace(/\/+$/, '');
}

/** The agent's own base URL as this client addressed it. */
function agentBase(req: IncomingMessage): string {
  const host = firstHeader(req.headers.host) ?? `127.0.0.1:${req.socket.localPort ?? 4001}`;
  return `http://${host}`;
}

/** Replaces the hub's origin with the agent's in a header value (Link, Location). */
function rewriteOrigin(value: string | string[] | undefined, from: string, to: string): string | undefined {
  const v = Array.isArray(value) ? value.join(', ') : value;
  return v === undefined ? undefined : v.split(from).join(to);
}

/** The client's credentials for the hub: Authorization only. */
function authOf(req: IncomingMessage): Record<string, string> {
  const a = firstHeader(req.headers.authorization);
  return a ? { authorization: a } : {};
}

/** Resolve answers lose the Xet headers, so the client reads the bytes over HTTP from us. */
function withoutXet(headers: Record<string, string | string[]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) if (!k.startsWith('x-xet-') && k !== 'link') out[k] = v;
  return out;
}

interface HubHead {
  status: number;
  headers: Record<string, string | string[]>;
  /** The hub redirected the file to another host (an LFS file on its CDN). */
  offsite: boolean;
}

/**
 * HEAD of a resolve URL at the hub, following same-origin redirects only. Throws undici's network
 * errors when the hub cannot be reached.
 */
async function hubHead(url: URL, headers: Record<string, string>, deps: HfMirrorDeps, signal: AbortSignal): Promise<HubHead> {
  let current = url;
  for (let hop = 0; ; hop++) {
    const res = await request(current, { method: 'HEAD', headers: { ...headers, 'accept-encoding': 'identity' }, dispatcher: deps.dispatcher, signal });
    res.body.resume();
    const h = res.headers as Record<string, string | string[]>;
    const location = firstHeader(h.location);
    if (REDIRECT.has(res.statusCode) && location) {
      const next = new URL(location, current);
      if (next.origin !== current.origin) return { status: res.statusCode, headers: h, offsite: true };
      if (hop < MAX_HUB_HOPS) {
        current = next;
        continue;
      }
    }
    return { status: res.statusCode, headers: h, offsite: false };
  }
}

/**
 * Answers one mirror request. Never rejects for upstream trouble: an unreachable hub is a 502, a
 * broken body a destroyed socket (logged here).
 */
export async function serveHfMirror(req: IncomingMessage, res: ServerResponse, deps: HfMirrorDeps): Promise<void> {
  const log = deps.logger;
  const url = new URL(req.url ?? '/', 'http://agent');
  const base = upstreamBase(deps.config);
  const abort = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  const ref = parseResolvePath(url.pathname);
  try {
    if (ref && (req.method === 'GET' || req.method === 'HEAD')) await resolve(req, res, ref, new URL(url.pathname + url.search, base), deps, abort.signal);
    else await passThrough(req, res, new URL(url.pathname + url.search, base), deps, abort.signal);
  } catch (error) {
    deps.metrics.requests.inc({ route: 'direct', result: 'error' });
    deps.metrics.failures.inc({ route: 'direct' });
    log.warn('hf mirror: hub request failed', { method: req.method, path: url.pathname, code: errorCode(error), error: errorMessage(error) });
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain', [DF_HEADER.errorType]: 'proxy' }).end('damselfly hf mirror: hub unreachable\n');
    else res.destroy();
  }
}

/** `/api/...` and anything else that is not a file: the hub answers, its hub URLs made ours. */
async function passThrough(req: IncomingMessage, res: ServerResponse, target: URL, deps: HfMirrorDeps, signal: AbortSignal): Promise<void> {
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  const up = await upstreamRequest(target, { method: req.method ?? 'GET', headers: upstreamRequestHeaders(req.headers), body: hasBody ? req : undefined, dispatcher: deps.dispatcher, signal });
  const extra: Record<string, string> = {};
  const from = new URL(target).origin;
  const to = agentBase(req);
  for (const name of ['link', 'location', 'content-location']) {
    const v = rewriteOrigin(up.headers[name], from, to);
    if (v !== undefined) extra[name] = v;
  }
  await relayResponse(req, res, up, { extraHeaders: extra, onBytes: (n) => deps.metrics.bytes.inc({ source: 'direct' }, n) });
  deps.metrics.requests.inc({ route: 'direct', result: 'ok' });
}

async function resolve(req: IncomingMessage, res: ServerResponse, ref: HfResolve, target: URL, deps: HfMirrorDeps, signal: AbortSignal): Promise<void> {
  const log = deps.logger;
  const auth = authOf(req);
  const head = await hubHead(target, { ...auth, ...pick(req.headers, ['user-agent']) }, deps, signal);
  const meta = pick(head.headers, FILE_HEADERS);
  if (head.status >= 400 || (!head.offsite && REDIRECT.has(head.status))) {
    // The hub's refusal (or a redirect loop) as the hub sent it; a GET gets the hub's error body too.
    deps.metrics.requests.inc({ route: 'direct', result: 'source_error' });
    log.info('hf mirror: hub refused a file', { path: target.pathname, status: head.status, errorCode: firstHeader(head.headers['x-error-code']) });
    if (req.method === 'HEAD') res.writeHead(head.status, withoutXet(clientResponseHeaders(head.headers))).end();
    else await relayResponse(req, res, await noFollowGet(target, auth, deps, signal));
    return;
  }
  if (req.method === 'HEAD') {
    const headers = withoutXet(clientResponseHeaders(head.headers, head.offsite ? ['location', 'content-length', 'content-type'] : []));
    if (head.offsite) {
      // What the client would learn from the CDN: the file's size; it fetches the bytes from us.
      const size = meta['x-linked-size'];
      if (size) headers['content-length'] = size;
      headers['content-type'] = 'application/octet-stream';
      headers['accept-ranges'] = 'bytes';
    }
    res.writeHead(head.offsite ? 200 : head.status, headers).end();
    deps.metrics.requests.inc({ route: 'direct', result: 'ok' });
    return;
  }
  const commit = meta['x-repo-commit'];
  if (!commit || !/^[0-9a-f]{40}$/.test(commit)) {
    log.info('hf mirror: the hub names no commit for a file, fetching it directly', { path: target.pathname });
    await direct(req, res, target, deps, signal);
    return;
  }
  const taskUrl = hfUrl({ type: ref.type, repo: ref.repo, revision: commit, path: ref.path });
  deps.metrics.viaDfdaemon.inc();
  const r = await serveP2P(req, res, target, {
    config: deps.config,
    taskManager: deps.taskManager,
    onBytes: (n) => deps.metrics.bytes.inc({ source: 'p2p' }, n),
    task: { url: taskUrl, requestHeaders: { [HF_HEADERS.endpoint]: upstreamBase(deps.config), ...auth }, responseHeaders: meta, wholeFirst: deps.config.hfMirror.prefetch },
  });
  if (r.outcome === 'served') {
    deps.metrics.requests.inc({ route: 'p2p', result: 'ok' });
    log.debug('hf mirror: file served', { task: r.taskId, bytes: r.bytes, fromCache: r.fromCache === true });
    return;
  }
  if (r.outcome === 'source_error') {
    deps.metrics.requests.inc({ route: 'p2p', result: 'source_error' });
    return;
  }
  if (r.outcome === 'broken') {
    deps.metrics.requests.inc({ route: 'p2p', result: 'error' });
    deps.metrics.failures.inc({ route: 'p2p' });
    log.warn('hf mirror: p2p body failed after headers were sent', { path: target.pathname, error: errorMessage(r.error) });
    return;
  }
  deps.metrics.fallbacks.inc({ reason: r.reason });
  if (r.error !== undefined) log.info('hf mirror: p2p unavailable, fetching directly', { path: target.pathname, reason: r.reason, code: errorCode(r.error), error: errorMessage(r.error) });
  await direct(req, res, target, deps, signal);
}

/** The file straight from the hub (the CDN redirect followed, the token not sent there). */
async function direct(req: IncomingMessage, res: ServerResponse, target: URL, deps: HfMirrorDeps, signal: AbortSignal): Promise<void> {
  const up = await upstreamRequest(target, { method: req.method ?? 'GET', headers: upstreamRequestHeaders(req.headers, ['accept']), dispatcher: deps.dispatcher, signal });
  up.headers = withoutXet(up.headers);
  try {
    await relayResponse(req, res, up, { onBytes: (n) => deps.metrics.bytes.inc({ source: 'direct' }, n) });
    deps.metrics.requests.inc({ route: 'direct', result: 'fallback' });
  } catch (error) {
    deps.metrics.failures.inc({ route: 'direct' });
    deps.logger.warn('hf mirror: direct body failed', { path: target.pathname, code: errorCode(error), error: errorMessage(error) });
    res.destroy();
  }
}

/** A GET of a resolve URL without following redirects: the hub's own error answer, body included. */
async function noFollowGet(target: URL, auth: Record<string, string>, deps: HfMirrorDeps, signal: AbortSignal) {
  const r = await request(target, { method: 'GET', headers: auth, dispatcher: deps.dispatcher, signal });
  return { status: r.statusCode, headers: withoutXet(r.headers as Record<string, string | string[]>), body: r.body, url: target };
}

function pick(h: Record<string, string | string[] | undefined>, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = firstHeader(h[n]);
    if (v !== undefined) out[n] = v;
  }
  return out;
}
