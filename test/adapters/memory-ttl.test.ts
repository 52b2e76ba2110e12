/** TTL logic of the in-process store under controlled time (no sleeping). */
import { describe, expect, it } from 'vitest';
import { MemoryKvStore } from '../../adapters/kv/memory.js';

describe('memory KV TTL with a controlled clock', () => {
  it('hides a record exactly when its TTL passes and restarts versions after expiry', async () => {
    let now = 1_000_000;
    const kv = new MemoryKvStore(() => now);
    expect(await kv.put('a', 'x', { ttlMs: 500 })).toBe(1);
    expect(await kv.put('b', 'y')).toBe(1);
    expect(await kv.get('a')).toEqual({ key: 'a', value: 'x', version: 1, expiresAt: 1_000_500 });
    now += 499;
    expect((await kv.get('a'))?.value).toBe('x');
    now += 1;
    expect(await kv.get('a')).toBeUndefined();
    expect((await kv.list('')).items.map((r) => r.key)).toEqual(['b']);
    await expect(kv.update('a', 'z', 1)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await kv.put('a', 'again')).toBe(1);
    expect((await kv.get('a'))?.expiresAt).toBeUndefined();
    // A rewrite without ttl clears the expiry; with ttl it restarts from the write.
    expect(await kv.update('a', 'later', 1, { ttlMs: 100 })).toBe(2);
    now += 100;
    expect(await kv.get('a')).toBeUndefined();
  });
});
