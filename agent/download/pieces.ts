/** Piece helpers of the download engine: the order a peer asks for pieces, copying out of a piece's chunks. */

/**
 * The order a peer asks for pieces: rarest first (fewest holders among its parents; ties: lowest
 * number), which spreads pieces through a swarm fastest; but the pieces an in-order reader (a proxy
 * client, `damselfly get` streaming) needs next come first, within `window` (from its position,
 * one download slot per piece), so a reader of a large file is not left waiting for piece k while
 * rare pieces far ahead arrive. Sorts `candidates` in place and returns them.
 */
export function orderPieces<T extends { n: number; holders: readonly unknown[] }>(candidates: T[], window?: { from: number; to: number }): T[] {
  const near = (n: number): boolean => window !== undefined && n >= window.from && n <= window.to;
  return candidates.sort((a, b) => Number(near(b.n)) - Number(near(a.n)) || (near(a.n) ? a.n - b.n : a.holders.length - b.holders.length || a.n - b.n));
}


/** Copies `out.length` bytes starting at `from` of the concatenation of `chunks` into `out`. */
export function copyRange(chunks: Buffer[], from: number, out: Buffer): void {
  let skip = from;
  let at = 0;
  for (const c of chunks) {
    if (at >= out.length) break;
    if (skip >= c.length) {
      skip -= c.length;
      continue;
    }
    at += c.copy(out, at, skip, Math.min(c.length, skip + (out.length - at)));
    skip = 0;
  }
  if (at !== out.length) throw new RangeError(`cached piece holds ${at} of ${out.length} bytes asked`);
}

