/**
 * Direct I/O (O_DIRECT) for piece writes and piece reads: the bytes go between the piece buffer and
 * the disk without a page-cache copy. Measured on this project's CI machine (a VM where every newly
 * allocated page is expensive), writing 1 GiB through the page cache cost 1.2-2.4 CPU-seconds, with
 * O_DIRECT 0.03; and a piece store that writes many GiB of model files no longer pushes everything
 * else out of the page cache.
 *
 * O_DIRECT needs the buffer's address, the file offset and the length aligned to the device's
 * logical block size. Node offers no aligned allocation, but a WebAssembly.Memory is backed by
 * page-aligned memory, so piece buffers are carved from one each (ALIGN below covers 4 KiB-sector
 * disks too). Whatever cannot go direct (a last piece of odd length, a buffer that is not aligned, a
 * file system without O_DIRECT such as tmpfs) goes through the page cache as before.
 */
import { constants } from 'node:fs';

/** Offsets, lengths and buffer addresses must be multiples of this for a direct transfer. */
export const ALIGN = 4096;
const WASM_PAGE = 64 * 1024;

const alignedBuffers = new WeakSet<ArrayBufferLike>();

/** The one WebAssembly API used here (the project's TypeScript lib set has no WebAssembly types). */
interface WasmMemoryCtor {
  new (d: { initial: number; maximum: number }): { readonly buffer: ArrayBuffer };
}
const WasmMemory = (globalThis as unknown as { WebAssembly?: { Memory: WasmMemoryCtor } }).WebAssembly?.Memory;

/** O_DIRECT on this platform, or 0 where it does not exist (macOS, Windows). */
export const O_DIRECT: number = (constants as Record<string, number>).O_DIRECT ?? 0;

/**
 * A buffer of `size` bytes whose memory starts on a page boundary, or undefined when the runtime
 * will not give one (the caller then uses a plain buffer and the page cache).
 */
export function allocAligned(size: number): Buffer | undefined {
  const pages = Math.ceil(size / WASM_PAGE);
  if (!WasmMemory) return undefined;
  try {
    const mem = new WasmMemory({ initial: pages, maximum: pages });
    alignedBuffers.add(mem.buffer);
    return Buffer.from(mem.buffer, 0, size);
  } catch {
    return undefined; // address space for wasm memories exhausted, or wasm disabled
  }
}

/** Whether `buf` (a view) may be handed to a direct read or write of `length` bytes at `offset`. */
export function directEligible(buf: Buffer, offset: number, length: number): boolean {
  return O_DIRECT !== 0 && alignedBuffers.has(buf.buffer) && buf.byteOffset % ALIGN === 0 && offset % ALIGN === 0 && length % ALIGN === 0 && length > 0;
}

const COPY_CHUNK = 4 << 20;

/**
 * Copies the first `size` bytes of `src` to a new file `dst` (created, never overwritten) with
 * O_DIRECT on both ends, so neither file's bytes pass through the page cache: on the VMs this
 * project is measured on, filling new page-cache pages costs more than the disk (bench:swarm with 16
 * agents exporting 128 MiB each at once: ~0.55 CPU-s per copy in the kernel's memcpy, against
 * nearly nothing direct). The tail is written padded to ALIGN and the file then truncated to `size`.
 * Resolves false, having created nothing, where direct I/O is not possible (no O_DIRECT, no aligned
 * buffer, a file system that refuses it): the caller then copies through the page cache. Throws
 * when `src` is shorter than `size` or a write fails, after removing `dst`.
 */
export async function copyFileDirect(src: string, dst: string, size: number): Promise<boolean> {
  if (O_DIRECT === 0 || size <= 0) return false;
  const buf = allocAligned(COPY_CHUNK);
  if (!buf) return false;
  const { open, rm } = await import('node:fs/promises');
  let from;
  try {
    from = await open(src, constants.O_RDONLY | O_DIRECT);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false; // no O_DIRECT on this file system
    throw err;
  }
  let to;
  try {
    try {
      to = await open(dst, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_DIRECT, 0o666);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false;
      throw err;
    }
    try {
      for (let off = 0; off < size; off += COPY_CHUNK) {
        const want = Math.min(COPY_CHUNK, size - off);
        const aligned = Math.ceil(want / ALIGN) * ALIGN;
        let got = 0;
        while (got < want) {
          const { bytesRead } = await from.read(buf, got, aligned - got, off + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got < want) throw new Error(`${src} holds ${off + got} bytes, expected ${size}`);
        if (aligned > want) buf.fill(0, want, aligned);
        let put = 0;
        while (put < aligned) put += (await to.write(buf, put, aligned - put, off + put)).bytesWritten;
      }
      await to.truncate(size);
      await to.close();
      to = undefined;
      return true;
    } catch (err) {
      await to?.close().catch(() => undefined);
      to = undefined;
      await rm(dst, { force: true });
      throw err;
    }
  } finally {
    await to?.close().catch(() => undefined);
    await from.close().catch(() => undefined);
  }
}
