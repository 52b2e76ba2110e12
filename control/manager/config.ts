/**
 * The manager's YAML configuration (`damselfly manager --config FILE`). Every key has a default.
 * Secrets may come from the environment instead of the file: DAMSELFLY_ROOT_PASSWORD,
 * DAMSELFLY_JWT_SECRET, DAMSELFLY_SCHEDULER_SECRET, DAMSELFLY_JOIN_TOKEN.
 */
import { z } from 'zod';
import { tracingConfigSchema } from '../../adapters/tracing.js';
import { durationSchema, loadConfigFile, parseConfig, resolveJoinToken, sizeSchema } from '../../adapters/config.js';

const portSchema = z.number().int().min(0).max(65535);

export const managerConfigSchema = z.strictObject({
  tracing: tracingConfigSchema,
  server: z
    .strictObject({
      ip: z.string().default('127.0.0.1'),
      port: portSchema.default(8080),
      /**
       * Largest request body, checked before anything is parsed (413 beyond it). Scheduler job
       * reports may always be as large as the worker sends them (512 KiB).
       */
      bodyLimit: sizeSchema.default(256 * 1024),
    })
    .prefault({}),
  /** Where state lives; parsed by adapters/stores.ts (kvConfigSchema / queueConfigSchema). */
  store: z
    .strictObject({
      dataDir: z.string().default('./damselfly-data/manager'),
      kv: z.unknown().optional(),
      queue: z.unknown().optional(),
    })
    .prefault({}),
  auth: z
    .strictObject({
      /** The root user's password at first start. Without one, a generated password is printed once. */
      rootPassword: z.string().min(8).optional(),
      /** HS256 key for JWTs; generated and persisted in the KV store on first start when absent. */
      jwtSecret: z.string().min(16).optional(),
      /** Shared secret schedulers present (Bearer) to register, keep alive and report job results. */
      schedulerSecret: z.string().min(16).optional(),
      /** JWT lifetime. */
      jwtTimeout: durationSchema.default(14 * 24 * 3_600_000),
      /**
       * Failed sign-ins allowed per user name and per client address within `window`; past either,
       * sign-in answers 429 with Retry-After until the window ends.
       */
      signinThrottle: z
        .strictObject({
          perUser: z.number().int().min(1).max(1_000_000).default(5),
          perAddress: z.number().int().min(1).max(1_000_000).default(20),
          window: durationSchema.default(15 * 60_000),
        })
        .prefault({}),
    })
    .prefault({}),
  jobs: z
    .strictObject({
      /** Dragonfly's DefaultJobTimeout: a job's `timeout: 0` means this. */
      defaultTimeout: durationSchema.default(60 * 60_000),
      /** Job creations per second per scheduler cluster (Dragonfly's DefaultClusterJobRateLimit). */
      rateLimitPerCluster: z.number().int().min(1).max(1_000_000).default(10),
    })
    .prefault({}),
  /** The manager as the cluster's CA for mutual TLS between agents, seed peers and schedulers. */
  security: z
    .strictObject({
      /** What a component presents once for its first certificate (or DAMSELFLY_JOIN_TOKEN); without one, only renewals are issued. */
      joinToken: z.string().min(16).optional(),
      /** A file holding the join token instead (a compose secret or a mounted Kubernetes Secret); read at start. */
      joinTokenFile: z.string().min(1).optional(),
      /** Lifetime of an issued certificate; components renew at two thirds of it. */
      certificateValidity: durationSchema.default(24 * 3_600_000),
    })
    .prefault({}),
  /** Schedulers are inactive after 3 missed intervals of this (unless they announce their own). */
  schedulerKeepAliveInterval: durationSchema.default(5_000),
});

export type ManagerConfig = z.output<typeof managerConfigSchema>;

/** Applies the DAMSELFLY_* environment secrets over a parsed config (file values win). */
export function withEnvSecrets(config: ManagerConfig, env: NodeJS.ProcessEnv = process.env): ManagerConfig {
  return {
    ...config,
    auth: {
      ...config.auth,
      rootPassword: config.auth.rootPassword ?? (env.DAMSELFLY_ROOT_PASSWORD || undefined),
      jwtSecret: config.auth.jwtSecret ?? (env.DAMSELFLY_JWT_SECRET || undefined),
      schedulerSecret: config.auth.schedulerSecret ?? (env.DAMSELFLY_SCHEDULER_SECRET || undefined),
    },
    security: { ...config.security, joinToken: resolveJoinToken(config.security, env) },
  };
}

/** Loads a config file (or defaults) and applies environment secrets. Throws ConfigError. */
export function loadManagerConfig(file?: string): ManagerConfig {
  const parsed = file ? loadConfigFile(managerConfigSchema, file) : parseConfig(managerConfigSchema, {}, '(defaults)');
  return withEnvSecrets(parsed);
}

/** Builds a config from a partial object (tests, `damselfly up`). Throws ConfigError. */
export function managerConfig(value: unknown = {}): ManagerConfig {
  return parseConfig(managerConfigSchema, value, '(inline)');
}
