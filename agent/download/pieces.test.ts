import { describe, expect, it } from 'vitest';
import { copyRange, orderPieces } from './pieces.js';

const c = (n: number, holders: number) => ({ n, holders: Array.from({ length: holders }, (_, i) => i) });
const order = (list: ReturnType<typeof c>[], window?: { from: number; to: number }) => orderPieces(list, window).map((x) => x.n);

describe('piece order', () => {
  it('without an in-order reader: rarest first, ties by lowest number', () => {
    expect(order([c(0, 3), c(1, 1), c(2, 2), c(3, 1), c(9, 3)])).toEqual([1, 3, 2, 0, 9]);
  });
  it("an in-order reader's next pieces come first, in order; the rest stays rarest first", () => {
    // The reader waits for piece 4; window of 3 download slots: 4, 5, 6 first (even if common).
    expect(order([c(4, 5), c(5, 5), c(6, 2), c(7, 5), c(10, 1), c(11, 2), c(12, 1)], { from: 4, to: 6 })).toEqual([4, 5, 6, 10, 12, 11, 7]);
  });
  it('a window with no candidate in it changes nothing', () => {
    expect(order([c(20, 2), c(21, 1)], { from: 0, to: 7 })).toEqual([21, 20]);
  });
});

describe('copyRange', () => {
  it('copies a byte range out of a chunk list', () => {
    const chunks = [Buffer.from('abc'), Buffer.from('defg'), Buffer.from('hi')];
    const out = Buffer.alloc(5);
    copyRange(chunks, 2, out);
    expect(out.toString()).toBe('cdefg');
    const all = Buffer.alloc(9);
    copyRange(chunks, 0, all);
    expect(all.toString()).toBe('abcdefghi');
    expect(() => copyRange(chunks, 7, Buffer.alloc(5))).toThrow(RangeError);
  });
});
