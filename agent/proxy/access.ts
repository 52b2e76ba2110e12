/**
 * Private images stay private: before a registry blob is served from the P2P swarm (where any peer
 * may hold it, fetched with someone else's credentials), the agent asks the registry whether *this*
 * client may read it — a HEAD of the same blob URL with the client's own credentials. A 2xx or a
 * redirect (what a registry answers an authorised blob request) lets the request go P2P and is
 * remembered for `ttl` per credential, registry and repository; anything else (401 with its
 * challenge, 403, 404 for a digest that is not in that repository) is relayed to the client as the
 * registry's answer and no byte of the blob is sent. An unreachable registry fails closed (502) for
 * a client with no remembered answer.
 *
 * Only registry blob paths (`/v2/<repo>/blobs/<digest>`) are checked: other P2P URLs carry their
 * authorisation in the URL itself (signed object-storage URLs) or are public.
 */
import { createHash } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { request } from 'undici';
import { errorMessage } from '../../adapters/errors.js';
import type { Logger } from '../../adapters/log.js';

/** Headers that carry the client's identity to a registry. */
const CREDENTIALS = ['authorization', 'cookie'];
/** Upper bound of remembered answers (oldest dropped first). */
const MAX_ENTRIES = 10_000;
const BLOB_PATH = /^(.*)\/v2\/(.+)\/blobs\/([a-z0-9]+:[a-f0-9]+)$/;

export type AccessDecision =
  | { allowed: true; cached: boolean }
  | { allowed: false; status: number; headers: Record<string, string | string[]>; body: Buffer };

export interface AccessCheckerOptions {
  ttlMs: number;
  dispatcher?: Dispatcher;
  logger: Logger;
  now?: () => number;
}

export class AccessChecker {
  private readonly allowed = new Map<string, number>();
  constructor(private readonly opts: AccessCheckerOptions) {}

  /** The repository of a registry blob URL, or undefined when `url` is not one. */
  static repository(url: URL): string | undefined {
    const m = BLOB_PATH.exec(url.pathname);
    return m ? `${url.origin}${m[1]}/${m[2]}` : undefined;
  }

  /**
   * Whether the client with `headers` may read the blob at `url`. URLs that are not registry blobs
   * are allowed without a request.
   */
  async check(url: URL, headers: Record<string, string | string[] | undefined>, dispatcher?: Dispatcher): Promise<AccessDecision> {
    const repo = AccessChecker.repository(url);
    if (!repo) return { allowed: true, cached: true };
    const creds: Record<string, string> = {};
    for (const name of CREDENTIALS) {
      const v = headers[name];
      if (typeof v === 'string') creds[name] = v;
      else if (Array.isArray(v)) creds[name] = v.join(', ');
    }
    // The key holds a digest of the credentials, never the credentials themselves.
    const key = createHash('sha256').update(JSON.stringify([repo, url.pathname.slice(url.pathname.lastIndexOf('/') + 1), creds])).digest('base64url');
    const now = (this.opts.now ?? Date.now)();
    const until = this.allowed.get(key);
    if (until !== undefined && until > now) return { allowed: true, cached: true };
    let res;
    try {
      res = await request(url, { method: 'HEAD', headers: { ...creds, accept: '*/*' }, dispatcher: dispatcher ?? this.opts.dispatcher, headersTimeout: 15_000, bodyTimeout: 15_000 });
    } catch (err) {
      this.opts.logger.warn('registry unreachable to confirm access to a blob; refused', { repo, err: errorMessage(err) });
      return { allowed: false, status: 502, headers: { 'content-type': 'text/plain' }, body: Buffer.from('damselfly proxy: the registry could not confirm access to this blob\n') };
    }
    await res.body.dump().catch(() => undefined);
    if ((res.statusCode >= 200 && res.statusCode < 300) || (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location)) {
      if (this.allowed.size >= MAX_ENTRIES) this.allowed.delete(this.allowed.keys().next().value!);
      this.allowed.set(key, now + this.opts.ttlMs);
      return { allowed: true, cached: false };
    }
    const keep: Record<string, string | string[]> = {};
    for (const h of ['www-authenticate', 'content-type', 'docker-distribution-api-version']) {
      const v = res.headers[h];
      if (v !== undefined) keep[h] = v as string | string[];
    }
    // A HEAD answer has no body; the registry's error code is what a client prints.
    const code = res.statusCode === 401 ? 'UNAUTHORIZED' : res.statusCode === 403 ? 'DENIED' : res.statusCode === 404 ? 'BLOB_UNKNOWN' : 'UNKNOWN';
    const body = Buffer.from(JSON.stringify({ errors: [{ code, message: `registry answered ${res.statusCode} for this blob with the client's credentials` }] }));
    keep['content-type'] = 'application/json';
    return { allowed: false, status: res.statusCode, headers: keep, body };
  }
}
