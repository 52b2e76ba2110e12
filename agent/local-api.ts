/**
 * The agent's local HTTP API on a unix socket (download.server.socket), used by `damselfly get`.
 *
 *   GET    /v1/healthy                         → 200 {"ok":true}
 *   GET    /v1/download?url=U[&tag=][&application=][&digest=sha256:..][&piece_length=N]
 *          [&priority=N][&filtered_query_param=P]...[&disable_back_to_source=true]
 *          Origin request headers ride as `X-Damselfly-Header-<Name>: <value>`; an optional
 *          `Range: bytes=S-E` gives 206. → the bytes with Content-Length and X-Damselfly-Task-Id.
 *          Errors: JSON {code, message}; an origin non-2xx is 502 with X-Damselfly-Source-Status.
 *          With `&output=/abs/new-file` the bytes do not travel over the socket: the agent downloads
 *          the whole task, then hard-links (or copies) its cached content to that path, which must
 *          not exist. The answer is 200 with X-Damselfly-Task-Id and X-Damselfly-Content-Length as
 *          soon as the length is known, and a JSON body once done: {"ok":true,"contentLength":N} or
 *          {"ok":false,"code","message"[,"status"]} (`status`: the origin's, for SOURCE errors).
 *   GET    /v1/tasks/{id}                      → {contentLength, finishedPieces, pieceCount, complete, traffic: {source, peer}}
 *   DELETE /v1/tasks/{id}                      → 204, 404 when absent
 */
import { mkdirSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { InvalidError, SourceError, errorCode, errorMessage } from '../adapters/errors.js';
import { httpErrorHeaders, httpStatus } from '../adapters/http-status.js';
import type { Logger } from '../adapters/log.js';
import { SpanKind, contextFromHeaders, inSpan, redactUrl } from '../adapters/tracing.js';
import type { DownloadOptions, TaskManager } from './download/manager.js';
import { checkSourceUrl } from '../adapters/source/sources.js';

const HEADER_PREFIX = 'x-damselfly-header-';

/** Parses the query and headers of a /v1/download request into DownloadOptions. */
export function parseDownloadRequest(url: URL, headers: http.IncomingHttpHeaders): DownloadOptions {
  const q = url.searchParams;
  const target = q.get('url');
  if (!target) throw new InvalidError('url (missing): expected an http(s)://, s3:// or hf:// URL', { details: { fields: { url: 'required' } } });
  // Rejected here, at once, rather than by the origin client after the scheduler was asked.
  checkSourceUrl(target);
  const requestHeaders: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (k.startsWith(HEADER_PREFIX) && typeof v === 'string') requestHeaders[k.slice(HEADER_PREFIX.length)] = v;
  const o: DownloadOptions = { url: target, requestHeaders };
  if (q.get('tag')) o.tag = q.get('tag')!;
  if (q.get('application')) o.application = q.get('application')!;
  if (q.get('digest')) o.digest = q.get('digest')!;
  if (q.get('piece_length')) o.pieceLength = Number(q.get('piece_length'));
  if (q.get('priority')) o.priority = Number(q.get('priority'));
  if (q.getAll('filtered_query_param').length > 0) o.filteredQueryParams = q.getAll('filtered_query_param');
  if (q.get('disable_back_to_source') === 'true') o.disableBackToSource = true;
  const content = q.get('content_for_calculating_task_id');
  if (content) o.contentForCalculatingTaskId = content;
  if (q.get('enable_task_id_based_blob_digest') === 'true') o.enableTaskIdBasedBlobDigest = true;
  const r = /^bytes=(\d+)-(\d*)$/.exec(String(headers.range ?? ''));
  if (r) o.range = { start: Number(r[1]), end: r[2] ? Number(r[2]) : undefined };
  return o;
}

export async function startLocalApi(opts: { socket: string; taskManager: TaskManager; logger: Logger }): Promise<{ socket: string; close(): Promise<void> }> {
  const tm = opts.taskManager;
  mkdirSync(path.dirname(opts.socket), { recursive: true });
  rmSync(opts.socket, { force: true }); // a stale socket of a previous run would make listen fail
  const server = http.createServer((req, res) => {
    void handle(req, res).catch((err) => {
      if (res.headersSent) {
        res.destroy(err as Error);
        return;
      }
      const status = httpStatus(err);
      const body = JSON.stringify({ code: errorCode(err), message: errorMessage(err) });
      res.writeHead(status, { 'content-type': 'application/json', ...httpErrorHeaders(err) }).end(body);
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/v1/healthy') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      return;
    }
    const tmatch = /^\/v1\/tasks\/([0-9a-f]{64})$/.exec(url.pathname);
    if (tmatch && req.method === 'GET') {
      const s = tm.stat(tmatch[1]);
      if (!s) res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"NOT_FOUND"}');
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ...s, traffic: tm.trafficOf(tmatch[1]) }));
      return;
    }
    if (tmatch && req.method === 'DELETE') {
      res.writeHead((await tm.delete(tmatch[1])) ? 204 : 404).end();
      return;
    }
    if (url.pathname !== '/v1/download' || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"NOT_FOUND"}');
      return;
    }
    const ac = new AbortController();
    res.on('close', () => ac.abort(new Error('client went away')));
    const o = parseDownloadRequest(url, req.headers);
    // One download is one trace: continued from the caller's traceparent, or started here.
    await inSpan('agent.download', { 'url.full': redactUrl(url.searchParams.get('url') ?? '') }, () => serveDownload(o, url, ac, res), contextFromHeaders(req.headers), SpanKind.SERVER);
  }

  async function serveDownload(o: DownloadOptions, url: URL, ac: AbortController, res: http.ServerResponse): Promise<void> {
    o.signal = ac.signal;
    const output = url.searchParams.get('output');
    if (output !== null) {
      if (!path.isAbsolute(output) || o.range) throw new InvalidError('output must be an absolute path and cannot be combined with Range', { details: { fields: { output: 'expected an absolute path, without a Range header' } } });
      await exportTask(o, output, res);
      return;
    }
    const ts = await tm.download(o);
    const length = ts.range ? ts.range.end - ts.range.start + 1 : ts.contentLength;
    const headers: Record<string, string | number> = {
      ...ts.responseHeaders,
      'content-length': length,
      'x-damselfly-task-id': ts.taskId,
      'x-damselfly-peer-id': ts.peerId,
      'x-damselfly-from-cache': String(ts.fromCache),
    };
    if (ts.range) headers['content-range'] = `bytes ${ts.range.start}-${ts.range.end}/${ts.contentLength}`;
    res.writeHead(ts.range ? 206 : 200, headers);
    // A failing task destroys the body; pipeline then destroys the response so the client sees a short read.
    await pipeline(ts.body, res);
  }

  async function exportTask(o: DownloadOptions, output: string, res: http.ServerResponse): Promise<void> {
    let result: Record<string, unknown>;
    try {
      const r = await tm.exportTo(o, output, (info) => {
        res.writeHead(200, { 'content-type': 'application/json', 'x-damselfly-task-id': info.taskId, 'x-damselfly-peer-id': info.peerId, 'x-damselfly-content-length': String(info.contentLength) });
        res.flushHeaders();
      });
      result = { ok: true, contentLength: r.contentLength, taskId: r.taskId };
    } catch (err) {
      if (!res.headersSent) throw err; // answered with a status by the caller
      result = { ok: false, code: errorCode(err), message: errorMessage(err), ...(err instanceof SourceError ? { status: err.status } : {}) };
    }
    if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(result));
  }

  server.listen(opts.socket);
  await once(server, 'listening');
  return {
    socket: opts.socket,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          rmSync(opts.socket, { force: true });
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
