/**
 * docker-compose.yml checked without a Docker engine: every service's image/build, command, ports,
 * healthcheck and volumes; every configuration file it mounts exists and passes the role's own
 * schema; each profile is a complete system whose addresses resolve to services of that profile.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';
import { requireOrSkip } from '../support/require.js';
import { ROLES, referencedHosts, validateRoleConfig, type Role } from './configs.js';

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  profiles?: string[];
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string; required?: boolean }>;
  networks?: { default?: { aliases?: string[] } };
  secrets?: string[];
}
interface Compose {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
  secrets?: Record<string, { environment?: string; file?: string }>;
}

const composeFile = path.join(repoRoot, 'docker-compose.yml');
const compose = parse(readFileSync(composeFile, 'utf8'), { merge: true }) as Compose;
const services = Object.entries(compose.services);
const PROFILES = ['postgres', 'sqlite', 'localstack'];
const damselflyServices = services.filter(([, s]) => s.build !== undefined);

/** The configuration file a damselfly service runs with, as a path in the repository. */
function mountedConfig(name: string, s: Service): { role: Role; file: string } {
  const [role, flag, inContainer] = s.command ?? [];
  expect(ROLES, `${name}: command must start with a role`).toContain(role);
  expect(flag, `${name}: command must pass --config`).toBe('--config');
  const mount = (s.volumes ?? []).map((v) => v.split(':')).find(([, target]) => target === inContainer);
  expect(mount, `${name}: ${inContainer} is not mounted`).toBeDefined();
  return { role: role as Role, file: path.resolve(repoRoot, mount![0]) };
}

function servicesOf(profile: string): [string, Service][] {
  return services.filter(([, s]) => !s.profiles || s.profiles.includes(profile));
}

/** Names other containers reach a service by: its name and its network aliases. */
function namesOf(name: string, s: Service): string[] {
  return [name, ...(s.networks?.default?.aliases ?? [])];
}

describe('docker-compose.yml', () => {
  it('builds every damselfly service from the one Dockerfile, with `damselfly` as the entry', () => {
    expect(damselflyServices.map(([n]) => n).sort()).toEqual(
      ['agent', 'manager', 'manager-localstack', 'manager-sqlite', 'scheduler', 'scheduler-localstack', 'scheduler-sqlite', 'seed-peer'].sort(),
    );
    for (const [name, s] of damselflyServices) {
      expect(s.build, name).toEqual({ context: '.', dockerfile: 'Dockerfile' });
      expect(existsSync(path.join(repoRoot, s.build!.dockerfile))).toBe(true);
    }
    for (const [name, s] of services.filter(([, x]) => !x.build)) {
      expect(s.image, `${name} needs an image or a build`).toMatch(/^[a-z0-9./-]+:[\w.-]+$/);
    }
  });

  it('gives every service a healthcheck and declares every named volume', () => {
    for (const [name, s] of services) {
      expect(s.healthcheck?.test?.length, `${name}: healthcheck`).toBeGreaterThan(1);
      expect(['CMD', 'CMD-SHELL']).toContain(s.healthcheck!.test[0]);
      for (const v of s.volumes ?? []) {
        const source = v.split(':')[0];
        if (source.startsWith('./')) expect(existsSync(path.join(repoRoot, source)), `${name}: ${source}`).toBe(true);
        else expect(Object.keys(compose.volumes), `${name}: volume ${source}`).toContain(source);
      }
    }
    for (const [name, s] of damselflyServices) expect(s.healthcheck!.test, name).toEqual(['CMD', 'node', '/app/healthcheck.mjs']);
  });

  it('mounts configuration files that exist and pass each role\'s schema, publishing the ports they configure', () => {
    for (const [name, s] of damselflyServices) {
      const { role, file } = mountedConfig(name, s);
      expect(existsSync(file), file).toBe(true);
      const doc = parse(readFileSync(file, 'utf8'));
      const { config } = validateRoleConfig(role, doc, file);
      const published = (s.ports ?? []).map((p) => Number(p.split(':')[1]));
      if (role === 'manager') expect(published).toEqual([(config as { server: { port: number } }).server.port]);
      if (role === 'scheduler') {
        const c = config as { server: { port: number }; metrics: { port: number } };
        expect(published).toEqual([c.server.port, c.metrics.port]);
      }
      if (name === 'agent') expect(published).toEqual([(config as { proxy: { server: { port: number } } }).proxy.server.port]);
      if (name === 'seed-peer') expect((config as { seedPeer: { enable: boolean } }).seedPeer.enable).toBe(true);
    }
  });

  it('rejects a mounted file with an unknown key (the check is the real schema)', () => {
    const [, manager] = services.find(([n]) => n === 'manager')!;
    const { file } = mountedConfig('manager', manager);
    const doc = parse(readFileSync(file, 'utf8'));
    expect(() => validateRoleConfig('manager', { ...doc, servr: {} }, file)).toThrow(/servr: unknown key/);
    expect(() => validateRoleConfig('manager', { ...doc, store: { kv: { kind: 'mongo' } } }, file)).toThrow(/unknown kind "mongo"/);
  });

  for (const profile of PROFILES) {
    it(`profile ${profile}: one manager, one scheduler, a seed peer and an agent whose addresses resolve inside the profile`, () => {
      const active = servicesOf(profile);
      const names = new Set(active.flatMap(([n, s]) => namesOf(n, s)));
      const holders = (alias: string) => active.filter(([n, s]) => namesOf(n, s).includes(alias));
      expect(holders('manager')).toHaveLength(1);
      expect(holders('scheduler')).toHaveLength(1);
      expect(holders('seed-peer')).toHaveLength(1);
      expect(holders('agent')).toHaveLength(1);
      for (const [name, s] of active.filter(([, x]) => x.build)) {
        const { role, file } = mountedConfig(name, s);
        const { config } = validateRoleConfig(role, parse(readFileSync(file, 'utf8')), file);
        for (const host of referencedHosts(role, config)) expect(names, `${name} (${file}) refers to ${host}`).toContain(host);
        for (const [dep, spec] of Object.entries(s.depends_on ?? {})) {
          expect(compose.services[dep], `${name} depends on unknown ${dep}`).toBeDefined();
          if (spec.required !== false) expect(active.map(([n]) => n), `${name} requires ${dep} in ${profile}`).toContain(dep);
        }
      }
      const databases = active.filter(([n]) => ['postgres', 'redis', 'localstack'].includes(n)).map(([n]) => n);
      expect(databases).toEqual({ postgres: ['postgres', 'redis'], sqlite: [], localstack: ['localstack'] }[profile]);
    });
  }

  it('points the localstack manager and scheduler at LocalStack through the AWS endpoint overrides', () => {
    for (const name of ['manager-localstack', 'scheduler-localstack']) {
      const env = compose.services[name].environment!;
      expect(env.AWS_ENDPOINT_URL_DYNAMODB).toBe('http://localstack:4566');
      expect(env.AWS_ENDPOINT_URL_SQS).toBe('http://localstack:4566');
    }
  });

  it('takes secrets from the environment, required, and gives managers and schedulers the same scheduler secret', () => {
    for (const [name, s] of damselflyServices) {
      const { role } = mountedConfig(name, s);
      const env = s.environment ?? {};
      if (role === 'manager') expect(env.DAMSELFLY_ROOT_PASSWORD, name).toBe('${DAMSELFLY_ROOT_PASSWORD:?set DAMSELFLY_ROOT_PASSWORD}');
      if (role === 'manager' || role === 'scheduler') {
        expect(env.DAMSELFLY_SCHEDULER_SECRET, name).toBe('${DAMSELFLY_SCHEDULER_SECRET:?set DAMSELFLY_SCHEDULER_SECRET}');
      }
      if (role === 'agent') expect(Object.keys(env).filter((k) => /SECRET|PASSWORD/.test(k)), name).toEqual([]);
      // No credential inside a mounted file: URLs carry no user:password@.
      const { file } = mountedConfig(name, s);
      expect(readFileSync(file, 'utf8'), file).not.toMatch(/:\/\/[^@/\s]*:[^@/\s]*@|password:|secret:/i);
    }
    const pgEnv = compose.services.postgres.environment!;
    expect(compose.services.manager.environment!.PGPASSWORD).toBe(pgEnv.POSTGRES_PASSWORD);
  });

  it('requires mutual TLS between scheduler, seed peer and agent, the join token reaching every component only as a compose secret', () => {
    expect(compose.secrets?.['damselfly-join-token']).toEqual({ environment: 'DAMSELFLY_JOIN_TOKEN' });
    const secretFile = '/run/secrets/damselfly-join-token';
    for (const [name, s] of damselflyServices) {
      expect(s.secrets, `${name}: secrets`).toEqual(['damselfly-join-token']);
      expect(Object.keys(s.environment ?? {}), name).not.toContain('DAMSELFLY_JOIN_TOKEN');
      const { role, file } = mountedConfig(name, s);
      const text = readFileSync(file, 'utf8');
      expect(text, `${file}: the token itself`).not.toMatch(/joinToken:/);
      const { config } = validateRoleConfig(role, parse(text), file);
      const security = (config as { security: { mtls?: string; joinTokenFile?: string; joinToken?: string } }).security;
      expect(security.joinTokenFile, `${name}: security.joinTokenFile`).toBe(secretFile);
      if (role !== 'manager') expect(security.mtls, `${name}: security.mtls`).toBe('required');
    }
    // Every secret a service names is declared at the top level.
    for (const [name, s] of services) for (const sec of s.secrets ?? []) expect(Object.keys(compose.secrets ?? {}), name).toContain(sec);
  });
});

describe('docker-compose.yml profile "monitoring"', () => {
  const mon = servicesOf('monitoring').filter(([, s]) => s.profiles?.includes('monitoring'));
  const promFile = path.join(repoRoot, 'infra/compose/prometheus.yaml');
  const prom = parse(readFileSync(promFile, 'utf8')) as { rule_files: string[]; scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }> };

  it('runs Prometheus and Grafana with the alert rules and the dashboard of infra/monitoring', () => {
    expect(mon.map(([n]) => n).sort()).toEqual(['grafana', 'prometheus']);
    const mounts = mon.flatMap(([, s]) => s.volumes ?? []);
    expect(mounts).toContain('./infra/monitoring/alerts.yaml:/etc/prometheus/alerts.yaml:ro');
    expect(mounts).toContain('./infra/compose/prometheus.yaml:/etc/prometheus/prometheus.yml:ro');
    expect(mounts.some((m) => m.startsWith('./infra/monitoring/grafana-dashboard.json:/var/lib/grafana/dashboards/'))).toBe(true);
    expect(prom.rule_files).toEqual(['alerts.yaml']);
  });

  for (const profile of PROFILES) {
    it(`scrapes every role of profile ${profile} on the metrics port its configuration gives`, () => {
      const active = servicesOf(profile).filter(([, s]) => s.build);
      const targets = Object.fromEntries(prom.scrape_configs.map((j) => [j.job_name, j.static_configs.flatMap((c) => c.targets)]));
      expect(Object.keys(targets).sort()).toEqual(['agent', 'manager', 'scheduler', 'seed-peer']);
      for (const [job, [target]] of Object.entries(targets)) {
        const [host, port] = target.split(':');
        const holder = active.find(([n, s]) => namesOf(n, s).includes(host));
        expect(holder, `${job}: ${host} is no service of ${profile}`).toBeDefined();
        const { role, file } = mountedConfig(holder![0], holder![1]);
        const { config } = validateRoleConfig(role, parse(readFileSync(file, 'utf8')), file) as { config: any }; // eslint-disable-line @typescript-eslint/no-explicit-any
        const want = role === 'manager' ? config.server.port : role === 'scheduler' ? config.metrics.port : config.metrics.server.port;
        expect(Number(port), `${job} on ${file}`).toBe(want);
      }
    });
  }

  it('passes `promtool check config` with the rules beside it, as mounted', () => {
    const promtool = spawnSync('sh', ['-c', 'command -v promtool']).status === 0;
    if (!requireOrSkip(promtool, 'promtool (Debian package prometheus)')) return;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-prom-config-'));
    try {
      copyFileSync(promFile, path.join(dir, 'prometheus.yml'));
      copyFileSync(path.join(repoRoot, 'infra/monitoring/alerts.yaml'), path.join(dir, 'alerts.yaml'));
      const r = spawnSync('promtool', ['check', 'config', path.join(dir, 'prometheus.yml')], { encoding: 'utf8' });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/SUCCESS: \d+ rules found/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
