/**
 * The hf:// backend of the source port, on the Hugging Face Hub's HTTP API:
 *   hf://[datasets/|spaces/]OWNER/REPO[@REVISION][/PATH]      (REVISION: branch, tag or commit; default main)
 * A file is read from `{endpoint}/[datasets/|spaces/]OWNER/REPO/resolve/{revision}/{path}`, following
 * the hub's redirect of LFS files to its CDN (signed URL; the token is not sent there). A listing
 * first resolves the revision to its commit (`/api/{type}/{repo}/revision/{rev}`), then walks
 * `/api/{type}/{repo}/tree/{commit}/{path}?recursive=true` (Link rel="next" pages), so every listed
 * file is pinned to that one commit (`hf://OWNER/REPO@COMMIT/PATH`): a directory download is one snapshot.
 *
 * Settings, per request first, then the environment:
 *   x-damselfly-hf-endpoint   HF_ENDPOINT   (default https://huggingface.co)
 *   x-damselfly-hf-token      HF_TOKEN      (sent as Authorization: Bearer, only to the endpoint's host)
 * Throws as the port says: SourceError with the hub's status (401 without a token for a gated or
 * private repository, 404 for no such repository, revision or file), UnavailableError, InvalidError.
 */
import { InvalidError, SourceError } from '../errors.js';
import { sourceGet } from './client.js';
import { httpSource } from './http.js';
import { checkEndpoint, encPath, header, hubHeaders as commonHubHeaders } from './hub-common.js';
import { safeRelativePath, type ByteRange, type SourceBackend, type SourceEntry, type SourceResponse, type SourceStat } from './port.js';

export const HF_HEADERS = { endpoint: 'x-damselfly-hf-endpoint', token: 'x-damselfly-hf-token' } as const;
export const HF_DEFAULT_ENDPOINT = 'https://huggingface.co';
const MAX_API_BYTES = 64 * 1024 * 1024;
const MAX_PAGES = 10_000;

export type HfRepoType = 'models' | 'datasets' | 'spaces';

export interface HfRef {
  type: HfRepoType;
  /** OWNER/REPO */
  repo: string;
  /** As written; undefined = main. */
  revision?: string;
  /** '/'-separated, decoded, no leading '/'; '' = the repository root. */
  path: string;
}

/** Parses an hf:// URL. Throws InvalidError naming the URL and the expected form. */
export function parseHfUrl(url: string): HfRef {
  const m = /^hf:\/\/(?:(models|datasets|spaces)\/)?([^/@?#]+)\/([^/@?#]+)(?:@([^/?#]+))?(?:\/([^?#]*))?$/i.exec(url);
  if (!m) throw new InvalidError(`url ${url} is not valid: expected hf://[datasets/|spaces/]OWNER/REPO[@REVISION][/PATH]`);
  try {
    const path = decodeURIComponent(m[5] ?? '').replace(/\/+$/, '');
    if (path && !safeRelativePath(path)) throw new InvalidError(`url ${url} has a path with '.', '..' or empty segments`);
    return { type: (m[1]?.toLowerCase() as HfRepoType | undefined) ?? 'models', repo: `${m[2]}/${m[3]}`, revision: m[4] ? decodeURIComponent(m[4]) : undefined, path };
  } catch (err) {
    if (err instanceof InvalidError) throw err;
    throw new InvalidError(`url ${url} has a malformed percent-escape`);
  }
}

/** The hf:// URL of a file (revision and path segments percent-encoded, so parseHfUrl returns them). */
export function hfUrl(ref: HfRef): string {
  const type = ref.type === 'models' ? '' : `${ref.type}/`;
  return `hf://${type}${ref.repo}${ref.revision ? '@' + encodeURIComponent(ref.revision) : ''}${ref.path ? '/' + encPath(ref.path) : ''}`;
}

function endpointOf(h: Record<string, string>): string {
  return checkEndpoint(header(h, HF_HEADERS.endpoint) ?? process.env.HF_ENDPOINT ?? HF_DEFAULT_ENDPOINT, 'Hugging Face');
}

/** The headers sent to the hub: the caller's, less our settings, plus the token as a bearer. */
function hubHeaders(h: Record<string, string>): Record<string, string> {
  return commonHubHeaders(h, 'x-damselfly-hf-', header(h, HF_HEADERS.token) ?? process.env.HF_TOKEN);
}

/** The hub URL a file resolves at. */
export function resolveUrl(ref: HfRef, endpoint: string): string {
  const type = ref.type === 'models' ? '' : `${ref.type}/`;
  return `${endpoint}/${type}${ref.repo}/resolve/${encodeURIComponent(ref.revision ?? 'main')}/${encPath(ref.path)}`;
}

async function getJson(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<{ json: unknown; link?: string }> {
  const res = await sourceGet(url, headers, undefined, signal);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > MAX_API_BYTES) {
      res.body.destroy();
      throw new SourceError(`hub answer from ${new URL(url).pathname} larger than ${MAX_API_BYTES} bytes`, 502);
    }
    parts.push(c as Buffer);
  }
  try {
    return { json: JSON.parse(Buffer.concat(parts).toString('utf8')), link: res.headers.link };
  } catch {
    throw new SourceError(`hub answered ${new URL(url).pathname} with something that is not JSON`, 502);
  }
}

function fileRef(url: string): HfRef {
  const ref = parseHfUrl(url);
  if (!ref.path) throw new InvalidError(`url ${url} names a repository, not a file: expected hf://OWNER/REPO[@REVISION]/PATH (or get --recursive)`);
  return ref;
}

/** Resolves a branch or tag to its commit through the revision API. */
export async function resolveRevision(ref: HfRef, headers: Record<string, string>, signal?: AbortSignal): Promise<string> {
  const ep = endpointOf(headers);
  const { json } = await getJson(`${ep}/api/${ref.type}/${ref.repo}/revision/${encodeURIComponent(ref.revision ?? 'main')}`, hubHeaders(headers), signal);
  const sha = (json as { sha?: unknown }).sha;
  if (typeof sha !== 'string' || !/^[0-9a-f]{40}$/.test(sha)) throw new SourceError(`hub gave no commit for ${ref.repo}@${ref.revision ?? 'main'}`, 502);
  return sha;
}

export const hfSource: SourceBackend = {
  schemes: ['hf'],

  stat(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<SourceStat> {
    return httpSource.stat(resolveUrl(fileRef(url), endpointOf(headers)), hubHeaders(headers), signal);
  },

  read(url: string, headers: Record<string, string>, range?: ByteRange, signal?: AbortSignal): Promise<SourceResponse> {
    return sourceGet(resolveUrl(fileRef(url), endpointOf(headers)), hubHeaders(headers), range, signal);
  },

  async list(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<SourceEntry[]> {
    const ref = parseHfUrl(url);
    const ep = endpointOf(headers);
    const sha = await resolveRevision(ref, headers, signal);
    const prefix = ref.path ? ref.path + '/' : '';
    let next: string | undefined = `${ep}/api/${ref.type}/${ref.repo}/tree/${sha}${ref.path ? '/' + encPath(ref.path) : ''}?recursive=true`;
    const out: SourceEntry[] = [];
    for (let page = 0; next; page++) {
      if (page >= MAX_PAGES) throw new SourceError(`hub listing of ${url} has more than ${MAX_PAGES} pages`, 502);
      const { json, link } = await getJson(next, hubHeaders(headers), signal);
      if (!Array.isArray(json)) throw new SourceError(`hub tree of ${url} is not a list`, 502);
      for (const e of json as { type?: string; path?: string; size?: number; lfs?: { size?: number } }[]) {
        if (e.type !== 'file' || typeof e.path !== 'string' || !e.path.startsWith(prefix)) continue;
        const rel = e.path.slice(prefix.length);
        if (!safeRelativePath(rel)) continue;
        out.push({ url: hfUrl({ ...ref, revision: sha, path: e.path }), path: rel, size: e.lfs?.size ?? e.size ?? -1 });
      }
      const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      next = m ? new URL(m[1]!, ep).href : undefined;
    }
    if (out.length === 0) throw new SourceError(`nothing below ${url}`, 404);
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  },
};
