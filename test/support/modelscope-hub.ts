/**
 * A local ModelScope hub origin for tests, on 127.0.0.1 port 0, written from the hub's HTTP API as
 * the ModelScope Python SDK and Dragonfly's client (model_scope.rs) call it:
 *   GET  /api/v1/{models|datasets}/{owner}/{repo}/revisions
 *        → {Code:200, Data:{RevisionMap:{Branches:[{Revision, CommitId, CreatedAt}], Tags:[…]}}}
 *   GET  /api/v1/{type}/{owner}/{repo}/repo/files?Revision={rev}&Recursive=true[&Root={dir}]
 *        → {Code:200, Data:{Files:[{Name, Path, Type:'blob'|'tree', Size, Sha256, Revision, IsLFS}]}}
 *   GET|HEAD /{type}/{owner}/{repo}/resolve/{rev}/{path}                   (Dragonfly's download)
 *   GET|HEAD /api/v1/{type}/{owner}/{repo}/repo?Revision={rev}&FilePath={path}   (the SDK's download)
 *        small files: 200 with the bytes (ranges, 416 past the end); large ones: 302 to the CDN with
 *        fresh OSS-style signature params (OSSAccessKeyId, Expires, Signature) on every answer
 * REV is a branch, a tag or a commit ID. 404 with {Code:404, Message} for no such repository,
 * revision or file; a private repository answers 401 unless the request carries the hub's token as
 * `Authorization: Bearer <token>` or cookie `m_session_id=<token>` (the CDN never asks for it).
 * The CDN is test/support/origin.ts (rate-limited with `cdn.rate`), holding large files at /lfs/<sha256>.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateBytes, generatedSha256, parseRange, startOrigin, type Content, type Origin, type OriginOptions } from './origin.js';

export type MsRepoType = 'models' | 'datasets';

export interface MsFileSpec {
  content: Content;
  /** Served from the CDN (302); default: larger than 1 MiB. */
  lfs?: boolean;
}

interface MsFile {
  content: Content;
  size: number;
  lfs: boolean;
  sha256: string;
}

interface Repo {
  private: boolean;
  commits: Map<string, Map<string, MsFile>>;
  branches: Map<string, string>;
  tags: Map<string, string>;
}

export interface CommitOptions {
  type?: MsRepoType;
  /** The branch moved to the new commit (default master). */
  branch?: string;
  /** A tag also pointing at it. */
  tag?: string;
  /** Only readable with the hub's token (set at the repository's first commit). */
  private?: boolean;
}

export interface ModelScopeHub {
  base: string;
  cdn: Origin;
  /** Adds a commit with exactly `files` to `repo` (OWNER/NAME) and moves the branch to it; returns its commit ID. */
  commit(repo: string, files: Record<string, MsFileSpec | Content>, opts?: CommitOptions): string;
  stats(): { api: number; downloads: number; hubBytes: number; cdnBytes: number; unauthorized: number };
  close(): Promise<void>;
}

const sizeOf = (c: Content): number => (Buffer.isBuffer(c) ? c.length : c.size);
const bytesOf = (c: Content, start: number, end: number): Buffer => (Buffer.isBuffer(c) ? c.subarray(start, end) : generateBytes(c.seed, start, end));

/** `token`: what a private repository asks for; `cdn`: options of the CDN origin (rate, burst, startEmpty). */
export async function startModelScopeHub(opts: { token?: string; cdn?: OriginOptions } = {}): Promise<ModelScopeHub> {
  const cdn = await startOrigin(opts.cdn ?? {});
  const repos = new Map<string, Repo>();
  const counters = { api: 0, downloads: 0, hubBytes: 0, unauthorized: 0 };
  const json = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
  };
  const ok = (res: ServerResponse, data: unknown) => json(res, 200, { Code: 200, Data: data, Message: 'success', RequestId: randomBytes(8).toString('hex'), Success: true });
  const fail = (res: ServerResponse, status: number, message: string) => json(res, status, { Code: status, Data: null, Message: message, RequestId: randomBytes(8).toString('hex'), Success: false });

  const authorized = (req: IncomingMessage): boolean => {
    if (!opts.token) return false;
    if (req.headers.authorization === `Bearer ${opts.token}`) return true;
    return (req.headers.cookie ?? '').split(/;\s*/).includes(`m_session_id=${opts.token}`);
  };

  /** The repository, refusing a private one without the token; undefined once answered. */
  const repoFor = (req: IncomingMessage, res: ServerResponse, type: string, repo: string): Repo | undefined => {
    const r = repos.get(`${type}/${repo}`);
    if (!r) return void fail(res, 404, `${type === 'datasets' ? 'dataset' : 'model'} ${repo} not found`);
    if (r.private && !authorized(req)) {
      counters.unauthorized++;
      return void fail(res, 401, `no permission to read ${repo}: log in or pass an access token`);
    }
    return r;
  };
  const commitOf = (r: Repo, rev: string): string | undefined => (/^[0-9a-f]{40}$/.test(rev) && r.commits.has(rev) ? rev : (r.branches.get(rev) ?? r.tags.get(rev)));

  const serveFile = (req: IncomingMessage, res: ServerResponse, r: Repo, repo: string, rev: string, p: string) => {
    counters.downloads++;
    const sha = commitOf(r, rev);
    if (!sha) return fail(res, 404, `revision ${rev} of ${repo} not found`);
    const f = r.commits.get(sha)!.get(p);
    if (!f) return fail(res, 404, `file ${p} not found in ${repo} at ${rev}`);
    if (f.lfs) {
      // A fresh signature each time, as the real CDN URLs carry: the task ID must not depend on it.
      const q = new URLSearchParams({ OSSAccessKeyId: `LTAI${randomBytes(6).toString('hex')}`, Expires: String(Math.floor(Date.now() / 1000) + 3600), Signature: randomBytes(20).toString('base64') });
      res.writeHead(302, { location: `${cdn.base}/lfs/${f.sha256}?${q}`, 'content-length': 0 }).end();
      return;
    }
    const range = parseRange(req.headers.range, f.size);
    if (range === null) {
      res.writeHead(416, { 'content-range': `bytes */${f.size}` }).end();
      return;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? f.size;
    const headers: Record<string, string | number> = { 'accept-ranges': 'bytes', etag: `"${f.sha256}"`, 'content-type': 'application/octet-stream', 'content-length': end - start };
    if (range) headers['content-range'] = `bytes ${start}-${end - 1}/${f.size}`;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD') return void res.end();
    const body = bytesOf(f.content, start, end);
    counters.hubBytes += body.length;
    res.end(body);
  };

  const listFiles = (res: ServerResponse, r: Repo, repo: string, u: URL) => {
    const rev = u.searchParams.get('Revision') || 'master';
    const sha = commitOf(r, rev);
    if (!sha) return fail(res, 404, `revision ${rev} of ${repo} not found`);
    const recursive = /^true$/i.test(u.searchParams.get('Recursive') ?? '');
    const root = (u.searchParams.get('Root') ?? '').replace(/^\/+|\/+$/g, '');
    const out: Record<string, unknown>[] = [];
    const dirs = new Set<string>();
    for (const [p, f] of [...r.commits.get(sha)!].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (root && !p.startsWith(root + '/')) continue;
      const parts = (root ? p.slice(root.length + 1) : p).split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = (root ? root + '/' : '') + parts.slice(0, i).join('/');
        if ((recursive || i === 1) && !dirs.has(d)) {
          dirs.add(d);
          out.push({ Name: d.split('/').pop(), Path: d, Type: 'tree', Size: 0, Sha256: '', Revision: sha, IsLFS: false });
        }
      }
      if (!recursive && parts.length > 1) continue;
      out.push({ Name: parts[parts.length - 1], Path: p, Type: 'blob', Size: f.size, Sha256: f.sha256, Revision: sha, IsLFS: f.lfs, Mode: '33188' });
    }
    ok(res, { Files: out, IsVisual: 0 });
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', 'http://hub');
    const seg = u.pathname.split('/').slice(1).map((s) => decodeURIComponent(s));
    if (seg[0] === 'api' && seg[1] === 'v1' && (seg[2] === 'models' || seg[2] === 'datasets')) {
      counters.api++;
      const [, , type, owner, name, op, sub] = seg;
      const repo = `${owner}/${name}`;
      const r = repoFor(req, res, type!, repo);
      if (!r) return;
      if (op === 'revisions' && !sub) {
        const list = (m: Map<string, string>) => [...m].map(([Revision, CommitId]) => ({ Revision, CommitId, CreatedAt: 1_700_000_000 }));
        return ok(res, { RevisionMap: { Branches: list(r.branches), Tags: list(r.tags) } });
      }
      if (op === 'repo' && sub === 'files') return listFiles(res, r, repo, u);
      if (op === 'repo' && !sub) return serveFile(req, res, r, repo, u.searchParams.get('Revision') || 'master', u.searchParams.get('FilePath') ?? '');
      return fail(res, 404, `no route ${u.pathname}`);
    }
    // /{models|datasets}/owner/repo/resolve/rev/path…
    if ((seg[0] === 'models' || seg[0] === 'datasets') && seg[3] === 'resolve' && seg.length >= 6) {
      const repo = `${seg[1]}/${seg[2]}`;
      const r = repoFor(req, res, seg[0], repo);
      if (!r) return;
      return serveFile(req, res, r, repo, seg[4]!, seg.slice(5).join('/'));
    }
    fail(res, 404, `no route ${u.pathname}`);
  };

  const server: Server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (err) {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    base,
    cdn,
    commit(repo, specs, o = {}) {
      const type = o.type ?? 'models';
      const files = new Map<string, MsFile>();
      for (const [p, v] of Object.entries(specs)) {
        const spec: MsFileSpec = Buffer.isBuffer(v) || 'seed' in (v as object) ? { content: v as Content } : (v as MsFileSpec);
        const size = sizeOf(spec.content);
        const lfs = spec.lfs ?? size > 1024 * 1024;
        const sha256 = (Buffer.isBuffer(spec.content) ? 'sha256:' + createHash('sha256').update(spec.content).digest('hex') : generatedSha256(spec.content)).slice(7);
        files.set(p, { content: spec.content, size, lfs, sha256 });
        if (lfs) cdn.add(`/lfs/${sha256}`, spec.content);
      }
      const sha = createHash('sha1').update(`${type}/${repo}\0${[...files].map(([p, f]) => `${p}\0${f.sha256}`).sort().join('\0')}\0${randomBytes(8).toString('hex')}`).digest('hex');
      let r = repos.get(`${type}/${repo}`);
      if (!r) {
        if (o.private && !opts.token) throw new Error('a private repository needs the hub started with a token');
        r = { private: o.private ?? false, commits: new Map(), branches: new Map(), tags: new Map() };
        repos.set(`${type}/${repo}`, r);
      }
      r.commits.set(sha, files);
      r.branches.set(o.branch ?? 'master', sha);
      if (o.tag) r.tags.set(o.tag, sha);
      return sha;
    },
    stats: () => ({ ...counters, cdnBytes: cdn.stats().bytes }),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await cdn.close();
    },
  };
}
