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
