/**
 * The queue conformance suite, written once and run against every backend with its real server
 * (test/adapters/queue.conformance.test.ts): at-least-once delivery with visibility timeouts,
 * redelivery, exclusive delivery within a visibility window, prompt long-poll wake-ups, delays,
 * deduplication, dead-lettering after K deliveries and bounded waits while the server is down.
 * Visibility timeouts are whole seconds so that SQS (second granularity) runs the same suite.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Outage } from './kv-conformance.js';
import { deadLetterName, type Queue, type QueueMessage } from '../../adapters/queue/port.js';

export interface QueueSuiteOptions {
  /** Builds a queue client on the backend with `maxReceives` = 2; every instance sees the same queues. */
  open(): Promise<Queue>;
  timeoutMs?: number;
  outage?: Outage;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function code(err: unknown): string | undefined {
  return (err as { code?: string })?.code;
}

/** Registers the suite inside the caller's describe block. The backend must be opened with maxReceives 2. */
export function queueConformance(opts: QueueSuiteOptions): void {
  let a: Queue;
  let b: Queue;
  const run = randomUUID().slice(0, 8);
  let n = 0;
  const fresh = () => `t${run}-${n++}`;

  beforeAll(async () => {
    a = await opts.open();
    b = await opts.open();
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('sends, receives and acknowledges; an acked message never returns', async () => {
    const q = fresh();
    const body = { job: 'x', list: [1, 2], text: 'ünï ✓' };
    const id = await a.send(q, body);
    const [m, ...rest] = await b.receive(q, { waitMs: 2_000, visibilityMs: 1_000 });
    expect(rest).toEqual([]);
    expect(m).toMatchObject({ id, body, receiveCount: 1 });
    expect(m.sentAt).toBeGreaterThan(Date.now() - 60_000);
    await b.ack(q, m.receipt);
    expect(await a.receive(q, { waitMs: 1_400, visibilityMs: 1_000 })).toEqual([]);
  });

  it('hides a received message for its visibility timeout, then redelivers it', async () => {
    const q = fresh();
    const id = await a.send(q, 'redeliver me');
    const [first] = await a.receive(q, { waitMs: 2_000, visibilityMs: 1_000 });
    expect(first.id).toBe(id);
    const t0 = Date.now();
    expect(await b.receive(q, { waitMs: 0, visibilityMs: 1_000 })).toEqual([]);
    const [again] = await b.receive(q, { waitMs: 5_000, visibilityMs: 1_000 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
    expect(again).toMatchObject({ id, body: 'redeliver me', receiveCount: 2 });
    expect(again.receipt).not.toBe(first.receipt);
    await b.ack(q, again.receipt);
  });

  it('extends visibility, and visibility 0 releases at once', async () => {
    const q = fresh();
    await a.send(q, 'extend me');
    const [m] = await a.receive(q, { waitMs: 2_000, visibilityMs: 1_000 });
    await a.extend(q, m.receipt, 4_000);
    expect(await b.receive(q, { waitMs: 2_000, visibilityMs: 1_000 })).toEqual([]);
    await a.extend(q, m.receipt, 0);
    const [back] = await b.receive(q, { waitMs: 2_000, visibilityMs: 1_000 });
    expect(back?.id).toBe(m.id);
    await b.ack(q, back.receipt);
  });

  it('loses no message and delivers none to two consumers within its visibility window', async () => {
    const q = fresh();
    const total = 30;
    const ids = new Set(await Promise.all(Array.from({ length: total }, (_, i) => (i % 2 ? a : b).send(q, { i }))));
    expect(ids.size).toBe(total);
    const deliveries = new Map<string, number>();
    const bodies = new Set<number>();
    const deadline = Date.now() + 30_000;
    await Promise.all(
      Array.from({ length: 4 }, async (_, c) => {
        const s = c % 2 ? a : b;
        while (bodies.size < total && Date.now() < deadline) {
          const got: QueueMessage<{ i: number }>[] = await s.receive(q, { max: 5, waitMs: 1_000, visibilityMs: 20_000 });
          for (const m of got) {
            deliveries.set(m.id, (deliveries.get(m.id) ?? 0) + 1);
            bodies.add(m.body.i);
            await s.ack(q, m.receipt);
          }
        }
      }),
    );
    expect(bodies.size).toBe(total);
    expect([...deliveries.keys()].sort()).toEqual([...ids].sort());
    expect([...deliveries.values()].every((count) => count === 1)).toBe(true);
  });

  it('a long poll wakes promptly when a message is sent', async () => {
    const q = fresh();
    const pending = b.receive(q, { waitMs: 10_000, visibilityMs: 1_000 });
    await sleep(400);
    const sentAt = Date.now();
    await a.send(q, 'wake up');
    const [m] = await pending;
    expect(m?.body).toBe('wake up');
    expect(Date.now() - sentAt).toBeLessThan(1_000);
    await b.ack(q, m.receipt);
  });

  it('an aborted long poll returns early with nothing', async () => {
    const q = fresh();
    const ctl = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ctl.abort(), 300);
    expect(await a.receive(q, { waitMs: 10_000, signal: ctl.signal })).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(3_000);
  });

  it('delays delivery of a delayed message', async () => {
    const q = fresh();
    const t0 = Date.now();
    await a.send(q, 'later', { delayMs: 1_000 });
    expect(await b.receive(q, { waitMs: 0 })).toEqual([]);
    const [m] = await b.receive(q, { waitMs: 5_000, visibilityMs: 1_000 });
    expect(m?.body).toBe('later');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    await b.ack(q, m.receipt);
  });

  it('drops a second send with the same dedup id', async () => {
    const q = fresh();
    const id1 = await a.send(q, 'once', { dedupId: 'd-1' });
    const id2 = await a.send(q, 'twice', { dedupId: 'd-1' });
    expect(id2).toBe(id1);
    const got = await b.receive(q, { max: 10, waitMs: 1_500, visibilityMs: 1_000 });
    expect(got.map((m) => m.body)).toEqual(['once']);
    await b.ack(q, got[0].receipt);
    expect(await b.receive(q, { max: 10, waitMs: 1_200, visibilityMs: 1_000 })).toEqual([]);
  });

  it('dead-letters a message after K = 2 deliveries without an ack', async () => {
    const q = fresh();
    const id = await a.send(q, { poison: true });
    for (let k = 1; k <= 2; k++) {
      const [m] = await a.receive(q, { waitMs: 5_000, visibilityMs: 1_000 });
      expect(m).toMatchObject({ id, receiveCount: k });
    }
    await sleep(1_100);
    expect(await b.receive(q, { waitMs: 1_500, visibilityMs: 1_000 })).toEqual([]);
    const [dead] = await b.receive(deadLetterName(q), { waitMs: 5_000, visibilityMs: 1_000 });
    expect(dead?.body).toEqual({ poison: true });
    await b.ack(deadLetterName(q), dead.receipt);
  });

  it('rejects bad names and options with INVALID', async () => {
    for (const p of [a.send('bad name!', 1), a.receive('ok', { max: 0 }), a.receive('ok', { waitMs: -1 }), a.send('ok', undefined)]) {
      await expect(p).rejects.toMatchObject({ code: 'INVALID' });
    }
  });

  if (opts.outage) {
    const outage = opts.outage;
    const timeoutMs = opts.timeoutMs ?? 5_000;
    it('while the server is down: typed UNAVAILABLE within the timeout; works again after it returns', async () => {
      const q = fresh();
      await a.send(q, 'before');
      await outage.down();
      try {
        for (const op of [() => a.send(q, 'during'), () => a.receive(q, { waitMs: 0 })]) {
          const t0 = Date.now();
          let err: unknown;
          await op().catch((e) => (err = e));
          expect(code(err)).toBe('UNAVAILABLE');
          expect(Date.now() - t0).toBeLessThan(timeoutMs * 2 + 1_000);
        }
      } finally {
        await outage.up();
      }
      const deadline = Date.now() + 30_000;
      const bodies: unknown[] = [];
      while (!bodies.includes('before') && Date.now() < deadline) {
        try {
          for (const m of await a.receive(q, { max: 10, waitMs: 1_000, visibilityMs: 5_000 })) {
            bodies.push(m.body);
            await a.ack(q, m.receipt);
          }
        } catch (err) {
          if (code(err) !== 'UNAVAILABLE') throw err;
          await sleep(250);
        }
      }
      expect(bodies).toContain('before');
      expect(await a.send(q, 'after')).toBeTruthy();
    });
  }
}
