import { describe, expect, it } from 'vitest';
import { OfferedDigests } from './detached.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;

describe('OfferedDigests', () => {
  it('takes the first well-formed offer per piece, rejects malformed ones, and forgets a parent that lied', () => {
    const o = new OfferedDigests();
    expect(o.offer('a', { 0: d('a'), 1: d('b'), 2: 'md5:00', '-1': d('c'), x: d('c'), 3: 'sha256:ABC' })).toBe(2);
    expect(o.offer('b', { 1: d('f'), 4: d('e') })).toBe(1);
    expect(o.offer('b', undefined)).toBe(0);
    expect([0, 1, 2, 3, 4].map((n) => o.get(n))).toEqual([d('a'), d('b'), undefined, undefined, d('e')]);
    o.drop('a');
    expect([0, 1, 4].map((n) => o.get(n))).toEqual([undefined, undefined, d('e')]);
    // Once a's offers are gone, another parent's offer for the piece counts.
    expect(o.offer('b', { 1: d('f') })).toBe(1);
    expect(o.get(1)).toBe(d('f'));
  });
});
