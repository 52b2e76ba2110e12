/**
 * The scheduler's YAML configuration. Every key has a default, so an empty file (or none) runs a
 * single local scheduler. Durations accept `200ms`, `5s`, `1h` or seconds and come out in ms.
 */
import { securityConfigSchema } from '../adapters/tls.js';
import { z } from 'zod';
import { tracingConfigSchema } from '../adapters/tracing.js';
import { durationSchema, loadConfigFile, parseConfig } from '../adapters/config.js';

const portSchema = z.number().int().min(0).max(65535);

export const schedulerConfigSchema = z.strictObject({
  server: z
    .strictObject({
      ip: z.string().default('0.0.0.0'),
      port: portSchema.default(8002),
      /** The address agents and the manager should use when `ip` is a wildcard. */
      advertiseIp: z.string().optional(),
    })
    .prefault({}),
  tracing: tracingConfigSchema,
  metrics: z
    .strictObject({
      enable: z.boolean().default(true),
      ip: z.string().default('0.0.0.0'),
      port: portSchema.default(8000),
    })
    .prefault({}),
  scheduling: z
    .strictObject({
      /** Parents handed to a peer per answer. */
      candidateParentLimit: z.number().int().min(1).max(20).default(4),
      /** Peers of the task sampled before filtering and scoring (bounds the work per schedule). */
      filterParentLimit: z.number().int().min(1).max(1000).default(15),
      /** Peers of one task allowed back-to-source at once: the origin sends the bytes about this often. */
      backToSourceCount: z.number().int().min(0).default(1),
      /** Rounds without parents before the stream fails. */
      retryLimit: z.number().int().min(1).default(10),
      /** Rounds without parents after which the peer is sent back to source (cap allowing). */
      retryBackToSourceLimit: z.number().int().min(0).default(5),
      retryInterval: durationSchema.default(200),
      /**
       * For this long after the scheduler starts, a task no known peer holds is not sent to the
       * origin (nor failed at LEVEL1/2) at once: agents that hold it reconnect within ~2.4 s (gRPC
       * backoff ≤ 2 s plus jitter) and register again with what they hold; a holder that does ends
       * the wait. 0 answers at once, as a scheduler that never restarts could.
       */
      rejoinGrace: durationSchema.default(3_000),
      /** A piece report older than this marks a parent as stalled. */
      pieceTimeout: durationSchema.default(30_000),
    })
    .prefault({}),
  gc: z
    .strictObject({
      interval: durationSchema.default(10_000),
      /** Finished/idle peers older than this are dropped. */
      peerTTL: durationSchema.default(3_600_000),
      /** Tasks without peers older than this are dropped. */
      taskTTL: durationSchema.default(1_800_000),
      /** Hosts that stopped announcing are dropped after this (or ~3 missed announce intervals). */
      hostTTL: durationSchema.default(3_600_000),
    })
    .prefault({}),
  seedPeer: z
    .strictObject({
      /** Ask a seed peer to go back to source for a new task instead of a normal peer. */
      enable: z.boolean().default(true),
      /** Give up on a seed-peer trigger (and send a normal peer to the origin) after this long. */
      triggerTimeout: durationSchema.default(2_000),
    })
    .prefault({}),
  manager: z
    .strictObject({
      addr: z.string().optional(),
      keepAliveInterval: durationSchema.default(5_000),
      clusterId: z.number().int().min(1).default(1),
    })
    .prefault({}),
  /** Mutual TLS with agents and seed peers, with a certificate from the manager (adapters/tls.ts); certDir unset = memory only. */
  security: securityConfigSchema,
  job: z
    .strictObject({
      enable: z.boolean().default(true),
      queue: z.unknown().optional(),
    })
    .prefault({}),
});

export type SchedulerConfig = z.output<typeof schedulerConfigSchema>;

/** Loads and validates a scheduler config file; no file → all defaults. Throws ConfigError. */
export function loadSchedulerConfig(file?: string): SchedulerConfig {
  if (!file) return parseConfig(schedulerConfigSchema, {}, '(defaults)');
  return loadConfigFile(schedulerConfigSchema, file);
}

/** Builds a config from a partial object (tests, `damselfly up`). Throws ConfigError. */
export function schedulerConfig(value: unknown = {}): SchedulerConfig {
  return parseConfig(schedulerConfigSchema, value, '(inline)');
}
