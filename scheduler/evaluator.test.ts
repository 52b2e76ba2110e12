import { describe, expect, it } from 'vitest';
import {
  BAD_COST_FACTOR,
  W_HOST_TYPE,
  W_IDC,
  W_LOAD,
  W_LOCATION,
  W_PIECES,
  W_UPLOAD_OK,
  evaluate,
  idcAffinity,
  isBadParent,
  isCostOutlier,
  locationAffinity,
  rankParents,
} from './evaluator.js';
import { World } from '../test/scheduler/fixtures.js';

const NOW = 1_000_000;

describe('evaluator', () => {
  it('has weights summing to 1', () => {
    expect(W_LOAD + W_PIECES + W_UPLOAD_OK + W_HOST_TYPE + W_IDC + W_LOCATION).toBeCloseTo(1, 10);
  });

  it('computes the documented formula', () => {
    const w = new World().host('p', { uploadLimit: 10, idc: 'IDC1', location: 'cn|zj|hz' }).host('c', { idc: 'idc1', location: 'cn|zj|nb' });
    const parent = w.peer('pp', 'p', 'Running', 't1', 5);
    const child = w.peer('cc', 'c', 'ReceivedNormal');
    parent.host.concurrentUploadCount = 4;
    parent.host.uploadCount = 3;
    parent.host.uploadFailedCount = 1;
    const expected = W_LOAD * (6 / 10) + W_PIECES * (5 / 10) + W_UPLOAD_OK * (4 / 5) + W_HOST_TYPE * 0.5 + W_IDC * 1 + W_LOCATION * (2 / 5);
    expect(evaluate(parent, child, { pieceCount: 10, maxPiecesHeld: 5 })).toBeCloseTo(expected, 12);
  });

  it('affinities', () => {
    expect(idcAffinity('a', 'A')).toBe(1);
    expect(idcAffinity('', '')).toBe(0);
    expect(locationAffinity('cn|zj|hz', 'cn|zj|hz')).toBe(1);
    expect(locationAffinity('cn|zj|hz', 'cn|bj')).toBe(0.2);
    expect(locationAffinity('us', 'cn')).toBe(0);
  });

  it('prefers a seed peer at equal pieces, but a normal peer holding more pieces over an empty seed', () => {
    const w = new World().host('seed', { type: 'SUPER_SEED' }).host('n1').host('c');
    const seed = w.peer('s', 'seed', 'BackToSource', 't1', 2);
    const normal = w.peer('n', 'n1', 'Running', 't1', 2);
    const child = w.peer('c', 'c', 'ReceivedNormal');
    expect(rankParents([normal, seed], child, 10).map((p) => p.id)).toEqual(['s', 'n']);
    for (let i = 2; i < 10; i++) normal.finishedPieces.add(i);
    seed.finishedPieces.clear();
    expect(rankParents([seed, normal], child, 10).map((p) => p.id)).toEqual(['n', 's']);
  });

  it('prefers the less loaded parent', () => {
    const w = new World().host('h1', { uploadLimit: 4 }).host('h2', { uploadLimit: 4 }).host('c');
    const a = w.peer('a', 'h1', 'Running', 't1', 3);
    const b = w.peer('b', 'h2', 'Running', 't1', 3);
    const child = w.peer('c', 'c', 'ReceivedNormal');
    a.host.concurrentUploadCount = 3;
    expect(rankParents([a, b], child, 0).map((p) => p.id)).toEqual(['b', 'a']);
  });
});

describe('bad parents', () => {
  it('flags cost outliers: 20x mean with few samples, mean+3σ with a full window', () => {
    expect(isCostOutlier([10], 20)).toBe(false);
    expect(isCostOutlier([10, 10, 10 * BAD_COST_FACTOR], 20)).toBe(false);
    expect(isCostOutlier([10, 10, 10 * BAD_COST_FACTOR + 1], 20)).toBe(true);
    const window = Array.from({ length: 19 }, (_, i) => (i % 2 ? 90 : 110)); // mean 100, σ≈10
    expect(isCostOutlier([...window, 125], 20)).toBe(false);
    expect(isCostOutlier([...window, 135], 20)).toBe(true);
  });

  it('flags parents by state and by stall', () => {
    const w = new World(() => NOW).host('h');
    expect(isBadParent(w.peer('p0', 'h', 'Pending'), NOW, 1000, 20)).toBe(true);
    expect(isBadParent(w.peer('p1', 'h', 'ReceivedNormal'), NOW, 1000, 20)).toBe(false);
    expect(isBadParent(w.peer('p1e', 'h', 'ReceivedEmpty'), NOW, 1000, 20)).toBe(true);
    expect(isBadParent(w.peer('p2', 'h', 'Failed'), NOW, 1000, 20)).toBe(true);
    const running = w.peer('p3', 'h', 'Running');
    expect(isBadParent(running, NOW + 999, 1000, 20)).toBe(false);
    expect(isBadParent(running, NOW + 1001, 1000, 20)).toBe(true);
    const done = w.peer('p4', 'h', 'Succeeded');
    expect(isBadParent(done, NOW + 10_000_000, 1000, 20)).toBe(false);
    done.addUploadCost(10, NOW);
    done.addUploadCost(10, NOW);
    done.addUploadCost(5000, NOW);
    expect(isBadParent(done, NOW, 1000, 20)).toBe(true);
    // The verdict expires: a finished parent gets another chance later.
    expect(isBadParent(done, NOW + 1001, 1000, 20)).toBe(false);
  });
});
