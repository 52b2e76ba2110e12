/** What the piece store records per task (the JSON metadata file), and the store's typed errors. */
import { UnavailableError } from '../../adapters/errors.js';

export interface TaskMetadata {
  taskId: string;
  peerId: string;
  url: string; // without credentials
  tag?: string;
  application?: string;
  contentLength: number; // -1 while unknown
  pieceLength: number;
  responseHeaders: Record<string, string>;
  /** piece number → 'sha256:<hex>' of the verified bytes on disk */
  pieces: Record<string, string>;
  complete: boolean;
  /** The complete content file as the agent left it (see seal()); absent while not sealed. */
  seal?: Seal;
  /** Whole-content 'sha256:<hex>': asked by the first downloader, proven once digestVerified is set. */
  digest?: string;
  digestVerified?: boolean;
  createdAt: number;
  updatedAt: number;
  accessedAt: number;
}

/** inode, size and ctime (ns, as a decimal string) of a sealed content file. */
export interface Seal {
  ino: string;
  size: number;
  ctimeNs: string;
}

/**
 * The mtime a sealed content file carries (2000-01-01T00:00:00Z): any write stamps 'now' over it,
 * also one within the same clock tick as the seal, which ctime alone (coarse on most kernels) misses.
 */
export const SEAL_MTIME_S = 946_684_800;

/** The piece store's file system is full: the task that hit it is freed, and GC runs. */
export class DiskFullError extends UnavailableError {
  constructor(dir: string, cause: unknown) {
    super(`no space left on device for storage.dir ${dir} (${(cause as Error).message})`, { cause, details: { reason: 'disk_full', dir } });
  }
}

/** Whether `err` is the file system running out of space (or quota). */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Removes userinfo from a URL before it is stored or logged. */
export function stripCredentials(url: string): string {
  return url.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/@?#]*@/, '$1');
}
