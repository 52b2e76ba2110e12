/**
 * The source port: what the agent needs from an origin, whatever its scheme. One small interface
 * (stat, ranged read, list); each backend sits beside it in its own file (http.ts, s3.ts, hf.ts) and
 * `sources.ts` picks one by URL scheme, failing loudly on a scheme it does not know.
 *
 * Errors every backend throws, translated at its edge: SourceError with the origin's status (404 for
 * a missing object, 403 for a refused one, 416 for a range past the end) when the origin answered,
 * UnavailableError when it could not be reached (retried by the caller), InvalidError for a URL the
 * backend cannot address. Request headers are never logged: they may carry credentials.
 */
import type { Readable } from 'node:stream';

/** An inclusive byte range; `end` undefined = to the end of the object. */
export interface ByteRange {
  start: number;
  end?: number;
}

export interface SourceResponse {
  status: number;
  headers: Record<string, string>;
  /** Total length of the resource when known (from Content-Range or Content-Length of a 200), else -1. */
  totalLength: number;
  /** Offset of the first body byte within the resource. */
  offset: number;
  body: Readable;
}

export interface SourceStat {
  /** Length in bytes; -1 when the origin does not say. */
  size: number;
  /** Response headers of interest (etag, last-modified, content-type…), lower-case names. */
  headers: Record<string, string>;
}

/** One file below a listed directory or prefix. */
export interface SourceEntry {
  /** The file's own URL, in the same scheme as the listed one (a task of its own). */
  url: string;
  /** Its path relative to the listed directory, '/'-separated, never starting with '/' or holding '..'. */
  path: string;
  /** Length in bytes; -1 when the listing does not say. */
  size: number;
}

export interface SourceBackend {
  /** URL schemes it reads, without ':' (e.g. ['http', 'https']). */
  readonly schemes: readonly string[];
  /** Size and headers of one object. Throws as described above. */
  stat(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<SourceStat>;
  /** Reads one object, or the inclusive byte range of it. Throws as described above. */
  read(url: string, headers: Record<string, string>, range?: ByteRange, signal?: AbortSignal): Promise<SourceResponse>;
  /**
   * Every file below a directory URL, recursively, sorted by path. Throws SourceError (404) when
   * there is no such directory, InvalidError when the backend cannot list.
   */
  list(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<SourceEntry[]>;
}

/**
 * Checks a listed relative path: non-empty, '/'-separated, no '.', '..' or empty segment, no NUL or
 * backslash, so joining it below an output directory can never leave that directory.
 */
export function safeRelativePath(p: string): boolean {
  if (!p || p.startsWith('/') || p.includes('\\') || p.includes('\0')) return false;
  return p.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}
