/**
 * The agent's Dfdaemon gRPC service, called by schedulers: DownloadTask (seed-peer trigger and
 * preheat: download into the cache, streaming progress), StatTask, DeleteTask.
 */
import * as grpc from '@grpc/grpc-js';
import { SourceError, errorCode, errorMessage } from '../adapters/errors.js';
import type { Logger } from '../adapters/log.js';
import { loadProto } from '../scheduler/protocol/loader.js';
import { decodeDownload } from '../scheduler/protocol/download.js';
import type { DownloadTaskRequest__Output } from '../scheduler/protocol/messages.js';
import type { TaskManager } from './task-manager.js';

/** Maps our error codes to gRPC status codes (one place). */
export function grpcStatus(err: unknown): grpc.status {
  if (err instanceof SourceError) return err.status === 404 ? grpc.status.NOT_FOUND : err.status === 401 || err.status === 403 ? grpc.status.PERMISSION_DENIED : grpc.status.FAILED_PRECONDITION;
  switch (errorCode(err)) {
    case 'NOT_FOUND':
      return grpc.status.NOT_FOUND;
    case 'INVALID':
      return grpc.status.INVALID_ARGUMENT;
    case 'TIMEOUT':
      return grpc.status.DEADLINE_EXCEEDED;
    case 'UNAVAILABLE':
      return grpc.status.UNAVAILABLE;
    case 'INTEGRITY':
      return grpc.status.DATA_LOSS;
    default:
      return grpc.status.INTERNAL;
  }
}

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
      ).then(
        () => call.end(),
        (err) => {
          opts.logger.warn('DownloadTask failed', { err: errorMessage(err) });
          call.emit('error', { code: grpcStatus(err), details: errorMessage(err) });
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
        (err) => cb({ code: grpcStatus(err), details: errorMessage(err) }),
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
