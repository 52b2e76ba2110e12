/**
 * The direct path: a request proxied straight to the upstream with undici, streamed both ways,
 * status and headers preserved. Redirects are followed here (for GET/HEAD) so clients never see a
 * signed object-storage URL, and `Authorization` is dropped as soon as a redirect leaves the origin
 * the client meant it for.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { request, type Dispatcher } from 'undici';
import { IntegrityError } from '../../adapters/errors.js';
import { clientResponseHeaders } from './upstream.js';

export const MAX_REDIRECTS = 10;
const REDIRECT = new Set([301, 302, 303, 307, 308]);
/** Headers that carry credentials or session state: never sent to a host other than the one asked. */
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body: Readable;
  /** The URL that finally answered (after redirects). */
  url: URL;
}

/**
 * Sends a request upstream, following up to MAX_REDIRECTS redirects for GET/HEAD and stripping
 * credentials when the origin changes. Throws undici's network errors (connection refused, TLS).
 */
export async function upstreamRequest(
  url: URL,
  init: { method: string; headers: Record<string, string>; body?: Readable; dispatcher?: Dispatcher; signal?: AbortSignal },
): Promise<UpstreamResponse> {
  let current = url;
  let headers = { ...init.headers };
  const follow = init.method === 'GET' || init.method === 'HEAD';
  for (let hop = 0; ; hop++) {
    const res = await request(current, {
      method: init.method as Dispatcher.HttpMethod,
      headers: { ...headers, host: current.host },
      body: hop === 0 ? init.body : undefined,
      dispatcher: init.dispatcher,
      signal: init.signal,
    });
    const location = res.headers.location;
    if (follow && REDIRECT.has(res.statusCode) && typeof location === 'string' && hop < MAX_REDIRECTS) {
      res.body.resume();
      const next = new URL(location, current);
      if (next.origin !== current.origin) {
        headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !CREDENTIAL_HEADERS.includes(k.toLowerCase())));
      }
      current = next;
      continue;
    }
    return { status: res.statusCode, headers: res.headers as Record<string, string | string[]>, body: res.body, url: current };
  }
}

/**
 * Passes bytes through while hashing them and holds back the last chunk until the hash is known:
 * on a mismatch the stream errors before the final byte, so a client reading a Content-Length body
 * sees a truncated transfer rather than a complete wrong blob. Counts bytes too (`onBytes`), so a
 * verified relay needs no second stage for the traffic metric.
 */
export class DigestGuard extends Transform {
  private readonly hash = createHash('sha256');
  private held: Buffer | undefined;
  constructor(
    private readonly expected: string,
    private readonly onBytes?: (n: number) => void,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.onBytes?.(chunk.length);
    const prev = this.held;
    this.held = chunk;
    cb(null, prev);
  }
  override _flush(cb: TransformCallback): void {
    const got = `sha256:${this.hash.digest('hex')}`;
    if (got !== this.expected) {
      cb(new IntegrityError(`blob bytes hash to ${got}, expected ${this.expected}`));
      return;
    }
    cb(null, this.held);
  }
}

/** Counts bytes flowing through, for the traffic metric. */
export function byteCounter(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
}

/**
 * Relays an upstream response to the client unchanged (status, headers incl. Content-Length on
 * HEAD). With `verifyDigest` a full 200 body is checked against the blob digest on the fly.
 * Rejects when the body breaks; by then headers are out, so the caller destroys the socket.
 */
export async function relayResponse(
  req: IncomingMessage,
  res: ServerResponse,
  up: UpstreamResponse,
  opts: { verifyDigest?: string; extraHeaders?: Record<string, string>; onBytes?: (n: number) => void } = {},
): Promise<void> {
  const headers = { ...clientResponseHeaders(up.headers), ...opts.extraHeaders };
  res.writeHead(up.status, headers);
  if (req.method === 'HEAD' || up.status === 204 || up.status === 304) {
    up.body.resume();
    res.end();
    return;
  }
  const stages: (NodeJS.ReadableStream | NodeJS.WritableStream | Transform)[] = [up.body];
  if (opts.verifyDigest && up.status === 200) stages.push(new DigestGuard(opts.verifyDigest, opts.onBytes));
  else if (opts.onBytes) stages.push(byteCounter(opts.onBytes));
  stages.push(res);
  await (pipeline as (...s: unknown[]) => Promise<void>)(...stages);
}
