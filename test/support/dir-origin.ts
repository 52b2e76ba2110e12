/**
 * A static HTTP origin serving a directory on disk, on 127.0.0.1 port 0, with index pages like
 * nginx's `autoindex on` (`<a href="name">`, `name/` for directories) and single byte ranges
 * (206 + Content-Range, 416 when unsatisfiable). A directory asked for without its trailing slash
 * is redirected (301) as nginx does. `requireAuth` answers 401 unless Authorization matches.
 *
 *   const o = await startDirOrigin(dir);  o.url('/models/')  o.stats().bytes  await o.close()
 */
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface DirOrigin {
  base: string;
  url(p: string): string;
  stats(): { requests: number; bytes: number };
  close(): Promise<void>;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export interface DirOriginOptions {
  requireAuth?: string;
  /** Bytes per second for each file response (unset = as fast as it goes). */
  rate?: number;
  /** URL paths (decoded, e.g. '/m/b.bin') answered 403, as a store refusing one object would. */
  refuse?: Set<string>;
}

export async function startDirOrigin(root: string, opts: DirOriginOptions = {}): Promise<DirOrigin> {
  const counters = { requests: 0, bytes: 0 };
  const server: Server = createServer((req, res) => {
    void (async () => {
      counters.requests++;
      if (opts.requireAuth && req.headers.authorization !== opts.requireAuth) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end('unauthorized');
        return;
      }
      const u = new URL(req.url ?? '/', 'http://x');
      let rel: string;
      try {
        rel = decodeURIComponent(u.pathname);
      } catch {
        res.writeHead(400).end();
        return;
      }
      if (opts.refuse?.has(rel)) {
        res.writeHead(403, { 'content-type': 'text/plain' }).end('refused');
        return;
      }
      const file = path.join(root, path.normalize(rel));
      if (!file.startsWith(root)) {
        res.writeHead(403).end();
        return;
      }
      const st = await fs.stat(file).catch(() => undefined);
      if (!st) {
        res.writeHead(404, { 'content-type': 'text/html' }).end('<html><body>404 Not Found</body></html>');
        return;
      }
      if (st.isDirectory()) {
        if (!u.pathname.endsWith('/')) {
          res.writeHead(301, { location: u.pathname + '/' }).end();
          return;
        }
        const names = (await fs.readdir(file, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
        const rows = names.map((d) => {
          const n = d.name + (d.isDirectory() ? '/' : '');
          return `<a href="${escapeHtml(encodeURIComponent(d.name) + (d.isDirectory() ? '/' : ''))}">${escapeHtml(n)}</a>`;
        });
        const html = `<html><head><title>Index of ${escapeHtml(rel)}</title></head><body><h1>Index of ${escapeHtml(rel)}</h1><hr><pre><a href="../">../</a>\n${rows.join('\n')}\n</pre><hr></body></html>\n`;
        res.writeHead(200, { 'content-type': 'text/html', 'content-length': Buffer.byteLength(html) }).end(req.method === 'HEAD' ? undefined : html);
        return;
      }
      const size = st.size;
      const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes', etag: `"${st.mtimeMs.toString(16)}-${size.toString(16)}"`, 'last-modified': st.mtime.toUTCString() };
      let start = 0;
      let end = size - 1;
      let status = 200;
      const r = /^bytes=(\d*)-(\d*)$/.exec(String(req.headers.range ?? ''));
      if (r) {
        if (r[1] === '') {
          start = Math.max(0, size - Number(r[2]));
        } else {
          start = Number(r[1]);
          if (r[2] !== '') end = Math.min(size - 1, Number(r[2]));
        }
        if (start >= size || start > end) {
          res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
          return;
        }
        status = 206;
        headers['content-range'] = `bytes ${start}-${end}/${size}`;
      }
      headers['content-length'] = size === 0 ? 0 : end - start + 1;
      res.writeHead(status, headers);
      if (req.method === 'HEAD' || size === 0) {
        res.end();
        return;
      }
      const s = createReadStream(file, { start, end, highWaterMark: 64 * 1024 });
      if (opts.rate) {
        const t0 = performance.now();
        let sent = 0;
        s.on('data', (c) => {
          counters.bytes += (c as Buffer).length;
          sent += (c as Buffer).length;
          const ok = res.write(c);
          const wait = (sent / opts.rate!) * 1000 - (performance.now() - t0);
          if (wait > 0 || !ok) {
            s.pause();
            const resume = () => setTimeout(() => s.resume(), Math.max(0, wait));
            if (ok) resume();
            else res.once('drain', resume);
          }
        });
        s.on('end', () => res.end());
        s.on('error', () => res.destroy());
        res.on('close', () => s.destroy());
        return;
      }
      s.on('data', (c) => (counters.bytes += (c as Buffer).length));
      s.pipe(res);
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    url: (p: string) => base + p.split('/').map((s) => encodeURIComponent(s)).join('/'),
    stats: () => ({ ...counters }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
