/**
 * A per-task directed acyclic graph of peers: an edge parent → child means the child was told to
 * fetch pieces from the parent. After Dragonfly's pkg/graph/dag: every mutation keeps the graph
 * acyclic, so two peers can never end up waiting on each other.
 *
 * Acyclic without walking the graph: every vertex carries a rank, and every edge goes from a lower
 * rank to a higher one (a topological order, so no cycle can exist). A new vertex ranks above all.
 * An edge from → to is admitted in O(1) when rank(from) < rank(to); or when `from` has no parents
 * (its rank may drop below rank(to): its children rank above it already); or when `to` has no
 * children (its rank may rise above rank(from)). Only otherwise are `to`'s descendants walked, at
 * most WALK_LIMIT of them: if `from` is not among them the edge is added and the descendants are
 * shifted up together (edges into a descendant set only come from outside, edges inside keep their
 * order, and none leave it); a walk that hits the limit refuses the edge (conservative: the
 * scheduler then uses another candidate). Dragonfly walks every descendant on every check.
 */
import { ConflictError, InvalidError, NotFoundError } from '../adapters/errors.js';
import { IndexedSet } from './resource/indexed-set.js';

/** Most descendants one edge check may visit before refusing the edge (bounds the cost per decision). */
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
    return this.all.sample(k, random, ex).map((v) => v.value);
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
   * Every vertex reachable from `id` through child edges, `id` included; undefined when there are
   * more than `limit`.
   */
  private descendants(id: string, limit = Infinity): Set<Vertex<V>> | undefined {
    const start = this.vertices.get(id);
    if (!start) return new Set();
    const seen = new Set<Vertex<V>>([start]);
    const stack = [start];
    while (stack.length > 0) {
      const cur = stack.pop()!;
      for (const c of cur.children) {
        const cv = this.vertices.get(c);
        if (cv && !seen.has(cv)) {
          if (seen.size >= limit) return undefined;
          seen.add(cv);
          stack.push(cv);
        }
      }
    }
    return seen;
  }

  /** The O(1) admissions of the header; false means "walk to know". */
  private cheapOk(a: Vertex<V>, b: Vertex<V>): boolean {
    return a.rank < b.rank || a.parents.size === 0 || b.children.size === 0;
  }

  /** Whether `from → to` may be added: both exist, not a self loop, not a duplicate, no cycle (see the header). */
  canAddEdge(from: string, to: string): boolean {
    return this.canAddEdges([from], to).length === 1;
  }

  /**
   * The subset of `froms` that may each become a parent of `to`: O(1) each by rank, with at most
   * one bounded walk of `to`'s descendants shared by the rest (see the header).
   */
  canAddEdges(froms: readonly string[], to: string): string[] {
    const target = this.vertices.get(to);
    if (!target) return [];
    let below: Set<Vertex<V>> | undefined | null = null;
    return froms.filter((f) => {
      const a = this.vertices.get(f);
      if (!a || a === target || target.parents.has(f)) return false;
      if (this.cheapOk(a, target)) return true;
      if (below === null) below = this.descendants(to, WALK_LIMIT);
      return below !== undefined && !below.has(a);
    });
  }

  /**
   * Adds the edge `from → to`. Throws NotFoundError for unknown vertices, InvalidError for a self
   * loop or an edge closing a cycle (or one whose check would walk more than WALK_LIMIT
   * descendants), ConflictError for a duplicate.
   */
  addEdge(from: string, to: string): void {
    const a = this.vertices.get(from);
    const b = this.vertices.get(to);
    if (!a || !b) throw new NotFoundError(`vertex ${!a ? from : to} not found`);
    if (from === to) throw new InvalidError(`self loop on ${from}`);
    if (b.parents.has(from)) throw new ConflictError(`edge ${from} -> ${to} already exists`);
    if (a.rank >= b.rank) {
      if (a.parents.size === 0) a.rank = b.rank - 1;
      else if (b.children.size === 0) b.rank = a.rank + 1;
      else {
        const below = this.descendants(to, WALK_LIMIT);
        if (below === undefined) throw new InvalidError(`edge ${from} -> ${to} refused: more than ${WALK_LIMIT} descendants to check`);
        if (below.has(a)) throw new InvalidError(`edge ${from} -> ${to} would close a cycle`);
        const shift = a.rank - b.rank + 1;
        for (const v of below) {
          v.rank += shift;
          if (v.rank > this.topRank) this.topRank = v.rank;
        }
      }
      if (b.rank > this.topRank) this.topRank = b.rank;
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
