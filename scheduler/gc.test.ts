import { describe, expect, it } from 'vitest';
import { schedulerConfig } from './config.js';
import { collectGarbage, hostExpired } from './gc.js';
import { World, hostInfo } from '../test/scheduler/fixtures.js';
import { FakeClock } from '../test/support/fake-clock.js';
import { createScheduler } from './server.js';

const gc = schedulerConfig({ gc: { peerTTL: '10m', taskTTL: '30m', hostTTL: '1h' } }).gc;

describe('garbage collection', () => {
  it('expires hosts after 3 missed announces, or the host TTL at the latest', () => {
    expect(hostExpired(0, 10_000, 3_600_000, 30_000)).toBe(false);
    expect(hostExpired(0, 10_000, 3_600_000, 30_001)).toBe(true);
    expect(hostExpired(0, 0, 3_600_000, 3_600_000)).toBe(false);
    expect(hostExpired(0, 0, 3_600_000, 3_600_001)).toBe(true);
    expect(hostExpired(0, 7_200_000, 3_600_000, 3_600_001)).toBe(true);
  });

  it('drops an expired host with its peers, stale and failed peers, then empty tasks after their TTL', () => {
    let now = 0;
    const w = new World(() => now);
    w.r.hosts.announce(hostInfo('gone'), 10_000, 0);
    w.peer('p-gone', 'gone', 'Running', 'ta');
    const keep = w.peer('p-keep', 'h1', 'Succeeded', 'tb');
    w.peer('p-failed', 'h2', 'Failed', 'tb');
    const stale = w.peer('p-stale', 'h3', 'Succeeded', 'tc');
    now = 40_000;
    for (const id of ['h1', 'h2', 'h3']) w.r.hosts.announce(hostInfo(id), 0, now);
    keep.updatedAt = now;
    let r = collectGarbage(w.r, gc, now);
    expect(r).toEqual({ hosts: 1, peers: 2, tasks: 0 });
    expect(w.r.hosts.get('gone')).toBeUndefined();
    expect(w.r.peer('p-failed')).toBeUndefined();
    expect(w.r.peer('p-keep')).toBeDefined();
    now = 40_000 + 10 * 60_000 + 1;
    for (const id of ['h1', 'h2', 'h3']) w.r.hosts.announce(hostInfo(id), 0, now);
    r = collectGarbage(w.r, gc, now);
    expect(r.peers).toBe(2); // p-keep and p-stale past the peer TTL
    expect(stale.task.peerCount).toBe(0);
    expect(w.r.tasks.size).toBe(3);
    now += 30 * 60_000 + 1;
    for (const id of ['h1', 'h2', 'h3']) w.r.hosts.announce(hostInfo(id), 0, now);
    r = collectGarbage(w.r, gc, now);
    expect(r.tasks).toBe(3);
    expect(w.r.tasks.size).toBe(0);
    expect(w.r.peerCount).toBe(0);
  });

  it('keeps running peers with a live stream and returns upload slots of deleted parents', () => {
    const w = new World(() => 0);
    const parent = w.peer('p', 'h1', 'BackToSource');
    const child = w.peer('c', 'h2', 'Pending');
    w.r.addParent(parent, child);
    expect(parent.host.concurrentUploadCount).toBe(1);
    child.stream = undefined; // its stream is gone: it can never be told anything again
    collectGarbage(w.r, gc, 1);
    expect(w.r.peer('c')).toBeUndefined();
    expect(w.r.peer('p')).toBeDefined();
    expect(parent.host.concurrentUploadCount).toBe(0);
  });
});


describe('scheduler GC with an injected clock', () => {
  it('drops a host after three missed announces of the interval it declared', async () => {
    const clock = new FakeClock();
    const s = createScheduler(schedulerConfig({}), undefined, { clock });
    s.service.announceHost({ host: { id: 'h1', hostname: 'h1', ip: '127.0.0.1' }, interval_ms: 1000 });
    s.service.announceHost({ host: { id: 'h2', hostname: 'h2', ip: '127.0.0.1' }, interval_ms: 0 });
    await clock.advance(2500);
    s.service.announceHost({ host: { id: 'h2', hostname: 'h2', ip: '127.0.0.1' }, interval_ms: 0 });
    s.gc();
    expect(s.resources.hosts.list().map((h) => h.id).sort()).toEqual(['h1', 'h2']);
    await clock.advance(600);
    s.gc();
    expect(s.resources.hosts.list().map((h) => h.id)).toEqual(['h2']);
  });
});
