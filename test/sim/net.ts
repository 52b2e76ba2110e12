/**
 * The host model: every host has an upload and a download capacity (bytes/s); every transfer is a
 * fluid flow from one host's upload to another's download. Rates:
 *
 *   cap(f)  = sender.up / (flows the sender has going)          (equal split at the sender)
 *             and, for a piece still arriving at the sender (cut-through), at most the rate at
 *             which it arrives there (the flow feeding it): the child never overtakes its parent
 *   rate(f) = max-min fair share of the receiver's download among its flows, each at most cap(f)
 *             (water-filling)
 *
 * An agent's piece server sends one piece at a time under an upload limit (agent/piece-server.ts
 * LIMITED_UPLOAD_SLOTS = 1), so a sender has one flow and the split is exact; the origin serves its
 * readers concurrently, where an equal split is exact as long as they are alike (one seed: exact).
 * A rate change at a receiver propagates to the flows that feed on the ones whose rate changed.
 * Bytes are counted as they move: a flow cut short counts the bytes it carried at both ends.
 */
import type { Sim, SimEvent } from './engine.js';

export class SimHost {
  readonly inFlows = new Set<Flow>();
  readonly outFlows = new Set<Flow>();
  sentBytes = 0;
  recvBytes = 0;
  alive = true;
  constructor(readonly id: string, readonly up: number, readonly down: number) {}
}

export interface FlowHooks {
  /** The first `blockBytes` arrived (a verified block: the receiver may serve the piece cut-through). */
  onBlock?(f: Flow): void;
  onDone(f: Flow): void;
  /** Cut short: the sender or receiver left, or the flow it fed on failed. */
  onFail(f: Flow, why: string): void;
}

export class Flow {
  done = 0;
  rate = 0;
  last: number;
  ended = false;
  blockSeen = false;
  readonly dependents = new Set<Flow>();
  ev?: SimEvent;
  blockEv?: SimEvent;
  constructor(
    readonly from: SimHost,
    readonly to: SimHost,
    readonly bytes: number,
    readonly tag: { piece: number; partial: boolean },
    readonly hooks: FlowHooks,
    readonly blockBytes: number,
    /** The flow bringing this piece to the sender (a cut-through send), while it runs. */
    public source: Flow | undefined,
    now: number,
  ) {
    this.last = now;
    this.blockSeen = blockBytes <= 0;
  }
}

export class Network {
  flowsStarted = 0;
  constructor(private readonly sim: Sim) {}

  start(from: SimHost, to: SimHost, bytes: number, tag: Flow['tag'], hooks: FlowHooks, blockBytes = 0, source?: Flow): Flow {
    const f = new Flow(from, to, bytes, tag, hooks, blockBytes, source && !source.ended ? source : undefined, this.sim.now);
    this.flowsStarted++;
    from.outFlows.add(f);
    to.inFlows.add(f);
    f.source?.dependents.add(f);
    this.update(this.touched(from, to));
    return f;
  }

  /** Cuts a flow short (its hooks' onFail runs, and that of every flow feeding on it). */
  fail(f: Flow, why: string): void {
    if (f.ended) return;
    this.end(f);
    for (const d of [...f.dependents]) this.fail(d, `the piece stopped arriving at its sender: ${why}`);
    f.hooks.onFail(f, why);
  }

  /** A host leaves: every flow to or from it is cut. */
  leave(h: SimHost): void {
    h.alive = false;
    for (const f of [...h.inFlows, ...h.outFlows]) this.fail(f, `host ${h.id} left`);
  }

  private settle(f: Flow): void {
    const now = this.sim.now;
    const moved = Math.min(f.bytes - f.done, (f.rate * (now - f.last)) / 1000);
    if (moved > 0) {
      f.done += moved;
      f.from.sentBytes += moved;
      f.to.recvBytes += moved;
    }
    f.last = now;
  }

  private end(f: Flow): void {
    this.settle(f);
    f.ended = true;
    this.sim.cancel(f.ev);
    this.sim.cancel(f.blockEv);
    f.from.outFlows.delete(f);
    f.to.inFlows.delete(f);
    f.source?.dependents.delete(f);
    // Flows fed by this one are no longer capped by it: the piece is whole at their sender now.
    for (const d of f.dependents) d.source = undefined;
    const touched = this.touched(f.from, f.to);
    for (const d of f.dependents) touched.add(d.to);
    f.dependents.clear();
    this.update(touched);
  }

  /** Receivers whose flows' caps may have changed when `from` gained or lost a flow, and `to`. */
  private touched(from: SimHost, to: SimHost): Set<SimHost> {
    const s = new Set<SimHost>([to]);
    for (const g of from.outFlows) s.add(g.to);
    return s;
  }

  private update(hosts: Set<SimHost>): void {
    const work = [...hosts];
    const queued = new Set(work);
    while (work.length > 0) {
      const h = work.shift()!;
      queued.delete(h);
      for (const f of this.refill(h)) {
        for (const d of f.dependents) {
          if (!queued.has(d.to)) {
            queued.add(d.to);
            work.push(d.to);
          }
        }
      }
    }
  }

  /** Water-fills `h`'s download over its flows; returns the flows whose rate changed. */
  private refill(h: SimHost): Flow[] {
    const flows = [...h.inFlows];
    const caps = flows.map((f) => {
      let c = f.from.up / f.from.outFlows.size;
      if (f.source && !f.source.ended) c = Math.min(c, f.source.rate);
      return c;
    });
    const order = flows.map((_, i) => i).sort((a, b) => caps[a]! - caps[b]!);
    let left = h.down;
    const changed: Flow[] = [];
    order.forEach((i, k) => {
      const r = Math.min(caps[i]!, left / (order.length - k));
      left -= r;
      const f = flows[i]!;
      if (r !== f.rate) {
        this.settle(f);
        f.rate = r;
        this.arm(f);
        changed.push(f);
      }
    });
    return changed;
  }

  /** (Re)schedules the flow's completion and first-block events at its current rate. */
  private arm(f: Flow): void {
    this.sim.cancel(f.ev);
    this.sim.cancel(f.blockEv);
    f.ev = f.blockEv = undefined;
    if (f.rate <= 0) return;
    f.ev = this.sim.after(((f.bytes - f.done) / f.rate) * 1000, () => {
      f.ev = undefined;
      this.settle(f);
      const rest = f.bytes - f.done;
      if (rest > 0) {
        f.from.sentBytes += rest;
        f.to.recvBytes += rest;
      }
      f.done = f.bytes;
      this.end(f);
      f.hooks.onDone(f);
    });
    if (!f.blockSeen && f.blockBytes < f.bytes) {
      f.blockEv = this.sim.after((Math.max(0, f.blockBytes - f.done) / f.rate) * 1000, () => {
        f.blockEv = undefined;
        f.blockSeen = true;
        f.hooks.onBlock?.(f);
      });
    }
  }
}
