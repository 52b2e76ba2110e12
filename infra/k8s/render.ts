/**
 * Generates the Kubernetes manifests under infra/k8s/ (plain YAML, assembled by kustomize). The
 * configuration each role receives is written here as an object, validated by that role's own zod
 * schema, and shipped in a ConfigMap; ports in containers, probes and Services come from the parsed
 * config, so a port changed in one place changes everywhere. test/deploy/k8s.test.ts regenerates
 * and fails when the committed files are stale; `DAMSELFLY_UPDATE=1` makes it rewrite them.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { parseAgentConfig } from '../../agent/config.js';
import { parseKvConfig, parseQueueConfig } from '../../adapters/store-config.js';
import { managerConfig } from '../../control/manager/config.js';
import { schedulerConfig } from '../../scheduler/config.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const version = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

export const NAMESPACE = 'damselfly';
/** Replace with `kustomize edit set image damselfly=REGISTRY/damselfly:TAG` in an overlay. */
export const IMAGE = `damselfly:${version}`;
export const SCHEDULER_REPLICAS = 3;
export const SEED_PEER_REPLICAS = 2;
/** Registries whose pulls go through the agent: containerd gets a hosts.toml for each. */
export const MIRRORED_REGISTRIES = ['https://index.docker.io', 'https://ghcr.io', 'https://quay.io', 'https://registry.k8s.io'];
const SECRET = 'damselfly-secrets';
const CLI = ['node', '/app/dist/control/cli.js'];
const CONFIG_DIR = '/etc/damselfly';
/** The Secret key `join-token`, mounted as a file (0440, group fsGroup) into every damselfly pod. */
const JOIN_TOKEN_KEY = 'join-token';
const SECRETS_DIR = '/run/secrets/damselfly';
const JOIN_TOKEN_FILE = `${SECRETS_DIR}/${JOIN_TOKEN_KEY}`;
/** Mutual TLS between scheduler, seed peers and agents, certificates from the manager for the join token. */
const mtlsRequired = { mtls: 'required', joinTokenFile: JOIN_TOKEN_FILE };

type Obj = Record<string, unknown>;
const fqdn = (svc: string) => `${svc}.${NAMESPACE}.svc.cluster.local`;
const labels = (component: string) => ({ 'app.kubernetes.io/name': 'damselfly', 'app.kubernetes.io/component': component });
const meta = (name: string, component: string, extra: Obj = {}) => ({ name, namespace: NAMESPACE, labels: labels(component), ...extra });
const secretEnv = (name: string, key: string, optional = false) => ({ name, valueFrom: { secretKeyRef: { name: SECRET, key, optional } } });

/** Stable scheduler addresses (StatefulSet pod DNS): agents hash tasks over this list. */
export const schedulerAddrs = (port: number) =>
  Array.from({ length: SCHEDULER_REPLICAS }, (_, i) => `damselfly-scheduler-${i}.${fqdn('damselfly-scheduler')}:${port}`);

// ---- the configuration of each role, checked by its own schema ---------------------------------

const managerDoc = {
  server: { ip: '0.0.0.0', port: 8080 },
  store: {
    dataDir: '/var/lib/damselfly/manager',
    // The password comes from PGPASSWORD (secret key postgres-password), never from this file.
    kv: { kind: 'postgres', url: `postgres://damselfly@${fqdn('damselfly-postgres')}:5432/damselfly` },
    queue: { kind: 'redis', url: `redis://${fqdn('damselfly-redis')}:6379/0` },
  },
  // The cluster's CA: a first certificate for whoever presents the join token.
  security: { joinTokenFile: JOIN_TOKEN_FILE },
};
const schedulerDoc = {
  server: { ip: '0.0.0.0', port: 8002 },
  metrics: { ip: '0.0.0.0', port: 8000 },
  manager: { addr: `http://${fqdn('damselfly-manager')}:8080`, clusterId: 1 },
  job: { enable: true, queue: managerDoc.store.queue },
  security: mtlsRequired,
};
const agentCommon = {
  storage: { dir: '/var/lib/damselfly' },
  scheduler: { addrs: schedulerAddrs(schedulerDoc.server.port) },
  manager: { addr: schedulerDoc.manager.addr },
  upload: { server: { ip: '0.0.0.0', port: 4000 }, pieceServer: { ip: '0.0.0.0', port: 4005 } },
  metrics: { server: { ip: '0.0.0.0', port: 4002 } },
  security: mtlsRequired,
};
const seedPeerDoc = { ...agentCommon, seedPeer: { enable: true } };
const agentDoc = {
  ...agentCommon,
  download: { server: { socket: '/var/run/damselfly/damselfly.sock' } },
  // The mirror listens on the node's loopback only: containerd on the same node is its one client.
  proxy: { server: { ip: '127.0.0.1', port: 4001 }, rules: [{ regex: 'blobs/sha256.*' }], registryMirror: { addr: MIRRORED_REGISTRIES[0] } },
};

/** Every shipped config, parsed by the role's schema (throws ConfigError naming the key). */
export function parsedConfigs() {
  const manager = managerConfig(managerDoc);
  parseKvConfig(manager.store.kv, 'manager store.kv');
  parseQueueConfig(manager.store.queue, 'manager store.queue');
  const scheduler = schedulerConfig(schedulerDoc);
  parseQueueConfig(scheduler.job.queue, 'scheduler job.queue');
  return {
    manager,
    scheduler,
    seedPeer: parseAgentConfig(seedPeerDoc, 'seed-peer ConfigMap'),
    agent: parseAgentConfig(agentDoc, 'agent ConfigMap'),
  };
}

const configMap = (name: string, component: string, data: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: meta(name, component),
  data,
});
const yamlText = (doc: unknown) => stringify(doc, { lineWidth: 0 });
const tcpProbe = (port: number | string, initialDelaySeconds = 5, host?: string) => ({
  tcpSocket: host ? { host, port } : { port },
  initialDelaySeconds,
  periodSeconds: 10,
  failureThreshold: 3,
});
const resources = (cpu: string, memory: string) => ({ requests: { cpu, memory }, limits: { memory } });
const nonRoot = { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, allowPrivilegeEscalation: false, readOnlyRootFilesystem: false };

const configMount = { name: 'config', mountPath: CONFIG_DIR, readOnly: true };
const joinTokenMount = { name: 'join-token', mountPath: SECRETS_DIR, readOnly: true };
/** The join token as a file: readable by root and the pod's fsGroup only. */
const joinTokenVolume = { name: 'join-token', secret: { secretName: SECRET, items: [{ key: JOIN_TOKEN_KEY, path: JOIN_TOKEN_KEY }], defaultMode: 0o440 } };

function roleContainer(name: string, role: string, ports: Obj[], extra: Obj = {}) {
  return {
    name,
    image: IMAGE,
    imagePullPolicy: 'IfNotPresent',
    args: [role, '--config', `${CONFIG_DIR}/${role === 'agent' ? 'agent' : role}.yaml`],
    ports,
    volumeMounts: [configMount, joinTokenMount],
    ...extra,
  };
}

// ---- the objects ---------------------------------------------------------------------------

/** Builds every manifest, file by file: `{ 'base/manager.yaml': [objects...] }`. */
export function manifests(): Record<string, Obj[]> {
  const c = parsedConfigs();
  const mgrPort = c.manager.server.port;
  const schedPort = c.scheduler.server.port;
  const schedMetrics = c.scheduler.metrics.port;
  const seedPorts = { grpc: c.seedPeer.upload.server.port, pieces: c.seedPeer.upload.pieceServer.port, metrics: c.seedPeer.metrics.server.port };
  const agentPorts = { grpc: c.agent.upload.server.port, pieces: c.agent.upload.pieceServer.port, metrics: c.agent.metrics.server.port, proxy: c.agent.proxy.server.port };

  const namespace = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE, labels: { 'app.kubernetes.io/name': 'damselfly' } } };

  const postgres = [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('damselfly-postgres', 'postgres'),
      spec: { selector: labels('postgres'), ports: [{ name: 'postgres', port: 5432, targetPort: 'postgres' }] },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: meta('damselfly-postgres', 'postgres'),
      spec: {
        serviceName: 'damselfly-postgres',
        replicas: 1,
        selector: { matchLabels: labels('postgres') },
        template: {
          metadata: { labels: labels('postgres') },
          spec: {
            containers: [
              {
                name: 'postgres',
                image: 'postgres:16-bookworm',
                env: [
                  { name: 'POSTGRES_USER', value: 'damselfly' },
                  { name: 'POSTGRES_DB', value: 'damselfly' },
                  secretEnv('POSTGRES_PASSWORD', 'postgres-password'),
                  { name: 'PGDATA', value: '/var/lib/postgresql/data/pgdata' },
                ],
                ports: [{ name: 'postgres', containerPort: 5432 }],
                readinessProbe: { exec: { command: ['pg_isready', '-U', 'damselfly', '-d', 'damselfly'] }, periodSeconds: 5 },
                livenessProbe: tcpProbe('postgres', 30),
                resources: resources('100m', '512Mi'),
                volumeMounts: [{ name: 'data', mountPath: '/var/lib/postgresql/data' }],
              },
            ],
          },
        },
        volumeClaimTemplates: [
          { metadata: { name: 'data' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } } } },
        ],
      },
    },
  ];

  const redis = [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('damselfly-redis', 'redis'),
      spec: { selector: labels('redis'), ports: [{ name: 'redis', port: 6379, targetPort: 'redis' }] },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: meta('damselfly-redis', 'redis'),
      spec: {
        replicas: 1,
        selector: { matchLabels: labels('redis') },
        template: {
          metadata: { labels: labels('redis') },
          spec: {
            containers: [
              {
                name: 'redis',
                image: 'redis:7-bookworm',
                args: ['redis-server', '--appendonly', 'yes'],
                ports: [{ name: 'redis', containerPort: 6379 }],
                readinessProbe: { exec: { command: ['redis-cli', 'ping'] }, periodSeconds: 5 },
                livenessProbe: tcpProbe('redis', 15),
                resources: resources('50m', '256Mi'),
                volumeMounts: [{ name: 'data', mountPath: '/data' }],
              },
            ],
            volumes: [{ name: 'data', emptyDir: {} }],
          },
        },
      },
    },
  ];

  const manager = [
    configMap('damselfly-manager', 'manager', { 'manager.yaml': yamlText(managerDoc) }),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('damselfly-manager', 'manager'),
      spec: { selector: labels('manager'), ports: [{ name: 'http', port: mgrPort, targetPort: 'http' }] },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: meta('damselfly-manager', 'manager'),
      spec: {
        // Stateless over PostgreSQL + Redis, so any number of replicas serve the same API.
        replicas: 2,
        selector: { matchLabels: labels('manager') },
        template: {
          metadata: { labels: labels('manager') },
          spec: {
            securityContext: { fsGroup: 1000 },
            containers: [
              roleContainer('manager', 'manager', [{ name: 'http', containerPort: mgrPort }], {
                env: [
                  secretEnv('DAMSELFLY_ROOT_PASSWORD', 'root-password'),
                  secretEnv('DAMSELFLY_JWT_SECRET', 'jwt-secret'),
                  secretEnv('DAMSELFLY_SCHEDULER_SECRET', 'scheduler-secret'),
                  secretEnv('PGPASSWORD', 'postgres-password'),
                ],
                readinessProbe: { httpGet: { path: '/healthy', port: 'http' }, periodSeconds: 5 },
                livenessProbe: { httpGet: { path: '/healthy', port: 'http' }, initialDelaySeconds: 10, periodSeconds: 10 },
                resources: resources('100m', '256Mi'),
                securityContext: nonRoot,
              }),
            ],
            volumes: [{ name: 'config', configMap: { name: 'damselfly-manager' } }, joinTokenVolume],
          },
        },
      },
    },
  ];

  const scheduler = [
    configMap('damselfly-scheduler', 'scheduler', { 'scheduler.yaml': yamlText(schedulerDoc) }),
    {
      // Headless: gives each StatefulSet pod the stable DNS name agents hash over.
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('damselfly-scheduler', 'scheduler'),
      spec: {
        clusterIP: 'None',
        publishNotReadyAddresses: false,
        selector: labels('scheduler'),
        ports: [
          { name: 'grpc', port: schedPort, targetPort: 'grpc' },
          { name: 'metrics', port: schedMetrics, targetPort: 'metrics' },
        ],
      },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: meta('damselfly-scheduler', 'scheduler'),
      spec: {
        serviceName: 'damselfly-scheduler',
        replicas: SCHEDULER_REPLICAS,
        podManagementPolicy: 'Parallel',
        selector: { matchLabels: labels('scheduler') },
        template: {
          metadata: { labels: labels('scheduler') },
          spec: {
            // The group that may read the join token file.
            securityContext: { fsGroup: 1000 },
            containers: [
              roleContainer(
                'scheduler',
                'scheduler',
                [
                  { name: 'grpc', containerPort: schedPort },
                  { name: 'metrics', containerPort: schedMetrics },
                ],
                {
                  env: [secretEnv('DAMSELFLY_SCHEDULER_SECRET', 'scheduler-secret')],
                  readinessProbe: tcpProbe('grpc'),
                  livenessProbe: tcpProbe('grpc', 15),
                  resources: resources('250m', '512Mi'),
                  securityContext: nonRoot,
                },
              ),
            ],
            volumes: [{ name: 'config', configMap: { name: 'damselfly-scheduler' } }, joinTokenVolume],
          },
        },
      },
    },
  ];

  const seedPeer = [
    configMap('damselfly-seed-peer', 'seed-peer', { 'agent.yaml': yamlText(seedPeerDoc) }),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('damselfly-seed-peer', 'seed-peer'),
      spec: {
        clusterIP: 'None',
        selector: labels('seed-peer'),
        ports: [
          { name: 'grpc', port: seedPorts.grpc, targetPort: 'grpc' },
          { name: 'pieces', port: seedPorts.pieces, targetPort: 'pieces' },
          { name: 'metrics', port: seedPorts.metrics, targetPort: 'metrics' },
        ],
      },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: meta('damselfly-seed-peer', 'seed-peer'),
      spec: {
        serviceName: 'damselfly-seed-peer',
        replicas: SEED_PEER_REPLICAS,
        podManagementPolicy: 'Parallel',
        selector: { matchLabels: labels('seed-peer') },
        template: {
          metadata: { labels: labels('seed-peer') },
          spec: {
            securityContext: { fsGroup: 1000 },
            containers: [
              roleContainer(
                'seed-peer',
                'agent',
                [
                  { name: 'grpc', containerPort: seedPorts.grpc },
                  { name: 'pieces', containerPort: seedPorts.pieces },
                  { name: 'metrics', containerPort: seedPorts.metrics },
                ],
                {
                  volumeMounts: [configMount, joinTokenMount, { name: 'cache', mountPath: c.seedPeer.storage.dir }],
                  readinessProbe: tcpProbe('grpc'),
                  livenessProbe: tcpProbe('metrics', 15),
                  resources: resources('500m', '1Gi'),
                  securityContext: nonRoot,
                },
              ),
            ],
            volumes: [{ name: 'config', configMap: { name: 'damselfly-seed-peer' } }, joinTokenVolume],
          },
        },
        // The piece cache: a seed peer restarted on another node keeps what it fetched.
        volumeClaimTemplates: [
          { metadata: { name: 'cache' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '100Gi' } } } },
        ],
      },
    },
  ];

  const hostsEnv = [
    { name: 'CERTS_DIR', value: '/host/etc/containerd/certs.d' },
    { name: 'MIRROR', value: `http://127.0.0.1:${agentPorts.proxy}` },
    { name: 'REGISTRIES', value: MIRRORED_REGISTRIES.join(' ') },
    { name: 'DAMSELFLY', value: CLI.join(' ') },
  ];
  const socketDir = path.posix.dirname(c.agent.download.server.socket);
  const agent = [
    configMap('damselfly-agent', 'agent', {
      'agent.yaml': yamlText(agentDoc),
      'containerd-hosts.sh': readFileSync(path.join(here, 'containerd-hosts.sh'), 'utf8'),
    }),
    {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: meta('damselfly-agent', 'agent'),
      spec: {
        selector: { matchLabels: labels('agent') },
        updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '20%' } },
        template: {
          metadata: { labels: labels('agent') },
          spec: {
            // Host networking: containerd reaches the mirror on the node's 127.0.0.1, and peers reach
            // each other's piece servers at node addresses. Cluster DNS still resolves the schedulers.
            hostNetwork: true,
            dnsPolicy: 'ClusterFirstWithHostNet',
            terminationGracePeriodSeconds: 30,
            initContainers: [
              {
                // Writes containerd's hosts.toml for each mirrored registry (root: it writes on the node).
                name: 'containerd-hosts',
                image: IMAGE,
                imagePullPolicy: 'IfNotPresent',
                command: ['/bin/sh', `${CONFIG_DIR}/containerd-hosts.sh`, 'inject'],
                env: hostsEnv,
                securityContext: { runAsUser: 0, runAsNonRoot: false },
                volumeMounts: [
                  { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
                  { name: 'containerd-certs', mountPath: '/host/etc/containerd/certs.d' },
                ],
              },
            ],
            containers: [
              roleContainer(
                'agent',
                'agent',
                [
                  { name: 'grpc', containerPort: agentPorts.grpc },
                  { name: 'proxy', containerPort: agentPorts.proxy },
                  { name: 'metrics', containerPort: agentPorts.metrics },
                  { name: 'pieces', containerPort: agentPorts.pieces },
                ],
                {
                  env: hostsEnv,
                  // Root: the cache and the socket are host paths, and preStop restores containerd's files.
                  securityContext: { runAsUser: 0, runAsNonRoot: false },
                  lifecycle: { preStop: { exec: { command: ['/bin/sh', `${CONFIG_DIR}/containerd-hosts.sh`, 'restore'] } } },
                  // The mirror listens on loopback; with host networking the kubelet shares that loopback.
                  readinessProbe: tcpProbe(agentPorts.proxy, 5, c.agent.proxy.server.ip),
                  livenessProbe: tcpProbe(agentPorts.metrics, 15),
                  resources: resources('250m', '512Mi'),
                  volumeMounts: [
                    configMount,
                    joinTokenMount,
                    { name: 'cache', mountPath: c.agent.storage.dir },
                    { name: 'socket', mountPath: socketDir },
                    { name: 'containerd-certs', mountPath: '/host/etc/containerd/certs.d' },
                  ],
                },
              ),
            ],
            volumes: [
              { name: 'config', configMap: { name: 'damselfly-agent', defaultMode: 0o755 } },
              joinTokenVolume,
              { name: 'cache', hostPath: { path: c.agent.storage.dir, type: 'DirectoryOrCreate' } },
              { name: 'socket', hostPath: { path: socketDir, type: 'DirectoryOrCreate' } },
              { name: 'containerd-certs', hostPath: { path: '/etc/containerd/certs.d', type: 'DirectoryOrCreate' } },
            ],
          },
        },
      },
    },
    {
      // Selects the DaemonSet's pods so Prometheus (ServiceMonitor) finds every node's agent.
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('damselfly-agent', 'agent'),
      spec: { clusterIP: 'None', selector: labels('agent'), ports: [{ name: 'metrics', port: agentPorts.metrics, targetPort: 'metrics' }] },
    },
  ];

  const monitor = (component: string, port: string) => ({
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'ServiceMonitor',
    metadata: meta(`damselfly-${component}`, component),
    spec: {
      selector: { matchLabels: labels(component) },
      namespaceSelector: { matchNames: [NAMESPACE] },
      endpoints: [{ port, path: '/metrics', interval: '30s' }],
    },
  });

  return {
    'base/namespace.yaml': [namespace],
    'base/postgres.yaml': postgres,
    'base/redis.yaml': redis,
    'base/manager.yaml': manager,
    'base/scheduler.yaml': scheduler,
    'base/seed-peer.yaml': seedPeer,
    'base/agent.yaml': agent,
    'monitoring/servicemonitors.yaml': [
      monitor('manager', 'http'),
      monitor('scheduler', 'metrics'),
      monitor('seed-peer', 'metrics'),
      monitor('agent', 'metrics'),
    ],
    ...monitoringAssets(),
  };
}

/**
 * The alert rules and the Grafana dashboard of infra/monitoring/ (the files compose mounts and
 * test/deploy/prometheus.test.ts evaluates), as a PrometheusRule and a ConfigMap labelled for
 * Grafana's dashboard sidecar (`grafana_dashboard: "1"`).
 */
function monitoringAssets(): Record<string, Obj[]> {
  const dir = path.join(repoRoot, 'infra', 'monitoring');
  const rules = parse(readFileSync(path.join(dir, 'alerts.yaml'), 'utf8')) as Obj;
  const dashboard = readFileSync(path.join(dir, 'grafana-dashboard.json'), 'utf8');
  return {
    'monitoring/prometheusrule.yaml': [{ apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', metadata: meta('damselfly', 'monitoring'), spec: rules }],
    'monitoring/grafana-dashboard.yaml': [
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { ...meta('damselfly-grafana-dashboard', 'monitoring'), labels: { ...labels('monitoring'), grafana_dashboard: '1' } },
        data: { 'damselfly.json': dashboard },
      },
    ],
  };
}

/** The kustomizations: `base` (everything) and `monitoring` (base + ServiceMonitors, alert rules and the Grafana dashboard; needs the Prometheus Operator CRDs). */
export function kustomizations(files: string[]): Record<string, Obj> {
  const baseFiles = files.filter((f) => f.startsWith('base/')).map((f) => f.slice('base/'.length));
  return {
    'base/kustomization.yaml': {
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      namespace: NAMESPACE,
      resources: baseFiles,
      images: [{ name: 'damselfly', newTag: version }],
    },
    'monitoring/kustomization.yaml': {
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      resources: ['../base', ...files.filter((f) => f.startsWith('monitoring/')).map((f) => f.slice('monitoring/'.length))],
    },
  };
}

const HEADER = '# Generated by infra/k8s/render.ts from the roles\' config schemas. Do not edit: change render.ts and\n# run `DAMSELFLY_UPDATE=1 npx vitest run test/deploy/k8s.test.ts`.\n';

/** Every generated file's text, keyed by its path under infra/k8s/. */
export function renderFiles(): Record<string, string> {
  const docs = manifests();
  const out: Record<string, string> = {};
  for (const [file, objects] of Object.entries(docs)) out[file] = HEADER + objects.map((o) => `---\n${yamlText(o)}`).join('');
  for (const [file, k] of Object.entries(kustomizations(Object.keys(docs)))) out[file] = HEADER + yamlText(k);
  return out;
}

export const K8S_DIR = here;
