/**
 * Sets with O(1) add, delete and uniform random draw: the scheduler samples candidate parents from
 * a task of any size without walking it (Dragonfly's filterParentLimit sample, bounded cost).
 */

/** A set of values with O(1) add/delete/has and uniform random picks (array + position map, swap-remove). */
export class IndexedSet<V> {
  private readonly items: V[] = [];
  private readonly pos = new Map<V, number>();

  get size(): number {
    return this.items.length;
  }

  has(v: V): boolean {
    return this.pos.has(v);
  }

  add(v: V): void {
    if (this.pos.has(v)) return;
    this.pos.set(v, this.items.length);
    this.items.push(v);
  }

  delete(v: V): boolean {
    const i = this.pos.get(v);
    if (i === undefined) return false;
    const last = this.items.pop()!;
    if (i < this.items.length) {
      this.items[i] = last;
      this.pos.set(last, i);
    }
    this.pos.delete(v);
    return true;
  }

  at(i: number): V {
    return this.items[i];
  }

  [Symbol.iterator](): IterableIterator<V> {
    return this.items.values();
  }

  /**
   * Up to `k` distinct values chosen uniformly, skipping `exclude` and values `skip` rejects; `random`
   * in [0, 1). Costs O(k) draws (at most 4k + 8 tries) however large the set is; when the set is
   * small (≤ 2k) it is read whole instead, so no value is missed.
   */
  sample(k: number, random: () => number, exclude?: V, skip?: (v: V) => boolean): V[] {
    const n = this.items.length;
    const out: V[] = [];
    if (n <= 2 * k) {
      for (const v of this.items) if (v !== exclude && !skip?.(v)) out.push(v);
      // Keep the order random, as a draw would be.
      for (let i = out.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [out[i], out[j]] = [out[j], out[i]];
      }
      return out.length > k ? out.slice(0, k) : out;
    }
    // k is small (filterParentLimit): a linear scan of the drawn indexes beats a Set's allocation.
    const seen: number[] = [];
    for (let tries = 0; out.length < k && tries < 4 * k + 8; tries++) {
      const i = Math.floor(random() * n);
      if (seen.includes(i)) continue;
      seen.push(i);
      const v = this.items[i];
      if (v !== exclude && !skip?.(v)) out.push(v);
    }
    return out;
  }
}

/** Piece numbers held by a peer, as a growable bitmap: 1 bit per piece instead of a Set entry (~16 B+). */
export class PieceSet implements Iterable<number> {
  private bits = new Uint32Array(0);
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(n: number): boolean {
    const w = n >>> 5;
    return n >= 0 && w < this.bits.length && (this.bits[w] & (1 << (n & 31))) !== 0;
  }

  add(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) return this;
    const w = n >>> 5;
    if (w >= this.bits.length) {
      // Grow geometrically: a download reports pieces roughly in order.
      const next = new Uint32Array(Math.max(w + 1, this.bits.length * 2, 4));
      next.set(this.bits);
      this.bits = next;
    }
    const m = 1 << (n & 31);
    if ((this.bits[w] & m) === 0) {
      this.bits[w] |= m;
      this.count++;
    }
    return this;
  }

  delete(n: number): boolean {
    if (!this.has(n)) return false;
    this.bits[n >>> 5] &= ~(1 << (n & 31));
    this.count--;
    return true;
  }

  clear(): void {
    this.bits = new Uint32Array(0);
    this.count = 0;
  }

  *[Symbol.iterator](): IterableIterator<number> {
    for (let w = 0; w < this.bits.length; w++) {
      let x = this.bits[w];
      while (x !== 0) {
        const b = 31 - Math.clz32(x & -x);
        yield w * 32 + b;
        x &= x - 1;
      }
    }
  }
}
