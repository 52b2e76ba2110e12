import { describe, expect, it } from 'vitest';
import { HashRing } from './hashring.js';

describe('HashRing', () => {
  const keys = Array.from({ length: 2000 }, (_, i) => `task-${i}`);

  it('is deterministic and independent of member order', () => {
    const a = new HashRing(['s1:8002', 's2:8002', 's3:8002']);
    const b = new HashRing(['s3:8002', 's1:8002', 's2:8002']);
    for (const k of keys) expect(a.pick(k)).toBe(b.pick(k));
    expect(new HashRing([]).pick('x')).toBeUndefined();
  });

  it('spreads keys roughly evenly and moves about 1/n when a member is added', () => {
    const three = new HashRing(['a', 'b', 'c']);
    const counts = new Map<string, number>();
    for (const k of keys) counts.set(three.pick(k)!, (counts.get(three.pick(k)!) ?? 0) + 1);
    for (const c of counts.values()) expect(c).toBeGreaterThan(keys.length / 3 / 1.5);
    const four = new HashRing(['a', 'b', 'c', 'd']);
    const moved = keys.filter((k) => three.pick(k) !== four.pick(k));
    expect(moved.every((k) => four.pick(k) === 'd')).toBe(true);
    expect(moved.length / keys.length).toBeGreaterThan(0.15);
    expect(moved.length / keys.length).toBeLessThan(0.35);
  });
});
