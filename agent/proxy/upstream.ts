/**
 * Which upstream a mirror-mode request goes to, and the header hygiene shared by the direct and P2P
 * paths. Order (Dragonfly dfdaemon `make_registry_mirror_request`): `X-Dragonfly-Registry` header,
 * then the `ns` query parameter containerd adds, then `proxy.registryMirror.addr`.
 */
import type { ProxyConfig } from '../proxy-config.js';
import { InvalidError } from '../../adapters/errors.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus those a proxy must recompute; never forwarded. */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host',
]);

/** W3C trace context: a client's is never sent on by the P2P path (one origin read serves many clients). */
export const TRACE_CONTEXT = ['traceparent', 'tracestate'];

export const DF_HEADER = {
  registry: 'x-dragonfly-registry',
  useP2P: 'x-dragonfly-use-p2p',
  tag: 'x-dragonfly-tag',
  application: 'x-dragonfly-application',
  priority: 'x-dragonfly-priority',
  filteredQueryParams: 'x-dragonfly-filtered-query-params',
  prefetch: 'x-dragonfly-prefetch',
  pieceLength: 'x-dragonfly-piece-length',
  contentForTaskId: 'x-dragonfly-content-for-calculating-task-id',
  blobDigestTaskId: 'x-dragonfly-enable-task-id-based-blob-digest',
  taskId: 'x-dragonfly-task-id',
  errorType: 'x-dragonfly-error-type',
} as const;

const LOOPBACK_HOST = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?$/i;

/**
 * Normalises a registry given as `host[:port]` or a URL into an origin URL. Without a scheme a
 * loopback host gets http (what containerd does for local registries), anything else https;
 * `docker.io` becomes the API host `registry-1.docker.io`. Throws InvalidError on garbage.
 */
export function registryOrigin(value: string): URL {
  const v = value.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `${LOOPBACK_HOST.test(v) ? 'http' : 'https'}://${v}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new InvalidError(`not a registry address: ${JSON.stringify(value)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidError(`registry must be http(s): ${JSON.stringify(value)}`);
  if (u.hostname === 'docker.io') u.hostname = 'registry-1.docker.io';
  return new URL(u.origin);
}

export interface UpstreamTarget {
  /** Absolute URL to request upstream (`ns` removed, other query kept). */
  url: URL;
  /** Where the choice came from, for logs and metrics. */
  via: 'header' | 'path' | 'ns' | 'default';
}

/**
 * Repository-path prefix naming the upstream, for clients that can send neither a header nor `ns`
 * (containers/image mirrors: `location = "127.0.0.1:4001/damselfly-upstream/ghcr.io"`). The host
 * segment writes `:` as `_` (a repository path component cannot hold `:`, a hostname cannot hold
 * `_`): `/v2/damselfly-upstream/127.0.0.1_5000/test/app/manifests/v1`. A Damselfly extension.
 */
export const UPSTREAM_PATH_PREFIX = 'damselfly-upstream';
const UPSTREAM_PATH_RE = new RegExp(`^/v2/${UPSTREAM_PATH_PREFIX}/([a-z0-9.-]+(?:_[0-9]+)?)(/.*)$`);

/** The repository-path form of a registry namespace (host[:port]) for UPSTREAM_PATH_PREFIX. */
export function upstreamPathSegment(namespace: string): string {
  return `${UPSTREAM_PATH_PREFIX}/${namespace.toLowerCase().replace(':', '_')}`;
}

/**
 * Resolves an origin-form mirror request (`/v2/...?ns=...`) to its upstream URL. Rules with
 * `useTLS`/`redirect` whose regex matches the path rewrite scheme/authority. Throws InvalidError
 * when the header or ns is not a usable registry address.
 */
export function chooseUpstream(pathAndQuery: string, headers: Record<string, string | string[] | undefined>, config: ProxyConfig): UpstreamTarget {
  const incoming = new URL(pathAndQuery, 'http://placeholder');
  const header = firstHeader(headers[DF_HEADER.registry]);
  const ns = incoming.searchParams.get('ns');
  let origin: URL;
  let via: UpstreamTarget['via'];
  const inPath = UPSTREAM_PATH_RE.exec(incoming.pathname);
  if (inPath) {
    incoming.pathname = `/v2${inPath[2]}`;
    origin = registryOrigin(inPath[1]!.replace('_', ':'));
    via = 'path';
  } else if (header) {
    origin = registryOrigin(header);
    via = 'header';
  } else if (ns) {
    origin = registryOrigin(ns);
    via = 'ns';
  } else {
    origin = registryOrigin(config.registryMirror.addr);
    via = 'default';
  }
  incoming.searchParams.delete('ns');
  const url = new URL(incoming.pathname + incoming.search, origin);
  applyRuleRewrite(url, config);
  return { url, via };
}

/** Applies the first matching rule's `useTLS` / `redirect` to an upstream URL in place. */
export function applyRuleRewrite(url: URL, config: ProxyConfig): void {
  const rule = matchRule(url.pathname, config);
  if (!rule) return;
  if (rule.useTLS && url.protocol === 'http:') url.protocol = 'https:';
  if (rule.redirect) url.host = rule.redirect;
}

const compiled = new WeakMap<object, RegExp>();
/** The first rule whose regex matches the URL path (query excluded), or undefined. */
export function matchRule(pathOrUrl: string, config: ProxyConfig): ProxyConfig['rules'][number] | undefined {
  for (const rule of config.rules) {
    let re = compiled.get(rule);
    if (!re) {
      re = new RegExp(rule.regex);
      compiled.set(rule, re);
    }
    if (re.test(pathOrUrl)) return rule;
  }
  return undefined;
}

export function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Headers to send upstream: the client's, minus hop-by-hop and the agent's own X-Dragonfly-*
 * control headers (they mean nothing to a registry) and the client's trace context (the caller adds
 * its own span's, see TRACE_CONTEXT). `Authorization` is kept: it is the client's credential for
 * exactly this upstream.
 */
export function upstreamRequestHeaders(headers: Record<string, string | string[] | undefined>, drop: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  const connectionListed = new Set(
    (firstHeader(headers.connection) ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  for (const [k, v] of Object.entries(headers)) {
    const key = k.toLowerCase();
    if (v === undefined || HOP_BY_HOP.has(key) || connectionListed.has(key) || key.startsWith('x-dragonfly-') || TRACE_CONTEXT.includes(key) || drop.includes(key)) continue;
    out[key] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

/** Response headers to relay to the client: origin's minus hop-by-hop (lengths are set by the caller). */
export function clientResponseHeaders(headers: Record<string, string | string[] | undefined>, drop: string[] = []): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    const key = k.toLowerCase();
    if (v === undefined || HOP_BY_HOP.has(key) || drop.includes(key)) continue;
    out[key] = v;
  }
  return out;
}

/** The sha256 digest a blob URL names (`.../blobs/sha256:<hex>`), if any. */
export function blobDigest(pathname: string): string | undefined {
  const m = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(pathname);
  return m?.[1];
}

/** The client's W3C trace headers, to send on where the agent adds no span of its own. */
export function passTraceContext(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of TRACE_CONTEXT) {
    const v = firstHeader(headers[k]);
    if (v !== undefined) out[k] = v;
  }
  return out;
}
