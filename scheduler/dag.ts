/**
 * A per-task directed acyclic graph of peers: an edge parent → child means the child was told to
 * fetch pieces from the parent. After Dragonfly's pkg/graph/dag: every mutation keeps the graph
 * acyclic, so two peers can never end up waiting on each other.
 *
 * Acyclic without walking the graph: every vertex carries a distinct rank, and every edge goes from
 * a lower rank to a higher one (a topological order, so no cycle can exist). A new vertex ranks above
 * all. An edge from → to is admitted in O(1) when rank(from) < rank(to); or when `from` has no
 * parents (it takes a fresh rank below all); or when `to` has no children (a fresh rank above all).
 * Only otherwise is the region between the two ranks searched (Pearce–Kelly dynamic topological
 * order): the descendants of `to` ranked below `from`, and the ancestors of `from` ranked above `to`,
 * together at most WALK_LIMIT vertices. `from` among the former means a cycle; else the region's
 * ranks are reassigned among themselves. A search that hits the limit refuses the edge
 * (conservative: the scheduler then uses another candidate). Dragonfly walks every descendant on
 * every check; the previous version here walked all of `to`'s descendants, however far above
 * `from` they ranked.
 */
import { ConflictError, InvalidError, NotFoundError } from '../adapters/errors.js';
import { IndexedSet } from './resource/indexed-set.js';

/** Most vertices one edge check may visit before refusing the edge (bounds the cost per decision). */
export const WALK_LIMIT = 512;

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
   * The affected region of an edge from → to that goes against the rank order (Pearce & Kelly,
   * "A dynamic topological sort algorithm for directed acyclic graphs", 2006): `forward`, the
   * descendants of `to` ranked below `from` (`to` included), and `backward`, the ancestors of `from`
   * ranked above `to` (`from` included). Every path to → … → from lies inside the rank interval
   * between them, so a cycle exists exactly when `from` is reached by the forward search.
   * 'cycle' then; 'limit' when the two searches together would visit more than WALK_LIMIT vertices.
   */
  private region(from: Vertex<V>, to: Vertex<V>): { forward: Vertex<V>[]; backward: Vertex<V>[] } | 'cycle' | 'limit' {
    const ub = from.rank;
    const lb = to.rank;
    const seen = new Set<Vertex<V>>([to]);
    const forward = [to];
    for (let i = 0; i < forward.length; i++) {
      for (const c of forward[i].children) {
        const cv = this.vertices.get(c);
        if (!cv || seen.has(cv)) continue;
        if (cv === from) return 'cycle';
        if (cv.rank >= ub) continue;
        if (seen.size >= WALK_LIMIT) return 'limit';
        seen.add(cv);
        forward.push(cv);
      }
    }
    const backward = [from];
    seen.add(from);
    for (let i = 0; i < backward.length; i++) {
      for (const p of backward[i].parents) {
        const pv = this.vertices.get(p);
        if (!pv || seen.has(pv) || pv.rank <= lb) continue;
        if (seen.size >= WALK_LIMIT) return 'limit';
        seen.add(pv);
        backward.push(pv);
      }
    }
    return { forward, backward };
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
    return this.cheapOk(a, target) || typeof this.region(a, target) !== 'string';
  }

  /**
   * The subset of `froms` that may each become a parent of `to`: O(1) each by rank, or one bounded
   * search of the region between the two ranks (see the header and `region`). Each edge is checked
   * against the graph as it is: after one of them is added, check the next again (Scheduling does).
   */
  canAddEdges(froms: readonly string[], to: string): string[] {
    return froms.filter((f) => this.canAddEdge(f, to));
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
      // Ranks stay distinct (fresh ones at either end, or a permutation of the region's own), so
      // the region of a later edge is exact.
      if (a.parents.size === 0) a.rank = --this.bottomRank;
      else if (b.children.size === 0) b.rank = ++this.topRank;
      else {
        const r = this.region(a, b);
        if (r === 'limit') throw new InvalidError(`edge ${from} -> ${to} refused: more than ${WALK_LIMIT} vertices to check`);
        if (r === 'cycle') throw new InvalidError(`edge ${from} -> ${to} would close a cycle`);
        // Pearce–Kelly's reorder: the region's own ranks, given to the ancestors of `from` first,
        // then to the descendants of `to`, each group in its old order; every edge still goes up.
        const byRank = (x: Vertex<V>, y: Vertex<V>): number => x.rank - y.rank;
        const order = [...r.backward.sort(byRank), ...r.forward.sort(byRank)];
        const ranks = order.map((v) => v.rank).sort((x, y) => x - y);
        for (let i = 0; i < order.length; i++) order[i].rank = ranks[i];
      }
    }
    a.children.add(to);
    b.parents.add(from);
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
