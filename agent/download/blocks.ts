/**
 * Verified blocks: each piece is also hashed in BLOCKS_PER_PIECE consecutive blocks by the peer that
 * reads it from the origin; the block digests travel with the piece digest through the scheduler
 * (proto Piece.block_digests, raw sha256s concatenated). A peer downloading a piece checks each block
 * as its bytes arrive, and serves the blocks it has checked to its own children before the whole
 * piece is in: a piece then crosses a chain of peers one block per hop instead of one piece per hop.
 * Nothing unverified leaves a peer: a block is served only once its bytes hashed to the digest the
 * origin reader published, and the piece is recorded (and announced) only when every block did.
 *
 * Why it matters (bench:swarm, research/peers.md §3.10): when every peer uploads as fast as the
 * origin sends, the scheduler's acyclic parent graph can only be a chain, and with whole 4 MiB pieces
 * forwarded store-and-forward the last of 16 peers ran 16 pieces (3.2 s at 20 MiB/s) behind the seed.
 */
import { createHash, type Hash } from 'node:crypto';
import { IntegrityError } from '../../adapters/errors.js';

/**
 * 16: 256 KiB blocks of a 4 MiB piece, 12.5 ms per hop at 20 MiB/s. bench:swarm (16 agents) with 4,
 * 8 and 16 blocks per piece: 7.95-7.97 s, 7.86-8.39 s, 7.71-7.75 s. The digests cost 512 bytes per
 * piece in the scheduler's messages.
 */
export const BLOCKS_PER_PIECE = 16;
const SHA256_BYTES = 32;

/** Block size for a task's piece length (the last block of a piece may be shorter). */
export function blockSize(pieceLength: number): number {
  return Math.max(1, Math.ceil(pieceLength / BLOCKS_PER_PIECE));
}

/** Number of blocks in a piece of `length` bytes. */
export function blockCount(length: number, pieceLength: number): number {
  return length <= 0 ? 0 : Math.ceil(length / blockSize(pieceLength));
}

/** Hashes a piece's bytes, fed in order, into its block digests (the origin reader's side). */
export class BlockHasher {
  private readonly size: number;
  private readonly out: Buffer[] = [];
  private hash: Hash = createHash('sha256');
  private fill = 0;

  constructor(pieceLength: number) {
    this.size = blockSize(pieceLength);
  }

  update(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const k = Math.min(this.size - this.fill, chunk.length - off);
      this.hash.update(off === 0 && k === chunk.length ? chunk : chunk.subarray(off, off + k));
      this.fill += k;
      off += k;
      if (this.fill === this.size) this.close();
    }
  }

  private close(): void {
    this.out.push(this.hash.digest());
    this.hash = createHash('sha256');
    this.fill = 0;
  }

  /** The block digests, concatenated; call once, after the piece's last byte. */
  digests(): Buffer {
    if (this.fill > 0) this.close();
    return Buffer.concat(this.out);
  }
}

/**
 * Checks a piece's blocks as its bytes arrive in order. `update()` returns how many bytes from the
 * start are verified; a block whose bytes do not hash to its published digest throws IntegrityError.
 */
export class BlockVerifier {
  private readonly size: number;
  private readonly count: number;
  private hash: Hash = createHash('sha256');
  private block = 0;
  private fill = 0;
  private verifiedBytes = 0;

  /** Throws IntegrityError when `digests` does not hold one sha256 per block of the piece. */
  constructor(
    private readonly length: number,
    pieceLength: number,
    private readonly digests: Buffer,
  ) {
    this.size = blockSize(pieceLength);
    this.count = blockCount(length, pieceLength);
    if (digests.length !== this.count * SHA256_BYTES) throw new IntegrityError(`piece has ${this.count} blocks but ${digests.length / SHA256_BYTES} block digests`);
  }

  /** Whether `digests` fits a piece of `length` bytes (one sha256 per block). */
  static fits(digests: Buffer | undefined, length: number, pieceLength: number): digests is Buffer {
    return digests !== undefined && digests.length > 0 && digests.length === blockCount(length, pieceLength) * SHA256_BYTES;
  }

  get verified(): number {
    return this.verifiedBytes;
  }

  update(chunk: Buffer): number {
    let off = 0;
    while (off < chunk.length) {
      if (this.block >= this.count) throw new IntegrityError('more bytes than the piece holds');
      const blockLen = Math.min(this.size, this.length - this.block * this.size);
      const k = Math.min(blockLen - this.fill, chunk.length - off);
      this.hash.update(off === 0 && k === chunk.length ? chunk : chunk.subarray(off, off + k));
      this.fill += k;
      off += k;
      if (this.fill === blockLen) {
        const got = this.hash.digest();
        const want = this.digests.subarray(this.block * SHA256_BYTES, (this.block + 1) * SHA256_BYTES);
        if (!got.equals(want)) throw new IntegrityError(`block ${this.block} digest mismatch`);
        this.verifiedBytes += blockLen;
        this.block++;
        this.fill = 0;
        this.hash = createHash('sha256');
      }
    }
    return this.verifiedBytes;
  }
}
