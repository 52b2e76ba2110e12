/**
 * Placing a task's bytes in a file of the caller's (`damselfly get`, the local API's output path):
 * always a file of its own, never a hard link into the cache, so editing it cannot change what the
 * agent serves.
 *
 * - A task still downloading is written out as it arrives (PieceExport): each verified piece, while
 *   it is still in the piece cache's memory, is written at its offset in a scratch file too (O_DIRECT
 *   from the same page-aligned buffer when the store uses direct I/O). The second copy of the bytes
 *   is then spread over the transfer instead of paid after it: bench:swarm with 16 agents placing
 *   128 MiB each spent ~1.5 s after the last piece copying 2 GiB at once. The scratch file lives in
 *   the store (PieceStore.exportsDir, emptied at load) and is hard-linked to `output` only when
 *   complete, then unlinked there: the caller's directory never holds a partial file, even when
 *   agent and caller die by kill -9. Used only where the output is on the store's file system.
 * - A task already complete in the cache is copied (exportCopy): a reflink where the file system
 *   makes one, else O_DIRECT on both files, else through the page cache.
 *
 * Every byte in the output was verified: pieces from memory when they arrived, pieces read back
 * from the content file by leasePiece (digest checked), a copied file by its seal after the copy.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pieceBounds } from '../../scheduler/protocol/task-id.js';
import { copyFileDirect, directEligible, O_DIRECT } from '../storage/direct-io.js';
import type { StoredTask } from '../storage/store.js';
import { writevAll } from '../storage/stored-task.js';

/**
 * An independent copy of a content file at `output`: a reflink where the file system can make one
 * (instant, no bytes copied), else with O_DIRECT on both files when the store uses direct I/O, else
 * through the page cache. `output` must not exist.
 */
export async function exportCopy(src: string, output: string, size: number, directIO: boolean): Promise<void> {
  try {
    await fs.copyFile(src, output, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE_FORCE);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV' && code !== 'EINVAL' && code !== 'ENOSYS' && code !== 'ENOTTY') throw err;
  }
  if (directIO && (await copyFileDirect(src, output, size))) return;
  await fs.copyFile(src, output, fsConstants.COPYFILE_EXCL);
}

/** Whether a file created in `scratchDir` can be hard-linked to `output` (same file system). */
export async function canLinkInto(scratchDir: string, output: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([fs.stat(scratchDir), fs.stat(path.dirname(output))]);
    return a.dev === b.dev;
  } catch {
    return false;
  }
}

/**
 * Writes the pieces of a task being downloaded into a scratch file as they finish, in the order
 * they finish; finish() writes whatever is still missing (pieces held before it started, or
 * skipped), closes the file and links it to `output` (EEXIST when that exists: never overwritten).
 * Any failure leaves the caller to abort() (which removes the scratch file) and fall back to a copy
 * of the completed task.
 */
export class PieceExport {
  private readonly written: Uint8Array;
  /** Index into stored.order of the next finished piece to write. */
  private cursor = 0;
  private wake?: () => void;
  private stopped = false;
  private failure: unknown;
  private readonly pump: Promise<void>;
  private readonly unsubscribe: () => void;
  /** Bytes written with O_DIRECT and through the page cache (for tests and logs). */
  readonly stats = { directBytes: 0, bufferedBytes: 0 };

  private constructor(
    private readonly stored: StoredTask,
    private readonly output: string,
    private readonly scratch: string,
    private readonly fh: fs.FileHandle,
    private readonly direct: fs.FileHandle | null,
  ) {
    this.written = new Uint8Array(Math.max(0, stored.pieceCount));
    this.unsubscribe = stored.onPiece(() => {
      const w = this.wake;
      this.wake = undefined;
      w?.();
    });
    this.pump = this.run();
  }

  /** Starts writing a scratch file in `scratchDir` (on `output`'s file system). The task's length must be known. */
  static async start(stored: StoredTask, output: string, scratchDir: string, directIO: boolean): Promise<PieceExport> {
    const scratch = path.join(scratchDir, `${randomBytes(8).toString('hex')}.part`);
    const fh = await fs.open(scratch, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o666);
    let direct: fs.FileHandle | null = null;
    if (directIO && O_DIRECT !== 0) direct = await fs.open(scratch, fsConstants.O_WRONLY | O_DIRECT).catch(() => null);
    return new PieceExport(stored, output, scratch, fh, direct);
  }

  private async run(): Promise<void> {
    try {
      while (!this.stopped) {
        const order = this.stored.order;
        if (this.cursor < order.length) {
          const n = order[this.cursor++]!;
          if (!this.written[n]) await this.put(n);
          continue;
        }
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } catch (err) {
      this.failure = err;
    }
  }

  private async put(n: number): Promise<void> {
    const { offset, length } = pieceBounds(n, this.stored.meta.contentLength, this.stored.meta.pieceLength);
    const lease = await this.stored.leasePiece(n);
    try {
      const [one] = lease.chunks;
      if (this.direct && lease.chunks.length === 1 && directEligible(one!, offset, length)) {
        let put = 0;
        while (put < length) put += (await this.direct.write(one!, put, length - put, offset + put)).bytesWritten;
        this.stats.directBytes += length;
      } else {
        await writevAll(this.fh, lease.chunks, offset);
        this.stats.bufferedBytes += length;
      }
    } finally {
      lease.release();
    }
    this.written[n] = 1;
  }

  /**
   * Call once the task is complete: writes the missing pieces, sets the length, closes and links the
   * file to `output`. Throws on any failure (EEXIST when `output` exists), leaving `output` untouched.
   */
  async finish(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.pump;
    this.unsubscribe();
    if (this.failure) throw this.failure;
    for (let n = 0; n < this.written.length; n++) if (!this.written[n]) await this.put(n);
    await this.fh.truncate(this.stored.meta.contentLength);
    await this.close();
    await fs.link(this.scratch, this.output);
    await fs.rm(this.scratch, { force: true });
  }

  /** Stops writing and removes the scratch file. Never throws. */
  async abort(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.pump;
    this.unsubscribe();
    await this.close().catch(() => undefined);
    await fs.rm(this.scratch, { force: true }).catch(() => undefined);
  }

  private async close(): Promise<void> {
    await this.direct?.close().catch(() => undefined);
    await this.fh.close();
  }
}
