/**
 * The http(s) backend of the source port: reads through the back-to-source client (client.ts:
 * redirects, credential dropping, TLS settings) and lists directories from their HTML index pages
 * (nginx `autoindex`, Apache, `python -m http.server`: links below the listed path).
 */
import { InvalidError, SourceError } from '../errors.js';
import { interestingHeaders, sourceGet } from './client.js';
import { safeRelativePath, type ByteRange, type SourceBackend, type SourceEntry, type SourceResponse, type SourceStat } from './port.js';

/** Directory levels followed below the listed one; deeper links are an error, not silently dropped. */
const MAX_DEPTH = 32;
const MAX_ENTRIES = 100_000;
/** An index page larger than this is not a directory listing we can trust. */
const MAX_INDEX_BYTES = 16 * 1024 * 1024;

export const httpSource: SourceBackend = {
  schemes: ['http', 'https'],

  async stat(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<SourceStat> {
    // A one-byte GET rather than HEAD: some origins (presigned URLs) sign the method.
    const res = await sourceGet(url, headers, { start: 0, end: 0 }, signal).catch(async (err: unknown) => {
      // An empty object cannot satisfy bytes=0-0; read it whole.
      if (err instanceof SourceError && err.status === 416) return sourceGet(url, headers, undefined, signal);
      throw err;
    });
    res.body.destroy();
    return { size: res.totalLength, headers: interestingHeaders(res.headers) };
  },

  read(url: string, headers: Record<string, string>, range?: ByteRange, signal?: AbortSignal): Promise<SourceResponse> {
    return sourceGet(url, headers, range, signal);
  },

  async list(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<SourceEntry[]> {
    const root = new URL(url);
    if (!root.pathname.endsWith('/')) root.pathname += '/';
    root.search = '';
    root.hash = '';
    const out: SourceEntry[] = [];
    const seen = new Set<string>();
    const walk = async (dir: URL, depth: number): Promise<void> => {
      if (depth > MAX_DEPTH) throw new InvalidError(`${root.href}: directory listing deeper than ${MAX_DEPTH} levels at ${dir.pathname}`);
      const res = await sourceGet(dir.href, headers, undefined, signal);
      const type = res.headers['content-type'] ?? '';
      if (!/html/i.test(type)) {
        res.body.destroy();
        throw new InvalidError(`${dir.href} is not a directory listing (content-type ${type || 'missing'}, expected an HTML index page)`);
      }
      let html = '';
      for await (const c of res.body) {
        html += String(c);
        if (html.length > MAX_INDEX_BYTES) {
          res.body.destroy();
          throw new InvalidError(`${dir.href}: index page larger than ${MAX_INDEX_BYTES} bytes`);
        }
      }
      for (const href of indexLinks(html)) {
        let u: URL;
        try {
          u = new URL(href, dir);
        } catch {
          continue;
        }
        if (u.origin !== root.origin || u.search || !u.pathname.startsWith(dir.pathname) || u.pathname === dir.pathname) continue;
        u.hash = '';
        if (seen.has(u.pathname)) continue;
        seen.add(u.pathname);
        if (u.pathname.endsWith('/')) {
          await walk(u, depth + 1);
          continue;
        }
        let rel: string;
        try {
          rel = decodeURIComponent(u.pathname.slice(root.pathname.length));
        } catch {
          continue;
        }
        if (!safeRelativePath(rel)) continue;
        if (out.length >= MAX_ENTRIES) throw new InvalidError(`${root.href}: more than ${MAX_ENTRIES} files`);
        out.push({ url: u.href, path: rel, size: -1 });
      }
    };
    await walk(root, 0);
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  },
};

/** The href values of <a> elements, entity-decoded (enough for generated index pages). */
export function indexLinks(html: string): string[] {
  const out: string[] = [];
  const re = /<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/gi;
  for (let m = re.exec(html); m; m = re.exec(html)) {
    const raw = m[1] ?? m[2] ?? m[3] ?? '';
    out.push(raw.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'"));
  }
  return out;
}
