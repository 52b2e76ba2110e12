import { describe, expect, it } from 'vitest';
import { InvalidError } from '../../adapters/errors.js';
import { Dag, WALK_LIMIT } from './dag.js';
import { FakeClock } from '../../test/support/fake-clock.js';

function dagOf(n: number): Dag<number> {
  const d = new Dag<number>();
  for (let i = 0; i < n; i++) d.addVertex(`v${i}`, i);
  return d;
}

/** Whether `to` is reachable from `from` (breadth-first, unbounded: the reference for the tests). */
function reaches(d: Dag<number>, from: string, to: string): boolean {
  const seen = new Set([from]);
  const queue = [from];
  while (queue.length > 0) {
    const cur = queue.shift()!;
    if (cur === to) return true;
    for (const c of d.children(cur)) if (!seen.has(c)) (seen.add(c), queue.push(c));
  }
  return false;
}

describe('Dag', () => {
  it('rejects self loops, duplicates, unknown vertices and cycles with typed errors', () => {
    const d = dagOf(3);
    expect(() => d.addEdge('v0', 'v0')).toThrow(expect.objectContaining({ code: 'INVALID' }));
    d.addEdge('v0', 'v1');
    expect(() => d.addEdge('v0', 'v1')).toThrow(expect.objectContaining({ code: 'CONFLICT' }));
    d.addEdge('v1', 'v2');
    expect(() => d.addEdge('v2', 'v0')).toThrow(expect.objectContaining({ code: 'INVALID' }));
    expect(() => d.addEdge('v2', 'nope')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    expect(() => d.addVertex('v0', 9)).toThrow(expect.objectContaining({ code: 'CONFLICT' }));
    expect(d.hasCycle()).toBe(false);
  });

  it('canAddEdges keeps only parents that are neither descendants nor existing parents', () => {
    const d = dagOf(5);
    d.addEdge('v0', 'v1');
    d.addEdge('v1', 'v2');
    d.addEdge('v2', 'v3');
    expect(d.canAddEdges(['v0', 'v2', 'v3', 'v4', 'v1', 'missing'], 'v1')).toEqual(['v4']);
    expect(d.canAddEdge('v4', 'v0')).toBe(true);
    expect(d.canAddEdge('v3', 'v0')).toBe(false);
  });

  it('deletes in and out edges and vertices with their edges', () => {
    const d = dagOf(4);
    d.addEdge('v0', 'v2');
    d.addEdge('v1', 'v2');
    d.addEdge('v2', 'v3');
    expect(d.deleteInEdges('v2').sort()).toEqual(['v0', 'v1']);
    expect(d.inDegree('v2')).toBe(0);
    expect(d.outDegree('v0')).toBe(0);
    expect(d.deleteOutEdges('v2')).toEqual(['v3']);
    expect(d.inDegree('v3')).toBe(0);
    d.addEdge('v0', 'v1');
    d.addEdge('v1', 'v3');
    d.deleteVertex('v1');
    expect(d.has('v1')).toBe(false);
    expect(d.outDegree('v0')).toBe(0);
    expect(d.inDegree('v3')).toBe(0);
  });

  it('never holds a cycle under random mutations (seeded)', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const rnd = new FakeClock(0, seed);
      const pick = (n: number) => Math.floor(rnd.random() * n);
      const d = new Dag<number>();
      let next = 0;
      let rejected = 0;
      for (let step = 0; step < 3000; step++) {
        const ids = [...d.ids()];
        const op = pick(10);
        if (op === 0 || ids.length < 2) d.addVertex(`v${next++}`, next);
        else if (op === 1) d.deleteVertex(ids[pick(ids.length)]);
        else if (op === 2) d.deleteInEdges(ids[pick(ids.length)]);
        else {
          const a = ids[pick(ids.length)];
          const b = ids[pick(ids.length)];
          const allowed = d.canAddEdge(a, b);
          // Below WALK_LIMIT the check is exact: refused only for a self loop, a duplicate, or a path b ⇝ a.
          const exact = a !== b && !d.parents(b).has(a) && !reaches(d, b, a);
          expect(allowed).toBe(exact);
          try {
            d.addEdge(a, b);
            expect(allowed).toBe(true);
          } catch {
            expect(allowed).toBe(false);
            rejected++;
          }
        }
        expect(d.hasCycle()).toBe(false);
        expect(d.ranksBroken()).toBe(false);
      }
      expect(rejected).toBeGreaterThan(0);
    }
  });

  it('admits an edge against the rank order after a search, and reorders the region', () => {
    const d = new Dag<number>();
    for (const id of ['y', 'c', 'p', 'x', 'q']) d.addVertex(id, 0);
    d.addEdge('y', 'c');
    d.addEdge('p', 'y'); // p has no parents: its rank drops below y's
    d.addEdge('q', 'x'); // q has no parents
    // x (with a parent) ranks above y (with a child): only a walk of y's descendants can tell
    expect(d.canAddEdge('x', 'y')).toBe(true);
    d.addEdge('x', 'y');
    expect(d.ranksBroken()).toBe(false);
    expect(d.canAddEdge('c', 'q')).toBe(false); // q → x → y → c
    expect(() => d.addEdge('c', 'q')).toThrow(/cycle/);
  });

  it('searches only the region between the two ranks, not every descendant of the child', () => {
    // c0 → c1 → … → c1999, with `a` (which has a parent) ranked just above c0 and below c1: the
    // edge a → c0 goes against the rank order, but only c0 lies in the region to search.
    const d = new Dag<number>();
    d.addVertex('c0', 0);
    d.addVertex('q', 0);
    d.addVertex('a', 0);
    d.addEdge('q', 'a');
    const n = 4 * WALK_LIMIT;
    for (let i = 1; i < n; i++) {
      d.addVertex(`c${i}`, i);
      d.addEdge(`c${i - 1}`, `c${i}`);
    }
    expect(d.canAddEdge('a', 'c0')).toBe(true);
    d.addEdge('a', 'c0');
    expect(d.ranksBroken()).toBe(false);
    expect(d.canAddEdge(`c${n - 1}`, 'q')).toBe(false); // q → a → c0 → … → c_last: a cycle (refused)
    expect(d.hasCycle()).toBe(false);
  });

  it('renumbers its ranks when lifts into one gap exhaust the doubles, and stays acyclic', () => {
    // u and w (each with a parent, each with child c) swap order 200 times: every swap lifts one of
    // them into the gap just below c, halving it.
    const d = new Dag<number>();
    for (const id of ['p', 'u', 'w', 'c']) d.addVertex(id, 0);
    for (const [a, b] of [['p', 'u'], ['p', 'w'], ['u', 'c'], ['w', 'c']]) d.addEdge(a, b);
    let [x, y] = ['w', 'u'];
    for (let i = 0; i < 200; i++) {
      d.deleteEdge(y, x);
      expect(d.canAddEdge(x, y)).toBe(true);
      d.addEdge(x, y);
      expect(d.ranksBroken()).toBe(false);
      expect(d.canAddEdge(y, x)).toBe(false);
      [x, y] = [y, x];
    }
    expect(d.renumbered).toBeGreaterThan(0);
    expect(d.hasCycle()).toBe(false);
  });

  it('refuses, without walking further, an edge whose check would visit more than WALK_LIMIT descendants', () => {
    const d = new Dag<number>();
    const n = WALK_LIMIT + 10;
    for (let i = 0; i < n; i++) d.addVertex(`v${i}`, i);
    for (let i = 1; i < n; i++) d.addEdge(`v${i - 1}`, `v${i}`);
    d.addVertex('a', 0);
    d.addVertex('b', 0);
    d.addEdge('a', 'b');
    d.addEdge('v5', 'a'); // a ranks above v0 and has a parent; v0 has children
    expect(d.canAddEdge('a', 'v0')).toBe(false);
    expect(() => d.addEdge('a', 'v0')).toThrow(InvalidError);
    // cheap cases stay open however large the graph: a parentless vertex, a childless target
    d.addVertex('z', 0);
    expect(d.canAddEdge('z', 'v0')).toBe(true);
    expect(d.canAddEdge(`v${n - 1}`, 'b')).toBe(true);
    expect(d.hasCycle()).toBe(false);
  });
});
