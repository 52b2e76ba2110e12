/**
 * What every route module receives: the deps, the clock and the auth middlewares, built once per app.
 * A resource is one module `(app, ctx) => void`; app.ts composes them (one more resource, one more line).
 */
import type { Context, Hono, MiddlewareHandler } from 'hono';
import type { KvStore } from '../../../adapters/kv/port.js';
import type { Logger } from '../../../adapters/log.js';
import type { Queue } from '../../../adapters/queue/port.js';
import type { AuthEnv } from '../auth.js';
import type { ManagerConfig } from '../config.js';
import type { JobDeps } from '../jobs.js';
import type { ManagerMetrics } from '../metrics.js';

export interface Clock {
  now(): number;
}

export interface ManagerDeps {
  kv: KvStore;
  queue: Queue;
  config: ManagerConfig;
  clock: Clock;
  logger: Logger;
  metrics?: ManagerMetrics;
  /** The client's address (the socket peer, never a forwarded header); sign-in throttles by it. */
  clientAddress?: (c: Context) => string | undefined;
}

export interface RouteContext {
  deps: ManagerDeps;
  kv: KvStore;
  config: ManagerConfig;
  logger: Logger;
  metrics?: ManagerMetrics;
  now(): number;
  nowIso(): string;
  /** The JWT signing key (configured, or persisted in the KV store on first use). */
  jwtSecret(): Promise<string>;
  jobDeps: JobDeps;
  /** /api/v1: a user JWT; guests may only read. */
  userAuth: MiddlewareHandler<AuthEnv>;
  /** /api/v1 routes where the route itself decides (a guest acting on itself). */
  selfAuth: MiddlewareHandler<AuthEnv>;
  /** /oapi/v1: a personal access token with the resource's scope. */
  patAuth: MiddlewareHandler<AuthEnv>;
  /** Scheduler routes: the shared scheduler secret. */
  schedAuth: MiddlewareHandler<AuthEnv>;
  requireRoot: (c: Context<AuthEnv>, next: () => Promise<void>) => Promise<void>;
}

export type RouteModule = (app: Hono<AuthEnv>, ctx: RouteContext) => void;
