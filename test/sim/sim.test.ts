/**
 * The simulator must not lie: its times match what capacities allow where the answer is known, bytes
 * are conserved, every piece comes from someone who held it, the same seed gives the same run, and
 * churn leaves every surviving node complete. Small runs (the 10,000-node figures are the CLI's).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';
import { parseFlags, parseRate } from './cli.js';
import { simulate } from './run.js';
import type { SimOptions } from './world.js';

const MiB = 1024 * 1024;

function opts(o: Partial<SimOptions>): SimOptions {
  return {
    nodes: 8, size: 32 * MiB, seeds: 1, originRate: 20 * MiB, upload: 20 * MiB, uploadSpread: 0, download: 40 * MiB, downloadSpread: 0,
    seedUpload: 20 * MiB, seedDownload: 40 * MiB, joinWindowMs: 0, leave: 0, latencyMs: 0.1, seed: 1, maxTimeMs: 600_000, ...o,
  };
}

const num = (r: Record<string, unknown>, k: string): number => r[k] as number;

describe('sim', () => {
  it('one node reading the origin itself takes F / min(u_origin, d)', async () => {
    for (const [u, d] of [[20 * MiB, 40 * MiB], [50 * MiB, 10 * MiB]] as const) {
      const { result } = await simulate(opts({ nodes: 1, seeds: 0, originRate: u, download: d, latencyMs: 0 }));
      expect(num(result, 'allDoneSec')).toBeCloseTo((32 * MiB) / Math.min(u, d), 5);
      expect(result.originReaders).toBe(1);
      expect(num(result, 'originRatio')).toBe(1);
    }
  });

  it('one node behind one seed: the seed\'s origin read plus at most one piece and the push batch', async () => {
    const { result, world } = await simulate(opts({ nodes: 1, latencyMs: 0 }));
    const bound = (32 * MiB) / (20 * MiB);
    const pieceSec = world.pieceLength / (20 * MiB);
    expect(num(result, 'allDoneSec')).toBeGreaterThanOrEqual(bound);
    expect(num(result, 'allDoneSec')).toBeLessThanOrEqual(bound + pieceSec + 0.05);
    expect(result.seedTriggers).toBe(1);
  });

  it('conserves bytes, and every node gets every piece once from a holder, the origin read once', async () => {
    const { result, world } = await simulate(opts({ nodes: 24, audit: true, uploadSpread: 0.3, downloadSpread: 0.3 }));
    expect(num(result, 'originRatio')).toBe(1);
    expect(result.incomplete).toBe(0);
    const hosts = [...world.nodes, ...world.seeds].map((n) => n.host);
    const sent = hosts.reduce((a, h) => a + h.sentBytes, world.origin.sentBytes);
    const recv = hosts.reduce((a, h) => a + h.recvBytes, 0);
    expect(Math.abs(sent - recv)).toBeLessThan(1e-3 * world.F);
    const byPeer = world.byPeer;
    const audit = world.audit!;
    for (const n of [...world.nodes, ...world.seeds]) {
      expect(n.haveCount).toBe(world.pieceCount);
      expect(n.host.recvBytes).toBeGreaterThanOrEqual(world.F - 1e-3);
      for (let i = 0; i < world.pieceCount; i++) {
        const got = audit.filter((t) => t.to === n.peerId && t.n === i && t.end === n.haveAt[i]);
        expect(got.length, `${n.peerId} piece ${i}`).toBeGreaterThanOrEqual(1);
        const t = got[0]!;
        if (t.from === 'origin') continue;
        const p = byPeer.get(t.from)!;
        // A whole piece held when the send began; a piece still arriving there, held before the child had it.
        if (t.partial) expect(p.haveAt[i]).toBeLessThanOrEqual(t.end);
        else expect(p.haveAt[i]).toBeLessThanOrEqual(t.start);
        expect(p.haveAt[i]).toBeGreaterThanOrEqual(0);
        expect(n.hops[i]).toBe(p.hops[i]! + 1);
      }
    }
    // Each parent uploads what its children took: the audit's bytes add up to the hosts' counters.
    const delivered = audit.reduce((a, t) => a + world.bounds(t.n).length, 0);
    expect(delivered).toBeLessThanOrEqual(recv + 1e-3);
  });

  it('the same --seed gives the same run; another seed another one', async () => {
    const strip = (r: Record<string, unknown>): string => JSON.stringify({ ...r, wallSec: 0, schedulerCpuSec: 0 });
    const o = opts({ nodes: 30, uploadSpread: 0.5, downloadSpread: 0.5, joinWindowMs: 2_000, leave: 0.1, seed: 7 });
    const a = await simulate(o);
    const b = await simulate(o);
    expect(strip(b.result)).toBe(strip(a.result));
    const c = await simulate({ ...o, seed: 8 });
    expect(strip(c.result)).not.toBe(strip(a.result));
  });

  it('with nodes leaving mid-transfer every surviving node completes, and the leavers held part of the file', async () => {
    const { result, world } = await simulate(opts({ nodes: 40, leave: 0.1, seed: 3 }));
    expect(result.left).toBe(4);
    expect(result.incomplete).toBe(0);
    expect(result.completed).toBe(36);
    for (const n of world.nodes) {
      if (n.leftAt >= 0) {
        expect(n.haveCount).toBeGreaterThan(0);
        expect(n.haveCount).toBeLessThan(world.pieceCount);
      } else expect(n.haveCount).toBe(world.pieceCount);
    }
    expect(Number.isFinite(num(result, 'allDoneSec'))).toBe(true);
  });

  it('shows the chain the scheduler builds when uploads equal the stream rate', async () => {
    const { result } = await simulate(opts({ nodes: 16, latencyMs: 0.1 }));
    // seed (1 hop from the origin) → a1 → … → a16: the deepest piece crossed 17 hops.
    expect((result.depth as { maxHops: number }).maxHops).toBeGreaterThanOrEqual(10);
  });

  it('parses rates in bits and bytes', () => {
    expect(parseRate('10Gbit')).toBe(1.25e9);
    expect(parseRate('800Mbps')).toBe(1e8);
    expect(parseRate('20MiB')).toBe(20 * MiB);
    const { opts: o } = parseFlags(['--nodes', '10', '--size', '500MB', '--leave', '3%', '--latency', '250us']);
    expect(o.size).toBe(500e6);
    expect(o.leave).toBeCloseTo(0.03);
    expect(o.latencyMs).toBeCloseTo(0.25);
    expect(o.download).toBe(2 * o.upload);
  });

  it('the CLI names a bad flag and exits 2', () => {
    const cli = path.join(repoRoot, 'dist-test', 'test', 'sim', 'cli.js');
    expect(existsSync(cli), `${cli}: run "npm run build:test" first`).toBe(true);
    for (const [args, flag] of [
      [['--nodes', 'ten', '--size', '1MB'], '--nodes'],
      [['--nodes', '2', '--size', 'huge'], '--size'],
      [['--nodes', '2', '--size', '1MB', '--origin-rate', 'fast'], '--origin-rate'],
      [['--nodes', '2', '--size', '1MB', '--leave', '150%'], '--leave'],
      [['--nodes', '2', '--size', '1MB', '--bogus', '1'], '--bogus'],
      [['--size', '1MB'], '--nodes'],
    ] as const) {
      const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(flag);
      expect(r.stdout).toBe('');
    }
    const ok = spawnSync(process.execPath, [cli, '--nodes', '2', '--size', '8MiB', '--origin-rate', '80MiB', '--json'], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    const line = JSON.parse(ok.stdout.trim()) as Record<string, unknown>;
    expect(line.completed).toBe(2);
  });
});
