/**
 * The Kubernetes manifests: regenerated from infra/k8s/render.ts and compared with the committed
 * files (stale → fail; DAMSELFLY_UPDATE=1 rewrites them), parsed, cross-checked (selectors, named
 * ports, config mounts, secrets), every carried config validated by its role's schema, and the
 * init container's script run for real: the hosts.toml it writes equals what
 * `damselfly config containerd` writes, with backup and restore of what was there.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments, parse } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { K8S_DIR, MIRRORED_REGISTRIES, renderFiles } from '../../infra/k8s/render.js';
import { cliPath } from '../support/cli.js';
import { ROLES, validateRoleConfig, type Role } from './configs.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const run = promisify(execFile);

const rendered = renderFiles();
if (process.env.DAMSELFLY_UPDATE === '1') {
  for (const [file, text] of Object.entries(rendered)) {
    mkdirSync(path.dirname(path.join(K8S_DIR, file)), { recursive: true });
    writeFileSync(path.join(K8S_DIR, file), text);
  }
}

function objectsOf(text: string, file: string): Obj[] {
  const docs = parseAllDocuments(text);
  for (const d of docs) expect(d.errors, file).toEqual([]);
  return docs.map((d) => d.toJS() as Obj).filter((o) => o !== null);
}
const manifestFiles = Object.keys(rendered).filter((f) => !f.endsWith('kustomization.yaml'));
const objects = manifestFiles.flatMap((f) => objectsOf(readFileSync(path.join(K8S_DIR, f), 'utf8'), f));
const byKind = (kind: string) => objects.filter((o) => o.kind === kind);
const workloads = objects.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind));
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);
const SECRET_KEYS = ['root-password', 'jwt-secret', 'scheduler-secret', 'postgres-password', 'join-token'];

describe('Kubernetes manifests (kustomize)', () => {
  it('are up to date with infra/k8s/render.ts', () => {
    for (const [file, text] of Object.entries(rendered)) {
      const onDisk = path.join(K8S_DIR, file);
      expect(existsSync(onDisk), `${file} missing: run DAMSELFLY_UPDATE=1 npx vitest run test/deploy/k8s.test.ts`).toBe(true);
      expect(readFileSync(onDisk, 'utf8'), `${file} is stale: run DAMSELFLY_UPDATE=1 npx vitest run test/deploy/k8s.test.ts`).toBe(text);
    }
  });

  it('parse into named objects, each once, and the kustomizations list exactly the files', () => {
    const ids = objects.map((o) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`);
    expect(new Set(ids).size).toBe(ids.length);
    for (const o of objects) {
      expect(o.apiVersion, ids.join()).toBeTruthy();
      expect(o.metadata.name).toMatch(/^[a-z0-9-]+$/);
    }
    expect(workloads.map((w) => `${w.kind}/${w.metadata.name}`).sort()).toEqual(
      ['Deployment/damselfly-manager', 'Deployment/damselfly-redis', 'StatefulSet/damselfly-scheduler', 'StatefulSet/damselfly-seed-peer', 'StatefulSet/damselfly-postgres', 'DaemonSet/damselfly-agent'].sort(),
    );
    for (const dir of ['base', 'monitoring']) {
      const k = parse(readFileSync(path.join(K8S_DIR, dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
      const files = readdirSync(path.join(K8S_DIR, dir)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
      expect(k.resources.filter((r) => !r.startsWith('..')).sort()).toEqual(files.sort());
    }
  });

  it('wire Services, ServiceMonitors and StatefulSets to pods and named ports that exist', () => {
    const pods = workloads.map((w) => ({ labels: w.spec.template.metadata.labels, spec: w.spec.template.spec }));
    for (const w of workloads) expect(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), w.metadata.name).toBe(true);
    for (const svc of byKind('Service')) {
      const targets = pods.filter((p) => matches(svc.spec.selector, p.labels));
      expect(targets, `Service ${svc.metadata.name} selects no pod`).toHaveLength(1);
      const portNames = targets[0].spec.containers.flatMap((c: Obj) => (c.ports ?? []).map((p: Obj) => p.name));
      for (const p of svc.spec.ports) expect(portNames, `Service ${svc.metadata.name} port ${p.targetPort}`).toContain(p.targetPort);
    }
    for (const sts of byKind('StatefulSet')) {
      const svc = byKind('Service').find((s) => s.metadata.name === sts.spec.serviceName);
      expect(svc, `StatefulSet ${sts.metadata.name} governing Service`).toBeDefined();
    }
    const monitors = byKind('ServiceMonitor');
    expect(monitors.map((m) => m.metadata.name).sort()).toEqual(['damselfly-agent', 'damselfly-manager', 'damselfly-scheduler', 'damselfly-seed-peer']);
    for (const m of monitors) {
      const svc = byKind('Service').find((s) => matches(m.spec.selector.matchLabels, s.metadata.labels));
      expect(svc, `ServiceMonitor ${m.metadata.name}`).toBeDefined();
      for (const e of m.spec.endpoints) expect(svc!.spec.ports.map((p: Obj) => p.name)).toContain(e.port);
    }
  });

  it('carry in ConfigMaps a config for every damselfly container that passes its role\'s schema', () => {
    let checked = 0;
    for (const w of workloads) {
      const spec = w.spec.template.spec;
      for (const c of spec.containers.filter((x: Obj) => String(x.image).startsWith('damselfly:'))) {
        const [role, flag, file] = c.args as string[];
        expect(ROLES).toContain(role);
        expect(flag).toBe('--config');
        const mount = c.volumeMounts.find((m: Obj) => m.mountPath === path.posix.dirname(file));
        const volume = spec.volumes.find((v: Obj) => v.name === mount.name);
        const cm = byKind('ConfigMap').find((x) => x.metadata.name === volume.configMap.name);
        const text = cm?.data?.[path.posix.basename(file)];
        expect(text, `${w.metadata.name}: ${file}`).toBeTypeOf('string');
        const { config } = validateRoleConfig(role as Role, parse(text), `${cm!.metadata.name}/${path.posix.basename(file)}`);
        for (const p of c.ports) {
          // Every declared container port is one the config makes the role listen on.
          expect(JSON.stringify(config), `${w.metadata.name} port ${p.name}`).toContain(`"port":${p.containerPort}`);
        }
        checked++;
      }
    }
    expect(checked).toBe(4);
  });

  it('take secrets only from the damselfly-secrets Secret, by documented keys', () => {
    const refs = JSON.stringify(objects).match(/"secretKeyRef":\{[^}]*\}/g) ?? [];
    expect(refs.length).toBeGreaterThan(4);
    for (const r of refs) {
      const ref = JSON.parse(r.slice('"secretKeyRef":'.length)) as { name: string; key: string };
      expect(ref.name).toBe('damselfly-secrets');
      expect(SECRET_KEYS).toContain(ref.key);
    }
    // Secret volumes too: the same Secret, documented keys only.
    for (const w of workloads) {
      for (const v of (w.spec.template.spec.volumes ?? []).filter((x: Obj) => x.secret)) {
        expect(v.secret.secretName, w.metadata.name).toBe('damselfly-secrets');
        for (const item of v.secret.items) expect(SECRET_KEYS).toContain(item.key);
      }
    }
    expect(byKind('Secret')).toEqual([]);
    for (const cm of byKind('ConfigMap')) expect(JSON.stringify(cm.data)).not.toMatch(/password:|joinToken:|:\/\/[^@/]*:[^@/]*@/i);
  });

  it('require mutual TLS between scheduler, seed peers and agents, each pod reading the join token from the Secret as a file only it can read', () => {
    let checked = 0;
    for (const w of workloads) {
      const spec = w.spec.template.spec;
      for (const c of spec.containers.filter((x: Obj) => String(x.image).startsWith('damselfly:'))) {
        const [role, , file] = c.args as string[];
        const cmName = spec.volumes.find((v: Obj) => v.name === c.volumeMounts.find((m: Obj) => m.mountPath === path.posix.dirname(file)).name).configMap.name;
        const text = byKind('ConfigMap').find((x) => x.metadata.name === cmName)!.data[path.posix.basename(file)];
        const { config } = validateRoleConfig(role as Role, parse(text), cmName);
        const security = (config as { security: { mtls?: string; joinTokenFile?: string } }).security;
        if (role !== 'manager') expect(security.mtls, `${w.metadata.name}: security.mtls`).toBe('required');
        // The file the config names is the join-token key of the Secret, mounted read-only.
        const mount = c.volumeMounts.find((m: Obj) => security.joinTokenFile?.startsWith(`${m.mountPath}/`));
        expect(mount, `${w.metadata.name}: ${security.joinTokenFile} is not mounted`).toBeDefined();
        expect(mount.readOnly).toBe(true);
        const volume = spec.volumes.find((v: Obj) => v.name === mount.name);
        expect(volume.secret.items).toEqual([{ key: 'join-token', path: path.posix.relative(mount.mountPath, security.joinTokenFile!) }]);
        expect(volume.secret.defaultMode).toBe(0o440);
        // Not world-readable: a non-root container reads it through the pod's fsGroup.
        const user = c.securityContext?.runAsUser ?? 0;
        if (user !== 0) expect(spec.securityContext?.fsGroup, `${w.metadata.name}: fsGroup`).toBe(c.securityContext.runAsGroup);
        expect((c.env ?? []).map((e: Obj) => e.name), w.metadata.name).not.toContain('DAMSELFLY_JOIN_TOKEN');
        checked++;
      }
    }
    expect(checked).toBe(4);
  });

  it('run the agent on the host network with an init container that injects containerd\'s hosts.toml and a preStop that restores it', () => {
    const ds = byKind('DaemonSet')[0];
    const spec = ds.spec.template.spec;
    expect(spec.hostNetwork).toBe(true);
    expect(spec.dnsPolicy).toBe('ClusterFirstWithHostNet');
    const [init] = spec.initContainers;
    expect(init.command.slice(-1)).toEqual(['inject']);
    expect(spec.containers[0].lifecycle.preStop.exec.command.slice(-1)).toEqual(['restore']);
    expect(spec.volumes.find((v: Obj) => v.name === 'containerd-certs').hostPath.path).toBe('/etc/containerd/certs.d');
    const sched = byKind('StatefulSet').find((s) => s.metadata.name === 'damselfly-scheduler')!;
    const agentCm = byKind('ConfigMap').find((x) => x.metadata.name === 'damselfly-agent')!;
    const addrs = (parse(agentCm.data['agent.yaml']) as { scheduler: { addrs: string[] } }).scheduler.addrs;
    // One stable DNS name per scheduler replica: what the agents' consistent hash ranges over.
    expect(addrs).toHaveLength(sched.spec.replicas);
    addrs.forEach((a, i) => expect(a).toBe(`damselfly-scheduler-${i}.damselfly-scheduler.damselfly.svc.cluster.local:8002`));
  });

  it('build with kustomize into the same objects (when kubectl is installed)', async (ctx) => {
    const kubectl = await run('kubectl', ['version', '--client'], { timeout: 20_000 }).then(
      () => true,
      () => false,
    );
    if (!kubectl) {
      process.stderr.write('!! kubectl not installed: skipping the `kubectl kustomize` build (the manifests were checked above)\n');
      ctx.skip();
    }
    for (const dir of ['base', 'monitoring']) {
      const { stdout } = await run('kubectl', ['kustomize', path.join(K8S_DIR, dir)], { timeout: 60_000, maxBuffer: 16 << 20 });
      const built = objectsOf(stdout, `kubectl kustomize ${dir}`);
      const want = manifestFiles.filter((f) => dir === 'monitoring' || f.startsWith('base/')).flatMap((f) => objectsOf(rendered[f], f));
      const id = (o: Obj) => `${o.kind}/${o.metadata.name}`;
      expect(built.map(id).sort()).toEqual(want.map(id).sort());
      for (const o of built) if (o.kind !== 'Namespace') expect(o.metadata.namespace, id(o)).toBe('damselfly');
    }
  });
});

describe('containerd hosts.toml injection (the init container\'s script, run here)', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'damselfly-k8s-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const agentCm = byKind('ConfigMap').find((x) => x.metadata.name === 'damselfly-agent')!;
  const ds = byKind('DaemonSet')[0];
  const initEnv = Object.fromEntries((ds.spec.template.spec.initContainers[0].env as { name: string; value: string }[]).map((e) => [e.name, e.value]));

  const files = (dir: string) =>
    existsSync(dir)
      ? readdirSync(dir, { recursive: true, withFileTypes: true })
          .filter((d) => d.isFile())
          .map((d) => path.relative(dir, path.join(d.parentPath, d.name)))
          .sort()
      : [];

  it('writes what `damselfly config containerd` writes, keeps the original aside once, and restores it', async () => {
    const cli = cliPath();
    const script = path.join(tmp, 'containerd-hosts.sh');
    writeFileSync(script, agentCm.data['containerd-hosts.sh']);
    const certs = path.join(tmp, 'certs.d');
    const expected = path.join(tmp, 'expected');
    const env = { ...process.env, ...initEnv, CERTS_DIR: certs, DAMSELFLY: `node ${cli}` };

    await run('node', [cli, 'config', 'containerd', '--mirror', initEnv.MIRROR, ...MIRRORED_REGISTRIES.flatMap((r) => ['--registry', r]), '--write', expected]);
    const expectedFiles = files(expected).filter((f) => f.endsWith('/hosts.toml'));
    expect(expectedFiles.length).toBeGreaterThanOrEqual(MIRRORED_REGISTRIES.length);
    // The node already had a hosts.toml for the first registry host (an operator's own mirror).
    const firstHost = path.dirname(expectedFiles[0]);
    const original = 'server = "https://mirror.example.internal"\n';
    mkdirSync(path.join(certs, firstHost), { recursive: true });
    writeFileSync(path.join(certs, firstHost, 'hosts.toml'), original);

    for (let start = 0; start < 2; start++) {
      // Twice: a restarted pod must not take its own file for the original.
      await run('sh', [script, 'inject'], { env });
      for (const f of expectedFiles) expect(readFileSync(path.join(certs, f), 'utf8'), f).toBe(readFileSync(path.join(expected, f), 'utf8'));
      expect(readFileSync(path.join(certs, firstHost, 'hosts.toml.damselfly-orig'), 'utf8')).toBe(original);
    }
    await run('sh', [script, 'restore'], { env });
    expect(files(certs)).toEqual([`${firstHost}/hosts.toml`]);
    expect(readFileSync(path.join(certs, firstHost, 'hosts.toml'), 'utf8')).toBe(original);
  });
});
