/**
 * A local Hugging Face Hub origin for tests and benchmarks, on 127.0.0.1 port 0, written from the
 * Hub's documented HTTP API (what `huggingface_hub` calls):
 *   GET  /api/{models|datasets|spaces}/{owner}/{repo}/revision/{rev}       → {id, sha, siblings:[{rfilename}]}
 *   GET  /api/{type}/{owner}/{repo}/tree/{rev}[/{path}]?recursive=true     → [{type, oid, size, path, lfs?}]
 *        (pageSize entries a page, then `Link: <…&cursor=N>; rel="next"`)
 *   GET|HEAD /[datasets/|spaces/]{owner}/{repo}/resolve/{rev}/{path}
 *        small files: 200 with the bytes (ranges), ETag = git blob id, X-Repo-Commit
 *        LFS files: 302 to the CDN with fresh X-Amz-* signature params on every answer, X-Repo-Commit,
 *        X-Linked-Etag = "sha256 hex", X-Linked-Size
 * 404 with X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound; with `token` set, 401 unless
 * `Authorization: Bearer <token>` (the CDN never asks for it).
 * The CDN is test/support/origin.ts (rate-limited with `cdn.rate`), holding LFS files at /lfs/<sha256>.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateBytes, generatedSha256, parseRange, startOrigin, type Content, type Origin, type OriginOptions } from './origin.js';

export type RepoType = 'models' | 'datasets' | 'spaces';

export interface HubFileSpec {
  content: Content;
  /** Stored with LFS (redirected to the CDN); default: larger than 1 MiB. */
  lfs?: boolean;
}

interface HubFile {
  content: Content;
  size: number;
  lfs: boolean;
  sha256: string;
  gitOid: string;
}

interface Repo {
  commits: Map<string, Map<string, HubFile>>;
  refs: Map<string, string>;
}

export interface Hub {
  base: string;
  cdn: Origin;
  /** Adds a commit with exactly `files` to a repository and points `ref` (default main) at it; returns the commit. */
  commit(type: RepoType, repo: string, files: Record<string, HubFileSpec | Content>, ref?: string): string;
  stats(): { api: number; resolves: number; hubBytes: number; cdnBytes: number; unauthorized: number };
  close(): Promise<void>;
}

function sizeOf(c: Content): number {
  return Buffer.isBuffer(c) ? c.length : c.size;
}

function bytesOf(c: Content, start: number, end: number): Buffer {
  return Buffer.isBuffer(c) ? c.subarray(start, end) : generateBytes(c.seed, start, end);
}

/** `cdn`: options of the CDN origin (rate, burst, startEmpty), where the LFS bytes come from. */
export async function startHub(opts: { token?: string; pageSize?: number; cdn?: OriginOptions } = {}): Promise<Hub> {
  const cdn = await startOrigin(opts.cdn ?? {});
  const repos = new Map<string, Repo>();
  const counters = { api: 0, resolves: 0, hubBytes: 0, unauthorized: 0 };
  const pageSize = opts.pageSize ?? 1000;
  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers }).end(text);
  };
  const notFound = (res: ServerResponse, code: string, message: string) => json(res, 404, { error: message }, { 'x-error-code': code, 'x-error-message': message });

  const lookup = (type: string, repo: string, rev: string): { err: readonly [string, string] } | { sha: string; files: Map<string, HubFile> } => {
    const r = repos.get(`${type}/${repo}`);
    if (!r) return { err: ['RepoNotFound', `Repository ${repo} not found`] as const };
    const sha = /^[0-9a-f]{40}$/.test(rev) && r.commits.has(rev) ? rev : r.refs.get(rev);
    if (!sha) return { err: ['RevisionNotFound', `Invalid rev id: ${rev}`] as const };
    return { sha, files: r.commits.get(sha)! };
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) {
      counters.unauthorized++;
      json(res, 401, { error: 'Invalid credentials in Authorization header' }, { 'x-error-code': 'GatedRepo' });
      return;
    }
    const u = new URL(req.url ?? '/', 'http://hub');
    const seg = u.pathname.split('/').slice(1).map((s) => decodeURIComponent(s));
    if (seg[0] === 'api' && (seg[1] === 'models' || seg[1] === 'datasets' || seg[1] === 'spaces')) {
      counters.api++;
      const [, type, owner, name, op, rev, ...rest] = seg;
      const found = lookup(type!, `${owner}/${name}`, rev ?? '');
      if ('err' in found) return notFound(res, found.err[0]!, found.err[1]!);
      const files = [...found.files.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
      if (op === 'revision') return json(res, 200, { id: `${owner}/${name}`, sha: found.sha, private: false, siblings: files.map(([rfilename]) => ({ rfilename })) });
      if (op === 'tree') {
        const base = rest.filter(Boolean).join('/');
        const recursive = u.searchParams.get('recursive') === 'true' || u.searchParams.get('recursive') === '1';
        const entries: Record<string, unknown>[] = [];
        const dirs = new Set<string>();
        for (const [p, f] of files) {
          if (base && !p.startsWith(base + '/')) continue;
          const rel = base ? p.slice(base.length + 1) : p;
          const parts = rel.split('/');
          for (let i = 1; i < parts.length; i++) {
            const d = (base ? base + '/' : '') + parts.slice(0, i).join('/');
            if ((recursive || i === 1) && !dirs.has(d)) {
              dirs.add(d);
              entries.push({ type: 'directory', oid: createHash('sha1').update(d).digest('hex'), size: 0, path: d });
            }
          }
          if (!recursive && parts.length > 1) continue;
          entries.push({ type: 'file', oid: f.gitOid, size: f.size, path: p, ...(f.lfs ? { lfs: { oid: f.sha256, size: f.size, pointerSize: 134 } } : {}) });
        }
        if (base && entries.length === 0) return notFound(res, 'EntryNotFound', `${base} does not exist on "${rev}"`);
        const cursor = Number(u.searchParams.get('cursor') ?? 0);
        const page = entries.slice(cursor, cursor + pageSize);
        const headers: Record<string, string> = {};
        if (cursor + pageSize < entries.length) {
          const nu = new URL(u.href);
          nu.searchParams.set('cursor', String(cursor + pageSize));
          headers.link = `<${base0}${nu.pathname}${nu.search}>; rel="next"`;
        }
        return json(res, 200, page, headers);
      }
      return notFound(res, 'EntryNotFound', `no route ${u.pathname}`);
    }
    // /[datasets/|spaces/]owner/repo/resolve/rev/path…
    let type = 'models';
    let s = seg;
    if (s[0] === 'datasets' || s[0] === 'spaces') {
      type = s[0];
      s = s.slice(1);
    }
    if (s[2] !== 'resolve' || s.length < 5) return notFound(res, 'EntryNotFound', `no route ${u.pathname}`);
    counters.resolves++;
    const found = lookup(type, `${s[0]}/${s[1]}`, s[3]!);
    if ('err' in found) return notFound(res, found.err[0]!, found.err[1]!);
    const p = s.slice(4).join('/');
    const f = found.files.get(p);
    if (!f) return notFound(res, 'EntryNotFound', `${p} does not exist on "${s[3]}"`);
    const common = { 'x-repo-commit': found.sha, 'accept-ranges': 'bytes' };
    if (f.lfs) {
      // A fresh signature each time, as the real CDN URLs carry: the task ID must not depend on it.
      const q = new URLSearchParams({ 'X-Amz-Algorithm': 'AWS4-HMAC-SHA256', 'X-Amz-Credential': `AKIA${randomBytes(4).toString('hex')}/us-east-1/s3/aws4_request`, 'X-Amz-Date': new Date().toISOString().replace(/[-:]|\.\d+/g, ''), 'X-Amz-Expires': '3600', 'X-Amz-Signature': randomBytes(32).toString('hex'), 'X-Amz-SignedHeaders': 'host' });
      res.writeHead(302, { ...common, location: `${cdn.base}/lfs/${f.sha256}?${q}`, 'x-linked-etag': `"${f.sha256}"`, 'x-linked-size': String(f.size), etag: `"${f.gitOid}"`, 'content-length': 0 }).end();
      return;
    }
    const r = parseRange(req.headers.range, f.size);
    if (r === null) {
      res.writeHead(416, { 'content-range': `bytes */${f.size}` }).end();
      return;
    }
    const start = r?.start ?? 0;
    const end = r?.end ?? f.size;
    const headers: Record<string, string | number> = { ...common, etag: `"${f.gitOid}"`, 'content-type': 'application/octet-stream', 'content-length': end - start };
    if (r) headers['content-range'] = `bytes ${start}-${end - 1}/${f.size}`;
    res.writeHead(r ? 206 : 200, headers);
    if (req.method === 'HEAD') return void res.end();
    const body = bytesOf(f.content, start, end);
    counters.hubBytes += body.length;
    res.end(body);
  };

  const server: Server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (err) {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base0 = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    base: base0,
    cdn,
    commit(type, repo, specs, ref = 'main') {
      const files = new Map<string, HubFile>();
      for (const [p, v] of Object.entries(specs)) {
        const spec: HubFileSpec = Buffer.isBuffer(v) || 'seed' in (v as object) ? { content: v as Content } : (v as HubFileSpec);
        const size = sizeOf(spec.content);
        const lfs = spec.lfs ?? size > 1024 * 1024;
        const sha256 = (Buffer.isBuffer(spec.content) ? 'sha256:' + createHash('sha256').update(spec.content).digest('hex') : generatedSha256(spec.content)).slice(7);
        const gitOid = createHash('sha1').update(`blob ${size}\0`).update(sha256).digest('hex');
        files.set(p, { content: spec.content, size, lfs, sha256, gitOid });
        if (lfs) cdn.add(`/lfs/${sha256}`, spec.content);
      }
      const sha = createHash('sha1').update(`${type}/${repo}\0${[...files].map(([p, f]) => `${p}\0${f.sha256}`).sort().join('\0')}\0${randomBytes(8).toString('hex')}`).digest('hex');
      let r = repos.get(`${type}/${repo}`);
      if (!r) {
        r = { commits: new Map(), refs: new Map() };
        repos.set(`${type}/${repo}`, r);
      }
      r.commits.set(sha, files);
      r.refs.set(ref, sha);
      return sha;
    },
    stats: () => {
      const c = cdn.stats();
      return { ...counters, cdnBytes: c.bytes };
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await cdn.close();
    },
  };
}
