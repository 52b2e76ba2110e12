/**
 * Chooses the source backend for a URL by its scheme. Backends load on first use, so the AWS SDK is
 * only imported by a process that reads s3://. An unknown scheme is an InvalidError naming the
 * URL and the schemes there are; there is no fallback.
 */
import { InvalidError } from '../errors.js';
import { safeRelativePath, type ByteRange, type SourceBackend, type SourceEntry, type SourceResponse, type SourceStat } from './port.js';

const LOADERS: Record<string, () => Promise<SourceBackend>> = {
  http: async () => (await import('./http.js')).httpSource,
  https: async () => (await import('./http.js')).httpSource,
  s3: async () => (await import('./s3.js')).s3Source,
  hf: async () => (await import('./hf.js')).hfSource,
  modelscope: async () => (await import('./modelscope.js')).modelScopeSource,
};

/** Schemes a download URL may have. */
export const SOURCE_SCHEMES = Object.keys(LOADERS);

/** The URL's scheme without ':', lower-case, or '' when it has none. */
export function schemeOf(url: string): string {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url);
  return m ? m[1]!.toLowerCase() : '';
}

/**
 * Checks that a download URL can be read: a known scheme, and for http(s) a parsable URL with a
 * host, for s3:// a bucket, for hf:// and modelscope:// owner/repo. Throws InvalidError naming the URL and what was expected.
 */
export function checkSourceUrl(url: string): void {
  const scheme = schemeOf(url);
  if (!LOADERS[scheme]) throw new InvalidError(`url ${url} has an unsupported scheme: expected one of ${SOURCE_SCHEMES.map((s) => s + '://').join(', ')}`);
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    /* reported below */
  }
  if (scheme === 'http' || scheme === 'https') {
    if (!parsed?.hostname) throw new InvalidError(`url ${url} is not valid: expected http(s)://HOST[:PORT]/PATH with a port of 1-65535`);
  } else if (scheme === 's3') {
    if (!parsed?.hostname) throw new InvalidError(`url ${url} is not valid: expected s3://BUCKET/KEY`);
  } else if (scheme === 'hf') {
    if (!/^hf:\/\/(?:(?:models|datasets|spaces)\/)?[^/@?#]+\/[^/@?#]+(?:@[^/?#]+)?(?:\/[^?#]*)?$/i.test(url)) throw new InvalidError(`url ${url} is not valid: expected hf://[datasets/|spaces/]OWNER/REPO[@REVISION][/PATH]`);
  } else if (scheme === 'modelscope') {
    // The same pattern as modelscope.ts (not imported: it loads on first use).
    const m = /^modelscope:\/\/(?:(?:models|datasets)\/)?[^/@?#]+\/[^/@?#]+(?:@[^/?#]+)?(?:\/([^?#]*))?$/i.exec(url);
    if (!m) throw new InvalidError(`url ${url} is not valid: expected modelscope://[datasets/]OWNER/REPO[@REVISION][/PATH]`);
    let p: string;
    try {
      p = decodeURIComponent(m[1] ?? '').replace(/\/+$/, '');
    } catch {
      throw new InvalidError(`url ${url} has a malformed percent-escape`);
    }
    if (p && !safeRelativePath(p)) throw new InvalidError(`url ${url} is not valid: its path has '.', '..' or empty segments (expected modelscope://[datasets/]OWNER/REPO[@REVISION][/PATH])`);
  }
}

const loaded = new Map<string, Promise<SourceBackend>>();

/** The backend for a URL. Throws InvalidError for an unknown scheme. */
export function sourceFor(url: string): Promise<SourceBackend> {
  const scheme = schemeOf(url);
  const load = LOADERS[scheme];
  if (!load) return Promise.reject(new InvalidError(`url ${url} has an unsupported scheme: expected one of ${SOURCE_SCHEMES.map((s) => s + '://').join(', ')}`));
  let p = loaded.get(scheme);
  if (!p) {
    p = load();
    loaded.set(scheme, p);
  }
  return p;
}

/** Reads a URL (or a range of it) from its origin through the backend of its scheme. */
export async function sourceRead(url: string, headers: Record<string, string> = {}, range?: ByteRange, signal?: AbortSignal): Promise<SourceResponse> {
  return (await sourceFor(url)).read(url, headers, range, signal);
}

export async function sourceStat(url: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<SourceStat> {
  return (await sourceFor(url)).stat(url, headers, signal);
}

export async function sourceList(url: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<SourceEntry[]> {
  return (await sourceFor(url)).list(url, headers, signal);
}
