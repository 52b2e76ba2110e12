/** Which hosts a preheat drives, per scope (Dragonfly: ips > count > percentage for the all_* scopes). */
import { describe, expect, it } from 'vitest';
import { schedulerConfig } from '../config.js';
import type { HostInfo } from '../resource/host.js';
import { createScheduler } from '../server.js';
import { hostInfo } from '../../test/scheduler/fixtures.js';
import { targetHosts } from './runner.js';

function info(n: number, seed: boolean): HostInfo {
  const hostname = `${seed ? 'seed' : 'node'}-${n}`;
  return hostInfo(`127.0.0.${n}-${hostname}${seed ? '-seed' : ''}`, {
    type: seed ? 'SUPER_SEED' : 'NORMAL',
    hostname,
    ip: `127.0.0.${n}`,
    port: 4000,
    downloadPort: 4005,
    platform: 'linux/amd64',
  });
}

describe('targetHosts', () => {
  const s = createScheduler(schedulerConfig({}));
  for (let i = 1; i <= 3; i++) s.resources.hosts.announce(info(i, true), 5_000, 0);
  for (let i = 10; i <= 19; i++) s.resources.hosts.announce(info(i, false), 5_000, 0);
  const names = (hs: ReturnType<typeof targetHosts>) => hs.map((h) => h.info.hostname);

  it('single_seed_peer: one seed peer, the same for the same task, spread across tasks', () => {
    const a = names(targetHosts(s, {}, 'task-a'));
    expect(a).toHaveLength(1);
    expect(a[0]).toMatch(/^seed-/);
    expect(names(targetHosts(s, { scope: 'single_seed_peer' }, 'task-a'))).toEqual(a);
    const picked = new Set(Array.from({ length: 50 }, (_, i) => names(targetHosts(s, {}, `task-${i}`))[0]));
    expect(picked.size).toBe(3);
  });

  it('all_seed_peers and all_peers, narrowed by ips, then count, then percentage (rounded down, at least 1)', () => {
    expect(names(targetHosts(s, { scope: 'all_seed_peers' }, 't')).sort()).toEqual(['seed-1', 'seed-2', 'seed-3']);
    expect(targetHosts(s, { scope: 'all_peers' }, 't')).toHaveLength(10);
    expect(names(targetHosts(s, { scope: 'all_peers', ips: ['127.0.0.12', '127.0.0.99'], count: 5 }, 't'))).toEqual(['node-12']);
    expect(targetHosts(s, { scope: 'all_peers', count: 4, percentage: 90 }, 't')).toHaveLength(4);
    expect(targetHosts(s, { scope: 'all_peers', percentage: 25 }, 't')).toHaveLength(2);
    expect(targetHosts(s, { scope: 'all_seed_peers', percentage: 10 }, 't')).toHaveLength(1);
  });
});
