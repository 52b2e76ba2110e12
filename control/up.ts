/**
 * `damselfly up`: everything on one machine — the manager (embedded SQLite KV and queue), a scheduler
 * registered to it, a seed peer and an agent (registry mirror / proxy on :4001) — with configs,
 * storage, sockets and logs under one data directory.
 *
 * Each role runs as a child process of this same executable (`damselfly <role> --config FILE`), not
 * in-process: the roles are the very programs deployed on real machines (same config loading, same
 * ready line, same signal handling), a crash in one is visible as an exit instead of taking the others
 * down with it, and each keeps its own log file. The cost is a few extra Node processes.
 *
 * Roles start in the order of ROLES; each one's config may use the ready lines of the roles before
 * it (the scheduler needs the manager's URL, the agents the scheduler's gRPC address).
 *
 * Secrets (the root password, the scheduler secret and the join token) are generated once, kept in
 * DIR/secrets.json (mode 0600) and handed to the roles through the environment: never in a config
 * file or a log. With `--mtls` the scheduler, seed peer and agent run with `security.mtls` and buy
 * their certificates from the manager (the cluster's CA) with that join token.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseArgs } from 'node:util';
import { InvalidError, errorMessage } from '../adapters/errors.js';
import { LOG_LEVELS } from '../adapters/log.js';
import { portFlag } from '../adapters/process.js';
import { releaseSignals } from '../adapters/signals.js';

type Ready = Record<string, unknown>;

/** Every listener `up` opens, by `role.listener`; each can be pinned with --port NAME=PORT. */
export const UP_LISTENERS = [
  'manager.http',
  'scheduler.grpc',
  'scheduler.metrics',
  'seed-peer.grpc',
  'seed-peer.pieces',
  'seed-peer.metrics',
  'seed-peer.proxy',
  'agent.grpc',
  'agent.pieces',
  'agent.metrics',
  'agent.proxy',
] as const;
export type UpListener = (typeof UP_LISTENERS)[number];

interface UpOptions {
  dataDir: string;
  /** Port of every listener (0 = the kernel picks). */
  ports: Record<UpListener, number>;
  ip: string;
  json: boolean;
  /** security.mtls of the scheduler, seed peer and agent. */
  mtls: 'off' | 'optional' | 'required';
}

const DEFAULT_PORTS: Record<UpListener, number> = {
  'manager.http': 8080,
  'scheduler.grpc': 8002,
  'scheduler.metrics': 0,
  'seed-peer.grpc': 0,
  'seed-peer.pieces': 0,
  'seed-peer.metrics': 0,
  'seed-peer.proxy': 0,
  'agent.grpc': 0,
  'agent.pieces': 0,
  'agent.metrics': 0,
  'agent.proxy': 4001,
};

interface Context {
  opts: UpOptions;
  /** Ready lines of the roles started so far, by role name. */
  ready: Record<string, Ready>;
}

interface Secrets {
  rootPassword: string;
  schedulerSecret: string;
  /** Added to a secrets.json written by an older version on its next start. */
  joinToken: string;
}

/**
 * Reads DIR/secrets.json, creating it (0600) on first start. DAMSELFLY_ROOT_PASSWORD, when set,
 * wins over the stored root password. Returns the secrets and whether they were just generated.
 */
function loadSecrets(dataDir: string): { secrets: Secrets; created: boolean } {
  const file = path.join(dataDir, 'secrets.json');
  let secrets: Secrets;
  let created = false;
  if (existsSync(file)) {
    chmodSync(file, 0o600); // narrowed if an editor or an older version left it readable
    secrets = JSON.parse(readFileSync(file, 'utf8')) as Secrets;
    if (typeof secrets.joinToken !== 'string') {
      secrets.joinToken = randomBytes(24).toString('base64url');
      writeFileSync(file, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
    }
  } else {
    secrets = { rootPassword: randomBytes(12).toString('base64url'), schedulerSecret: randomBytes(24).toString('hex'), joinToken: randomBytes(24).toString('base64url') };
    writeFileSync(file, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
    created = true;
  }
  if (process.env.DAMSELFLY_ROOT_PASSWORD) secrets.rootPassword = process.env.DAMSELFLY_ROOT_PASSWORD;
  return { secrets, created };
}

interface RoleSpec {
  /** Name for files and the summary (`DIR/<name>.yaml`, `DIR/logs/<name>.log`). */
  name: string;
  /** The CLI subcommand. */
  command: string;
  config(ctx: Context): Record<string, unknown>;
  /** One summary line from the ready JSON. */
  describe(ready: Ready): string;
}

const DEFAULT_DATA_DIR = path.join(homedir(), '.damselfly');

function agentConfig(ctx: Context, name: string, seed: boolean): Record<string, unknown> {
  const { opts } = ctx;
  const dir = path.join(opts.dataDir, name);
  const role = seed ? 'seed-peer' : 'agent';
  const at = (listener: string) => ({ ip: opts.ip, port: opts.ports[`${role}.${listener}` as UpListener] });
  return {
    host: { hostname: `${hostnameLabel()}-${name}`, ip: opts.ip },
    seedPeer: { enable: seed },
    storage: { dir, keep: true },
    scheduler: { addrs: [String(ctx.ready.scheduler?.grpc)] },
    upload: { server: at('grpc'), pieceServer: at('pieces') },
    download: { server: { socket: path.join(opts.dataDir, `${name}.sock`) } },
    proxy: { server: at('proxy') },
    metrics: { server: at('metrics') },
    ...security(ctx),
  };
}

/** The security block of the scheduler and agents: the manager started first issues the certificates. */
function security(ctx: Context, certDir?: string): Record<string, unknown> {
  if (ctx.opts.mtls === 'off') return {};
  return { security: { mtls: ctx.opts.mtls, managerAddr: `http://${String(ctx.ready.manager?.http)}`, ...(certDir ? { certDir } : {}) } };
}

function hostnameLabel(): string {
  return hostname().replace(/[^\w.-]/g, '-') || 'local';
}

const fields = (r: Ready, keys: string[]): string =>
  keys
    .filter((k) => r[k] !== undefined)
    .map((k) => `${k} ${String(r[k])}`)
    .join('  ');

/** The roles `up` runs, in start order. */
const ROLES: RoleSpec[] = [
  {
    name: 'manager',
    command: 'manager',
    config: ({ opts }) => ({
      server: { ip: opts.ip, port: opts.ports['manager.http'] },
      store: { dataDir: path.join(opts.dataDir, 'manager') },
    }),
    describe: (r) => fields(r, ['http']),
  },
  {
    name: 'scheduler',
    command: 'scheduler',
    config: ({ opts, ready }) => ({
      server: { ip: opts.ip, port: opts.ports['scheduler.grpc'] },
      metrics: { ip: opts.ip, port: opts.ports['scheduler.metrics'] },
      manager: { addr: `http://${String(ready.manager?.http)}` },
      // The manager's embedded queue: one SQLite file, shared safely across processes (WAL).
      job: { enable: true, queue: { kind: 'sqlite', path: path.join(opts.dataDir, 'manager', 'queue.db') } },
      // Kept on disk so a restart works from its current certificate.
      ...security({ opts, ready }, path.join(opts.dataDir, 'scheduler-tls')),
    }),
    describe: (r) => fields(r, ['grpc', 'metrics']),
  },
  {
    name: 'seed-peer',
    command: 'agent',
    config: (ctx) => agentConfig(ctx, 'seed-peer', true),
    describe: (r) => fields(r, ['hostId', 'grpc', 'pieces', 'metrics', 'proxy']),
  },
  {
    name: 'agent',
    command: 'agent',
    config: (ctx) => agentConfig(ctx, 'agent', false),
    describe: (r) => fields(r, ['hostId', 'proxy', 'socket', 'grpc', 'pieces', 'metrics']),
  },
];

const HELP = `usage: damselfly up [--data-dir DIR] [--proxy-port 4001] [--scheduler-port 8002] [--manager-port 8080]
                    [--port NAME=PORT ...] [--mtls[=required|optional]] [--log-level LEVEL] [--json]

Runs the manager (embedded SQLite store and queue), a scheduler registered to it, a seed peer and an
agent on this machine until Ctrl-C / SIGTERM. Each role is a child process that also stops when up
itself goes (even by kill -9).
  --data-dir DIR        configs, storage, sockets, logs and secrets.json (default $HOME/.damselfly)
  --proxy-port PORT     the agent's registry mirror / HTTP proxy port (default 4001; 0 = any)
  --scheduler-port PORT the scheduler's gRPC port (default 8002; 0 = any)
  --manager-port PORT   the manager's HTTP API port (default 8080; 0 = any)
  --port NAME=PORT      pin any listener (repeatable); NAME is one of
                        ${UP_LISTENERS.join(', ')}
                        (all but manager.http, scheduler.grpc and agent.proxy default to 0 = any)
  --mtls[=MODE]         mutual TLS between scheduler, seed peer and agent (security.mtls; default
                        required): certificates from the manager for the join token in secrets.json
  --log-level LEVEL     debug, info, warn or error, for every role
  --json                print one JSON ready line instead of the human summary
Every listener's address is printed once all roles are ready. The configs in DIR are rewritten on
every start; to customise a role, run it directly (damselfly scheduler|agent --config FILE).
Download through it with:
  damselfly get URL -O FILE --endpoint DIR/agent.sock
exit codes: 0 stopped by a signal, 1 a role failed, 2 bad usage
`;

/** Parses `up`'s flags. Throws InvalidError naming the flag on an unknown flag or a bad value. */
export function parseUpArgs(argv: string[]): (UpOptions & { logLevel?: string }) | 'help' {
  let values: Record<string, string | boolean | string[] | undefined>;
  // A bare --mtls means required; a mode only inline (--mtls=optional), so the next argument is never taken.
  const args = argv.map((a) => (a === '--mtls' ? '--mtls=required' : a));
  try {
    values = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        'data-dir': { type: 'string' },
        'proxy-port': { type: 'string' },
        'scheduler-port': { type: 'string' },
        'manager-port': { type: 'string' },
        port: { type: 'string', multiple: true },
        'log-level': { type: 'string' },
        mtls: { type: 'string' },
        json: { type: 'boolean' },
      },
    }).values;
  } catch (err) {
    throw new InvalidError(`${errorMessage(err)} (see damselfly up --help)`);
  }
  if (values.help === true) return 'help';
  const ports = { ...DEFAULT_PORTS };
  const pin = (name: UpListener, flag: string, v: string | undefined) => {
    const p = portFlag(flag, v);
    if (p !== undefined) ports[name] = p;
  };
  pin('agent.proxy', '--proxy-port', values['proxy-port'] as string | undefined);
  pin('scheduler.grpc', '--scheduler-port', values['scheduler-port'] as string | undefined);
  pin('manager.http', '--manager-port', values['manager-port'] as string | undefined);
  for (const spec of (values.port as string[] | undefined) ?? []) {
    const m = /^([a-z-]+\.[a-z]+)=(.*)$/.exec(spec);
    if (!m || !(UP_LISTENERS as readonly string[]).includes(m[1]!)) throw new InvalidError(`--port ${spec}: expected NAME=PORT with NAME one of ${UP_LISTENERS.join(', ')}`);
    pin(m[1] as UpListener, `--port ${m[1]}`, m[2]);
  }
  const pinned = Object.entries(ports).filter(([, p]) => p !== 0);
  const seen = new Map<number, string>();
  for (const [name, p] of pinned) {
    if (seen.has(p)) throw new InvalidError(`--port: ${seen.get(p)} and ${name} both ask for port ${p}`);
    seen.set(p, name);
  }
  const dataDir = values['data-dir'] as string | undefined;
  if (dataDir === '') throw new InvalidError('--data-dir: expected a directory');
  const logLevel = values['log-level'] as string | undefined;
  if (logLevel !== undefined && !(LOG_LEVELS as string[]).includes(logLevel)) throw new InvalidError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  const mtls = (values.mtls as string | undefined) ?? 'off';
  if (mtls !== 'off' && mtls !== 'optional' && mtls !== 'required') throw new InvalidError(`--mtls: expected off, optional or required, got "${mtls}"`);
  return { dataDir: dataDir ? path.resolve(dataDir) : DEFAULT_DATA_DIR, ports, ip: '127.0.0.1', json: values.json === true, logLevel, mtls };
}

interface Running {
  spec: RoleSpec;
  child: ChildProcess;
  ready: Ready;
  logFile: string;
  exited: Promise<number | null>;
}

/**
 * Starts one role and resolves with its ready line; rejects if it exits first or stays silent 30 s.
 * `onSpawn` sees the child at once, so a stop requested while it starts can reach it. The child
 * gets an IPC channel it never uses for messages: when this process goes (even by kill -9) the
 * channel closes and the role stops itself (adapters/process.ts).
 */
function startRole(spec: RoleSpec, ctx: Context, cli: string, env: NodeJS.ProcessEnv, extraArgs: string[], onSpawn: (child: ChildProcess, exited: Promise<number | null>) => void): Promise<Running> {
  const { dataDir } = ctx.opts;
  const configFile = path.join(dataDir, `${spec.name}.yaml`);
  writeFileSync(configFile, `# written by "damselfly up" on every start\n${stringify(spec.config(ctx))}`);
  const logFile = path.join(dataDir, 'logs', `${spec.name}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(process.execPath, [cli, spec.command, '--config', configFile, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env });
  child.stderr!.pipe(log);
  child.channel?.unref(); // the channel is there to close when we go, not to keep us alive
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  onSpawn(child, exited);
  return new Promise((resolve, reject) => {
    let buf = '';
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      child.kill('SIGKILL');
      reject(new Error(`${spec.name} did not become ready within 30 s; see ${logFile}`));
    }, 30_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      if (done) return;
      buf += d;
      for (const line of buf.split('\n').slice(0, -1)) {
        try {
          const j = JSON.parse(line) as Ready;
          if (j.ready === true) {
            done = true;
            clearTimeout(timer);
            resolve({ spec, child, ready: j, logFile, exited });
            return;
          }
        } catch {
          // not the ready line
        }
      }
      buf = buf.slice(buf.lastIndexOf('\n') + 1);
    });
    void exited.then((code) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`${spec.name} exited with code ${code} before it was ready; see ${logFile}`));
    });
  });
}

/** Stops roles in reverse start order: SIGTERM, then SIGKILL after 10 s. */
async function stopAll(running: Array<Pick<Running, 'child' | 'exited'>>): Promise<void> {
  for (const r of [...running].reverse()) {
    if (r.child.exitCode !== null || r.child.signalCode !== null) continue;
    r.child.kill('SIGTERM');
    const timer = setTimeout(() => r.child.kill('SIGKILL'), 10_000);
    await r.exited;
    clearTimeout(timer);
  }
}

export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseUpArgs>;
  try {
    parsed = parseUpArgs(argv);
  } catch (err) {
    process.stderr.write(`damselfly up: ${errorMessage(err)}\n`);
    return 2;
  }
  if (parsed === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const opts = parsed;
  // secrets.json, the stores and the logs live here: 0700, so no other user can read any of them.
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  chmodSync(opts.dataDir, 0o700);
  mkdirSync(path.join(opts.dataDir, 'logs'), { recursive: true, mode: 0o700 });
  const { secrets, created } = loadSecrets(opts.dataDir);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DAMSELFLY_ROOT_PASSWORD: secrets.rootPassword,
    DAMSELFLY_SCHEDULER_SECRET: secrets.schedulerSecret,
    ...(opts.mtls === 'off' ? {} : { DAMSELFLY_JOIN_TOKEN: secrets.joinToken }),
  };
  const cli = process.argv[1]!;
  const ctx: Context = { opts, ready: {} };
  const running: Running[] = [];
  // Every child spawned so far, ready or not: a stop reaches the one still starting too.
  const spawned: Array<Pick<Running, 'child' | 'exited'>> = [];
  let stopping = false;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));

  const shutdown = (code: number): void => {
    if (stopping) return;
    stopping = true;
    void stopAll(spawned).then(() => resolveDone(code));
  };
  process.once('SIGINT', () => shutdown(0));
  process.once('SIGTERM', () => shutdown(0));
  if (releaseSignals()) shutdown(0); // one that arrived while the modules loaded (control/cli.ts)

  try {
    for (const spec of ROLES) {
      if (stopping) break;
      const r = await startRole(spec, ctx, cli, env, opts.logLevel ? ['--log-level', opts.logLevel] : [], (child, exited) => {
        spawned.push({ child, exited });
        if (stopping) child.kill('SIGTERM');
      });
      running.push(r);
      ctx.ready[spec.name] = r.ready;
      // A role dying on its own takes the whole set down: half a cluster would mislead the user.
      void r.exited.then((code) => {
        if (stopping) return;
        process.stderr.write(`damselfly up: ${spec.name} exited (code ${code}); stopping; see ${r.logFile}\n`);
        shutdown(1);
      });
    }
  } catch (err) {
    if (stopping) return done; // a role cut short by the stop we were asked for
    process.stderr.write(`damselfly up: ${(err as Error).message}\n`);
    stopping = true;
    await stopAll(spawned);
    return 1;
  }
  if (stopping) return done;

  if (opts.json) {
    const roles = Object.fromEntries(running.map((r) => [r.spec.name, { ...r.ready, pid: r.child.pid }]));
    process.stdout.write(`${JSON.stringify({ ready: true, role: 'up', dataDir: opts.dataDir, mtls: opts.mtls, roles })}\n`);
  } else {
    const width = Math.max(...ROLES.map((s) => s.name.length));
    const lines = running.map((r) => `  ${r.spec.name.padEnd(width)}  ${r.spec.describe(r.ready)}`);
    process.stdout.write(
      `damselfly up: running; data in ${opts.dataDir}, logs in ${path.join(opts.dataDir, 'logs')}\n${lines.join('\n')}\n` +
        // `damselfly get` looks for ~/.damselfly/agent.sock by itself.
        `download with: damselfly get URL -O FILE${opts.dataDir === DEFAULT_DATA_DIR ? '' : ` --endpoint ${path.join(opts.dataDir, 'agent.sock')}`}\n` +
        `registry mirror: http://${String(ctx.ready.agent?.proxy ?? '')} (client setup: damselfly config containerd|docker|podman|nydusd)\n` +
        (opts.mtls === 'off' ? '' : `mutual TLS: ${opts.mtls} between scheduler, seed peer and agent (certificates from the manager)\n`) +
        `manager API: http://${String(ctx.ready.manager?.http ?? '')} (user root; ${
          created && !process.env.DAMSELFLY_ROOT_PASSWORD
            ? `generated password, shown once: ${secrets.rootPassword}; kept in ${path.join(opts.dataDir, 'secrets.json')}`
            : `password in ${path.join(opts.dataDir, 'secrets.json')} or DAMSELFLY_ROOT_PASSWORD`
        })\n` +
        `stop with Ctrl-C\n`,
    );
  }
  return done;
}
