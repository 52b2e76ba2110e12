/**
 * The modelscope:// backend of the source port, on the ModelScope hub's HTTP API, addressed as
 * Dragonfly's client (dragonfly-client-backend, model_scope.rs) addresses it:
 *   modelscope://[models/|datasets/]OWNER/REPO[@REVISION][/PATH]    (REVISION: branch, tag or commit; default master)
 * Dragonfly's URL has no `@REVISION` (dfget takes `--ms-revision`); `damselfly get --ms-revision R`
 * writes it into the URL, so the revision travels with the URL and is part of the task ID as in
 * Dragonfly. A file is read from `{endpoint}/{models|datasets}/OWNER/REPO/resolve/{revision}/{path}`,
 * following the hub's redirect of large files to its CDN (a signed URL; the token is not sent
 * there, client.ts). A listing resolves the revision to its commit (`/api/v1/{type}/{repo}/revisions`:
 * branches and tags with their CommitId), then reads
 * `/api/v1/{type}/{repo}/repo/files?Revision={commit}&Recursive=true` ({Code, Data:{Files:[{Path,
 * Type: blob|tree, Size}]}}), so every listed file is pinned to that one commit
 * (`modelscope://OWNER/REPO@COMMIT/PATH`): a directory download is one snapshot.
 *
 * Settings, per request first, then the environment:
 *   x-damselfly-ms-endpoint   MODELSCOPE_ENDPOINT (or https://$MODELSCOPE_DOMAIN; default https://modelscope.cn)
 *   x-damselfly-ms-token      MODELSCOPE_API_TOKEN (sent as Authorization: Bearer, only to the endpoint's host)
 * Throws as the port says: SourceError with the hub's status (401 without a token for a private
 * repository, 404 for no such repository, revision or file), UnavailableError, InvalidError.
 */
import { InvalidError, SourceError } from '../errors.js';
import { sourceGet } from './client.js';
import { httpSource } from './http.js';
import { checkEndpoint, encPath, header, hubHeaders as commonHubHeaders } from './hub-common.js';
import { safeRelativePath, type ByteRange, type SourceBackend, type SourceEntry, type SourceResponse, type SourceStat } from './port.js';

export const MS_HEADERS = { endpoint: 'x-damselfly-ms-endpoint', token: 'x-damselfly-ms-token' } as const;
/** Dragonfly's default (MODEL_SCOPE_BASE_URL); the Python SDK's www.modelscope.cn serves the same API. */
export const MS_DEFAULT_ENDPOINT = 'https://modelscope.cn';
export const MS_DEFAULT_REVISION = 'master';
export const MS_URL_FORM = 'modelscope://[datasets/]OWNER/REPO[@REVISION][/PATH]';
const MAX_API_BYTES = 64 * 1024 * 1024;

export type MsRepoType = 'models' | 'datasets';

export interface MsRef {
  type: MsRepoType;
  /** The type as written in the URL ('models/' kept, since Dragonfly hashes the URL as written). */
  typeWritten: boolean;
  /** OWNER/REPO */
  repo: string;
  /** As written; undefined = master. */
  revision?: string;
  /** '/'-separated, decoded, no leading '/'; '' = the repository root. */
  path: string;
}

/** The shape of a modelscope:// URL: (type/)? owner / repo (@rev)? (/path)? */
export const MS_URL_RE = /^modelscope:\/\/(?:(models|datasets)\/)?([^/@?#]+)\/([^/@?#]+)(?:@([^/?#]+))?(?:\/([^?#]*))?$/i;

/** Parses a modelscope:// URL. Throws InvalidError naming the URL and the expected form. */
export function parseModelScopeUrl(url: string): MsRef {
  const m = MS_URL_RE.exec(url);
  if (!m) throw new InvalidError(`url ${url} is not valid: expected ${MS_URL_FORM}`);
  try {
    const path = decodeURIComponent(m[5] ?? '').replace(/\/+$/, '');
    if (path && !safeRelativePath(path)) throw new InvalidError(`url ${url} has a path with '.', '..' or empty segments`);
    const type = (m[1]?.toLowerCase() as MsRepoType | undefined) ?? 'models';
    return { type, typeWritten: m[1] !== undefined, repo: `${m[2]}/${m[3]}`, revision: m[4] ? decodeURIComponent(m[4]) : undefined, path };
  } catch (err) {
    if (err instanceof InvalidError) throw err;
    throw new InvalidError(`url ${url} has a malformed percent-escape`);
  }
}

/** The modelscope:// URL of a ref (revision and path segments percent-encoded, so parseModelScopeUrl returns them). */
export function modelScopeUrl(ref: MsRef): string {
  const type = ref.type === 'datasets' ? 'datasets/' : ref.typeWritten ? 'models/' : '';
  return `modelscope://${type}${ref.repo}${ref.revision ? '@' + encodeURIComponent(ref.revision) : ''}${ref.path ? '/' + encPath(ref.path) : ''}`;
}

function endpointOf(h: Record<string, string>): string {
  const domain = process.env.MODELSCOPE_DOMAIN?.trim();
  return checkEndpoint(header(h, MS_HEADERS.endpoint) ?? (process.env.MODELSCOPE_ENDPOINT || undefined) ?? (domain ? `https://${domain}` : MS_DEFAULT_ENDPOINT), 'ModelScope');
}

/** The headers sent to the hub: the caller's, less our settings, plus the token as a bearer. */
function hubHeaders(h: Record<string, string>): Record<string, string> {
  return commonHubHeaders(h, 'x-damselfly-ms-', header(h, MS_HEADERS.token) ?? process.env.MODELSCOPE_API_TOKEN);
}

/** The hub URL a file resolves at (Dragonfly's build_download_url). */
export function modelScopeResolveUrl(ref: MsRef, endpoint: string): string {
  return `${endpoint}/${ref.type}/${ref.repo}/resolve/${encodeURIComponent(ref.revision ?? MS_DEFAULT_REVISION)}/${encPath(ref.path)}`;
}

/** Reads a hub API answer: HTTP errors as SourceError (sourceGet), then {Code, Data}; a Code other than 200 is an error too. */
async function getApi(url: string, headers: Record<string, string>, what: string, signal?: AbortSignal): Promise<unknown> {
  const res = await sourceGet(url, headers, undefined, signal);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > MAX_API_BYTES) {
      res.body.destroy();
      throw new SourceError(`hub answer for ${what} larger than ${MAX_API_BYTES} bytes`, 502);
    }
    parts.push(c as Buffer);
  }
  let json: { Code?: unknown; Data?: unknown; Message?: unknown };
  try {
    json = JSON.parse(Buffer.concat(parts).toString('utf8')) as typeof json;
  } catch {
    throw new SourceError(`hub answered ${what} with something that is not JSON`, 502);
  }
  if (json?.Code !== 200 && json?.Code !== undefined) {
    // The hub reports some refusals inside a 200; an HTTP-like code keeps its meaning, others are a bad gateway.
    const code = Number(json.Code);
    const status = Number.isInteger(code) && code >= 400 && code < 600 ? code : 502;
    throw new SourceError(`hub refused ${what}: code ${String(json.Code)}${typeof json.Message === 'string' ? ` (${json.Message.slice(0, 200)})` : ''}`, status);
  }
  return json?.Data;
}

function fileRef(url: string): MsRef {
  const ref = parseModelScopeUrl(url);
  if (!ref.path) throw new InvalidError(`url ${url} names a repository, not a file: expected modelscope://OWNER/REPO[@REVISION]/PATH (or get --recursive)`);
  return ref;
}

interface MsRevision {
  Revision?: unknown;
  CommitId?: unknown;
}

/** Resolves a branch or tag to its commit through the revisions API; a commit ID stands for itself. */
export async function resolveModelScopeRevision(ref: MsRef, headers: Record<string, string>, signal?: AbortSignal): Promise<string> {
  const rev = ref.revision ?? MS_DEFAULT_REVISION;
  if (/^[0-9a-f]{40}$/.test(rev)) return rev;
  const data = (await getApi(`${endpointOf(headers)}/api/v1/${ref.type}/${ref.repo}/revisions`, hubHeaders(headers), `the revisions of ${ref.repo}`, signal)) as { RevisionMap?: { Branches?: MsRevision[] | null; Tags?: MsRevision[] | null } } | undefined;
  const map = data?.RevisionMap;
  const all = [...(map?.Branches ?? []), ...(map?.Tags ?? [])];
  const hit = all.find((r) => r.Revision === rev);
  if (!hit) throw new SourceError(`ModelScope repository ${ref.repo} has no branch or tag ${rev}`, 404);
  if (typeof hit.CommitId !== 'string' || !/^[0-9a-f]{40}$/.test(hit.CommitId)) throw new SourceError(`hub gave no commit for ${ref.repo}@${rev}`, 502);
  return hit.CommitId;
}

/** The hub's refusal of a file, re-thrown naming the modelscope:// URL the user wrote (status, headers and body kept). */
function namingUrl(url: string): (err: unknown) => never {
  return (err: unknown) => {
    if (err instanceof SourceError) throw new SourceError(`origin answered ${err.status} for ${url} (${err.message})`, err.status, err.headers, err.body, { cause: err });
    throw err;
  };
}

export const modelScopeSource: SourceBackend = {
  schemes: ['modelscope'],

  async stat(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<SourceStat> {
    return httpSource.stat(modelScopeResolveUrl(fileRef(url), endpointOf(headers)), hubHeaders(headers), signal).catch(namingUrl(url));
  },

  async read(url: string, headers: Record<string, string>, range?: ByteRange, signal?: AbortSignal): Promise<SourceResponse> {
    return sourceGet(modelScopeResolveUrl(fileRef(url), endpointOf(headers)), hubHeaders(headers), range, signal).catch(namingUrl(url));
  },

  async list(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<SourceEntry[]> {
    const ref = parseModelScopeUrl(url);
    const commit = await resolveModelScopeRevision(ref, headers, signal);
    const q = new URLSearchParams({ Revision: commit, Recursive: 'true' });
    const data = (await getApi(`${endpointOf(headers)}/api/v1/${ref.type}/${ref.repo}/repo/files?${q}`, hubHeaders(headers), `the files of ${url}`, signal)) as { Files?: unknown } | undefined;
    const files = data?.Files ?? [];
    if (!Array.isArray(files)) throw new SourceError(`hub file list of ${url} is not a list`, 502);
    const prefix = ref.path ? ref.path + '/' : '';
    const out: SourceEntry[] = [];
    for (const f of files as { Type?: unknown; Path?: unknown; Size?: unknown }[]) {
      if (f.Type === 'tree' || typeof f.Path !== 'string' || !f.Path.startsWith(prefix)) continue;
      const rel = f.Path.slice(prefix.length);
      if (!safeRelativePath(rel)) continue;
      out.push({ url: modelScopeUrl({ ...ref, typeWritten: false, revision: commit, path: f.Path }), path: rel, size: typeof f.Size === 'number' && f.Size >= 0 ? f.Size : -1 });
    }
    if (out.length === 0) throw new SourceError(`nothing below ${url}`, 404);
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  },
};
