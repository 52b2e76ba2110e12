/**
 * npm run sim — a discrete-event simulation of one rollout: N nodes fetch one file through the real
 * scheduler (virtual clock, in-memory streams) with modeled hosts and agents (README.md here).
 *
 *   npm run sim -- --nodes 10000 --size 500MB [--seeds 1] [--origin-rate 10Gbit] [--upload 10Gbit]
 *     [--upload-spread 0] [--download 20Gbit] [--download-spread 0] [--seed-upload R] [--seed-download R]
 *     [--join-window 0s] [--leave 0%] [--latency 1ms] [--seed 1] [--max-time 1h] [--json]
 *
 * Prints ONE JSON line on stdout (and, without --json, a short summary on stderr). Bad flags: a
 * message naming the flag on stderr, exit code 2.
 */
import { ConfigError } from '../../adapters/errors.js';
import { parseSize } from '../../adapters/config.js';
import { simulate } from './run.js';
import type { SimOptions } from './world.js';

export const USAGE = `usage: npm run sim -- --nodes N --size SIZE [--seeds 1] [--origin-rate 10Gbit]
  [--upload RATE (origin rate)] [--upload-spread CV (0)] [--download RATE (2 x upload)] [--download-spread CV (0)]
  [--seed-upload RATE (upload)] [--seed-download RATE (download)] [--join-window 0s] [--leave 0%]
  [--latency 1ms] [--seed 1] [--max-time 1h] [--json]
RATE: bits with bit/bps (10Gbit, 800Mbps) or bytes per second (20MiB, 1.25GB). SIZE: 500MB, 128MiB.
Spreads are coefficients of variation of a lognormal draw per node. --leave: share of nodes that
leave mid-transfer (3% or 0.03).`;

/** Bytes per second from "10Gbit", "800Mbps" (bits, base 1000) or a size ("20MiB" = bytes). Throws ConfigError. */
export function parseRate(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps)\s*$/i.exec(v);
  if (m) return (Number(m[1]) * 1000 ** ({ '': 0, k: 1, m: 2, g: 3, t: 4 }[m[2]!.toLowerCase()] ?? 0)) / 8;
  return parseSize(v);
}

/** Milliseconds from "1ms", "250us", "0.5ms", "30s", "2m", "1h"; fractions kept (parseDuration rounds to whole ms). */
export function parseMs(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)\s*$/.exec(v);
  if (!m) throw new ConfigError(`invalid duration "${v}": expected e.g. 1ms, 250us, 30s`);
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms'];
}

function share(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(v);
  if (!m) throw new ConfigError(`invalid share "${v}": expected e.g. 3% or 0.03`);
  return Number(m[1]) / (m[2] ? 100 : 1);
}

export function parseFlags(argv: string[]): { opts: SimOptions; json: boolean } {
  const raw = new Map<string, string>();
  let json = false;
  const known = ['--nodes', '--size', '--seeds', '--origin-rate', '--upload', '--upload-spread', '--download', '--download-spread', '--seed-upload', '--seed-download', '--join-window', '--leave', '--latency', '--seed', '--max-time'];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [k, inline] = a.includes('=') ? (a.split('=', 2) as [string, string]) : [a, undefined];
    if (k === '--json') {
      json = true;
      continue;
    }
    if (k === '--help' || k === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    }
    if (!known.includes(k)) throw new ConfigError(`unknown flag ${k}`);
    const v = inline ?? argv[++i];
    if (v === undefined || (inline === undefined && v.startsWith('--'))) throw new ConfigError(`${k} needs a value`);
    raw.set(k, v);
  }
  const get = <T>(flag: string, parse: (v: string) => T, dflt: T, ok: (x: T) => boolean = () => true, what = 'a valid value'): T => {
    const v = raw.get(flag);
    if (v === undefined) return dflt;
    let x: T;
    try {
      x = parse(v);
    } catch (err) {
      throw new ConfigError(`${flag}: ${(err as Error).message}`);
    }
    if (typeof x === 'number' && !Number.isFinite(x)) throw new ConfigError(`${flag} must be ${what}, got "${v}"`);
    if (!ok(x)) throw new ConfigError(`${flag} must be ${what}, got "${v}"`);
    return x;
  };
  const int = (v: string): number => (/^\s*\d+\s*$/.test(v) ? Number(v) : NaN);
  const num = (v: string): number => (/^\s*\d+(\.\d+)?\s*$/.test(v) ? Number(v) : NaN);
  const pos = (x: number): boolean => x > 0;
  if (!raw.has('--nodes')) throw new ConfigError('--nodes is required');
  if (!raw.has('--size')) throw new ConfigError('--size is required');
  const nodes = get('--nodes', int, 0, pos, 'a positive integer');
  const size = get('--size', parseSize, 0, pos, 'a positive size');
  const originRate = get('--origin-rate', parseRate, 10e9 / 8, pos, 'a positive rate');
  const upload = get('--upload', parseRate, originRate, pos, 'a positive rate');
  const download = get('--download', parseRate, 2 * upload, pos, 'a positive rate');
  const opts: SimOptions = {
    nodes,
    size,
    seeds: get('--seeds', int, 1, (x) => x >= 0, 'a non-negative integer'),
    originRate,
    upload,
    uploadSpread: get('--upload-spread', num, 0, (x) => x >= 0 && x <= 3, 'a coefficient of variation between 0 and 3'),
    download,
    downloadSpread: get('--download-spread', num, 0, (x) => x >= 0 && x <= 3, 'a coefficient of variation between 0 and 3'),
    seedUpload: get('--seed-upload', parseRate, upload, pos, 'a positive rate'),
    seedDownload: get('--seed-download', parseRate, download, pos, 'a positive rate'),
    joinWindowMs: get('--join-window', parseMs, 0),
    leave: get('--leave', share, 0, (x) => x >= 0 && x < 1, 'a share below 100%'),
    latencyMs: get('--latency', parseMs, 1),
    seed: get('--seed', int, 1),
    maxTimeMs: get('--max-time', parseMs, 3_600_000, pos, 'a positive duration'),
  };
  return { opts, json };
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`sim: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { result } = await simulate({ ...parsed.opts, progress: true });
  process.stdout.write(JSON.stringify(result) + '\n');
  if (!parsed.json) {
    const r = result as Record<string, any>;
    process.stderr.write(
      `sim: ${r.nodes} nodes, ${r.sizeBytes} B: all done ${r.allDoneSec} s = ${r.ratioToTMin} x T_min (${r.tMin.sec} s), origin ${r.originRatio} x F, depth max ${r.depth.maxHops} p50 ${r.depth.p50Hops}, scheduler ${r.schedulerCpuSec} CPU-s, wall ${r.wallSec} s\n`,
    );
  }
  return 0;
}

if (process.argv[1] && /cli\.[jt]s$/.test(process.argv[1]) && import.meta.url.endsWith('/test/sim/cli.js')) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`sim: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
