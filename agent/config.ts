/**
 * The agent's configuration file (`damselfly agent --config FILE`), after Dragonfly's dfdaemon.yaml.
 * Every section is a zod strictObject: an unknown key or a wrong type is an error naming the key.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { tracingConfigSchema } from '../adapters/tracing.js';
import { ConfigError } from '../adapters/errors.js';
import { durationSchema, loadConfigFile, parseConfig, readConfigDocument, sizeSchema } from '../adapters/config.js';
import { securityConfigSchema } from '../adapters/tls.js';
import { proxyConfigSchema } from './proxy-config.js';

/** The first non-internal IPv4 address of this machine, 127.0.0.1 when there is none. */
export function defaultIp(): string {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

const port = z.number().int().min(0).max(65535);
const listen = (ip: string, p: number) => z.strictObject({ ip: z.string().default(ip), port: port.default(p) }).prefault({});

export const agentConfigSchema = z.strictObject({
  host: z
    .strictObject({
      hostname: z.string().min(1).default(() => os.hostname()),
      ip: z.string().min(1).default(() => defaultIp()),
      idc: z.string().default(''),
      location: z.string().default(''),
    })
    .prefault({}),
  seedPeer: z.strictObject({ enable: z.boolean().default(false) }).prefault({}),
  storage: z
    .strictObject({
      dir: z.string().default('/var/lib/damselfly'),
      /** Keep the cache across restarts; false wipes the content on start (Dragonfly's storage.keep). */
      keep: z.boolean().default(true),
      /** Memory for recently received pieces, re-served without a file read; its buffers (plus one for a piece arriving) are mapped at start. */
      pieceCacheSize: sizeSchema.default(8 * 1024 * 1024),
      /** Write and read pieces with O_DIRECT (no page-cache copy); falls back by itself where the file system refuses. */
      directIO: z.boolean().default(true),
    })
    .prefault({}),
  scheduler: z
    .strictObject({
      addrs: z.array(z.string()).default(['127.0.0.1:8002']),
      announceInterval: durationSchema.default(30_000),
      scheduleTimeout: durationSchema.default(30_000),
      /** A download whose scheduler went away before answering it (knowing no parent yet) waits this long for the scheduler to answer again, e.g. restarted, and registers there again instead of going back to the origin; 0 = to the origin at once. */
      reconnectTimeout: durationSchema.default(10_000),
      enableBackToSource: z.boolean().default(true),
    })
    .prefault({}),
  manager: z
    .strictObject({
      addr: z.string().url().optional(),
      refreshInterval: durationSchema.default(60_000),
    })
    .prefault({}),
  upload: z
    .strictObject({
      server: listen('0.0.0.0', 4000),
      pieceServer: listen('0.0.0.0', 4005),
      rateLimit: sizeSchema.default(50 * 1024 ** 3),
      concurrentLimit: z.number().int().positive().default(200),
    })
    .prefault({}),
  download: z
    .strictObject({
      server: z.strictObject({ socket: z.string().default('/var/run/damselfly/damselfly.sock') }).prefault({}),
      rateLimit: sizeSchema.default(50 * 1024 ** 3),
      backToSourceRateLimit: sizeSchema.default(50 * 1024 ** 3),
      concurrentPieceCount: z.number().int().positive().default(8),
      pieceTimeout: durationSchema.default(60_000),
    })
    .prefault({}),
  proxy: proxyConfigSchema,
  /** Mutual TLS to schedulers and other agents, with a certificate from the manager (adapters/tls.ts). */
  security: securityConfigSchema,
  metrics: z.strictObject({ server: listen('0.0.0.0', 4002) }).prefault({}),
  tracing: tracingConfigSchema,
  gc: z
    .strictObject({
      interval: durationSchema.default(60_000),
      taskTTL: durationSchema.default(6 * 3_600_000),
      diskHighThresholdPercent: z.number().min(0).max(100).default(80),
      diskLowThresholdPercent: z.number().min(0).max(100).default(60),
      /** Logical capacity the percentages apply to (instead of the file system's size). */
      diskThreshold: sizeSchema.optional(),
    })
    .prefault({}),
});

export type AgentConfig = z.output<typeof agentConfigSchema>;

/** Loads the YAML file (or only defaults without one). Throws ConfigError naming the file and key. */
export function loadAgentConfig(file?: string, opts: { dataDir?: string } = {}): AgentConfig {
  if (!opts.dataDir) return file ? loadConfigFile(agentConfigSchema, file) : parseConfig(agentConfigSchema, {}, '(defaults)');
  const doc = file ? readConfigDocument(file) : {};
  if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) throw new ConfigError(`${file}: expected a mapping of configuration keys`);
  return parseConfig(agentConfigSchema, withDataDir((doc ?? {}) as Record<string, unknown>, opts.dataDir), file ?? '(defaults)');
}

/**
 * `damselfly agent --data-dir DIR`: everything of this agent that could collide with another agent
 * on the host moves under DIR or off fixed ports — storage in DIR/storage, the local API socket at
 * DIR/agent.sock, every listener (gRPC, pieces, metrics, proxy) on a port the kernel picks, and a
 * hostname suffixed with a hash of DIR (the host ID is ip + hostname) — unless the file sets it. The ready line reports what was picked.
 */
export function withDataDir(doc: Record<string, unknown>, dataDir: string): Record<string, unknown> {
  const dir = path.resolve(dataDir);
  const section = (o: Record<string, unknown>, key: string): Record<string, unknown> => {
    const v = o[key];
    if (v !== undefined && (v === null || typeof v !== 'object' || Array.isArray(v))) return {};
    return (o[key] = { ...((v as Record<string, unknown> | undefined) ?? {}) }) as Record<string, unknown>;
  };
  const out = { ...doc };
  // Two agents on one host must not share a host ID at the scheduler (it is ip + hostname).
  const host = section(out, 'host');
  host.hostname ??= `${os.hostname()}-${createHash('sha256').update(dir).digest('hex').slice(0, 8)}`;
  const storage = section(out, 'storage');
  storage.dir ??= path.join(dir, 'storage');
  const download = section(out, 'download');
  const dserver = section(download, 'server');
  dserver.socket ??= path.join(dir, 'agent.sock');
  const upload = section(out, 'upload');
  for (const listener of [section(upload, 'server'), section(upload, 'pieceServer'), section(section(out, 'metrics'), 'server'), section(section(out, 'proxy'), 'server')]) listener.port ??= 0;
  return out;
}

/** Validates an in-memory config object (tests, `damselfly up`). Throws ConfigError. */
export function parseAgentConfig(value: unknown, source = '(inline)'): AgentConfig {
  return parseConfig(agentConfigSchema, value, source);
}
