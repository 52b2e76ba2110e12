/** Bytes of each task this process took from the origin and from parents (for `get`'s summary); bounded, oldest dropped. */
export class TrafficLedger {
  private readonly byTask = new Map<string, { source: number; peer: number }>();

  constructor(private readonly max = 10_000) {}

  count(taskId: string, kind: 'source' | 'peer', bytes: number): void {
    let t = this.byTask.get(taskId);
    if (!t) {
      if (this.byTask.size >= this.max) this.byTask.delete(this.byTask.keys().next().value!);
      t = { source: 0, peer: 0 };
      this.byTask.set(taskId, t);
    }
    t[kind] += bytes;
  }

  of(taskId: string): { source: number; peer: number } {
    const t = this.byTask.get(taskId);
    return { source: t?.source ?? 0, peer: t?.peer ?? 0 };
  }
}
