/**
 * Wiring: stores from config, first-start bootstrap, and the Node HTTP server. `startManager` is what
 * `damselfly manager` and `damselfly up` call; lambda.ts uses `loadDeps` without a server.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { KvStore } from '../../adapters/kv/port.js';
import { createLogger, type Logger } from '../../adapters/log.js';
import type { Queue } from '../../adapters/queue/port.js';
import { createKvStore, createQueue } from '../../adapters/stores.js';
import { createApp, type ManagerDeps } from './app.js';
import { bootstrap } from './bootstrap.js';
import type { ManagerConfig } from './config.js';
import { createManagerMetrics } from './metrics.js';
import { registerOpenApi } from './openapi.js';

export interface LoadDepsOptions {
  logger?: Logger;
  /** Use these stores instead of building them from config (e.g. `damselfly up` shares them). */
  kv?: KvStore;
  queue?: Queue;
  metricsDefaults?: boolean;
  /** Serve /metrics (default true; off on Lambda, where a public URL would expose them). */
  metrics?: boolean;
  /** Where a generated root password is shown (once). Default: stderr. */
  announcePassword?: (password: string) => void;
  /** Refuse to generate a root password (Lambda: stderr is a log store, nobody to show it to). */
  requireRootPassword?: boolean;
}

/** Opens the stores, runs first-start bootstrap, returns the app's deps. Throws ConfigError, UnavailableError. */
export async function loadDeps(config: ManagerConfig, opts: LoadDepsOptions = {}): Promise<ManagerDeps> {
  const logger = opts.logger ?? createLogger({ role: 'manager' });
  const needsDir = !opts.kv && !config.store.kv || !opts.queue && !config.store.queue;
  if (needsDir) {
    // The data dir holds the signing key and credentials: nobody else may list or read it.
    mkdirSync(config.store.dataDir, { recursive: true, mode: 0o700 });
    chmodSync(config.store.dataDir, 0o700);
  }
  const kv = opts.kv ?? (await createKvStore((config.store.kv ?? { kind: 'sqlite', path: join(config.store.dataDir, 'kv.db') }) as never));
  const queue = opts.queue ?? (await createQueue((config.store.queue ?? { kind: 'sqlite', path: join(config.store.dataDir, 'queue.db') }) as never));
  const result = await bootstrap(kv, { rootPassword: config.auth.rootPassword, jobRateLimit: config.jobs.rateLimitPerCluster, now: new Date(), logger, requireRootPassword: opts.requireRootPassword });
  if (result.generatedRootPassword) {
    // Printed, never logged: log lines are shipped and kept; this is shown once for the operator.
    (opts.announcePassword ?? ((p) => process.stderr.write(`damselfly manager: generated password for user "root" (shown once; set auth.rootPassword or DAMSELFLY_ROOT_PASSWORD to choose one): ${p}\n`)))(
      result.generatedRootPassword,
    );
  }
  if (!config.auth.schedulerSecret) logger.warn('no scheduler secret configured (auth.schedulerSecret / DAMSELFLY_SCHEDULER_SECRET): schedulers cannot register');
  return { kv, queue, config, clock: { now: Date.now }, logger, metrics: opts.metrics === false ? undefined : createManagerMetrics({ defaults: opts.metricsDefaults }) };
}

export interface StartedManager {
  /** `http://127.0.0.1:PORT` */
  url: string;
  address: string;
  port: number;
  deps: ManagerDeps;
  /** Stops the server and closes the stores it opened. */
  close(): Promise<void>;
}

/** Starts the manager's HTTP server. Throws ConfigError, UnavailableError, or the listen error. */
export async function startManager(config: ManagerConfig, opts: LoadDepsOptions = {}): Promise<StartedManager> {
  const deps = await loadDeps(config, opts);
  deps.clientAddress = (c) => getConnInfo(c).remote.address;
  const app = createApp(deps);
  registerOpenApi(app);
  let server: ServerType | undefined;
  const port = await new Promise<number>((resolve, reject) => {
    server = serve({ fetch: app.fetch, port: config.server.port, hostname: config.server.ip }, (info) => resolve(info.port));
    server.once('error', reject);
  });
  const host = config.server.ip.includes(':') ? `[${config.server.ip}]` : config.server.ip;
  return {
    url: `http://${host}:${port}`,
    address: `${host}:${port}`,
    port,
    deps,
    async close() {
      await new Promise<void>((resolve) => {
        if (!server) return resolve();
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      if (!opts.queue) await deps.queue.close();
      if (!opts.kv) await deps.kv.close();
    },
  };
}
