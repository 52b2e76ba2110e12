/**
 * What the benchmark scripts share: flags parsed with node:util parseArgs (a bad or unknown flag is
 * an error naming it, followed by the usage; `--help` prints the usage), the process's CPU time from
 * /proc, percentiles and rounding for the one JSON line, and the main() wrapper that kills every
 * role process on an error or Ctrl-C.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseSize } from '../../adapters/config.js';
import { cleanupTempDirs, killAll } from '../support/procs.js';

type Spec = Record<string, { type: 'string' | 'boolean' }>;
type Values<S extends Spec> = { [K in keyof S]?: S[K]['type'] extends 'boolean' ? boolean : string };

/** A flag the user got wrong; its message names the flag and is followed by the usage. */
export class FlagError extends Error {}

/** Parses `argv` against `spec`; exits 0 after printing `usage` for --help/-h. Throws FlagError. */
export function benchFlags<S extends Spec>(argv: string[], usage: string, spec: S): Values<S> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage + '\n');
    process.exit(0);
  }
  try {
    return parseArgs({ args: argv, options: spec, strict: true, allowPositionals: false }).values as Values<S>;
  } catch (err) {
    throw new FlagError(`${(err as Error).message}\n${usage}`);
  }
}

/** `read()` (flags read at module level): a FlagError prints `name: message` and exits 2. */
export function flagsOrExit<T>(name: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    process.stderr.write(`${name}: ${err.message}\n`);
    process.exit(2);
  }
}

/** The readers of flag values: each names the flag when the value is not what it expects. */
export const flag = {
  size(v: string | undefined, name: string, fallback: number): number {
    if (v === undefined) return fallback;
    try {
      return parseSize(v);
    } catch {
      throw new FlagError(`--${name}: expected a size such as 20MiB, got ${JSON.stringify(v)}`);
    }
  },
  number(v: string | undefined, name: string, fallback: number, min = 0, integer = false): number {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) throw new FlagError(`--${name}: expected ${integer ? 'an integer' : 'a number'} ≥ ${min}, got ${JSON.stringify(v)}`);
    return n;
  },
  oneOf<T extends string>(v: string | undefined, name: string, allowed: readonly T[], fallback: T): T {
    if (v === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(v)) throw new FlagError(`--${name}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
    return v as T;
  },
  json(v: string | undefined, name: string): Record<string, unknown> | undefined {
    if (v === undefined) return undefined;
    try {
      const o = JSON.parse(v) as unknown;
      if (o && typeof o === 'object' && !Array.isArray(o)) return o as Record<string, unknown>;
    } catch {
      /* below */
    }
    throw new FlagError(`--${name}: expected a JSON object, got ${JSON.stringify(v)}`);
  },
};

/** CPU seconds (user + system) a live process has used so far, from /proc; NaN where unavailable. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[11], fields[12] = utime, stime (man proc: fields 14 and 15), in clock ticks (100/s on Linux)
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** Nearest-rank percentile of an ascending list. */
export function percentile(sorted: number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

export const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;

/** The rates a swarm benchmark gives its roles, bytes/s; `seedUploadRate` defaults to `uploadRate`. */
export interface SwarmRates {
  originRate: number;
  uploadRate: number;
  downloadRate: number;
  seedUploadRate?: number;
}

/** A swarm's lower bounds (Kumar–Ross) for N downloaders of F bytes, and the client–server time. */
export interface LowerBounds {
  /** F / u_origin: the origin must send every byte once. */
  termSource: number;
  /** F / d_min: the slowest downloader must receive every byte. */
  termDownload: number;
  /** N·F / (u_origin + Σu_agents + u_seed): every byte must be uploaded N times by someone. */
  termSystem: number;
  uTotal: number;
  /** T_min = max of the three terms, in seconds. */
  tMin: number;
  /** D_cs = max(N·F / u_origin, F / d_min): the same N clients straight from the origin. */
  dcs: number;
}

export function lowerBounds(F: number, N: number, r: SwarmRates): LowerBounds {
  const termSource = F / r.originRate;
  const termDownload = F / r.downloadRate;
  const uTotal = r.originRate + N * r.uploadRate + (r.seedUploadRate ?? r.uploadRate);
  const termSystem = (N * F) / uTotal;
  return {
    termSource,
    termDownload,
    termSystem,
    uTotal,
    tMin: Math.max(termSource, termDownload, termSystem),
    dcs: Math.max((N * F) / r.originRate, termDownload),
  };
}

/** The `tMin` object of a swarm benchmark's JSON line. */
export function tMinReport(b: LowerBounds): Record<string, number> {
  return { sec: round(b.tMin), fOverUOrigin: round(b.termSource), fOverDMin: round(b.termDownload), nFOverUTotal: round(b.termSystem), uTotalBytesPerSec: b.uTotal };
}

/**
 * Runs a benchmark's main(): its resolved value is the exit code; on an error (a FlagError: exit 2)
 * or Ctrl-C every role process it started is killed and its temporary directories removed.
 */
export function runBench(name: string, main: () => Promise<number>): void {
  process.once('SIGINT', () => {
    void killAll().then(() => process.exit(130));
  });
  // The roles unref their timers: a bench awaiting something nothing is left to settle would see
  // node exit 0 mid-run with nothing printed. Say so, and fail.
  let settled = false;
  process.once('beforeExit', () => {
    if (settled) return;
    process.stderr.write(`${name}: stopped before finishing: it waited for something nothing was left to do (a hang; no result)\n`);
    process.exitCode = 1;
  });
  main().then(
    (code) => {
      settled = true;
      process.exitCode = code;
    },
    async (err: unknown) => {
      settled = true;
      process.stderr.write(err instanceof FlagError ? `${name}: ${err.message}\n` : `${name}: ${(err as Error).stack ?? String(err)}\n`);
      await killAll();
      cleanupTempDirs();
      process.exitCode = err instanceof FlagError ? 2 : 1;
    },
  );
}
