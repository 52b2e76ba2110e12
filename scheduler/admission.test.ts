/**
 * Bandwidth-aware admission (resource/load.ts uploadLoad/edgeRate, scheduling.ts findCandidateParents):
 * parents whose children already draw their announced upload rate are not offered while another
 * parent has bandwidth to spare, a busy seed ranks below normal peers, nobody is refused a first
 * parent, a peer keeps its parents on reschedule, and a pending seed trigger holds retry → origin.
 */
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../test/support/fake-clock.js';
import { schedulerConfig } from './config.js';
import {
  BUSY_SEED_HOST_SCORE,
  NORMAL_HOST_SCORE,
  SEED_HOST_SCORE,
  W_HOST_TYPE,
  W_LOAD,
  evaluate,
  rankParents,
} from './evaluator.js';
import { FINISHED_EDGE_HORIZON_MS, chargedRate, edgeRate, expectedUploadRate, isUploadFull, uploadLoad } from './resource/load.js';
import { Scheduling, type Decision } from './scheduling.js';
import { World } from '../test/scheduler/fixtures.js';
import type { Host } from './resource/host.js';

const MB = 1024 * 1024;
const RATE = 20 * MB;

function setup(overrides: Record<string, unknown> = {}, seed?: () => Host | undefined, trigger?: (h: Host) => void) {
  const clock = new FakeClock();
  const cfg = schedulerConfig({ scheduling: { rejoinGrace: 0, retryInterval: '100ms', retryLimit: 8, retryBackToSourceLimit: 2, backToSourceCount: 1, candidateParentLimit: 4, ...overrides } });
  const w = new World(() => clock.now());
  const s = new Scheduling(w.r, { ...cfg.scheduling, seedPeerEnable: true, seedTriggerTimeout: 1000 }, clock, { triggerSeedPeer: trigger ? (h) => trigger(h) : undefined }, seed ?? (() => undefined));
  return { clock, w, s };
}

const lookup = (w: World) => (id: string) => w.r.peer(id);

describe('upload bandwidth accounting', () => {
  it('charges each child min(child rate, parent rate) / its parent count', () => {
    const w = new World().host('p', { maxTxBandwidth: RATE }).host('q', { maxTxBandwidth: RATE }).host('c', { maxTxBandwidth: RATE / 2 }).host('d', { maxTxBandwidth: 4 * RATE });
    const p = w.peer('p', 'p', 'BackToSource', 't1', 1);
    const q = w.peer('q', 'q', 'BackToSource', 't1', 1);
    const c = w.peer('c', 'c', 'ReceivedNormal');
    const d = w.peer('d', 'd', 'ReceivedNormal');
    w.r.addParent(p, c);
    expect(edgeRate(c, p.host)).toBe(RATE / 2);
    w.r.addParent(p, d);
    expect(edgeRate(d, p.host)).toBe(RATE); // capped at the parent's rate
    expect(expectedUploadRate(p.host, lookup(w))).toBe(1.5 * RATE);
    expect(uploadLoad(p.host, lookup(w))).toBe(1);
    w.r.addParent(q, d); // d now spreads its demand over two parents
    expect(expectedUploadRate(p.host, lookup(w))).toBe(RATE / 2 + RATE / 2);
    expect(uploadLoad(q.host, lookup(w))).toBe(0.5);
    expect(isUploadFull(uploadLoad(p.host, lookup(w)))).toBe(true);
    expect(isUploadFull(uploadLoad(q.host, lookup(w)))).toBe(false);
  });

  it('charges a child of a finished parent only what it still lacks per horizon, so the parent is offered again', () => {
    const w = new World().host('p', { maxTxBandwidth: RATE }).host('c', { maxTxBandwidth: RATE });
    const p = w.peer('p', 'p', 'Succeeded', 't1', 32);
    const c = w.peer('c', 'c', 'Running', 't1', 31);
    p.task.contentLength = 32 * 4 * MB;
    p.task.pieceLength = 4 * MB;
    w.r.addParent(p, c);
    // one 4 MiB piece behind: 4 MiB per second, a fifth of the parent's upload
    expect(FINISHED_EDGE_HORIZON_MS).toBe(1000);
    expect(chargedRate(c, p)).toBe(4 * MB);
    expect(isUploadFull(uploadLoad(p.host, lookup(w)))).toBe(false);
    // far behind: the full edge rate, as for a parent still downloading
    for (let i = 10; i < 31; i++) c.finishedPieces.delete(i);
    expect(chargedRate(c, p)).toBe(RATE);
    expect(isUploadFull(uploadLoad(p.host, lookup(w)))).toBe(true);
    // a parent still running is charged the full edge rate however close the child is
    const q = w.peer('q', 'q', 'Running', 't1', 31);
    const d = w.peer('d', 'd', 'Running', 't1', 30);
    w.r.addParent(q, d);
    expect(chargedRate(d, q)).toBe(edgeRate(d, q.host));
  });

  it('falls back to upload slots when the host announced no rate', () => {
    const w = new World().host('p', { uploadLimit: 4 });
    const p = w.peer('p', 'p', 'BackToSource', 't1', 1);
    w.r.addParent(p, w.peer('c', 'c', 'ReceivedNormal'));
    expect(uploadLoad(p.host, lookup(w))).toBe(0.25);
    expect(isUploadFull(uploadLoad(p.host, lookup(w)))).toBe(false);
  });

  it('scores W_LOAD·(1 − load) and ranks a seed with a child below a normal peer', () => {
    const w = new World().host('seed', { type: 'SUPER_SEED', maxTxBandwidth: RATE }).host('n', { maxTxBandwidth: RATE }).host('c').host('x');
    const seed = w.peer('s', 'seed', 'BackToSource', 't1', 4);
    const normal = w.peer('n', 'n', 'Running', 't1', 4);
    const child = w.peer('c', 'c', 'ReceivedNormal');
    const ctx = { pieceCount: 8, maxPiecesHeld: 4, load: () => 0.25 };
    const base = evaluate(normal, child, ctx) - W_HOST_TYPE * NORMAL_HOST_SCORE;
    expect(evaluate(normal, child, { ...ctx, load: () => 1 })).toBeCloseTo(evaluate(normal, child, ctx) - W_LOAD * 0.75, 12);
    expect(evaluate(seed, child, ctx)).toBeCloseTo(base + W_HOST_TYPE * SEED_HOST_SCORE, 12);
    expect(rankParents([normal, seed], child, 8).map((p) => p.id)).toEqual(['s', 'n']);
    w.r.addParent(seed, w.peer('x', 'x', 'ReceivedNormal'));
    expect(evaluate(seed, child, ctx)).toBeCloseTo(base + W_HOST_TYPE * BUSY_SEED_HOST_SCORE, 12);
    expect(rankParents([seed, normal], child, 8, () => 0).map((p) => p.id)).toEqual(['n', 's']);
  });
});

describe('bandwidth-aware admission', () => {
  it('chains peers registering together when every host uploads as fast as the origin', async () => {
    const { w, s } = setup();
    for (const h of ['seed', 'h1', 'h2', 'h3']) w.host(h, { maxTxBandwidth: RATE, type: h === 'seed' ? 'SUPER_SEED' : 'NORMAL' });
    const seed = w.peer('seed', 'seed', 'BackToSource', 't1', 2);
    const got: string[][] = [];
    for (const id of ['h1', 'h2', 'h3']) {
      const d = await s.schedule(w.peer(id, id, 'Pending'));
      expect(d.kind).toBe('normal');
      got.push(d.kind === 'normal' ? d.parents.map((p) => p.id) : []);
    }
    // The seed is full after one child; each later peer takes the one peer with spare upload.
    expect(got).toEqual([['seed'], ['h1'], ['h2']]);
    expect(uploadLoad(seed.host, lookup(w))).toBe(1);
  });

  it('offers only parents with spare bandwidth while there are any', async () => {
    const { w, s } = setup();
    for (const h of ['a', 'b', 'x', 'c1', 'c2']) w.host(h, { maxTxBandwidth: RATE });
    const a = w.peer('a', 'a', 'Succeeded', 't1', 2);
    const b = w.peer('b', 'b', 'Succeeded', 't1', 8); // more pieces: b would rank first
    w.r.addParent(b, w.peer('x', 'x', 'Failed')); // x draws all of b's upload
    const d1 = await s.schedule(w.peer('c1', 'c1', 'Pending'));
    expect(d1).toMatchObject({ kind: 'normal', parents: [a] });
    expect(s.lastFilter.busy).toBe(1);
    // a is now full too (c1 draws RATE from it): c2 gets c1, which has a parent and spare upload.
    const d2 = await s.schedule(w.peer('c2', 'c2', 'Pending'));
    expect(d2.kind === 'normal' && d2.parents.map((p) => p.id)).toEqual(['c1']);
    expect(s.lastFilter.busy).toBe(2);
    expect(s.lastFilter.fallback).toBe(0);
  });

  it('still gives a peer without parents the least-loaded parent when every host is full', async () => {
    const { w, s } = setup();
    w.host('p', { maxTxBandwidth: RATE }).host('q', { maxTxBandwidth: RATE }).host('x1', { maxTxBandwidth: RATE }).host('x2', { maxTxBandwidth: 2 * RATE });
    const p = w.peer('p', 'p', 'Succeeded', 't1', 2);
    const q = w.peer('q', 'q', 'Succeeded', 't1', 2);
    w.r.addParent(p, w.peer('x1', 'x1', 'Failed'));
    w.r.addParent(q, w.peer('x2', 'x2', 'Failed'));
    w.host('c', { maxTxBandwidth: RATE });
    const d = await s.schedule(w.peer('c', 'c', 'Pending'));
    expect(d).toMatchObject({ kind: 'normal', parents: [p] });
    expect(s.lastFilter.fallback).toBe(1);
  });

  it('keeps a peer\'s parents on reschedule, adds only parents with spare bandwidth, drops blocked ones', async () => {
    const { w, s } = setup();
    for (const h of ['p', 'q', 'r', 'c']) w.host(h, { maxTxBandwidth: RATE });
    const p = w.peer('p', 'p', 'Succeeded', 't1', 2);
    const c = w.peer('c', 'c', 'Pending');
    expect(await s.schedule(c)).toMatchObject({ kind: 'normal', parents: [p] });
    const q = w.peer('q', 'q', 'Succeeded', 't1', 2);
    const more = await s.schedule(c);
    expect(more).toMatchObject({ kind: 'normal', parents: [q] });
    expect([...c.task.dag.parents('c')].sort()).toEqual(['p', 'q']);
    // Nothing new: the current parents again, no edge added or dropped.
    expect(await s.schedule(c)).toMatchObject({ kind: 'normal' });
    expect([...c.task.dag.parents('c')].sort()).toEqual(['p', 'q']);
    c.blockParents.add('p');
    const r = w.peer('r', 'r', 'Succeeded', 't1', 2);
    const d = await s.schedule(c);
    expect(d.kind === 'normal' && d.parents.map((x) => x.id)).toEqual(['r']);
    expect([...c.task.dag.parents('c')].sort()).toEqual(['q', 'r']);
    expect(p.host.concurrentUploadCount).toBe(0);
    void r;
  });
});

describe('reschedule with a slow parent', () => {
  it('keeps the edge to a parent whose last piece was a cost outlier (the child still fetches from it) and keeps its upload counted', async () => {
    const { w, s, clock } = setup();
    for (const h of ['p', 'q', 'c', 'd']) w.host(h, { maxTxBandwidth: RATE });
    const p = w.peer('p', 'p', 'Running', 't1', 1);
    const c = w.peer('c', 'c', 'Pending');
    w.r.addParent(p, c);
    c.transition('ReceivedNormal', clock.now());
    for (const ms of [100, 100, 100, 4000]) p.addUploadCost(ms, clock.now()); // a piece sent while it was still arriving at p
    p.lastPieceAt = clock.now();
    w.peer('q', 'q', 'Running', 't1', 1);
    const more = await s.schedule(c); // the agent asks for more parents
    expect(more.kind).toBe('normal');
    expect(c.task.dag.parents('c').has('p')).toBe(true);
    expect(uploadLoad(p.host, lookup(w))).toBe(1); // c's draw on p is still counted
    // As a candidate for someone new, p is still passed over while its verdict lasts.
    const d = w.peer('d', 'd', 'Pending');
    const forD = await s.schedule(d);
    expect(forD.kind === 'normal' && forD.parents.map((x) => x.id)).not.toContain('p');
  });
});

describe('reschedule with a stalled parent', () => {
  it('drops the edge to a parent that sent nothing for pieceTimeout and schedules afresh', async () => {
    const { w, s, clock } = setup({ pieceTimeout: '1s' });
    for (const h of ['p', 'q', 'c']) w.host(h, { maxTxBandwidth: RATE });
    const p = w.peer('p', 'p', 'Running', 't1', 1);
    w.peer('src', 'src', 'BackToSource', 't1', 1);
    const c = w.peer('c', 'c', 'Pending');
    w.r.addParent(p, c);
    c.transition('ReceivedNormal', clock.now());
    await clock.advance(1500); // p (and src) stalled: no piece for > pieceTimeout
    const q = w.peer('q', 'q', 'Succeeded', 't1', 2);
    const d = await s.schedule(c);
    expect(d).toMatchObject({ kind: 'normal', parents: [q] });
    expect([...c.task.dag.parents('c')]).toEqual(['q']);
    expect(p.host.concurrentUploadCount).toBe(0);
  });
});

describe('seed trigger vs retryBackToSourceLimit', () => {
  it('keeps a normal peer off the origin past retryBackToSourceLimit while the seed trigger is pending', async () => {
    const seedHost = new World().host('seed', { type: 'SUPER_SEED' }).r.hosts.get('seed');
    const { w, s, clock } = setup({ retryBackToSourceLimit: 2, retryLimit: 50 }, () => seedHost, () => {});
    const n = w.peer('n', 'h1', 'Pending');
    s.maybeTriggerSeedPeer(n);
    let d: Decision | undefined;
    s.schedule(n).then((x) => (d = x));
    // 2 rounds of ≤100 ms pass well before the 1 s trigger timeout: the peer keeps waiting.
    for (let i = 0; i < 8; i++) await clock.advance(100);
    expect(d).toBeUndefined();
    expect(n.task.backToSourcePeers.size).toBe(0);
    await clock.advance(400); // trigger timed out: now the origin
    expect(d).toMatchObject({ kind: 'backToSource' });
  });
});
