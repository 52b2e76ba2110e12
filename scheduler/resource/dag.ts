/**
 * A per-task directed acyclic graph of peers: an edge parent → child means the child was told to
 * fetch pieces from the parent. After Dragonfly's pkg/graph/dag: every mutation keeps the graph
 * acyclic, so two peers can never end up waiting on each other.
 *
 * Acyclic without walking the graph: every vertex carries a rank, and every edge goes from a lower
 * rank to a higher one (a topological order, so no cycle can exist). A new vertex ranks above all.
 * An edge from → to is admitted in O(1) when rank(from) < rank(to); or when `from` has no parents
 * (it takes a fresh rank below all); or when `to` has no children (a fresh rank above all). Only
 * otherwise is the region between the two ranks searched (after Pearce & Kelly's dynamic
 * topological order): the descendants of `to` ranked at most rank(from), at most WALK_LIMIT of
 * them. `from` among them means a cycle; else they are lifted, in their order, into the gap just
 * above rank(from) (ranks are doubles; see liftAbove). A search that hits the limit refuses the
 * edge (conservative: the scheduler then uses another candidate). Dragonfly walks every descendant
 * on every check; the previous version here walked all of `to`'s descendants, however far above
 * `from` they ranked.
 */
import { ConflictError, InvalidError, NotFoundError } from '../../adapters/errors.js';
import { IndexedSet } from './indexed-set.js';

/**
 * Most vertices one edge check may visit before refusing the edge (bounds the cost per decision).
 * 128, not 512: a peer rescheduled with thousands of descendants checks every candidate ranked
 * above it, and 512 visits cost ~0.3 ms per reschedule (bench:scheduler); a refused candidate is
 * replaced by another of the sample, most of which rank below it (cheap).
 */
export const WALK_LIMIT = 128;

interface Vertex<V> {
  id: string;
  value: V;
  rank: number;
  parents: Set<string>;
  children: Set<string>;
}

export class Dag<V> {
  private readonly vertices = new Map<string, Vertex<V>>();
  private readonly all = new IndexedSet<Vertex<V>>();
  private topRank = 0;
  private bottomRank = 0;
  /** How often every rank was renumbered (see renumber; read by tests). */
  renumbered = 0;

  get size(): number {
    return this.vertices.size;
  }

  has(id: string): boolean {
    return this.vertices.has(id);
  }

  /** Adds a vertex. Throws ConflictError if it exists. */
  addVertex(id: string, value: V): void {
    if (this.vertices.has(id)) throw new ConflictError(`vertex ${id} already exists`);
    const v: Vertex<V> = { id, value, rank: ++this.topRank, parents: new Set(), children: new Set() };
    this.vertices.set(id, v);
    this.all.add(v);
  }

  /**
   * Up to `k` distinct values chosen uniformly at random (O(k), see IndexedSet.sample), never
   * `exclude`'s vertex.
   */
  sample(k: number, random: () => number, exclude?: string): V[] {
    const ex = exclude === undefined ? undefined : this.vertices.get(exclude);
    const vs = this.all.sample(k, random, ex) as unknown[];
    for (let i = 0; i < vs.length; i++) vs[i] = (vs[i] as Vertex<V>).value;
    return vs as V[];
  }

  /** Removes a vertex and every edge touching it; absent ids are ignored. */
  deleteVertex(id: string): void {
    const v = this.vertices.get(id);
    if (!v) return;
    for (const p of v.parents) this.vertices.get(p)?.children.delete(id);
    for (const c of v.children) this.vertices.get(c)?.parents.delete(id);
    this.vertices.delete(id);
    this.all.delete(v);
  }

  get(id: string): V | undefined {
    return this.vertices.get(id)?.value;
  }

  values(): IterableIterator<V> {
    const it = this.vertices.values();
    return (function* () {
      for (const v of it) yield v.value;
    })();
  }

  ids(): IterableIterator<string> {
    return this.vertices.keys();
  }

  parents(id: string): ReadonlySet<string> {
    return this.vertices.get(id)?.parents ?? new Set();
  }

  children(id: string): ReadonlySet<string> {
    return this.vertices.get(id)?.children ?? new Set();
  }

  inDegree(id: string): number {
    return this.vertices.get(id)?.parents.size ?? 0;
  }

  outDegree(id: string): number {
    return this.vertices.get(id)?.children.size ?? 0;
  }

  /**
   * The descendants of `to` ranked below `ub` (`to` included), in the order found: every path
   * to → … → v with rank(v) ≤ ub stays below ub (edges go up), so `from` (rank ub) closes a cycle
   * exactly when it is among them. 'limit' past WALK_LIMIT vertices.
   */
  private forward(to: Vertex<V>, ub: number, from?: Vertex<V>): Set<Vertex<V>> | 'cycle' | 'limit' {
    const seen = new Set<Vertex<V>>([to]);
    const stack = [to];
    while (stack.length > 0) {
      for (const c of stack.pop()!.children) {
        const cv = this.vertices.get(c);
        if (!cv || seen.has(cv)) continue;
        if (cv === from) return 'cycle';
        if (cv.rank > ub) continue;
        if (seen.size >= WALK_LIMIT) return 'limit';
        seen.add(cv);
        stack.push(cv);
      }
    }
    return seen;
  }

  /** The O(1) admissions of the header; false means "search the region to know". */
  private cheapOk(a: Vertex<V>, b: Vertex<V>): boolean {
    return a.rank < b.rank || a.parents.size === 0 || b.children.size === 0;
  }

  /** Whether `from → to` may be added: both exist, not a self loop, not a duplicate, no cycle (see the header). */
  canAddEdge(from: string, to: string): boolean {
    const target = this.vertices.get(to);
    const a = this.vertices.get(from);
    if (!a || !target || a === target || target.parents.has(from)) return false;
    return this.cheapOk(a, target) || typeof this.forward(target, a.rank, a) !== 'string';
  }

  /**
   * The subset of `froms` that may each become a parent of `to`, in their order: O(1) each by rank;
   * the rest, lowest rank first, share one search below `to` that widens to each one's rank in turn
   * (see `forward`), at most WALK_LIMIT vertices for them all: once it hits the limit, the ones
   * still undecided are refused. Each edge is judged against the graph as it is; adding one of them
   * never makes another close a cycle (they all point into `to`).
   */
  canAddEdges(froms: readonly string[], to: string): string[] {
    const target = this.vertices.get(to);
    if (!target) return [];
    const cheap: string[] = [];
    const hard: Vertex<V>[] = [];
    for (const f of froms) {
      const a = this.vertices.get(f);
      if (!a || a === target || target.parents.has(f)) continue;
      if (this.cheapOk(a, target)) cheap.push(f);
      else hard.push(a);
    }
    if (hard.length === 0) return cheap;
    const verdict = new Map<string, boolean>();
    for (const f of cheap) verdict.set(f, true);
    hard.sort((x, y) => x.rank - y.rank);
    const seen = new Set<Vertex<V>>([target]);
    const stack = [target];
    let parked: Vertex<V>[] = [];
    let limited = false;
    for (const a of hard) {
      const ub = a.rank;
      if (!limited) {
        const still: Vertex<V>[] = [];
        for (const v of parked) (v.rank <= ub ? stack : still).push(v);
        parked = still;
        while (stack.length > 0 && !limited) {
          for (const c of stack.pop()!.children) {
            const cv = this.vertices.get(c);
            if (!cv || seen.has(cv)) continue;
            if (seen.size >= WALK_LIMIT) {
              limited = true;
              break;
            }
            seen.add(cv);
            (cv.rank > ub ? parked : stack).push(cv);
          }
        }
      }
      // Reached (expanded or parked) means a path to ⇝ a: a cycle.
      verdict.set(a.id, !limited && !seen.has(a));
    }
    return froms.filter((f) => verdict.get(f) === true);
  }

  /**
   * Adds the edge `from → to`. Throws NotFoundError for unknown vertices, InvalidError for a self
   * loop or an edge closing a cycle (or one whose check would visit more than WALK_LIMIT
   * vertices), ConflictError for a duplicate.
   */
  addEdge(from: string, to: string): void {
    const a = this.vertices.get(from);
    const b = this.vertices.get(to);
    if (!a || !b) throw new NotFoundError(`vertex ${!a ? from : to} not found`);
    if (from === to) throw new InvalidError(`self loop on ${from}`);
    if (b.parents.has(from)) throw new ConflictError(`edge ${from} -> ${to} already exists`);
    if (a.rank >= b.rank) {
      if (a.parents.size === 0) a.rank = --this.bottomRank;
      else if (b.children.size === 0) b.rank = ++this.topRank;
      else {
        for (let pass = 0; ; pass++) {
          const region = this.forward(b, a.rank, a);
          if (region === 'limit') throw new InvalidError(`edge ${from} -> ${to} refused: more than ${WALK_LIMIT} vertices to check`);
          if (region === 'cycle') throw new InvalidError(`edge ${from} -> ${to} would close a cycle`);
          if (this.liftAbove(region, a.rank)) break;
          if (pass > 0) throw new InvalidError(`edge ${from} -> ${to} refused: no rank left between its ends`);
          // Ranks too close for distinct doubles: integers again, then the (now wide) gap.
          this.renumber();
          if (a.rank < b.rank) break;
        }
      }
    }
    a.children.add(to);
    b.parents.add(from);
  }

  /**
   * Moves `region` (the descendants of a child ranked at most `lo`, see `forward`) just above `lo`,
   * in their old order and below every child they have outside the region: those rank above `lo`
   * (else `forward` would have taken them), and the region's parents outside it rank below their
   * children's old ranks, so below `lo`: every edge still goes up. Ranks are real numbers for this.
   * Returns false, changing nothing, when the gap is too narrow for distinct doubles.
   */
  private liftAbove(region: Set<Vertex<V>>, lo: number): boolean {
    let hi = Infinity;
    for (const v of region) {
      for (const c of v.children) {
        const cv = this.vertices.get(c);
        if (cv && !region.has(cv) && cv.rank < hi) hi = cv.rank;
      }
    }
    const order = [...region].sort((x, y) => x.rank - y.rank);
    if (hi === Infinity) hi = Math.max(lo, this.topRank) + order.length + 1;
    const step = (hi - lo) / (order.length + 1);
    let prev = lo;
    for (let i = 1; i <= order.length + 1; i++) {
      const r = i <= order.length ? lo + step * i : hi;
      if (!(r > prev)) return false;
      prev = r;
    }
    for (let i = 0; i < order.length; i++) order[i].rank = lo + step * (i + 1);
    if (hi > this.topRank) this.topRank = Math.ceil(hi);
    return true;
  }

  /**
   * Integer ranks again for every vertex, in a topological order (Kahn): O(V), only when repeated
   * lifts into one gap exhausted the doubles' precision (new vertices and the cheap cases take
   * fresh integer ranks at either end, so this is rare).
   */
  private renumber(): void {
    const indeg = new Map<Vertex<V>, number>();
    const queue: Vertex<V>[] = [];
    for (const v of this.vertices.values()) {
      indeg.set(v, v.parents.size);
      if (v.parents.size === 0) queue.push(v);
    }
    for (let i = 0; i < queue.length; i++) {
      const v = queue[i];
      v.rank = i + 1;
      for (const c of v.children) {
        const cv = this.vertices.get(c);
        if (!cv) continue;
        const d = indeg.get(cv)! - 1;
        indeg.set(cv, d);
        if (d === 0) queue.push(cv);
      }
    }
    this.topRank = queue.length;
    this.bottomRank = 0;
    this.renumbered++;
  }

  /** Removes `from → to` if present. */
  deleteEdge(from: string, to: string): void {
    this.vertices.get(from)?.children.delete(to);
    this.vertices.get(to)?.parents.delete(from);
  }

  /** Removes every edge into `id`; returns the former parents. */
  deleteInEdges(id: string): string[] {
    const v = this.vertices.get(id);
    if (!v) return [];
    const ps = [...v.parents];
    for (const p of ps) this.vertices.get(p)?.children.delete(id);
    v.parents.clear();
    return ps;
  }

  /** Removes every edge out of `id`; returns the former children. */
  deleteOutEdges(id: string): string[] {
    const v = this.vertices.get(id);
    if (!v) return [];
    const cs = [...v.children];
    for (const c of cs) this.vertices.get(c)?.parents.delete(id);
    v.children.clear();
    return cs;
  }

  /** True when some edge breaks the rank order (tests check the invariant that makes cycles impossible). */
  ranksBroken(): boolean {
    for (const v of this.vertices.values()) for (const c of v.children) if (this.vertices.get(c)!.rank <= v.rank) return true;
    return false;
  }

  /** True when the graph has a cycle (Kahn's algorithm); used by tests to check the invariant. */
  hasCycle(): boolean {
    const indeg = new Map<string, number>();
    for (const [id, v] of this.vertices) indeg.set(id, v.parents.size);
    const queue = [...indeg].filter(([, d]) => d === 0).map(([id]) => id);
    let visited = 0;
    while (queue.length > 0) {
      const id = queue.pop()!;
      visited++;
      for (const c of this.vertices.get(id)!.children) {
        const d = indeg.get(c)! - 1;
        indeg.set(c, d);
        if (d === 0) queue.push(c);
      }
    }
    return visited !== this.vertices.size;
  }
}
