/**
 * Back-to-source HTTP client (undici). Redirects are followed here (up to 10) so credentials can be
 * dropped when the host changes; non-2xx answers become SourceError with credential-free headers and
 * a short body, connection failures become UnavailableError. Request headers are never logged.
 */
import { readFileSync } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import tls from 'node:tls';
import { Agent, request, type Dispatcher } from 'undici';
import { ConfigError, SourceError, UnavailableError } from '../errors.js';
import type { SourceResponse } from './port.js';

const MAX_REDIRECTS = 10;
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);
// accept-encoding too: the cache must hold the identity bytes, whatever the first client accepted.
const HOP_HEADERS = new Set(['host', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'proxy-connection', 'content-length', 'range', 'accept-encoding']);
const RESPONSE_SECRET = new Set(['set-cookie', 'authorization', 'proxy-authenticate-info']);
/** Origin response headers kept with a task and handed to whoever reads it. */
export const HEADERS_OF_INTEREST = ['content-type', 'docker-content-digest', 'etag', 'last-modified', 'cache-control', 'content-encoding'];

/**
 * Compiles the HTTP client's parser (undici's llhttp, WebAssembly) now, with one request to a local
 * URL, so a seed peer's first origin read does not wait for it (40-130 ms on a busy 2-core machine).
 * Never throws.
 */
export async function warmSourceClient(localUrl: string): Promise<void> {
  try {
    const res = await request(localUrl, { headersTimeout: 5_000, bodyTimeout: 5_000 });
    await res.body.dump();
  } catch {
    /* warming is best effort */
  }
}

/** TLS settings for connections to origins (`proxy.registryMirror.certs` / `insecureSkipVerify`). */
export interface UpstreamTls {
  /** Trusted CAs (PEM); undefined = Node's default store. */
  ca?: string[];
  rejectUnauthorized: boolean;
  /**
   * Per-host exceptions (`proxy.hijackHTTPS.hosts`): the first rule whose regex matches an origin's
   * hostname decides; `insecure` ones are reached without certificate verification.
   */
  hosts?: HijackRule[];
}

/** A `proxy.hijackHTTPS.hosts` entry, compiled. */
export interface HijackRule {
  re: RegExp;
  insecure: boolean;
}

/** Compiles `proxy.hijackHTTPS.hosts`, in order. */
export function compileHijackRules(hosts: readonly { regx: string; insecure: boolean }[]): HijackRule[] {
  return hosts.map((h) => ({ re: new RegExp(h.regx), insecure: h.insecure }));
}

/** The rule for a hostname (IPv6 brackets ignored): the first whose regex matches, as for CONNECT. */
export function hijackRuleFor(rules: readonly HijackRule[], hostname: string): HijackRule | undefined {
  const host = hostname.replace(/^\[|\]$/g, '');
  return rules.find((r) => r.re.test(host));
}

/**
 * Builds the TLS settings for origins from the mirror configuration: the configured CA bundle is
 * trusted in addition to the system store (and NODE_EXTRA_CA_CERTS, which an explicit `ca` would
 * otherwise replace). Throws ConfigError when a CA file cannot be read.
 */
export function upstreamTls(registryMirror: { certs?: string; insecureSkipVerify: boolean }): UpstreamTls {
  const extra = registryMirror.certs ? readPem(registryMirror.certs, 'proxy.registryMirror.certs') : undefined;
  const env = process.env.NODE_EXTRA_CA_CERTS ? readPem(process.env.NODE_EXTRA_CA_CERTS, 'NODE_EXTRA_CA_CERTS') : undefined;
  return {
    ca: extra ? [...tls.rootCertificates, ...(env ? [env] : []), extra] : undefined,
    rejectUnauthorized: !registryMirror.insecureSkipVerify,
  };
}

/**
 * The back-to-source TLS settings of an agent: `upstreamTls(registryMirror)` plus the per-host
 * `insecure` flags of `proxy.hijackHTTPS.hosts`, so a P2P task for a hijacked self-signed upstream
 * reaches it as the proxy's direct path does. Throws ConfigError like upstreamTls.
 */
export function sourceTls(proxy: {
  registryMirror: { certs?: string; insecureSkipVerify: boolean };
  hijackHTTPS: { hosts: { regx: string; insecure: boolean }[] };
}): UpstreamTls {
  const t = upstreamTls(proxy.registryMirror);
  // Only worth a lookup per request when some host is insecure and the default is not already.
  if (t.rejectUnauthorized && proxy.hijackHTTPS.hosts.some((h) => h.insecure)) {
    t.hosts = compileHijackRules(proxy.hijackHTTPS.hosts);
  }
  return t;
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read ${what} ${file}: ${(e as Error).message}`);
  }
}

function makeDispatcher(t?: UpstreamTls): Dispatcher {
  return new Agent({
    keepAliveTimeout: 30_000,
    connections: 64,
    headersTimeout: 60_000,
    bodyTimeout: 120_000,
    ...(t ? { connect: { ...(t.ca ? { ca: t.ca } : {}), rejectUnauthorized: t.rejectUnauthorized } } : {}),
  });
}

let sharedDispatcher: Dispatcher | undefined;
let insecureDispatcher: Dispatcher | undefined;
let hostRules: UpstreamTls['hosts'];

/** The dispatcher for one request: the shared one, or the unverified one for an insecure host. */
function dispatcher(url: URL): Dispatcher {
  if (hostRules && url.protocol === 'https:') {
    if (hijackRuleFor(hostRules, url.hostname)?.insecure) {
      insecureDispatcher ??= makeDispatcher({ rejectUnauthorized: false });
      return insecureDispatcher;
    }
  }
  sharedDispatcher ??= makeDispatcher();
  return sharedDispatcher;
}

/** Applies origin TLS settings to every later back-to-source request of this process. */
export function configureSourceTls(t: UpstreamTls): void {
  const old = [sharedDispatcher, insecureDispatcher];
  sharedDispatcher = makeDispatcher(t);
  insecureDispatcher = undefined;
  hostRules = t.hosts?.length ? t.hosts : undefined;
  for (const d of old) void d?.close().catch(() => undefined);
}

export type { SourceResponse } from './port.js';

function flatHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !RESPONSE_SECRET.has(k.toLowerCase())) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/** Picks the headers of interest from an origin response. */
export function interestingHeaders(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of HEADERS_OF_INTEREST) if (h[k] !== undefined) out[k] = h[k];
  return out;
}

/**
 * GETs `url` with an optional inclusive byte range. Throws SourceError on non-2xx (incl. 416),
 * UnavailableError when the origin cannot be reached.
 */
export async function sourceGet(url: string, requestHeaders: Record<string, string> = {}, range?: { start: number; end?: number }, signal?: AbortSignal): Promise<SourceResponse> {
  let current = new URL(url);
  const originalHost = current.host;
  let headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(requestHeaders)) if (!HOP_HEADERS.has(k.toLowerCase())) headers[k] = v;
  if (range) headers.range = `bytes=${range.start}-${range.end ?? ''}`;
  for (let hop = 0; ; hop++) {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(current, { method: 'GET', headers, dispatcher: dispatcher(current), signal });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new UnavailableError(`origin ${current.host} unreachable: ${(err as Error).message}`, { cause: err });
    }
    const h = flatHeaders(res.headers);
    if ([301, 302, 303, 307, 308].includes(res.statusCode) && h.location) {
      res.body.resume();
      if (hop >= MAX_REDIRECTS) throw new SourceError(`too many redirects from ${originalHost}`, 508);
      const next = new URL(h.location, current);
      if (next.host !== current.host) {
        // A redirect to another host (e.g. a registry sending blobs to S3) must not carry our credentials.
        headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !CREDENTIAL_HEADERS.has(k.toLowerCase())));
      }
      current = next;
      continue;
    }
    if (res.statusCode < 200 || res.statusCode >= 300) {
      const body = await readLimited(res.body, 64 * 1024);
      throw new SourceError(`origin answered ${res.statusCode} for ${current.host}${current.pathname}`, res.statusCode, h, body);
    }
    let totalLength = -1;
    let offset = 0;
    const cr = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(h['content-range'] ?? '');
    if (res.statusCode === 206 && cr) {
      offset = Number(cr[1]);
      totalLength = cr[3] === '*' ? -1 : Number(cr[3]);
    } else if (res.statusCode === 200 && h['content-length'] !== undefined) {
      totalLength = Number(h['content-length']);
    }
    return { status: res.statusCode, headers: h, totalLength, offset, body: unpausedBody(res.body) };
  }
}

/** Bytes an origin body may run ahead of its reader (one minimum piece) before backpressure reaches undici. */
const ORIGIN_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * undici 7 crashes the process (an uncatchable assert, nodejs/undici#5360) when an origin closes the
 * connection (HTTP/1.0, `Connection: close`) while the response parser is paused by backpressure.
 * So the origin body is read in flowing mode into a buffer of up to ORIGIN_BUFFER_BYTES, and only a
 * reader that far behind pauses undici.
 */
function unpausedBody(body: Readable): Readable {
  const out = new PassThrough({ highWaterMark: ORIGIN_BUFFER_BYTES });
  body.on('data', (chunk: Buffer) => {
    if (!out.write(chunk)) {
      body.pause();
      out.once('drain', () => body.resume());
    }
  });
  body.once('end', () => out.end());
  body.once('error', (err) => out.destroy(err));
  out.once('close', () => {
    if (!body.destroyed && !body.readableEnded) body.destroy();
  });
  return out;
}

async function readLimited(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of body) {
      if (n < limit) chunks.push(c as Buffer);
      n += (c as Buffer).length;
    }
  } catch {
    /* a truncated error body is still an error body */
  }
  return Buffer.concat(chunks).subarray(0, limit);
}
