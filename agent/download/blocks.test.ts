import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../adapters/errors.js';
import { BLOCKS_PER_PIECE, BlockHasher, BlockVerifier, blockCount, blockSize } from './blocks.js';

const bytes = (n: number, seed = 1): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff));
const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

describe('block digests', () => {
  it('splits a piece into BLOCKS_PER_PIECE blocks of ceil(pieceLength / BLOCKS_PER_PIECE), the last one shorter', () => {
    const PL = 4 * 1024 * 1024;
    expect(blockSize(PL)).toBe(PL / BLOCKS_PER_PIECE);
    expect(blockCount(PL, PL)).toBe(BLOCKS_PER_PIECE);
    expect(blockCount(1, PL)).toBe(1);
    expect(blockCount(0, PL)).toBe(0);
    expect(blockCount(PL / BLOCKS_PER_PIECE + 1, PL)).toBe(2);
  });

  it('the hasher gives sha256 of each block, however the bytes are chunked', () => {
    const PL = 64;
    const piece = bytes(50); // a last piece: blocks of 8 bytes (PL / 8 blocks) or as BLOCKS_PER_PIECE says
    const bs = blockSize(PL);
    const want = Buffer.concat(Array.from({ length: blockCount(piece.length, PL) }, (_, i) => sha(piece.subarray(i * bs, (i + 1) * bs))));
    for (const step of [1, 3, 7, 50]) {
      const h = new BlockHasher(PL);
      for (let off = 0; off < piece.length; off += step) h.update(piece.subarray(off, off + step));
      expect(h.digests().equals(want)).toBe(true);
    }
  });

  it('the verifier reports the verified prefix block by block and throws at the first bad block', () => {
    const PL = 64;
    const piece = bytes(64);
    const h = new BlockHasher(PL);
    h.update(piece);
    const digests = h.digests();
    const bs = blockSize(PL);
    const v = new BlockVerifier(64, PL, digests);
    expect(v.update(piece.subarray(0, bs - 1))).toBe(0);
    expect(v.update(piece.subarray(bs - 1, bs + 1))).toBe(bs);
    expect(v.update(piece.subarray(bs + 1))).toBe(64);

    const bad = Buffer.from(piece);
    bad[bs + 2] ^= 0xff; // in the second block
    const w = new BlockVerifier(64, PL, digests);
    expect(w.update(bad.subarray(0, bs))).toBe(bs);
    expect(() => w.update(bad.subarray(bs, 2 * bs))).toThrow(IntegrityError);
    expect(w.verified).toBe(bs);
    expect(() => new BlockVerifier(64, PL, digests.subarray(32))).toThrow(IntegrityError);
    expect(BlockVerifier.fits(digests, 64, PL)).toBe(true);
    expect(BlockVerifier.fits(digests, 65, PL)).toBe(blockCount(65, PL) === blockCount(64, PL));
    expect(BlockVerifier.fits(undefined, 64, PL)).toBe(false);
    expect(BlockVerifier.fits(Buffer.alloc(0), 64, PL)).toBe(false);
  });
});
