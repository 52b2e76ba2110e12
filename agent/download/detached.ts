/**
 * Piece digests offered by parents, for a peer session that lost its scheduler (issue 13, finding
 * 5). The scheduler normally relays the digests the origin reader published; without it, a child
 * keeps fetching from the parents the scheduler named and verifies each piece against the digest
 * the parent verified it against (the piece server lists them with `digests=1`). A digest is taken
 * from the first parent that offers it; a parent that then serves bytes not matching its own
 * offer loses its offers (and is dropped as a parent by the session). The whole-content digest,
 * when known (`--digest`, an OCI blob), still checks the assembled file.
 */
export class OfferedDigests {
  private byPiece = new Map<number, { digest: string; from: string }>();

  /** Records `digests` (piece number → "sha256:…") offered by parent `from`; first offer wins. */
  offer(from: string, digests: Record<string, string> | undefined): number {
    let added = 0;
    for (const [k, d] of Object.entries(digests ?? {})) {
      const n = Number(k);
      if (!Number.isInteger(n) || n < 0 || typeof d !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(d) || this.byPiece.has(n)) continue;
      this.byPiece.set(n, { digest: d, from });
      added++;
    }
    return added;
  }

  get(n: number): string | undefined {
    return this.byPiece.get(n)?.digest;
  }

  /** Forgets every digest parent `from` offered (it served bytes that did not match one). */
  drop(from: string): void {
    for (const [n, o] of this.byPiece) if (o.from === from) this.byPiece.delete(n);
  }
}
