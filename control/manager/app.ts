/**
 * The manager's HTTP API as one Hono app over the KV and queue ports. It holds no state of its own,
 * so the same app serves a Node server (`damselfly manager`) and AWS Lambda (lambda.ts).
 * Each resource is a route module under routes/; this file composes them behind the shared
 * middleware (request log and metrics, error mapping).
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { routePath } from 'hono/route';
import { DamselflyError, errorCode } from '../../adapters/errors.js';
import { httpStatus } from '../../adapters/http-status.js';
import { MAX_REPORT_BYTES } from '../../scheduler/job/limits.js';
import { type AuthEnv, jwtAuth, resolveJwtSecret, schedulerAuth, tokenAuth } from './auth.js';
import { ForbiddenError } from './errors.js';
import type { JobDeps } from './jobs.js';
import { certificateRoutes } from './certificates.js';
import { clusterRoutes } from './routes/clusters.js';
import type { ManagerDeps, RouteContext, RouteModule } from './routes/context.js';
import { consoleRoutes } from './routes/console.js';
import { jobRoutes } from './routes/jobs.js';
import { preheatRoutes } from './routes/preheat.js';
import { visibilityRoutes } from './routes/visibility.js';
import { schedulerRoutes } from './routes/schedulers.js';
import { tokenRoutes } from './routes/tokens.js';
import { userRoutes } from './routes/users.js';

export type { Clock, ManagerDeps, RouteContext, RouteModule } from './routes/context.js';

/** Every resource, in registration order. */
export const ROUTE_MODULES: readonly RouteModule[] = [userRoutes, tokenRoutes, clusterRoutes, schedulerRoutes, jobRoutes, visibilityRoutes, preheatRoutes, consoleRoutes];

function routeContext(deps: ManagerDeps): RouteContext {
  const { kv, config } = deps;
  const now = () => deps.clock.now();
  let secretPromise: Promise<string> | undefined;
  const jwtSecret = () =>
    (secretPromise ??= resolveJwtSecret(kv, config.auth.jwtSecret).catch((err) => {
      secretPromise = undefined;
      throw err;
    }));
  const jobDeps: JobDeps = {
    kv,
    queue: deps.queue,
    now,
    defaultTimeoutMs: config.jobs.defaultTimeout,
    rateLimitPerCluster: config.jobs.rateLimitPerCluster,
    keepAliveIntervalMs: config.schedulerKeepAliveInterval,
    schedulerSecret: config.auth.schedulerSecret,
  };
  return {
    deps,
    kv,
    config,
    logger: deps.logger,
    metrics: deps.metrics,
    now,
    nowIso: () => new Date(now()).toISOString(),
    jwtSecret,
    jobDeps,
    userAuth: jwtAuth(jwtSecret, kv, now),
    selfAuth: jwtAuth(jwtSecret, kv, now, true),
    patAuth: tokenAuth(kv, now),
    schedAuth: schedulerAuth(config.auth.schedulerSecret),
    requireRoot: async (c, next) => {
      if (c.get('principal').role !== 'root') throw new ForbiddenError('permission denied');
      await next();
    },
  };
}

/** Builds the manager app from `modules` (default: every resource). Routes never hold state between requests. */
export function createApp(deps: ManagerDeps, modules: readonly RouteModule[] = ROUTE_MODULES): Hono<AuthEnv> {
  const { logger, metrics } = deps;
  const app = new Hono<AuthEnv>();

  // Request log + metrics. The path is logged without its query: tokens may ride in it.
  app.use('*', async (c, next) => {
    const start = performance.now();
    await next();
    const seconds = (performance.now() - start) / 1000;
    const url = routePath(c) || c.req.path;
    const labels = { code: String(c.res.status), method: c.req.method, url };
    metrics?.requests.inc(labels);
    metrics?.requestDuration.observe(labels, seconds);
    logger.info('request', { method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(seconds * 1000) });
  });

  // Before any route parses: a body past the limit is refused while it streams in, unread.
  const limited = (maxSize: number) =>
    bodyLimit({
      maxSize,
      onError: (c) => {
        const message = `request body larger than ${maxSize} bytes`;
        return c.json({ code: 'INVALID', message, errors: message, fields: { '(body)': `at most ${maxSize} bytes (server.bodyLimit)` } }, 413);
      },
    });
  const generalLimit = limited(deps.config.server.bodyLimit);
  // Whatever the worker sends must fit (scheduler/job/limits.ts), or a final report is refused forever.
  const reportLimit = limited(Math.max(deps.config.server.bodyLimit, MAX_REPORT_BYTES + 64 * 1024));
  app.use('*', (c, next) => (/^\/api\/v1\/jobs\/[^/]+\/report$/.test(c.req.path) ? reportLimit : generalLimit)(c, next));

  app.onError((err, c) => {
    const code = errorCode(err);
    const status = httpStatus(err);
    if (status >= 500) logger.error('request failed', { path: c.req.path, err });
    if (err instanceof DamselflyError) {
      const fields = (err.details as { fields?: Record<string, string> } | undefined)?.fields;
      // `errors` and `message` are both what Dragonfly clients read (Harbor prints the body).
      const payload: Record<string, unknown> = { code, message: err.message, errors: err.message };
      if (fields) payload.fields = fields;
      return c.json(payload, status as 400);
    }
    return c.json({ code: 'INTERNAL', message: 'internal error', errors: 'internal error' }, 500);
  });
  app.notFound((c) => c.json({ code: 'NOT_FOUND', message: 'no such route', errors: 'no such route' }, 404));

  app.get('/healthy', (c) => c.json('OK'));
  app.route('/', certificateRoutes({ kv: deps.kv, config: deps.config, logger, now: () => deps.clock.now() }));
  if (metrics) {
    app.get('/metrics', async (c) => c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }));
  }

  const ctx = routeContext(deps);
  for (const register of modules) register(app, ctx);
  return app;
}
