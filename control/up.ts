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
import { ConfigError } from '../adapters/errors.js';

type Ready = Record<string, unknown>;

interface UpOptions {
  dataDir: string;
  proxyPort: number;
  schedulerPort: number;
  managerPort: number;
  ip: string;
  json: boolean;
  /** security.mtls of the scheduler, seed peer and agent. */
  mtls: 'off' | 'optional' | 'required';
}

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

const any = (ip: string) => ({ ip, port: 0 });
const DEFAULT_DATA_DIR = path.join(homedir(), '.damselfly');

function agentConfig(ctx: Context, name: string, seed: boolean): Record<string, unknown> {
  const { opts } = ctx;
  const dir = path.join(opts.dataDir, name);
  return {
    host: { hostname: `${hostnameLabel()}-${name}`, ip: opts.ip },
    seedPeer: { enable: seed },
    storage: { dir, keep: true },
    scheduler: { addrs: [String(ctx.ready.scheduler?.grpc)] },
    upload: { server: any(opts.ip), pieceServer: any(opts.ip) },
    download: { server: { socket: path.join(opts.dataDir, `${name}.sock`) } },
    proxy: { server: seed ? any(opts.ip) : { ip: opts.ip, port: opts.proxyPort } },
    metrics: { server: any(opts.ip) },
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
      server: { ip: opts.ip, port: opts.managerPort },
      store: { dataDir: path.join(opts.dataDir, 'manager') },
    }),
    describe: (r) => fields(r, ['http']),
  },
  {
    name: 'scheduler',
    command: 'scheduler',
    config: ({ opts, ready }) => ({
      server: { ip: opts.ip, port: opts.schedulerPort },
      metrics: any(opts.ip),
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
    describe: (r) => fields(r, ['hostId', 'grpc', 'pieces', 'metrics']),
  },
  {
    name: 'agent',
    command: 'agent',
    config: (ctx) => agentConfig(ctx, 'agent', false),
    describe: (r) => fields(r, ['hostId', 'proxy', 'socket', 'grpc', 'pieces', 'metrics']),
  },
];

const HELP = `usage: damselfly up [--data-dir DIR] [--proxy-port 4001] [--scheduler-port 8002] [--manager-port 8080] [--mtls[=required|optional]] [--json]

Runs the manager (embedded SQLite store and queue), a scheduler registered to it, a seed peer and an
agent on this machine until Ctrl-C / SIGTERM.
  --data-dir DIR        configs, storage, sockets, logs and secrets.json (default $HOME/.damselfly)
  --proxy-port PORT     the agent's registry mirror / HTTP proxy port (default 4001; 0 = any)
  --scheduler-port PORT the scheduler's gRPC port (default 8002; 0 = any)
  --manager-port PORT   the manager's HTTP API port (default 8080; 0 = any)
  --mtls[=MODE]         mutual TLS between scheduler, seed peer and agent (security.mtls; default
                        required): certificates from the manager for the join token in secrets.json
  --json                print one JSON ready line instead of the human summary
The configs in DIR are rewritten on every start; to customise a role, run it directly
(damselfly scheduler|agent --config FILE). Download through it with:
  damselfly get URL -O FILE --endpoint DIR/agent.sock
`;

function parsePort(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${flag}: expected a port 0-65535, got "${v ?? ''}"`);
  return n;
}

/** Parses `up`'s flags. Throws ConfigError on an unknown flag or a bad value. */
export function parseUpArgs(argv: string[]): UpOptions | 'help' {
  const opts: UpOptions = {
    dataDir: DEFAULT_DATA_DIR,
    proxyPort: 4001,
    schedulerPort: 8002,
    managerPort: 8080,
    ip: '127.0.0.1',
    json: false,
    mtls: 'off',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? (a.split('=', 2) as [string, string]) : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--help':
      case '-h':
        return 'help';
      case '--data-dir': {
        const v = value();
        if (!v) throw new ConfigError('--data-dir: expected a directory');
        opts.dataDir = path.resolve(v);
        break;
      }
      case '--proxy-port':
        opts.proxyPort = parsePort(flag, value());
        break;
      case '--scheduler-port':
        opts.schedulerPort = parsePort(flag, value());
        break;
      case '--manager-port':
        opts.managerPort = parsePort(flag, value());
        break;
      case '--json':
        opts.json = true;
        break;
      case '--mtls': {
        // A bare --mtls means required; a mode only inline, so the next argument is never taken.
        const mode = inline ?? 'required';
        if (mode !== 'off' && mode !== 'optional' && mode !== 'required') throw new ConfigError(`--mtls: expected off, optional or required, got "${mode}"`);
        opts.mtls = mode;
        break;
      }
      default:
        throw new ConfigError(`unknown option "${a}" (see damselfly up --help)`);
    }
  }
  return opts;
}

interface Running {
  spec: RoleSpec;
  child: ChildProcess;
  ready: Ready;
  logFile: string;
  exited: Promise<number | null>;
}

/** Starts one role and resolves with its ready line; rejects if it exits first or stays silent 30 s. */
function startRole(spec: RoleSpec, ctx: Context, cli: string, env: NodeJS.ProcessEnv): Promise<Running> {
  const { dataDir } = ctx.opts;
  const configFile = path.join(dataDir, `${spec.name}.yaml`);
  writeFileSync(configFile, `# written by "damselfly up" on every start\n${stringify(spec.config(ctx))}`);
  const logFile = path.join(dataDir, 'logs', `${spec.name}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(process.execPath, [cli, spec.command, '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env });
  child.stderr!.pipe(log);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
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
async function stopAll(running: Running[]): Promise<void> {
  for (const r of [...running].reverse()) {
    if (r.child.exitCode !== null || r.child.signalCode !== null) continue;
    r.child.kill('SIGTERM');
    const timer = setTimeout(() => r.child.kill('SIGKILL'), 10_000);
    await r.exited;
    clearTimeout(timer);
  }
}

export async function main(argv: string[]): Promise<number> {
  const parsed = parseUpArgs(argv);
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
  let stopping = false;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));

  const shutdown = (code: number): void => {
    if (stopping) return;
    stopping = true;
    void stopAll(running).then(() => resolveDone(code));
  };
  process.once('SIGINT', () => shutdown(0));
  process.once('SIGTERM', () => shutdown(0));

  try {
    for (const spec of ROLES) {
      if (stopping) break;
      const r = await startRole(spec, ctx, cli, env);
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
    process.stderr.write(`damselfly up: ${(err as Error).message}\n`);
    stopping = true;
    await stopAll(running);
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
