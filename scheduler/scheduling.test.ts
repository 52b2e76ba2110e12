import { describe, expect, it } from 'vitest';
import { FakeClock } from '../test/support/fake-clock.js';
import { schedulerConfig } from './config.js';
import { Scheduling, type Decision } from './scheduling.js';
import { World } from '../test/scheduler/fixtures.js';
import type { Host } from './resource/host.js';

function setup(overrides: Record<string, unknown> = {}, seed?: () => Host | undefined, trigger?: (h: Host) => void) {
  const clock = new FakeClock();
  const cfg = schedulerConfig({ scheduling: { rejoinGrace: 0, retryInterval: '100ms', retryLimit: 5, retryBackToSourceLimit: 3, backToSourceCount: 1, candidateParentLimit: 2, ...overrides } });
  const w = new World(() => clock.now());
  const s = new Scheduling(
    w.r,
    { ...cfg.scheduling, seedPeerEnable: true, seedTriggerTimeout: 1000 },
    clock,
    { triggerSeedPeer: trigger ? (h) => trigger(h) : undefined },
    seed ?? (() => undefined),
  );
  return { clock, w, s };
}

describe('scheduling', () => {
  it('sends the first peer of a task back to source and takes the slot', async () => {
    const { w, s } = setup();
    const a = w.peer('a', 'ha', 'Pending');
    const d = await s.schedule(a);
    expect(d).toEqual({ kind: 'backToSource', reason: expect.stringContaining('no peer') });
    expect(a.state).toBe('BackToSource');
    expect([...a.task.backToSourcePeers]).toEqual(['a']);
    expect(a.task.state).toBe('Running');
  });

  it('gives later peers the source as parent, best first, limited, with upload slots charged', async () => {
    const { w, s } = setup();
    const src = w.peer('src', 'h0', 'BackToSource', 't1', 4);
    const r1 = w.peer('r1', 'h1', 'Pending');
    expect(await s.schedule(r1)).toMatchObject({ kind: 'normal', parents: [src] });
    expect(r1.state).toBe('ReceivedNormal');
    expect(src.host.concurrentUploadCount).toBe(1);
    r1.transition('Running', 0);
    r1.finishedPieces.add(0);
    const r2 = w.peer('r2', 'h2', 'Pending');
    w.peer('r3', 'h3', 'ReceivedNormal'); // no parent and not a source: never a parent
    const d = (await s.schedule(r2)) as Extract<Decision, { kind: 'normal' }>;
    expect(d.parents.map((p) => p.id)).toEqual(['src', 'r1']);
  });

  it('lets peers registering together use each other (a mesh, not a star on the source)', async () => {
    const { w, s } = setup({ candidateParentLimit: 3 });
    w.peer('src', 'h0', 'BackToSource');
    const got: string[][] = [];
    for (let i = 1; i <= 5; i++) {
      const d = (await s.schedule(w.peer(`p${i}`, `h${i}`, 'Pending'))) as Extract<Decision, { kind: 'normal' }>;
      got.push(d.parents.map((p) => p.id));
    }
    expect(got[0]).toEqual(['src']);
    expect(got[1].sort()).toEqual(['p1', 'src']);
    expect(got[4]).toHaveLength(3);
    expect(w.r.tasks.get('t1')!.dag.hasCycle()).toBe(false);
  });

  it('filters blocklisted parents, same host, disable_shared, and normal peers without a parent', async () => {
    const { w, s, clock } = setup();
    w.host('shy', { disableShared: true });
    w.peer('src', 'h0', 'BackToSource');
    w.peer('orphan', 'h1', 'Running'); // normal, in-degree 0, not a source
    w.peer('shy1', 'shy', 'Succeeded');
    w.peer('same', 'hc', 'Succeeded');
    const c = w.peer('c', 'hc', 'Pending');
    c.blockParents.add('src');
    const p = s.schedule(c);
    // Nothing acceptable, and the slot is taken by src: wait and retry, then fail at retryLimit.
    for (let i = 0; i < 10; i++) await clock.advance(100);
    expect(await p).toEqual({ kind: 'fail', reason: 'scheduling exceeded retryLimit' });
  });

  it('waits with jitter and goes back to source after retryBackToSourceLimit when the slot frees', async () => {
    const { w, s, clock } = setup();
    const src = w.peer('src', 'h0', 'BackToSource');
    const c = w.peer('c', 'h1', 'Pending');
    c.blockParents.add('src');
    let d: Decision | undefined;
    const t0 = clock.now();
    s.schedule(c).then((x) => (d = x));
    await clock.advance(10);
    expect(d).toBeUndefined();
    // The source fails: the slot frees, but there is still a "source" until it leaves.
    src.task.backToSourcePeers.delete('src');
    for (let i = 0; i < 10 && !d; i++) await clock.advance(50);
    expect(d).toEqual({ kind: 'backToSource', reason: 'scheduling exceeded retryBackToSourceLimit' });
    // Three sleeps of 50..100 ms each.
    expect(clock.now() - t0).toBeGreaterThanOrEqual(150);
    expect(clock.now() - t0).toBeLessThanOrEqual(360);
  });

  it('sends only the first of peers registering together to the origin', async () => {
    const { w, s } = setup();
    const ds = await Promise.all(['a', 'b', 'c'].map((id, i) => s.schedule(w.peer(id, `h${i}`, 'Pending'))));
    expect(ds.map((d) => d.kind)).toEqual(['backToSource', 'normal', 'normal']);
    expect([...w.r.tasks.get('t1')!.backToSourcePeers]).toEqual(['a']);
  });

  it('lets a peer that needs the origin go there while the cap allows, and not beyond', async () => {
    const { w, s, clock } = setup({ backToSourceCount: 2 });
    w.peer('src', 'h0', 'BackToSource');
    const a = w.peer('a', 'h1', 'Pending');
    a.needBackToSource = true;
    expect(await s.schedule(a)).toMatchObject({ kind: 'backToSource', reason: 'peer needs back-to-source' });
    const b = w.peer('b', 'h2', 'Pending');
    b.needBackToSource = true;
    b.blockParents.add('src').add('a');
    let d: Decision | undefined;
    s.schedule(b).then((x) => (d = x));
    for (let i = 0; i < 10 && !d; i++) await clock.advance(100);
    expect(d).toMatchObject({ kind: 'fail' });
    expect(w.r.tasks.get('t1')!.backToSourcePeers.size).toBe(2);
  });

  it('never adds an edge that closes a cycle', async () => {
    const { w, s, clock } = setup({ candidateParentLimit: 4 });
    w.peer('src', 'h0', 'BackToSource');
    const a = w.peer('a', 'h1', 'Pending');
    const b = w.peer('b', 'h2', 'Pending');
    await s.schedule(a);
    a.transition('Running', 0);
    await s.schedule(b);
    b.transition('Running', 0);
    expect(w.r.tasks.get('t1')!.dag.parents('b').has('a')).toBe(true);
    a.blockParents.add('src');
    // a's only other candidate is b, whose parent is a; src holds the only slot: a fails.
    let d: Decision | undefined;
    s.schedule(a).then((x) => (d = x));
    for (let i = 0; i < 10 && !d; i++) await clock.advance(100);
    expect(d).toEqual({ kind: 'fail', reason: 'scheduling exceeded retryLimit' });
    expect(w.r.tasks.get('t1')!.dag.hasCycle()).toBe(false);
  });

  it('cancels a loop when the peer is rescheduled or leaves', async () => {
    const { w, s, clock } = setup();
    w.peer('src', 'h0', 'BackToSource');
    const c = w.peer('c', 'h1', 'Pending');
    c.blockParents.add('src');
    const first = s.schedule(c);
    await clock.advance(10);
    w.r.deletePeer('c');
    await clock.advance(200);
    expect(await first).toEqual({ kind: 'cancelled' });
  });

  it('triggers a seed peer for a task nobody holds and waits for it instead of the origin', async () => {
    const triggered: string[] = [];
    let seedHost: Host | undefined;
    const { w, s, clock } = setup({}, () => seedHost, (h) => triggered.push(h.id));
    w.host('seed', { type: 'SUPER_SEED' });
    seedHost = w.r.hosts.get('seed');
    const n = w.peer('n', 'h1', 'Pending');
    expect(s.maybeTriggerSeedPeer(n)).toBe(true);
    expect(s.maybeTriggerSeedPeer(n)).toBe(true);
    expect(triggered).toEqual(['seed']);
    let d: Decision | undefined;
    s.schedule(n).then((x) => (d = x));
    await clock.advance(120);
    expect(d).toBeUndefined();
    // The seed peer registers and is sent to the source; the normal peer gets it as parent.
    const sp = w.peer('sp', 'seed', 'BackToSource');
    n.task.seedTriggeredAt = undefined;
    await clock.advance(100);
    expect(d).toMatchObject({ kind: 'normal', parents: [sp] });
  });

  it('follows Dragonfly priorities for a task nobody holds: LEVEL1 forbidden, LEVEL2 not found, LEVEL3 origin, others seed', async () => {
    const triggered: string[] = [];
    let seedHost: Host | undefined;
    const { w, s } = setup({}, () => seedHost, (h) => triggered.push(h.id));
    w.host('seed', { type: 'SUPER_SEED' });
    seedHost = w.r.hosts.get('seed');
    const at = (id: string, level: number, task: string) => {
      const p = w.peer(id, `h-${id}`, 'Pending', task);
      p.priority = `LEVEL${level}`;
      return p;
    };
    const l1 = at('l1', 1, 't1');
    expect(s.maybeTriggerSeedPeer(l1)).toBe(false);
    expect(await s.schedule(l1)).toEqual({ kind: 'fail', reason: expect.stringContaining('LEVEL1'), code: 'FAILED_PRECONDITION' });
    const l2 = at('l2', 2, 't2');
    expect(s.maybeTriggerSeedPeer(l2)).toBe(false);
    expect(await s.schedule(l2)).toEqual({ kind: 'fail', reason: expect.stringContaining('LEVEL2'), code: 'NOT_FOUND' });
    const l3 = at('l3', 3, 't3');
    expect(s.maybeTriggerSeedPeer(l3)).toBe(false);
    expect(await s.schedule(l3)).toMatchObject({ kind: 'backToSource' });
    expect(triggered).toEqual([]);
    expect(s.maybeTriggerSeedPeer(at('l6', 6, 't4'))).toBe(true);
    expect(s.maybeTriggerSeedPeer(at('l0', 0, 't5'))).toBe(true);
    expect(triggered).toEqual(['seed', 'seed']);
    // Once some peer holds the task, every level gets it as a parent.
    const src = w.peer('src', 'h-src', 'BackToSource', 't6');
    expect(await s.schedule(at('l1b', 1, 't6'))).toMatchObject({ kind: 'normal', parents: [src] });
  });

  it('sends the normal peer to the source when the seed trigger fails or times out', async () => {
    const seedHost = new World().host('seed', { type: 'SUPER_SEED' }).r.hosts.get('seed');
    const { w, s, clock } = setup({ retryLimit: 50, retryBackToSourceLimit: 50 }, () => seedHost, () => {});
    const n = w.peer('n', 'h1', 'Pending');
    s.maybeTriggerSeedPeer(n);
    let d: Decision | undefined;
    s.schedule(n).then((x) => (d = x));
    await clock.advance(900);
    expect(d).toBeUndefined();
    await clock.advance(300); // past seedTriggerTimeout (1 s)
    expect(d).toMatchObject({ kind: 'backToSource' });
    expect(n.task.seedFailedAt).toBeDefined();
    // Within the failure window no seed is asked again.
    const m = w.peer('m', 'h2', 'Pending', 't2');
    m.task.seedFailedAt = clock.now();
    expect(s.maybeTriggerSeedPeer(m)).toBe(false);
  });

  it('does not count a peer that read only a range as a source', async () => {
    const { w, s } = setup({ backToSourceCount: 2 });
    const r = w.peer('ranged', 'h0', 'Succeeded');
    r.partial = true;
    r.task.backToSourcePeers.clear();
    w.host('h1');
    expect(s.hasSource(r.task, w.r.hosts.get('h1')!)).toBe(false);
    r.partial = false;
    expect(s.hasSource(r.task, w.r.hosts.get('h1')!)).toBe(true);
    r.partial = true;
    expect(await s.schedule(w.peer('n', 'h1', 'Pending'))).toMatchObject({ kind: 'backToSource' });
  });

  it('wakes a waiting peer as soon as a source appears, without spending retry rounds', async () => {
    const { w, s, clock } = setup({ retryLimit: 2, retryBackToSourceLimit: 2 });
    w.peer('busy', 'h0', 'BackToSource'); // holds the only slot
    const c = w.peer('c', 'h1', 'Pending');
    c.blockParents.add('busy');
    let d: Decision | undefined;
    s.schedule(c).then((x) => (d = x));
    await clock.advance(1);
    // Many wake-ups without a usable parent: none of them counts as a round.
    for (let i = 0; i < 10; i++) {
      c.task.wake();
      await clock.advance(0);
    }
    expect(d).toBeUndefined();
    const t0 = clock.now();
    // A second source appears (e.g. a seed peer registered): the waiting peer gets it at once.
    c.task.backToSourcePeers.clear();
    const seed = w.peer('seedp', 'h2', 'Pending');
    seed.needBackToSource = true;
    expect(await s.schedule(seed)).toMatchObject({ kind: 'backToSource' });
    await clock.advance(0);
    expect(d).toMatchObject({ kind: 'normal', parents: [seed] });
    expect(clock.now()).toBe(t0);
  });

  it('after a parent died, gives its orphaned child the live holders (a slow seed, a sibling with pieces) rather than the origin or a failure', async () => {
    for (const backToSourceCount of [1, 2]) {
      // 1: the seed holds the only origin slot (the child would fail at retryLimit);
      // 2: a slot is free (the child would go to the origin at retryBackToSourceLimit).
      const { w, s, clock } = setup({ backToSourceCount, candidateParentLimit: 3 }, undefined);
      w.host('seedh', { type: 'SUPER_SEED' });
      const seed = w.peer('seed', 'seedh', 'BackToSource', 't1', 8);
      // Its last served piece looked slow (a piece still arriving at it): isBadParent.
      for (const c of [10, 10, 5_000]) seed.addUploadCost(c, clock.now());
      const sibling = w.peer('sibling', 'h2', 'Running', 't1', 6); // orphaned too: in-degree 0
      w.peer('empty', 'h3', 'Running'); // holds nothing: no use
      w.peer('failed', 'h4', 'Failed', 't1', 10);
      const child = w.peer('child', 'h1', 'Running', 't1', 3);
      child.blockParents.add('dead-parent');
      let d: Decision | undefined;
      s.schedule(child).then((x) => (d = x));
      for (let i = 0; i < 20 && !d; i++) await clock.advance(100);
      expect(d, `backToSourceCount ${backToSourceCount}`).toMatchObject({ kind: 'normal' });
      expect((d as Extract<Decision, { kind: 'normal' }>).parents.map((p) => p.id)).toEqual(['seed', 'sibling']);
      expect(sibling.task.dag.parents('child')).toEqual(new Set(['seed', 'sibling']));
      expect(child.task.backToSourcePeers.has('child')).toBe(false);
    }
  });

  it('just started, waits out rejoinGrace for the holders to come back before the origin (no rounds spent), and not after it', async () => {
    // retryLimit × retryInterval (500 ms) is shorter than the grace (1 s): waiting in it is no round.
    const { w, s, clock } = setup({ rejoinGrace: '1s' });
    const n = w.peer('n', 'h1', 'Pending', 't1');
    const lone = w.peer('lone', 'h2', 'Pending', 't2');
    const l2 = w.peer('l2', 'h3', 'Pending', 't3');
    l2.priority = 'LEVEL2';
    const got: Record<string, Decision> = {};
    for (const p of [n, lone, l2]) s.schedule(p).then((d) => (got[p.id] = d));
    await clock.advance(600);
    expect(got).toEqual({});
    // A holder registers again (its origin read, announced after the restart): n gets it at once.
    const t0 = clock.now();
    const back = w.peer('back', 'h0', 'Pending', 't1');
    back.needBackToSource = true;
    expect(await s.schedule(back)).toMatchObject({ kind: 'backToSource', reason: 'peer needs back-to-source' });
    await clock.advance(0);
    expect(got.n).toMatchObject({ kind: 'normal', parents: [back] });
    expect(clock.now()).toBe(t0);
    // Nobody comes back for t2 and t3: the origin (LEVEL2: not found) once the grace is over, not before.
    await clock.advance(350);
    expect(got.lone).toBeUndefined();
    await clock.advance(100);
    expect(got.lone).toMatchObject({ kind: 'backToSource', reason: expect.stringContaining('no peer') });
    expect(got.l2).toMatchObject({ kind: 'fail', code: 'NOT_FOUND' });
    // After the grace, a new task's first peer goes to the origin at once.
    expect(await s.schedule(w.peer('late', 'h4', 'Pending', 't4'))).toMatchObject({ kind: 'backToSource' });
  });

  it('at the end of rejoinGrace, asks a seed peer that announced meanwhile rather than sending the peer to the origin', async () => {
    const triggered: string[] = [];
    let seedHost: Host | undefined;
    const { w, s, clock } = setup({ rejoinGrace: '1s' }, () => seedHost, (h) => triggered.push(h.id));
    const n = w.peer('n', 'h1', 'Pending');
    expect(s.maybeTriggerSeedPeer(n)).toBe(false); // no seed host known yet, as at its register
    let d: Decision | undefined;
    s.schedule(n).then((x) => (d = x));
    await clock.advance(500);
    w.host('seed', { type: 'SUPER_SEED' });
    seedHost = w.r.hosts.get('seed');
    await clock.advance(600);
    expect(triggered).toEqual(['seed']);
    expect(d).toBeUndefined();
    const sp = w.peer('sp', 'seed', 'BackToSource');
    n.task.seedTriggeredAt = undefined;
    n.task.wake();
    await clock.advance(0);
    expect(d).toMatchObject({ kind: 'normal', parents: [sp] });
  });

  it('answers empty for a zero-length task', async () => {
    const { w, s } = setup();
    const a = w.peer('a', 'h1', 'Pending');
    a.task.contentLength = 0;
    expect(await s.schedule(a)).toEqual({ kind: 'empty' });
    expect(a.state).toBe('ReceivedEmpty');
  });
});
