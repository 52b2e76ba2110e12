/**
 * A consistent-hash ring with virtual nodes. Agents use it to pick the scheduler of a task (so all
 * peers of a task meet on one scheduler); the scheduler uses it to pick the seed peer of a task.
 * Adding or removing one member moves only about 1/n of the keys.
 */
import { createHash } from 'node:crypto';

export const DEFAULT_VIRTUAL_NODES = 160;

function hash32(s: string): number {
  return createHash('sha256').update(s).digest().readUInt32BE(0);
}

export class HashRing {
  private readonly points: { h: number; member: string }[] = [];

  constructor(members: Iterable<string>, virtualNodes = DEFAULT_VIRTUAL_NODES) {
    for (const m of new Set(members)) {
      for (let i = 0; i < virtualNodes; i++) this.points.push({ h: hash32(`${m}#${i}`), member: m });
    }
    this.points.sort((a, b) => a.h - b.h || (a.member < b.member ? -1 : 1));
  }

  get empty(): boolean {
    return this.points.length === 0;
  }

  /** The member owning `key`, or undefined for an empty ring. */
  pick(key: string): string | undefined {
    if (this.points.length === 0) return undefined;
    const h = hash32(key);
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid].h < h) lo = mid + 1;
      else hi = mid;
    }
    return this.points[lo === this.points.length ? 0 : lo].member;
  }
}
