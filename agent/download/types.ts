/**
 * The download engine's contracts: what a caller asks for (DownloadOptions), what it gets back
 * (TaskStream), and what the engine needs from the agent (TaskManagerDeps).
 */
import type { SecureContext as TlsSecureContext } from 'node:tls';
import type { Readable } from 'node:stream';
import type { Logger } from '../../adapters/log.js';
import type { Host__Output as HostMsg } from '../../scheduler/protocol/messages.js';
import type { AgentConfig } from '../config.js';
import type { AgentMetrics } from '../metrics.js';
import type { TokenBucket } from '../ratelimit.js';
import type { SchedulerClient } from '../scheduler-client.js';
import type { PieceStore } from '../storage/store.js';

export interface DownloadOptions {
  url: string;
  requestHeaders?: Record<string, string>; // forwarded to the origin (incl. Authorization); never logged
  tag?: string;
  application?: string;
  priority?: number;
  filteredQueryParams?: string[]; // default: DEFAULT_FILTERED_QUERY_PARAMS from scheduler/protocol/task-id.ts
  pieceLength?: number;
  digest?: string; // 'sha256:<hex>' of the whole content
  range?: { start: number; end?: number }; // inclusive end; only pieces covering it are downloaded
  disableBackToSource?: boolean;
  signal?: AbortSignal;
  /** Register with need_back_to_source (the scheduler's seed-peer trigger). */
  needBackToSource?: boolean;
  isPreheat?: boolean;
  /** Task ID = sha256 hex of this string instead of the URL-based ID (Dragonfly's content_for_calculating_task_id). */
  contentForCalculatingTaskId?: string;
  /** An OCI blob URL's task ID is its digest's hex (Dragonfly's enable_task_id_based_blob_digest). */
  enableTaskIdBasedBlobDigest?: boolean;
}

export interface TaskStream {
  taskId: string;
  peerId: string;
  contentLength: number;
  range?: { start: number; end: number };
  responseHeaders: Record<string, string>;
  fromCache: boolean;
  body: Readable;
  /**
   * Set only for a complete task read from the cache (its pieces verified): the content file and the
   * inclusive byte range `body` would yield. A reader may read the file itself instead of consuming
   * `body`; it must then call `done(bytesSent)` exactly once when finished (counts local_peer
   * traffic, lets the task be evicted again) and not read `body`.
   */
  file?: { path: string; start: number; end: number; done(bytes: number): void; intact(): Promise<boolean> };
}

export interface TaskManagerDeps {
  config: AgentConfig;
  store: PieceStore;
  scheduler?: SchedulerClient;
  host: () => HostMsg;
  metrics: AgentMetrics;
  logger: Logger;
  /** `prefetch`: bytes of pieces only a background prefetch wants (proxy.prefetchRateLimit); none = unpaced. */
  limits: { download: TokenBucket; upload: TokenBucket; source: TokenBucket; prefetch?: TokenBucket };
  /** Runs a GC pass now (the disk filled up); optional. */
  gcNow?: () => Promise<unknown>;
  /** mTLS to parents' piece servers (adapters/tls.ts): the current client context; absent = plaintext. */
  pieceTls?: () => TlsSecureContext | undefined;
}
