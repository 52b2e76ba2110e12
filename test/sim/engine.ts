/**
 * The simulator's time: one event queue (a binary heap ordered by time, then by insertion) and a
 * virtual Clock (adapters/clock.ts) for the real scheduler, whose `sleep` is an event of this queue.
 *
 * The run loop never yields to Node's timer or I/O phases: after an event that reached the
 * scheduler, it awaits resolved promises a fixed number of times, so the scheduler's async
 * continuations (a `schedule()` woken from its sleep, the `.then` that writes the answer) run at
 * the virtual time of that event, and no real-time timer the scheduler sets (the digest push batch,
 * service.ts schedulePush) ever fires during a run; the world drives that batch in virtual time.
 */
import type { Clock } from '../../adapters/clock.js';

/** Microtask turns granted after an event that touched the scheduler (its deepest chain is ~5). */
const DRAIN_TURNS = 32;

export interface SimEvent {
  t: number;
  seq: number;
  fn: () => void;
  dead: boolean;
  /** A delivery to the scheduler (or a wake-up of it): its CPU, drain included, is the scheduler's. */
  sched: boolean;
}

/** Deterministic PRNG (mulberry32), as test/support/fake-clock.ts. */
export function rng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    let x = (s = (s + 0x6d2b79f5) | 0);
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export class Sim {
  /** Virtual time in milliseconds since the start of the run. */
  now = 0;
  events = 0;
  private heap: SimEvent[] = [];
  private seq = 0;
  /** Set when something may have queued scheduler continuations (see run()). */
  dirty = false;
  /** CPU microseconds spent inside scheduler calls and their continuations. */
  schedCpuUs = 0;

  at(t: number, fn: () => void, sched = false): SimEvent {
    const e: SimEvent = { t: Math.max(t, this.now), seq: this.seq++, fn, dead: false, sched };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p]!, e)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
    return e;
  }

  after(ms: number, fn: () => void, sched = false): SimEvent {
    return this.at(this.now + ms, fn, sched);
  }

  private inSchedEvent = false;

  cancel(e: SimEvent | undefined): void {
    if (e) e.dead = true;
  }

  private pop(): SimEvent | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && less(h[r]!, h[l]!) ? r : l;
        if (less(last, h[c]!)) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }

  /** Runs `fn` as a scheduler call: its CPU time counts as the scheduler's, its continuations drain after the event. */
  sched<T>(fn: () => T): T {
    this.dirty = true;
    if (this.inSchedEvent) return fn();
    const c0 = process.cpuUsage();
    try {
      return fn();
    } finally {
      const c = process.cpuUsage(c0);
      this.schedCpuUs += c.user + c.system;
      this.dirty = true;
    }
  }

  /** Runs events in time order until none is left, `stop()` holds, or virtual time passes `untilMs`. */
  async run(stop: () => boolean, untilMs = Infinity): Promise<void> {
    for (;;) {
      const e = this.pop();
      if (!e) return;
      if (e.dead) continue;
      if (e.t > untilMs) return;
      this.now = e.t;
      this.events++;
      if (e.sched) {
        // One CPU reading around the delivery and the continuations it queued (cpuUsage is a syscall).
        const c0 = process.cpuUsage();
        this.inSchedEvent = true;
        e.fn();
        this.inSchedEvent = false;
        for (let i = 0; i < DRAIN_TURNS; i++) await undefined;
        this.dirty = false;
        const c = process.cpuUsage(c0);
        this.schedCpuUs += c.user + c.system;
      } else e.fn();
      if (this.dirty) {
        this.dirty = false;
        const c0 = process.cpuUsage();
        for (let i = 0; i < DRAIN_TURNS; i++) await undefined;
        const c = process.cpuUsage(c0);
        this.schedCpuUs += c.user + c.system;
      }
      if (stop()) return;
    }
  }
}

function less(a: SimEvent, b: SimEvent): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq);
}

/** The scheduler's clock: virtual now, sleeps as events, a seeded PRNG. */
export class VirtualClock implements Clock {
  readonly random: () => number;
  constructor(private readonly sim: Sim, seed: number) {
    this.random = rng(seed);
  }

  now(): number {
    return this.sim.now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const onAbort = (): void => {
        this.sim.cancel(ev);
        this.sim.dirty = true;
        resolve();
      };
      const ev = this.sim.after(
        ms,
        () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        true,
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
