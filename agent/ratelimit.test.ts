import { describe, expect, it } from 'vitest';
import { TokenBucket, type Clock } from './ratelimit.js';

/** A clock that only moves when the test (or a sleeper) moves it. */
function fakeClock() {
  let t = 0;
  const slept: number[] = [];
  const clock: Clock = {
    now: () => t,
    sleep: async (ms) => {
      slept.push(ms);
      t += ms;
    },
  };
  return { clock, slept, advance: (ms: number) => (t += ms) };
}

describe('TokenBucket', () => {
  it('passes a burst without waiting, then makes takers pay their debt in time', async () => {
    const c = fakeClock();
    const b = new TokenBucket(1000, c.clock, 100);
    await b.take(100);
    expect(c.slept).toEqual([]);
    await b.take(500);
    expect(c.slept).toEqual([500]); // 500 units of debt at 1000/s
  });
  it('sustains exactly its rate over many takes', async () => {
    const c = fakeClock();
    const b = new TokenBucket(10_000, c.clock, 1_000);
    for (let i = 0; i < 100; i++) await b.take(1_000);
    // 100k units, 1k of burst: 99k at 10k/s = 9.9 s
    expect(c.clock.now()).toBeCloseTo(9_900, 5);
  });
  it('refills while idle but never above the burst', async () => {
    const c = fakeClock();
    const b = new TokenBucket(1000, c.clock, 200);
    await b.take(200);
    c.advance(10_000);
    expect(b.available()).toBe(200);
    await b.take(300);
    expect(c.slept).toEqual([100]);
  });
  it('treats the default 50 GiB/s (and 0) as unlimited', async () => {
    const c = fakeClock();
    for (const rate of [50 * 1024 ** 3, 0]) {
      const b = new TokenBucket(rate, c.clock);
      expect(b.unlimited).toBe(true);
      await b.take(1e12);
    }
    expect(c.slept).toEqual([]);
  });
});
