/**
 * What can be checked of the Dockerfile without a Docker engine: its stages, base images, the
 * runtime's entry, user and healthcheck, and that every file it copies from the context exists and
 * is not excluded by .dockerignore. The healthcheck script itself runs for real against a socket.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  body: Instruction[];
}

/** Splits a Dockerfile into stages of instructions, joining `\` continuations and dropping comments. */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!current && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) current += line.slice(0, -1) + ' ';
    else {
      logical.push(current + line);
      current = '';
    }
  }
  const stages: Stage[] = [];
  for (const l of logical) {
    const [, op, args] = /^(\S+)\s+([\s\S]*)$/.exec(l)!;
    if (op.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args.trim())!;
      stages.push({ from: m[1], name: m[2], body: [] });
    } else stages.at(-1)!.body.push({ op: op.toUpperCase(), args: args.trim() });
  }
  return stages;
}

/** .dockerignore semantics for the paths used here: last matching pattern wins, `!` re-includes. */
function ignored(rel: string, patterns: string[]): boolean {
  let result = false;
  for (const p of patterns) {
    const negate = p.startsWith('!');
    const glob = (negate ? p.slice(1) : p).replace(/\/$/, '');
    const re = new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\u0000/g, '.*')}(/.*)?$`);
    if (re.test(rel)) result = !negate;
  }
  return result;
}

const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfile);
const ignore = readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const runtime = stages.at(-1)!;
const find = (stage: Stage, op: string) => stage.body.filter((i) => i.op === op);

describe('Dockerfile', () => {
  it('is multi-stage on one base, the current Node LTS (24), while engines still admits Node 20 (CI runs on 20)', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages.map((s) => s.name)).toEqual(['build', 'runtime']);
    for (const s of stages) expect(s.from).toBe('node:24-bookworm-slim');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toMatch(/^>=20\./);
    const build = stages[0].body.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
    expect(build).toMatch(/npm ci\b/);
    expect(build).toMatch(/npm run build\b/);
    expect(build).toMatch(/npm prune --omit=dev/);
  });

  it('runs `damselfly` (the package bin) as an unprivileged user with a healthcheck', () => {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    const [entry] = find(runtime, 'ENTRYPOINT');
    expect(JSON.parse(entry.args)).toEqual(['node', `/app/${pkg.bin.damselfly}`]);
    expect(find(runtime, 'USER').map((i) => i.args)).toEqual(['node']);
    const [health] = find(runtime, 'HEALTHCHECK');
    expect(health.args).toMatch(/CMD \["node", "\/app\/healthcheck\.mjs"\]$/);
    // What the runtime copies from the build stage is what the entry and the check need.
    const fromBuild = find(runtime, 'COPY').filter((i) => i.args.includes('--from=build')).map((i) => i.args.split(/\s+/).at(-1));
    expect(fromBuild).toEqual(expect.arrayContaining(['./node_modules', './dist']));
  });

  it('copies only context paths that exist and that .dockerignore lets through', () => {
    const sources = stages
      .flatMap((s) => find(s, 'COPY'))
      .filter((i) => !i.args.includes('--from='))
      .flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1));
    expect(sources.length).toBeGreaterThan(5);
    for (const src of sources) {
      expect(existsSync(path.join(repoRoot, src)), `COPY ${src}`).toBe(true);
      expect(ignored(src.replace(/^\.\//, ''), ignore), `COPY ${src} is excluded by .dockerignore`).toBe(false);
    }
    // Everything tsconfig.build.json compiles must be in the image's build context.
    const build = JSON.parse(readFileSync(path.join(repoRoot, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    for (const dir of build.include) expect(sources, `tsconfig.build.json includes ${dir}`).toContain(dir);
    // Test code stays out of the build and so out of the image.
    expect(build.include.some((dir) => dir === 'test' || dir.startsWith('test/')), 'tsconfig.build.json compiles test code').toBe(false);
    expect(ignored('test/support/procs.ts', ignore)).toBe(true);
    expect(ignored('node_modules', ignore)).toBe(true);
    expect(ignored('.sst/platform', ignore)).toBe(true);
  });
});

describe('Dockerfile and the shipped configs', () => {
  it('creates, for the unprivileged user, every directory the compose configs write to', async () => {
    const { parse } = await import('yaml');
    const { validateRoleConfig } = await import('./configs.js');
    const run = find(runtime, 'RUN').map((i) => i.args).find((a) => a.includes('mkdir'))!;
    const made = /mkdir -p ([^&]+)/.exec(run)![1].trim().split(/\s+/);
    const owned = /chown -R node:node ([^&]+)/.exec(run)![1].trim().split(/\s+/);
    const dirs = new Set<string>();
    for (const [file, role] of [['agent.yaml', 'agent'], ['seed-peer.yaml', 'agent'], ['manager.yaml', 'manager'], ['manager-sqlite.yaml', 'manager'], ['manager-localstack.yaml', 'manager'], ['scheduler-sqlite.yaml', 'scheduler']] as const) {
      const doc = parse(readFileSync(path.join(repoRoot, 'infra', 'compose', file), 'utf8'));
      const c = validateRoleConfig(role, doc, file).config as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      if (role === 'agent') {
        dirs.add(c.storage.dir);
        dirs.add(path.posix.dirname(c.download.server.socket));
      }
      if (role === 'manager') dirs.add(c.store.dataDir);
      for (const s of [c.store?.kv, c.store?.queue, c.job?.queue]) if (s?.path) dirs.add(path.posix.dirname(s.path));
    }
    expect(dirs.size).toBeGreaterThanOrEqual(3);
    for (const d of dirs) {
      expect(made, d).toContain(d);
      expect(owned.some((o) => d === o || d.startsWith(o + '/')), `${d} owned by node`).toBe(true);
    }
  });
});

describe('healthcheck.mjs', () => {
  const script = path.join(repoRoot, 'infra', 'docker', 'healthcheck.mjs');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'damselfly-health-'));
  const servers: net.Server[] = [];
  afterAll(() => {
    for (const s of servers) s.close();
    rmSync(tmp, { recursive: true, force: true });
  });
  const check = (env: Record<string, string>) =>
    promisify(execFile)('node', [script], { env: { ...process.env, ...env }, timeout: 10_000 }).then(
      () => 0,
      (err: { code?: number }) => err.code ?? -1,
    );

  it('is healthy when the port accepts a connection and unhealthy when nothing listens', async () => {
    const server = net.createServer((s) => s.destroy());
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    expect(await check({ DAMSELFLY_HEALTH_PORT: String(port) })).toBe(0);
    await new Promise<void>((r) => server.close(() => r()));
    expect(await check({ DAMSELFLY_HEALTH_PORT: String(port) })).toBe(1);
  });

  it('takes the role from the process arguments and fails when there is no role', async () => {
    const unknown = path.join(tmp, 'unknown');
    writeFileSync(unknown, ['node', '/app/dist/control/cli.js', '--help', ''].join('\0'));
    expect(await check({ DAMSELFLY_HEALTH_CMDLINE: unknown })).toBe(1);
    // A known role: the answer must agree with whether the scheduler's port 8002 accepts connections.
    const scheduler = path.join(tmp, 'scheduler');
    writeFileSync(scheduler, ['node', '/app/dist/control/cli.js', 'scheduler', '--config', '/etc/damselfly/scheduler.yaml', ''].join('\0'));
    const result = await promisify(execFile)('node', [script], { env: { ...process.env, DAMSELFLY_HEALTH_CMDLINE: scheduler }, timeout: 10_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    const listening = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: 8002 });
      s.on('connect', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    expect(result.code).toBe(listening ? 0 : 1);
    if (!listening) expect(result.stderr).toContain('127.0.0.1:8002');
  });
});
