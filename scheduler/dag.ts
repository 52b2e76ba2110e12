/**
 * A per-task directed acyclic graph of peers: an edge parent → child means the child was told to
 * fetch pieces from the parent. After Dragonfly's pkg/graph/dag: every mutation keeps the graph
 * acyclic, so two peers can never end up waiting on each other.
 */
import { ConflictError, InvalidError, NotFoundError } from '../adapters/errors.js';

interface Vertex<V> {
  value: V;
  parents: Set<string>;
  children: Set<string>;
}

export class Dag<V> {
  private readonly vertices = new Map<string, Vertex<V>>();

  get size(): number {
    return this.vertices.size;
  }

  has(id: string): boolean {
    return this.vertices.has(id);
  }

  /** Adds a vertex. Throws ConflictError if it exists. */
  addVertex(id: string, value: V): void {
    if (this.vertices.has(id)) throw new ConflictError(`vertex ${id} already exists`);
    this.vertices.set(id, { value, parents: new Set(), children: new Set() });
  }

  /** Removes a vertex and every edge touching it; absent ids are ignored. */
  deleteVertex(id: string): void {
    const v = this.vertices.get(id);
    if (!v) return;
    for (const p of v.parents) this.vertices.get(p)?.children.delete(id);
    for (const c of v.children) this.vertices.get(c)?.parents.delete(id);
    this.vertices.delete(id);
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

  /** Every vertex reachable from `id` through child edges, `id` included. */
  private descendants(id: string): Set<string> {
    const seen = new Set<string>([id]);
    const stack = [id];
    while (stack.length > 0) {
      const cur = this.vertices.get(stack.pop()!);
      if (!cur) continue;
      for (const c of cur.children) {
        if (!seen.has(c)) {
          seen.add(c);
          stack.push(c);
        }
      }
    }
    return seen;
  }

  /** Whether `from → to` may be added: both exist, not a self loop, not a duplicate, no cycle. */
  canAddEdge(from: string, to: string): boolean {
    return this.canAddEdges([from], to).length === 1;
  }

  /**
   * The subset of `froms` that may each become a parent of `to` (computed with one traversal of
   * `to`'s descendants, as Dragonfly's CanAddEdges does).
   */
  canAddEdges(froms: readonly string[], to: string): string[] {
    const target = this.vertices.get(to);
    if (!target) return [];
    const below = this.descendants(to);
    return froms.filter((f) => this.vertices.has(f) && !below.has(f) && !target.parents.has(f));
  }

  /**
   * Adds the edge `from → to`. Throws NotFoundError for unknown vertices, InvalidError for a self
   * loop or an edge closing a cycle, ConflictError for a duplicate.
   */
  addEdge(from: string, to: string): void {
    const a = this.vertices.get(from);
    const b = this.vertices.get(to);
    if (!a || !b) throw new NotFoundError(`vertex ${!a ? from : to} not found`);
    if (from === to) throw new InvalidError(`self loop on ${from}`);
    if (b.parents.has(from)) throw new ConflictError(`edge ${from} -> ${to} already exists`);
    if (this.descendants(to).has(from)) throw new InvalidError(`edge ${from} -> ${to} would close a cycle`);
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
