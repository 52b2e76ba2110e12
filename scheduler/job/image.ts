/**
 * Resolves an image manifest URL (`<scheme>://<registry>/v2/<repo>/manifests/<ref>`) to the blobs a
 * pull will fetch: the config and every layer of the manifest for one platform. Handles the
 * registry's auth challenge (Bearer token service or Basic), manifest lists / OCI indexes (platform
 * selection, default linux/amd64), and returns the Authorization header peers must send to fetch
 * the blobs. Blob URLs are built exactly as a pull through the mirror names them, so the preheated
 * tasks get the task IDs a later pull computes.
 */
import { fetch } from 'undici';
import { InvalidError, SourceError, UnavailableError, errorMessage } from '../../adapters/errors.js';
import { MANIFEST_URL } from '../protocol/job.js';

export const DEFAULT_PLATFORM = 'linux/amd64';

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');
const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);

export interface ImageBlob {
  url: string;
  digest: string;
  size: number;
}

export interface ResolvedImage {
  blobs: ImageBlob[];
  /** Headers peers send for the blobs (the registry token, or the caller's headers). */
  headers: Record<string, string>;
}

export interface ResolveOptions {
  headers?: Record<string, string>;
  username?: string;
  password?: string;
  platform?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const sp = header.indexOf(' ');
  const scheme = (sp < 0 ? header : header.slice(0, sp)).toLowerCase();
  const params: Record<string, string> = {};
  for (const m of header.slice(sp + 1).matchAll(/([a-zA-Z_]+)="([^"]*)"/g)) params[m[1].toLowerCase()] = m[2];
  return { scheme, params };
}

function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

function hasAuthorization(headers: Record<string, string>): boolean {
  return Object.keys(headers).some((k) => k.toLowerCase() === 'authorization');
}

/** Picks the manifest for `platform` ("os/arch[/variant]") from an index. Throws InvalidError when absent. */
export function selectPlatform(manifests: Descriptor[], platform: string): Descriptor {
  const [os, arch, variant] = platform.split('/');
  const matches = manifests.filter((m) => m.platform?.os === os && m.platform?.architecture === arch && (!variant || m.platform?.variant === variant));
  // Without a requested variant prefer the entry without one (arm64 vs arm64/v8 both exist in the wild).
  const best = matches.find((m) => !m.platform?.variant) ?? matches[0];
  if (!best) {
    const have = manifests.map((m) => [m.platform?.os, m.platform?.architecture, m.platform?.variant].filter(Boolean).join('/')).join(', ');
    throw new InvalidError(`no manifest for platform ${platform} (index has: ${have || 'none'})`);
  }
  return best;
}

/**
 * Resolves the image. Throws InvalidError (bad URL, no such platform, unknown manifest type),
 * SourceError (the registry refused: status and body kept), UnavailableError (unreachable).
 */
export async function resolveImage(manifestUrl: string, opts: ResolveOptions = {}): Promise<ResolvedImage> {
  const m = MANIFEST_URL.exec(manifestUrl);
  if (!m) throw new InvalidError(`not a manifest URL: ${manifestUrl}`);
  const [, scheme, registry, repo] = m;
  const base = `${scheme}://${registry}/v2/${repo}`;
  let headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (!hasAuthorization(headers) && opts.username) headers.Authorization = basic(opts.username, opts.password ?? '');
  const timeoutMs = opts.timeoutMs ?? 60_000;

  const get = async (url: string): Promise<{ status: number; headers: Headers; body: Buffer }> => {
    const signal = opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
    try {
      const res = await fetch(url, { headers: { ...headers, accept: MANIFEST_ACCEPT }, signal, redirect: 'follow' });
      return { status: res.status, headers: res.headers as unknown as Headers, body: Buffer.from(await res.arrayBuffer()) };
    } catch (err) {
      throw new UnavailableError(`registry ${registry} unreachable: ${errorMessage(err)}`, { cause: err });
    }
  };

  const authenticate = async (challenge: string): Promise<boolean> => {
    const { scheme: s, params } = parseChallenge(challenge);
    if (s === 'basic') {
      if (!opts.username || headers.Authorization?.startsWith('Basic ')) return false;
      headers = { ...headers, Authorization: basic(opts.username, opts.password ?? '') };
      return true;
    }
    if (s !== 'bearer' || !params.realm) return false;
    const tokenUrl = new URL(params.realm);
    if (params.service) tokenUrl.searchParams.set('service', params.service);
    tokenUrl.searchParams.set('scope', params.scope ?? `repository:${repo}:pull`);
    const tokenHeaders: Record<string, string> = {};
    if (opts.username) tokenHeaders.Authorization = basic(opts.username, opts.password ?? '');
    let res;
    try {
      res = await fetch(tokenUrl, { headers: tokenHeaders, signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      throw new UnavailableError(`token service ${tokenUrl.host} unreachable: ${errorMessage(err)}`, { cause: err });
    }
    const text = await res.text();
    if (!res.ok) throw new SourceError(`token service answered ${res.status}`, res.status, {}, Buffer.from(text.slice(0, 1024)));
    const body = JSON.parse(text) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new SourceError('token service returned no token', 502);
    headers = { ...Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization')), Authorization: `Bearer ${token}` };
    return true;
  };

  const fetchManifest = async (ref: string): Promise<{ mediaType: string; json: Record<string, unknown> }> => {
    const url = `${base}/manifests/${ref}`;
    let res = await get(url);
    if (res.status === 401) {
      const challenge = res.headers.get('www-authenticate');
      if (challenge && (await authenticate(challenge))) res = await get(url);
    }
    if (res.status !== 200) {
      throw new SourceError(`GET ${url}: registry answered ${res.status}`, res.status, {}, res.body.subarray(0, 1024));
    }
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new InvalidError(`GET ${url}: manifest is not JSON`);
    }
    const mediaType = String(json.mediaType ?? res.headers.get('content-type')?.split(';')[0] ?? '');
    return { mediaType, json };
  };

  let manifest = await fetchManifest(m[4]);
  if (INDEX_TYPES.has(manifest.mediaType) || Array.isArray(manifest.json.manifests)) {
    const chosen = selectPlatform((manifest.json.manifests ?? []) as Descriptor[], opts.platform || DEFAULT_PLATFORM);
    manifest = await fetchManifest(chosen.digest);
  }
  const config = manifest.json.config as Descriptor | undefined;
  const layers = (manifest.json.layers ?? []) as Descriptor[];
  if (!config || !Array.isArray(layers)) throw new InvalidError(`unsupported manifest type ${manifest.mediaType || '(none)'}`);
  const seen = new Set<string>();
  const blobs: ImageBlob[] = [];
  for (const d of [config, ...layers]) {
    if (seen.has(d.digest)) continue;
    seen.add(d.digest);
    blobs.push({ url: `${base}/blobs/${d.digest}`, digest: d.digest, size: d.size });
  }
  return { blobs, headers };
}
