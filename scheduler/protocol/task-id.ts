/**
 * Task IDs and piece math compatible with Dragonfly (research/dragonfly.md §4.1–4.2):
 *   task_id = hex(sha256(filteredURL ‖ tag ‖ application ‖ revision ‖ decimal(piece_length) ‖ "STANDARD"))
 * with the optional parts omitted when empty, and the remaining query re-encoded like Go's
 * url.Values.Encode() (sorted keys, QueryEscape) so IDs match Dragonfly's for the same URL.
 */
import { createHash } from 'node:crypto';

/** Query parameters that carry signatures/expiry and must not change the task ID (Dragonfly's list). */
export const DEFAULT_FILTERED_QUERY_PARAMS = [
  'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature',
  'X-Amz-Security-Token', 'X-Amz-User-Agent',
  'X-Goog-Algorithm', 'X-Goog-Credential', 'X-Goog-Date', 'X-Goog-Expires', 'X-Goog-SignedHeaders', 'X-Goog-Signature',
  'OSSAccessKeyId', 'Expires', 'Signature', 'SecurityToken',
  'AccessKeyId', 'X-Obs-Date', 'X-Obs-Security-Token',
  'q-sign-algorithm', 'q-ak', 'q-sign-time', 'q-key-time', 'q-header-list', 'q-url-param-list', 'q-signature',
  'x-cos-security-token',
  'ns',
];

export const MIN_PIECE_LENGTH = 4 * 1024 * 1024;
export const MAX_PIECE_LENGTH = 64 * 1024 * 1024;
export const MAX_PIECE_COUNT = 500;

export interface TaskIdOptions {
  tag?: string;
  application?: string;
  /** HuggingFace/ModelScope revision in Dragonfly; kept so its published vectors can be checked. */
  revision?: string;
  pieceLength?: number;
  filteredQueryParams?: string[];
  /** When set, the task ID is sha256_hex of this string (dfget --content-for-calculating-task-id). */
  contentForCalculatingTaskId?: string;
  /** An OCI blob URL's task ID is its digest's hex (X-Dragonfly-Enable-Task-ID-Based-Blob-Digest). */
  enableTaskIdBasedBlobDigest?: boolean;
}

/** Dragonfly's OCI blob URL pattern (dragonfly-client grpc/dfdaemon_download.rs). */
const OCI_BLOB_URL = /^(.*):\/\/(.*)\/v2\/(.*)\/blobs\/([^?]+)(?:\?.*)?$/;
const BLOB_DIGEST = /^(sha256|sha512|crc32):([0-9a-fA-F]+)$/;

/** The hex of the blob digest in an OCI blob URL (sha256, sha512 or crc32 only), else undefined. */
export function blobDigestHex(url: string): string | undefined {
  const m = OCI_BLOB_URL.exec(url);
  if (!m) return undefined;
  let ref: string;
  try {
    ref = decodeURIComponent(m[4]!);
  } catch {
    return undefined; // a malformed escape is no digest: the URL-based ID applies
  }
  const d = BLOB_DIGEST.exec(ref);
  return d ? d[2]!.toLowerCase() : undefined;
}

/**
 * The task ID of a download, in Dragonfly's precedence: content for calculating the task ID
 * (sha256 hex of it), else an OCI blob URL's digest when enabled (the same blob through any
 * registry, mirror or tag is one task), else the URL-based ID (taskId below).
 */
export function taskIdOf(url: string, options: TaskIdOptions = {}): string {
  if (options.contentForCalculatingTaskId) return createHash('sha256').update(options.contentForCalculatingTaskId).digest('hex');
  if (options.enableTaskIdBasedBlobDigest) {
    const hex = blobDigestHex(url);
    if (hex) return hex;
  }
  const hub = hfTaskUrl(url) ?? modelScopeTaskUrl(url);
  if (hub) return taskId(hub.url, { ...options, revision: options.revision || hub.revision });
  return taskId(url, options);
}

const HF_URL = /^hf:\/\/(?:models\/)?((?:(?:datasets|spaces)\/)?[^/@?#]+\/[^/@?#]+)(?:@([^/?#]+))?(\/[^?#]*)?$/i;

/**
 * An hf:// URL as Dragonfly hashes it: the URL without `@revision` (and without a `models/` type,
 * the default) plus the revision as its own part, "main" when none is given (dfget --hf-revision's
 * default). So hf://o/r/f and hf://o/r@main/f are one task, and @<commit> another. Undefined when
 * `url` is not hf://.
 */
export function hfTaskUrl(url: string): { url: string; revision: string } | undefined {
  const m = HF_URL.exec(url);
  if (!m) return undefined;
  let revision = 'main';
  if (m[2]) {
    try {
      revision = decodeURIComponent(m[2]);
    } catch {
      revision = m[2];
    }
  }
  return { url: `hf://${m[1]}${m[3] ?? ''}`, revision };
}

const MS_URL = /^modelscope:\/\/((?:(?:models|datasets)\/)?[^/@?#]+\/[^/@?#]+)(?:@([^/?#]+))?(\/[^?#]*)?$/i;

/**
 * A modelscope:// URL as Dragonfly hashes it: dfget takes the revision apart (--ms-revision, default
 * "master") and hashes the URL as written plus the revision, so the URL without `@revision` plus
 * the revision as its own part. Unlike hfTaskUrl a written `models/` stays (Dragonfly keeps it).
 * Undefined when `url` is not modelscope://.
 */
export function modelScopeTaskUrl(url: string): { url: string; revision: string } | undefined {
  const m = MS_URL.exec(url);
  if (!m) return undefined;
  let revision = 'master';
  if (m[2]) {
    try {
      revision = decodeURIComponent(m[2]);
    } catch {
      revision = m[2];
    }
  }
  return { url: `modelscope://${m[1]}${m[3] ?? ''}`, revision };
}

/** Go's url.QueryEscape: everything but [A-Za-z0-9-_.~] percent-encoded (upper hex), space as '+'. */
export function goQueryEscape(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (byte === 0x20) out += '+';
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** Go's url.QueryUnescape; returns undefined for a malformed escape (Go drops such pairs). */
function goQueryUnescape(s: string): string | undefined {
  if (/%(?![0-9a-fA-F]{2})/.test(s)) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '%') {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (ch === '+') bytes.push(0x20);
    else for (const b of Buffer.from(ch, 'utf8')) bytes.push(b);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Parses a raw query like Go's url.ParseQuery (pairs with ';' or bad escapes are skipped). */
export function goParseQuery(raw: string): Map<string, string[]> {
  const values = new Map<string, string[]>();
  for (const part of raw.split('&')) {
    if (part === '' || part.includes(';')) continue;
    const eq = part.indexOf('=');
    const k = goQueryUnescape(eq < 0 ? part : part.slice(0, eq));
    const v = goQueryUnescape(eq < 0 ? '' : part.slice(eq + 1));
    if (k === undefined || v === undefined) continue;
    const list = values.get(k);
    if (list) list.push(v);
    else values.set(k, [v]);
  }
  return values;
}

/** Go's url.Values.Encode(): keys sorted bytewise, values in order. */
export function goEncodeQuery(values: Map<string, string[]>): string {
  const keys = [...values.keys()].sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b))));
  const parts: string[] = [];
  for (const k of keys) for (const v of values.get(k)!) parts.push(`${goQueryEscape(k)}=${goQueryEscape(v)}`);
  return parts.join('&');
}

/** The URL with filtered query params removed (query dropped if empty, a bare "/" path trimmed). */
export function filterUrl(url: string, filtered: string[] = []): string {
  const hashAt = url.indexOf('#');
  const fragment = hashAt >= 0 ? url.slice(hashAt) : '';
  const noFrag = hashAt >= 0 ? url.slice(0, hashAt) : url;
  const qAt = noFrag.indexOf('?');
  let base = qAt >= 0 ? noFrag.slice(0, qAt) : noFrag;
  let query = qAt >= 0 ? noFrag.slice(qAt + 1) : '';
  if (filtered.length > 0 && qAt >= 0) {
    const hidden = new Set(filtered);
    const values = goParseQuery(query);
    for (const k of [...values.keys()]) if (hidden.has(k)) values.delete(k);
    query = goEncodeQuery(values);
  }
  // Rust's url crate renders "https://host" as "https://host/"; Dragonfly trims that slash so both spellings share an ID.
  const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/]*(\/.*)?$/.exec(base);
  if (m && m[1] === '/') base = base.slice(0, -1);
  return base + (query ? '?' + query : '') + fragment;
}

/** Dragonfly's URL-based task ID (TaskIDV2ByURLBased). */
export function taskId(url: string, options: TaskIdOptions = {}): string {
  const h = createHash('sha256');
  h.update(filterUrl(url, options.filteredQueryParams ?? []));
  if (options.tag) h.update(options.tag);
  if (options.application) h.update(options.application);
  if (options.revision) h.update(options.revision);
  if (options.pieceLength !== undefined && options.pieceLength > 0) h.update(String(options.pieceLength));
  h.update('STANDARD');
  return h.digest('hex');
}

function nextPowerOfTwo(n: number): number {
  if (n <= 1) return 1;
  return 2 ** Math.ceil(Math.log2(n));
}

/** Piece length for a content length: nextPowerOfTwo(len/500) clamped to [4 MiB, 64 MiB]. */
export function pieceLengthFor(contentLength: number): number {
  const p = nextPowerOfTwo(Math.floor(Math.max(0, contentLength) / MAX_PIECE_COUNT));
  if (p >= MAX_PIECE_LENGTH) return MAX_PIECE_LENGTH;
  if (p > MIN_PIECE_LENGTH) return p;
  return MIN_PIECE_LENGTH;
}

/** Number of pieces of a content (0 for empty content). */
export function pieceCount(contentLength: number, pieceLength: number): number {
  return contentLength <= 0 ? 0 : Math.ceil(contentLength / pieceLength);
}

/** Offset and length of piece `number`. Throws RangeError when out of bounds. */
export function pieceBounds(number: number, contentLength: number, pieceLength: number): { offset: number; length: number } {
  const count = pieceCount(contentLength, pieceLength);
  if (!Number.isInteger(number) || number < 0 || number >= count) throw new RangeError(`piece ${number} out of range 0..${count - 1}`);
  const offset = number * pieceLength;
  return { offset, length: Math.min(pieceLength, contentLength - offset) };
}

/** First and last piece numbers covering bytes [start, end] (inclusive). Throws RangeError on a bad range. */
export function piecesCovering(start: number, end: number, contentLength: number, pieceLength: number): { first: number; last: number } {
  if (start < 0 || end < start || end >= contentLength) throw new RangeError(`range ${start}-${end} not within 0-${contentLength - 1}`);
  return { first: Math.floor(start / pieceLength), last: Math.floor(end / pieceLength) };
}

/** "sha256:<hex>" of a buffer. */
export function sha256Digest(buf: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(buf).digest('hex');
}
