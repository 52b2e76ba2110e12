/**
 * The agent's Dfdaemon gRPC service, called by schedulers: DownloadTask (seed-peer trigger and
 * preheat: download into the cache, streaming progress), StatTask, DeleteTask.
 */
import * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../adapters/errors.js';
import type { Logger } from '../adapters/log.js';
import { loadProto } from '../scheduler/protocol/loader.js';
import { decodeDownload } from '../scheduler/protocol/download.js';
import { grpcCode } from '../scheduler/protocol/grpc-status.js';
import { SpanKind, contextFromMetadata, inSpan, redactUrl } from '../adapters/tracing.js';
import type { DownloadTaskRequest__Output } from '../scheduler/protocol/messages.js';
import type { TaskManager } from './download/manager.js';

export async function startDfdaemonServer(opts: { ip: string; port: number; taskManager: TaskManager; hostId: () => string; logger: Logger; credentials?: grpc.ServerCredentials }): Promise<{ port: number; close(): Promise<void> }> {
  const { Dfdaemon } = loadProto();
  const server = new grpc.Server();
  const tm = opts.taskManager;
  server.addService(Dfdaemon.service, {
    DownloadTask(call: grpc.ServerWritableStream<DownloadTaskRequest__Output, unknown>) {
      const d = call.request.download;
      if (!d?.url) {
        call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'download.url is required' });
        return;
      }
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort(new Error('cancelled')));
      let lastSent = 0;
      // A span under the caller's (a scheduler's preheat run, through the call's metadata); the task's
      // own spans (back to source, its scheduler stream) are its children.
      inSpan(
        'agent.download_task',
        { 'url.full': redactUrl(d.url) },
        () =>
          tm.fetchToCache(
            // The cache holds whole tasks: a range in the request does not narrow what is fetched.
            { ...decodeDownload(d), range: undefined, signal: ac.signal },
            (p) => {
              // Progress at most every 100 ms (plus the final one): a scheduler needs liveness, not every piece.
              const now = Date.now();
              if (!p.done && now - lastSent < 100) return;
              lastSent = now;
              call.write({ host_id: opts.hostId(), task_id: p.taskId, peer_id: p.peerId, content_length: p.contentLength, finished_piece_count: p.finished, piece_count: Math.max(0, p.count), is_finished: p.done });
            },
          ),
        contextFromMetadata(call.metadata),
        SpanKind.SERVER,
      ).then(
        () => call.end(),
        (err) => {
          opts.logger.warn('DownloadTask failed', { err: errorMessage(err) });
          call.emit('error', { code: grpcCode(err), details: errorMessage(err) });
        },
      );
    },
    StatTask(call: grpc.ServerUnaryCall<{ task_id: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      const s = tm.stat(call.request.task_id);
      if (!s) return cb({ code: grpc.status.NOT_FOUND, details: `task ${call.request.task_id} not held` });
      cb(null, { task_id: call.request.task_id, content_length: s.contentLength, piece_count: Math.max(0, s.pieceCount), finished_piece_count: s.finishedPieces, is_finished: s.complete });
    },
    DeleteTask(call: grpc.ServerUnaryCall<{ task_id: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      tm.delete(call.request.task_id).then(
        (ok) => (ok ? cb(null, {}) : cb({ code: grpc.status.NOT_FOUND, details: `task ${call.request.task_id} not held` })),
        (err) => cb({ code: grpcCode(err), details: errorMessage(err) }),
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${opts.ip.includes(':') ? `[${opts.ip}]` : opts.ip}:${opts.port}`, opts.credentials ?? grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2_000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      }),
  };
}
