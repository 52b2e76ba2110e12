/**
 * Runs Damselfly roles as real child processes for integration tests and benchmarks.
 *
 *   const sched = await spawnRole('scheduler', { server: { ip: '127.0.0.1', port: 0 } });
 *   sched.ready.grpc   // "127.0.0.1:PORT" from the role's one JSON ready line on stdout
 *   await sched.stop(); // SIGTERM, then SIGKILL after a grace period
 *   afterAll(() => killAll());
 *
 * Each process gets its own directory (<name>.yaml, <name>.log); the stderr log is kept so a failed
 * test can be debugged, and its tail is quoted in every error. Every spawned process is remembered so
 * `killAll()` (and, as a last resort, process exit) never leaves orphans behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { cliPath } from './cli.js';

export type ReadyLine = Record<string, unknown> & { ready: true; role?: string };

export interface SpawnOptions {
  /** Directory for <name>.yaml and <name>.log; a fresh temp dir if absent. */
  dir?: string;
  /** Label used in file names and errors; defaults to the role. */
  name?: string;
  /** Extra CLI arguments after `<role> --config FILE`. */
  args?: string[];
  env?: Record<string, string | undefined>;
  /** How long to wait for the ready line (default 20 s). */
  readyTimeoutMs?: number;
  /** Use this CLI instead of cliPath(). */
  cli?: string;
  /** Extra node flags, e.g. ['--max-old-space-size=256']. */
  nodeArgs?: string[];
  /** A command prefix that runs node elsewhere, e.g. a netns host's ['ip', 'netns', 'exec', NS] (it must exec, not fork). */
  exec?: string[];
}

export interface RoleProcess {
  role: string;
  name: string;
  /** The parsed JSON ready line. */
  ready: ReadyLine;
  pid: number;
  dir: string;
  configFile: string | undefined;
  logFile: string;
  child: ChildProcess;
  /** Lines the process wrote to stdout after its ready line. */
  stdoutLines: string[];
  /** Resolves with the exit code (or null when killed by a signal) once the process exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True while the process runs. */
  alive(): boolean;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves with the exit status. Never throws. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last `lines` lines of the stderr log. */
  tail(lines?: number): string;
  /** Every stderr line that parses as JSON (the role's structured log). */
  logs(): Array<Record<string, unknown>>;
}

const live = new Set<RoleProcess>();
const tempDirs = new Set<string>();

/** Makes a temp dir that `cleanupTempDirs()` removes (unless DAMSELFLY_KEEP_TMP=1). */
export function makeTempDir(prefix = 'damselfly-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Removes every dir made by makeTempDir; kept for debugging when DAMSELFLY_KEEP_TMP=1. */
export function cleanupTempDirs(): void {
  if (process.env.DAMSELFLY_KEEP_TMP === '1') {
    for (const d of tempDirs) process.stderr.write(`kept ${d}\n`);
    return;
  }
  for (const d of tempDirs) {
    try {
      rmSync(d, { recursive: true, force: true, maxRetries: 3 });
    } catch (err) {
      process.stderr.write(`could not remove ${d}: ${(err as Error).message}\n`);
    }
  }
  tempDirs.clear();
}

function tailOf(file: string, lines: number): string {
  if (!existsSync(file)) return '';
  const all = readFileSync(file, 'utf8').split('\n');
  return all.slice(-lines - 1).join('\n');
}

/**
 * Starts `node <cli> <role> --config <dir>/<name>.yaml` with `config` written as YAML (pass null for
 * no --config), waits for its JSON ready line on stdout. Throws (with the stderr tail) if the process
 * exits or stays silent past the timeout; the process is killed in that case.
 */
export async function spawnRole(role: string, config: Record<string, unknown> | null, opts: SpawnOptions = {}): Promise<RoleProcess> {
  const name = opts.name ?? role;
  const dir = opts.dir ?? makeTempDir(`damselfly-${name.replace(/[^\w.-]/g, '_')}-`);
  mkdirSync(dir, { recursive: true });
  let configFile: string | undefined;
  // DAMSELFLY_ROLE_NODE_ARGS (space-separated) adds node flags to every role, e.g. to profile a
  // benchmark: DAMSELFLY_ROLE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof".
  const extraNodeArgs = (process.env.DAMSELFLY_ROLE_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const args = [...extraNodeArgs, ...(opts.nodeArgs ?? []), opts.cli ?? cliPath(), role];
  if (config) {
    configFile = path.join(dir, `${name.replace(/[^\w.-]/g, '_')}.yaml`);
    writeFileSync(configFile, stringify(config));
    args.push('--config', configFile);
  }
  args.push(...(opts.args ?? []));
  const logFile = path.join(dir, `${name.replace(/[^\w.-]/g, '_')}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  const [cmd, ...pre] = opts.exec?.length ? [...opts.exec, process.execPath] : [process.execPath];
  const child = spawn(cmd!, [...pre, ...args], {
    cwd: dir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.pipe(log);
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
    child.once('error', () => {
      exitInfo = { code: null, signal: null };
      resolve(exitInfo);
    });
  });
  // The log stream must have flushed before we quote its tail in an error.
  const logClosed = new Promise<void>((resolve) => log.once('close', () => resolve()));
  const stdoutLines: string[] = [];
  let pending = '';
  let onLine: ((line: string) => void) | undefined;
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    pending += chunk;
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      if (onLine) onLine(line);
      else stdoutLines.push(line);
    }
  });

  const proc: RoleProcess = {
    role,
    name,
    ready: { ready: true },
    pid: child.pid ?? -1,
    dir,
    configFile,
    logFile,
    child,
    stdoutLines,
    exited,
    alive: () => exitInfo === undefined,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (exitInfo === undefined) child.kill(signal);
    },
    async stop(graceMs = 5000) {
      if (exitInfo === undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      live.delete(proc);
      await Promise.race([logClosed, new Promise((r) => setTimeout(r, 500))]);
      return exitInfo!;
    },
    tail: (lines = 30) => tailOf(logFile, lines),
    logs() {
      if (!existsSync(logFile)) return [];
      const out: Array<Record<string, unknown>> = [];
      for (const l of readFileSync(logFile, 'utf8').split('\n')) {
        if (!l.startsWith('{')) continue;
        try {
          out.push(JSON.parse(l) as Record<string, unknown>);
        } catch {
          // a partially written last line
        }
      }
      return out;
    },
  };
  live.add(proc);

  const timeoutMs = opts.readyTimeoutMs ?? 20_000;
  try {
    proc.ready = await new Promise<ReadyLine>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no ready line within ${timeoutMs} ms`)), timeoutMs);
      const check = (line: string): boolean => {
        if (!line.startsWith('{')) return false;
        try {
          const j = JSON.parse(line) as Record<string, unknown>;
          if (j.ready === true) {
            clearTimeout(timer);
            resolve(j as ReadyLine);
            return true;
          }
        } catch {
          // not JSON: ordinary output
        }
        return false;
      };
      for (const l of stdoutLines.splice(0)) if (check(l)) return;
      onLine = (line) => {
        if (!check(line)) stdoutLines.push(line);
      };
      void exited.then((e) => {
        clearTimeout(timer);
        reject(new Error(`${name}: exited (code ${e.code}, signal ${e.signal}) before its ready line`));
      });
    });
    onLine = (line) => stdoutLines.push(line);
  } catch (err) {
    proc.kill('SIGKILL');
    await exited;
    await Promise.race([logClosed, new Promise((r) => setTimeout(r, 500))]);
    live.delete(proc);
    throw new Error(`${(err as Error).message}\nconfig: ${configFile ?? '(none)'}\nlog ${logFile}, last lines:\n${proc.tail(40)}`);
  }
  return proc;
}

/** Stops every process started by spawnRole that is still alive (SIGTERM, then SIGKILL). */
export async function killAll(graceMs = 3000): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(graceMs)));
}

// Last resort when a test runner or bench exits or is signalled without its afterAll/finally: never
// leave role processes (or their temp dirs) behind. A signal is re-raised after cleanup when nobody
// else handles it, so the default action (exit) still happens.
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
  cleanupTempDirs();
});
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(sig, () => {
    for (const p of live) p.kill('SIGKILL');
    cleanupTempDirs();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  });
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs `node <cli> ...args` to completion (e.g. `get URL -O FILE`) and returns its output. Never
 * throws for a non-zero exit; kills the process and resolves with signal SIGKILL after `timeoutMs`.
 */
export function runCli(
  args: string[],
  opts: { timeoutMs?: number; env?: Record<string, string | undefined>; cwd?: string; cli?: string; signal?: AbortSignal } = {},
): Promise<RunResult> {
  const start = performance.now();
  const child = spawn(process.execPath, [opts.cli ?? cliPath(), ...args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Aborting kills the process at once (a host that dies takes its clients with it).
    ...(opts.signal ? { signal: opts.signal, killSignal: 'SIGKILL' as const } : {}),
  });
  child.on('error', () => undefined); // an abort; 'close' still resolves
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    if (stderr.length > 1_000_000) stderr = stderr.slice(-500_000);
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  return new Promise((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - start });
    });
  });
}

/** "127.0.0.1:PORT" → PORT; throws if the address has no port. */
export function portOf(addr: unknown): number {
  const m = /:(\d+)$/.exec(String(addr));
  if (!m) throw new Error(`no port in address ${String(addr)}`);
  return Number(m[1]);
}

/** The base URL of a role's proxy from its ready line (`proxy` is "ip:port" or a bare port). */
export function proxyUrl(role: RoleProcess): string {
  const p = String(role.ready.proxy);
  return `http://127.0.0.1:${p.includes(':') ? portOf(p) : Number(p)}`;
}

/** Polls `fn` every `intervalMs` until it returns a truthy value; throws after `timeoutMs`. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 10_000, intervalMs = 100): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// ---------------------------------------------------------------------------------------------
// A local cluster: scheduler + seed peer + agents, all on 127.0.0.1 with ephemeral ports.

type Obj = Record<string, unknown>;

/** Deep-merges plain objects (arrays and scalars in `over` replace). */
export function merge<T extends Obj>(base: T, over: Obj | undefined): T {
  if (!over) return base;
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)
        ? merge(b as Obj, v as Obj)
        : v;
  }
  return out as T;
}

/** A scheduler config listening on 127.0.0.1 ephemeral ports, tuned for fast tests. */
export function schedulerConfigFor(over?: Obj): Obj {
  return merge(
    {
      server: { ip: '127.0.0.1', port: 0 },
      metrics: { ip: '127.0.0.1', port: 0 },
      scheduling: { retryInterval: '100ms' },
    },
    over,
  );
}

/** An agent (or seed peer) config: hostname `name`, storage and socket under `dir`, all ports 0. */
export function agentConfigFor(name: string, dir: string, schedulers: string[], opts: { seed?: boolean } = {}, over?: Obj): Obj {
  const any = { ip: '127.0.0.1', port: 0 };
  return merge(
    {
      host: { hostname: name, ip: '127.0.0.1' },
      seedPeer: { enable: opts.seed ?? false },
      storage: { dir: path.join(dir, 'storage'), keep: false },
      scheduler: { addrs: schedulers, announceInterval: '5s' },
      upload: { server: { ...any }, pieceServer: { ...any } },
      download: { server: { socket: path.join(dir, 'agent.sock') } },
      proxy: { server: { ...any } },
      metrics: { server: { ...any } },
    },
    over,
  );
}

export interface Cluster {
  scheduler: RoleProcess;
  seed: RoleProcess | undefined;
  agents: RoleProcess[];
  /** Every process, scheduler first. */
  all(): RoleProcess[];
  /** Starts one more agent named `name` against the cluster's scheduler (`env` added to the cluster's). */
  addAgent(name: string, over?: Obj, env?: Record<string, string | undefined>): Promise<RoleProcess>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  agents: number;
  seed?: boolean;
  scheduler?: Obj;
  /** Overrides for agent i (0-based); the seed peer gets `seedOverrides`. */
  agent?: (i: number) => Obj | undefined;
  seedOverrides?: Obj;
  readyTimeoutMs?: number;
  env?: Record<string, string | undefined>;
  /** The CLI to run (default cliPath()). */
  cli?: string;
}

/** Starts a scheduler, optionally a seed peer, and `agents` agents (in parallel); throws if any fails. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const scheduler = await spawnRole('scheduler', schedulerConfigFor(opts.scheduler), {
    readyTimeoutMs: opts.readyTimeoutMs,
    env: opts.env,
    cli: opts.cli,
  });
  const addr = String(scheduler.ready.grpc);
  const startAgent = (name: string, seed: boolean, over?: Obj, env?: Record<string, string | undefined>): Promise<RoleProcess> => {
    const dir = makeTempDir(`damselfly-${name}-`);
    return spawnRole('agent', agentConfigFor(name, dir, [addr], { seed }, over), {
      dir,
      name,
      readyTimeoutMs: opts.readyTimeoutMs,
      env: env ? { ...opts.env, ...env } : opts.env,
      cli: opts.cli,
    });
  };
  const seed = opts.seed === false ? undefined : await startAgent('seed', true, opts.seedOverrides);
  const agents = await Promise.all(Array.from({ length: opts.agents }, (_, i) => startAgent(`agent-${i}`, false, opts.agent?.(i))));
  const cluster: Cluster = {
    scheduler,
    seed,
    agents,
    all: () => [scheduler, ...(cluster.seed ? [cluster.seed] : []), ...cluster.agents],
    async addAgent(name, over, env) {
      const a = await startAgent(name, false, over, env);
      cluster.agents.push(a);
      return a;
    },
    async stop() {
      await Promise.all([...(cluster.seed ? [cluster.seed] : []), ...cluster.agents].map((p) => p.stop()));
      await scheduler.stop();
    },
  };
  return cluster;
}

/**
 * `damselfly get URL -O out --endpoint <agent socket>` through `agent`. With DAMSELFLY_GET_VIA=api
 * the agent's local API is called in-process instead (apiGet): same agent path, no CLI process.
 */
export function getThrough(
  agent: RoleProcess,
  url: string,
  out: string,
  extra: string[] = [],
  timeoutMs = 180_000,
  cli?: string,
  /** Aborting SIGKILLs the `get` process (not with DAMSELFLY_GET_VIA=api). */
  signal?: AbortSignal,
): Promise<RunResult> {
  const via = process.env.DAMSELFLY_GET_VIA;
  if (via === 'api' || via === 'api-export') {
    const i = extra.indexOf('--digest');
    return apiGet(agent, url, out, { timeoutMs, digest: i >= 0 ? extra[i + 1] : undefined, exportTo: via === 'api-export' });
  }
  return runCli(['get', url, '-O', out, '--endpoint', String(agent.ready.socket), ...extra], { timeoutMs, cli, signal });
}

/**
 * Downloads `url` through `agent`'s local API (unix socket, GET /v1/download) into `out`, in this
 * process: what `damselfly get` does, without a process per download. Resolves like runCli (code 0
 * on success, 1 with the error body in `stderr`); never throws.
 */
export async function apiGet(agent: RoleProcess, url: string, out: string, opts: { digest?: string; timeoutMs?: number; exportTo?: boolean } = {}): Promise<RunResult> {
  const { Agent: UndiciAgent, request } = await import('undici');
  const { createWriteStream } = await import('node:fs');
  const { pipeline } = await import('node:stream/promises');
  const start = performance.now();
  const dispatcher = new UndiciAgent({ connect: { socketPath: String(agent.ready.socket) }, bodyTimeout: opts.timeoutMs ?? 180_000 });
  const q = new URLSearchParams({ url });
  if (opts.digest) q.set('digest', opts.digest);
  // exportTo: the agent places the finished file at `out` itself (hard link), as `damselfly get` asks it to.
  if (opts.exportTo) q.set('output', path.resolve(out));
  try {
    const res = await request(`http://localhost/v1/download?${q}`, { dispatcher, signal: AbortSignal.timeout(opts.timeoutMs ?? 180_000) });
    if (res.statusCode !== 200) {
      const body = await res.body.text();
      return { code: 1, signal: null, stdout: '', stderr: `HTTP ${res.statusCode}: ${body}`, ms: performance.now() - start };
    }
    if (opts.exportTo) {
      const r = (await res.body.json()) as { ok: boolean; message?: string };
      if (!r.ok) return { code: 1, signal: null, stdout: '', stderr: `agent: ${r.message ?? 'export failed'}`, ms: performance.now() - start };
    } else await pipeline(res.body, createWriteStream(out));
    return { code: 0, signal: null, stdout: '', stderr: '', ms: performance.now() - start };
  } catch (err) {
    return { code: 1, signal: null, stdout: '', stderr: String((err as Error).stack ?? err), ms: performance.now() - start };
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
}

/**
 * One request to `agent`'s local API health endpoint the way apiGet() calls it, so a benchmark's
 * timer does not include this process compiling its HTTP client or the agent's first API request.
 */
export async function apiWarm(agent: RoleProcess): Promise<void> {
  const { Agent: UndiciAgent, request } = await import('undici');
  const dispatcher = new UndiciAgent({ connect: { socketPath: String(agent.ready.socket) } });
  try {
    const res = await request('http://localhost/v1/healthy', { dispatcher });
    await res.body.dump();
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
}

/** Sums every sample of Prometheus metric `name` (any labels) served at http://`addr`/metrics. Throws on HTTP errors. */
export async function scrapeMetric(addr: unknown, name: string): Promise<number> {
  const res = await fetch(`http://${String(addr)}/metrics`);
  if (!res.ok) throw new Error(`GET http://${String(addr)}/metrics: HTTP ${res.status}`);
  let sum = 0;
  for (const line of (await res.text()).split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}
