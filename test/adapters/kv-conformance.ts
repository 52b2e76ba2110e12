/**
 * The KV conformance suite, written once and run against every backend with its real server
 * (test/adapters/kv.conformance.test.ts). A backend passes when it behaves exactly like the port's
 * contract says: versions, conditional writes under races, stable pagination, TTL, transactions,
 * and typed errors with bounded waits while its server is unreachable.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { KvStore } from '../../adapters/kv/port.js';

export interface Outage {
  /** Makes the server unreachable (connections hang or are refused). */
  down(): Promise<void>;
  /** Makes it reachable again. */
  up(): Promise<void>;
}

export interface KvSuiteOptions {
  /** Builds a store on the backend; called more than once, every instance sees the same data. */
  open(): Promise<KvStore>;
  /** The configured per-operation timeout of stores from `open` (bounds the outage test). */
  timeoutMs?: number;
  /** How to cut the server off; absent for in-process backends. */
  outage?: Outage;
  /** Concurrent writers in the CAS race. */
  writers?: number;
}

function code(err: unknown): string | undefined {
  return (err as { code?: string })?.code;
}

async function expectCode(p: Promise<unknown>, expected: string): Promise<void> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected an error with code ${expected}`).toBeDefined();
  expect(code(err)).toBe(expected);
}

/** Registers the suite inside the caller's describe block. */
export function kvConformance(opts: KvSuiteOptions): void {
  let a: KvStore;
  let b: KvStore;
  const ns = `t${randomUUID().slice(0, 8)}/`;
  const writers = opts.writers ?? 8;

  beforeAll(async () => {
    a = await opts.open();
    b = await opts.open();
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('reads its own writes, versions each write, deletes', async () => {
    const k = `${ns}ryw`;
    expect(await a.get(k)).toBeUndefined();
    expect(await a.put(k, { n: 1 })).toBe(1);
    expect(await a.get(k)).toEqual({ key: k, value: { n: 1 }, version: 1 });
    expect(await b.put(k, { n: 2 })).toBe(2);
    expect(await a.get(k)).toMatchObject({ value: { n: 2 }, version: 2 });
    expect(await a.delete(k)).toBe(true);
    expect(await b.get(k)).toBeUndefined();
    expect(await a.delete(k)).toBe(false);
  });

  it('round-trips JSON values of every shape', async () => {
    const values: unknown[] = [
      { nested: { arr: [1, 'two', null, true, { x: 1.5 }] }, unicode: 'ünïcødé ✓ 🐟', empty: {} },
      [1, 2, 3],
      'a string',
      42,
      0,
      false,
      null,
    ];
    for (const [i, v] of values.entries()) {
      await a.put(`${ns}json/${i}`, v);
      expect((await b.get(`${ns}json/${i}`))?.value).toEqual(v);
    }
  });

  it('create-if-absent and compare-and-set reject with typed errors', async () => {
    const k = `${ns}cond`;
    expect(await a.create(k, 'first')).toBe(1);
    await expectCode(b.create(k, 'second'), 'CONFLICT');
    expect(await a.update(k, 'v2', 1)).toBe(2);
    await expectCode(b.update(k, 'stale', 1), 'CONFLICT');
    await expectCode(a.update(`${ns}missing`, 'x', 1), 'NOT_FOUND');
    await expectCode(a.delete(k, { expectedVersion: 1 }), 'CONFLICT');
    expect((await a.get(k))?.value).toBe('v2');
    expect(await a.delete(k, { expectedVersion: 2 })).toBe(true);
    await expectCode(a.put('', 1), 'INVALID');
    await expectCode(a.put(`${ns}bad`, undefined), 'INVALID');
  });

  it(`conditional put race: ${writers} concurrent CAS writers, exactly one wins each round`, async () => {
    const k = `${ns}race`;
    await a.create(k, { n: 0 });
    for (let round = 0; round < writers; round++) {
      const cur = (await a.get<{ n: number }>(k))!;
      const results = await Promise.allSettled(
        Array.from({ length: writers }, (_, w) => (w % 2 ? b : a).update(k, { n: cur.value.n + 1, w }, cur.version)),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      expect(won).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(code(r.reason)).toBe('CONFLICT');
    }
    expect((await b.get<{ n: number }>(k))?.value.n).toBe(writers);
  });

  it(`no lost update: ${writers} writers each increment once with retry`, async () => {
    const k = `${ns}incr`;
    await a.create(k, 0);
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        const s = w % 2 ? b : a;
        for (;;) {
          const cur = (await s.get<number>(k))!;
          try {
            await s.update(k, cur.value + 1, cur.version);
            return;
          } catch (err) {
            if (code(err) !== 'CONFLICT') throw err;
          }
        }
      }),
    );
    expect(await a.get(k)).toMatchObject({ value: writers, version: writers + 1 });
  });

  it('lists by prefix in ascending pages, stable under concurrent inserts', async () => {
    const p = `${ns}page/`;
    const original = Array.from({ length: 25 }, (_, i) => `${p}k${String(i * 2).padStart(3, '0')}`);
    await Promise.all(original.map((k, i) => a.put(k, { i })));
    await a.put(`${ns}pagf`, 'outside the prefix');
    await a.put(`${ns}pag`, 'outside the prefix');
    const seen: string[] = [];
    const inserted: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await b.list<{ i: number }>(p, { limit: 10, cursor });
      expect(page.items.length).toBeLessThanOrEqual(10);
      seen.push(...page.items.map((r) => r.key));
      for (const r of page.items) expect(r.version).toBeGreaterThanOrEqual(1);
      cursor = page.cursor;
      pages++;
      // Between pages another writer inserts one key behind the cursor and one ahead of it.
      if (pages === 1) {
        inserted.push(`${p}k001`, `${p}k041`);
        await Promise.all(inserted.map((k) => a.put(k, { late: true })));
      }
    } while (cursor && pages < 20);
    const sorted = [...seen].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(seen).toEqual(sorted);
    expect(new Set(seen).size).toBe(seen.length);
    for (const k of original) expect(seen).toContain(k);
    expect(seen).toContain(`${p}k041`); // ahead of the cursor: must appear
    expect(seen).not.toContain(`${p}k001`); // behind the cursor: must not reappear out of order
    expect(seen.every((k) => k.startsWith(p))).toBe(true);
    expect(pages).toBeGreaterThanOrEqual(3);
    const all = await a.list(p, { limit: 1000 });
    expect(all.items).toHaveLength(27);
    expect(all.cursor).toBeUndefined();
    await expectCode(a.list(p, { cursor: Buffer.from('elsewhere').toString('base64url') }), 'INVALID');
    // The empty prefix lists everything, in the same order.
    const everything = await a.list('', { limit: 1000 });
    const ours = everything.items.map((r) => r.key).filter((k) => k.startsWith(p));
    expect(ours).toEqual(all.items.map((r) => r.key));
  });

  it('expires records after their TTL', async () => {
    const k = `${ns}ttl/x`;
    const before = Date.now();
    await a.put(k, 'short-lived', { ttlMs: 1_000 });
    await a.put(`${ns}ttl/y`, 'long-lived', { ttlMs: 60_000 });
    const rec = await b.get(k);
    expect(rec?.value).toBe('short-lived');
    expect(rec?.expiresAt).toBeGreaterThanOrEqual(before + 900);
    expect(rec?.expiresAt).toBeLessThanOrEqual(Date.now() + 1_100);
    await new Promise((r) => setTimeout(r, 1_400));
    expect(await b.get(k)).toBeUndefined();
    expect((await a.list(`${ns}ttl/`)).items.map((r) => r.key)).toEqual([`${ns}ttl/y`]);
    await expectCode(a.update(k, 'late', 1), 'NOT_FOUND');
    expect(await a.create(k, 'reborn')).toBe(1);
    expect((await b.get(k))?.expiresAt).toBeUndefined();
  });

  it('transactions apply all ops or none', async () => {
    const p = `${ns}tx/`;
    await a.put(`${p}a`, 'a1');
    await a.put(`${p}d`, 'gone soon');
    await a.transact([
      { type: 'update', key: `${p}a`, value: 'a2', expectedVersion: 1 },
      { type: 'create', key: `${p}b`, value: 'b1' },
      { type: 'put', key: `${p}c`, value: 'c1' },
      { type: 'delete', key: `${p}d` },
    ]);
    expect((await b.list(p)).items.map((r) => [r.key, r.value, r.version])).toEqual([
      [`${p}a`, 'a2', 2],
      [`${p}b`, 'b1', 1],
      [`${p}c`, 'c1', 1],
    ]);
    await expectCode(
      b.transact([
        { type: 'put', key: `${p}c`, value: 'c2' },
        { type: 'delete', key: `${p}b`, expectedVersion: 1 },
        { type: 'create', key: `${p}e`, value: 'e1' },
        { type: 'update', key: `${p}a`, value: 'lost', expectedVersion: 1 },
      ]),
      'CONFLICT',
    );
    expect((await a.list(p)).items.map((r) => [r.key, r.value, r.version])).toEqual([
      [`${p}a`, 'a2', 2],
      [`${p}b`, 'b1', 1],
      [`${p}c`, 'c1', 1],
    ]);
    const tooMany = Array.from({ length: a.maxTransactionOps + 1 }, (_, i) => ({ type: 'put' as const, key: `${p}many/${i}`, value: i }));
    await expectCode(a.transact(tooMany), 'INVALID');
    await expectCode(a.transact([{ type: 'put', key: `${p}a`, value: 1 }, { type: 'delete', key: `${p}a` }]), 'INVALID');
  });

  if (opts.outage) {
    const outage = opts.outage;
    const timeoutMs = opts.timeoutMs ?? 5_000;
    it('while the server is down: typed UNAVAILABLE within the timeout; works again after it returns', async () => {
      const k = `${ns}outage`;
      await a.put(k, 'before');
      await outage.down();
      try {
        for (const op of [() => a.get(k), () => a.put(k, 'during'), () => a.list(ns)]) {
          const t0 = Date.now();
          await expectCode(op(), 'UNAVAILABLE');
          expect(Date.now() - t0).toBeLessThan(timeoutMs * 2 + 1_000);
        }
      } finally {
        await outage.up();
      }
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          // A write that timed out may or may not have happened (as with any timeout); nothing else may appear.
          expect(['before', 'during']).toContain((await a.get(k))?.value);
          break;
        } catch (err) {
          if (Date.now() > deadline || code(err) !== 'UNAVAILABLE') throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      expect(await a.put(k, 'after')).toBeGreaterThanOrEqual(2);
      expect((await b.get(k))?.value).toBe('after');
    });
  }
}
