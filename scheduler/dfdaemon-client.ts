/**
 * A small client of an agent's Dfdaemon gRPC service (on Host.ip:Host.port). The scheduler uses it
 * to trigger seed peers; the manager's job code uses it for preheat, get_task and delete_task.
 *
 *   const c = new DfdaemonClient('127.0.0.1:65001');
 *   await c.downloadTask(encodeDownload({ url, needBackToSource: true }), { onProgress: (p) => ... });
 *   await c.statTask(taskId); await c.deleteTask(taskId); c.close();
 */
import * as grpc from '@grpc/grpc-js';
import { loadProto } from './protocol/loader.js';
import { fromGrpcError } from './protocol/grpc-status.js';
import type { Download } from './protocol/messages.js';

export interface DownloadProgress {
  host_id: string;
  task_id: string;
  peer_id: string;
  content_length: number;
  finished_piece_count: number;
  piece_count: number;
  is_finished: boolean;
}

export interface LocalTaskStat {
  task_id: string;
  content_length: number;
  piece_count: number;
  finished_piece_count: number;
  is_finished: boolean;
}

type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void;
interface RawClient extends grpc.Client {
  DownloadTask(req: unknown, opts: grpc.CallOptions): grpc.ClientReadableStream<DownloadProgress>;
  StatTask(req: unknown, opts: grpc.CallOptions, cb: Callback<LocalTaskStat>): void;
  DeleteTask(req: unknown, opts: grpc.CallOptions, cb: Callback<unknown>): void;
}

export class DfdaemonClient {
  private readonly raw: RawClient;

  /** `address` is "ip:port" of the agent's gRPC server. */
  constructor(readonly address: string, credentials?: grpc.ChannelCredentials) {
    const { Dfdaemon } = loadProto();
    this.raw = new Dfdaemon(address, credentials ?? grpc.credentials.createInsecure()) as unknown as RawClient;
  }

  /**
   * Asks the agent to download `download` into its cache and resolves with the last progress
   * message once the agent reports it finished. Throws a DamselflyError mapped from the gRPC status
   * (UNAVAILABLE when unreachable, TIMEOUT past `timeoutMs`), or UNAVAILABLE if the stream ends
   * without a finished message.
   */
  downloadTask(
    download: Download,
    opts: { timeoutMs?: number; signal?: AbortSignal; onProgress?: (p: DownloadProgress) => void } = {},
  ): Promise<DownloadProgress> {
    return new Promise((resolve, reject) => {
      const callOpts: grpc.CallOptions = opts.timeoutMs ? { deadline: Date.now() + opts.timeoutMs } : {};
      const stream = this.raw.DownloadTask({ download }, callOpts);
      let last: DownloadProgress | undefined;
      const onAbort = (): void => stream.cancel();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (p: DownloadProgress) => {
        last = p;
        opts.onProgress?.(p);
      });
      stream.on('error', (err) => {
        opts.signal?.removeEventListener('abort', onAbort);
        reject(fromGrpcError(err));
      });
      stream.on('end', () => {
        opts.signal?.removeEventListener('abort', onAbort);
        if (last?.is_finished) resolve(last);
        else reject(fromGrpcError({ code: grpc.status.UNAVAILABLE, details: `agent ${this.address} ended DownloadTask before finishing` }));
      });
    });
  }

  /** What the agent holds of a task. Throws NotFoundError when it holds nothing, UNAVAILABLE when unreachable. */
  statTask(taskId: string, timeoutMs = 10_000): Promise<LocalTaskStat> {
    return new Promise((resolve, reject) => {
      this.raw.StatTask({ task_id: taskId }, { deadline: Date.now() + timeoutMs }, (err, v) => (err ? reject(fromGrpcError(err)) : resolve(v!)));
    });
  }

  /** Evicts a task from the agent's cache. Throws NotFoundError when absent. */
  deleteTask(taskId: string, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.raw.DeleteTask({ task_id: taskId }, { deadline: Date.now() + timeoutMs }, (err) => (err ? reject(fromGrpcError(err)) : resolve()));
    });
  }

  close(): void {
    this.raw.close();
  }
}

/** One client per agent address, reused across calls; `closeAll()` on shutdown. */
export class DfdaemonClientPool {
  private readonly clients = new Map<string, DfdaemonClient>();
  /** mTLS to agents' gRPC (set by the scheduler once its certificate is in); default plaintext. */
  credentials?: () => grpc.ChannelCredentials;

  get(host: { ip: string; port: number }): DfdaemonClient {
    const address = `${host.ip.includes(':') ? `[${host.ip}]` : host.ip}:${host.port}`;
    let c = this.clients.get(address);
    if (!c) {
      c = new DfdaemonClient(address, this.credentials?.());
      this.clients.set(address, c);
    }
    return c;
  }

  closeAll(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
