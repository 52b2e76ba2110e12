/**
 * The Download message (what to fetch: register_peer_request.download on the Scheduler stream,
 * DownloadTaskRequest.download on Dfdaemon) between its wire form and the camelCase request the
 * roles work with. One encoder and one decoder, so a new field is added in one place.
 */
import type { Download, Priority } from './messages.js';

export interface DownloadRequest {
  url: string;
  /** Forwarded to the origin (incl. Authorization); never logged. */
  requestHeaders?: Record<string, string>;
  tag?: string;
  application?: string;
  /** Dragonfly's priority level 0-6; 6 (LEVEL6) when absent. */
  priority?: number;
  filteredQueryParams?: string[];
  pieceLength?: number;
  /** 'sha256:<hex>' of the whole content. */
  digest?: string;
  /** Inclusive byte range; without `end`, to the end of the content. */
  range?: { start: number; end?: number };
  disableBackToSource?: boolean;
  needBackToSource?: boolean;
  isPreheat?: boolean;
  contentForCalculatingTaskId?: string;
  enableTaskIdBasedBlobDigest?: boolean;
  timeoutMs?: number;
}

export const DEFAULT_PRIORITY = 6;

/** 'LEVEL<n>' for a level 0-6 (anything else is the default level). */
export function priorityName(level: number | undefined): Priority {
  const n = level !== undefined && Number.isInteger(level) && level >= 0 && level <= 6 ? level : DEFAULT_PRIORITY;
  return `LEVEL${n}` as Priority;
}

/** The level of a wire priority ('LEVEL3' or 3); the default level for anything else. */
export function priorityLevel(p: string | number | undefined): number {
  if (typeof p === 'number') return Number.isInteger(p) && p >= 0 && p <= 6 ? p : DEFAULT_PRIORITY;
  const m = /^LEVEL([0-6])$/.exec(p ?? '');
  return m ? Number(m[1]) : DEFAULT_PRIORITY;
}

/** The wire message, every field present (proto3 has no "absent" for scalars: empty means unset). */
export function encodeDownload(r: DownloadRequest): Download {
  return {
    url: r.url,
    digest: r.digest ?? '',
    tag: r.tag ?? '',
    application: r.application ?? '',
    priority: priorityName(r.priority),
    filtered_query_params: r.filteredQueryParams ?? [],
    request_header: r.requestHeaders ?? {},
    piece_length: r.pieceLength ?? 0,
    disable_back_to_source: !!r.disableBackToSource,
    need_back_to_source: !!r.needBackToSource,
    range: r.range ? { start: r.range.start, length: r.range.end === undefined ? 0 : r.range.end - r.range.start + 1 } : null,
    timeout_ms: r.timeoutMs ?? 0,
    is_preheat: !!r.isPreheat,
    content_for_calculating_task_id: r.contentForCalculatingTaskId ?? '',
    enable_task_id_based_blob_digest: !!r.enableTaskIdBasedBlobDigest,
  };
}

/** The request a received message asks for; empty wire values become absent. */
export function decodeDownload(d: Download): DownloadRequest {
  const length = Number(d.range?.length ?? 0);
  return {
    url: d.url ?? '',
    requestHeaders: d.request_header ?? {},
    tag: d.tag || undefined,
    application: d.application || undefined,
    priority: priorityLevel(d.priority),
    filteredQueryParams: d.filtered_query_params?.length ? d.filtered_query_params : undefined,
    pieceLength: Number(d.piece_length ?? 0) || undefined,
    digest: d.digest || undefined,
    range: d.range ? { start: Number(d.range.start ?? 0), end: length > 0 ? Number(d.range.start ?? 0) + length - 1 : undefined } : undefined,
    disableBackToSource: !!d.disable_back_to_source,
    needBackToSource: !!d.need_back_to_source,
    isPreheat: !!d.is_preheat,
    contentForCalculatingTaskId: d.content_for_calculating_task_id || undefined,
    enableTaskIdBasedBlobDigest: d.enable_task_id_based_blob_digest || undefined,
    timeoutMs: Number(d.timeout_ms ?? 0) || undefined,
  };
}
