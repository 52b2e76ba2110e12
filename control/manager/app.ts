/**
 * The manager's HTTP API as one Hono app over the KV and queue ports. It holds no state of its own,
 * so the same app serves a Node server (`damselfly manager`) and AWS Lambda (lambda.ts).
 */
import { Hono, type Context } from 'hono';
import { routePath } from 'hono/route';
import { setCookie } from 'hono/cookie';
import { z } from 'zod';
import { ConflictError, DamselflyError, InvalidError, NotFoundError, errorCode } from '../../adapters/errors.js';
import type { KvStore } from '../../adapters/kv/port.js';
import type { Queue } from '../../adapters/queue/port.js';
import type { Logger } from '../../adapters/log.js';
import {
  type AuthEnv,
  generateToken,
  hashPassword,
  jwtAuth,
  resolveJwtSecret,
  schedulerAuth,
  sha256Hex,
  signUserJwt,
  tokenAuth,
  verifyPassword,
} from './auth.js';
import type { ManagerConfig } from './config.js';
import { ForbiddenError, UnauthorizedError } from './errors.js';
import {
  type JobDeps,
  createJob,
  getJob,
  invalid,
  isActive,
  listJobs,
  listJobsQuerySchema,
  patchJobSchema,
  reportJob,
  reportSchema,
} from './jobs.js';
import { managerKeys } from '../../adapters/keys.js';
import type { ManagerMetrics } from './metrics.js';
import {
  type ClusterRecord,
  type JobRecord,
  type SchedulerRecord,
  type TokenRecord,
  type UserRecord,
  publicCluster,
  publicJob,
  publicToken,
  publicUser,
} from './models.js';
import { rankClusters } from './searcher.js';
import { casUpdate, listAll, nextId } from './store.js';

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
}

const STATUS: Record<string, number> = {
  INVALID: 400,
  CONFIG: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
};

async function body<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  let raw: unknown;
  try {
    raw = await c.req.json();
  } catch {
    throw new InvalidError('invalid request', { details: { fields: { '(body)': 'expected a JSON body' } } });
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw invalid(r.error);
  return r.data;
}

function query<S extends z.ZodType>(c: Context, schema: S): z.output<S> {
  const r = schema.safeParse(c.req.query());
  if (!r.success) throw invalid(r.error);
  return r.data;
}

function idParam(c: Context, name = 'id'): number {
  const v = Number(c.req.param(name));
  if (!Number.isInteger(v) || v < 1) throw new InvalidError('invalid request', { details: { fields: { [name]: 'expected a positive integer' } } });
  return v;
}

export const pageQuery = z.object({
  page: z.coerce.number().int().min(1).default(1),
  per_page: z.coerce.number().int().min(1).max(1000).default(10),
});

/** Slices one page and sets Dragonfly's `Link` header (rel first/prev/next/last) and X-Total-Count. */
function paginate<T>(c: Context, items: T[], page: number, perPage: number): T[] {
  const total = items.length;
  const last = Math.max(1, Math.ceil(total / perPage));
  const url = new URL(c.req.url);
  const link = (p: number, rel: string) => {
    url.searchParams.set('page', String(p));
    url.searchParams.set('per_page', String(perPage));
    url.searchParams.delete('access_token');
    url.searchParams.delete('token');
    return `<${url.pathname}?${url.searchParams.toString()}>;rel=${rel}`;
  };
  const links = [link(1, 'first')];
  if (page > 1) links.push(link(Math.min(page - 1, last), 'prev'));
  if (page < last) links.push(link(page + 1, 'next'));
  links.push(link(last, 'last'));
  c.header('Link', links.join(','));
  c.header('X-Total-Count', String(total));
  return items.slice((page - 1) * perPage, page * perPage);
}

const cidrSchema = z.string().refine((s) => {
  const [ip, bits, extra] = s.split('/');
  if (extra !== undefined || !ip) return false;
  const v4 = z.ipv4().safeParse(ip).success;
  const v6 = z.ipv6().safeParse(ip).success;
  if (!v4 && !v6) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return Number.isInteger(n) && n >= 0 && n <= (v4 ? 32 : 128);
}, 'expected a CIDR such as 10.0.0.0/8');

const regexSchema = z.string().refine((s) => {
  try {
    new RegExp(s);
    return true;
  } catch {
    return false;
  }
}, 'not a valid regular expression');

const scopesSchema = z.strictObject({
  idc: z.string().max(1024).default(''),
  location: z.string().max(1024).default(''),
  cidrs: z.array(cidrSchema).max(1000).default([]),
  hostnames: z.array(regexSchema).max(1000).default([]),
});

export const clusterCreateSchema = z.object({
  name: z.string().min(1).max(40).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  bio: z.string().max(1024).default(''),
  scopes: scopesSchema.prefault({}),
  scheduler_cluster_config: z
    .object({
      candidate_parent_limit: z.number().int().min(1).max(20).default(4),
      filter_parent_limit: z.number().int().min(10).max(1000).default(15),
      job_rate_limit: z.number().int().min(1).max(1_000_000).optional(),
    })
    .prefault({}),
  seed_peer_cluster_config: z.object({ load_limit: z.number().int().min(1).max(50_000).default(2000) }).prefault({}),
  peer_cluster_config: z.object({ load_limit: z.number().int().min(1).max(2000).default(200) }).prefault({}),
  is_default: z.boolean().default(false),
});
export const clusterPatchSchema = z.object({
  name: clusterCreateSchema.shape.name.optional(),
  bio: z.string().max(1024).optional(),
  scopes: scopesSchema.optional(),
  scheduler_cluster_config: clusterCreateSchema.shape.scheduler_cluster_config.optional(),
  seed_peer_cluster_config: clusterCreateSchema.shape.seed_peer_cluster_config.optional(),
  peer_cluster_config: clusterCreateSchema.shape.peer_cluster_config.optional(),
  is_default: z.boolean().optional(),
});

export const schedulerRegisterSchema = z.strictObject({
  hostname: z.string().min(1).max(256),
  ip: z.union([z.ipv4(), z.ipv6()]),
  port: z.number().int().min(1).max(65535),
  idc: z.string().max(1024).default(''),
  location: z.string().max(1024).default(''),
  features: z.array(z.enum(['schedule', 'preheat'])).default(['schedule', 'preheat']),
  scheduler_cluster_id: z.number().int().positive(),
  keep_alive_interval_ms: z.number().int().min(100).max(3_600_000).optional(),
});
export const keepAliveSchema = z.strictObject({
  hostname: z.string().min(1).max(256),
  ip: z.union([z.ipv4(), z.ipv6()]),
  scheduler_cluster_id: z.number().int().positive(),
});

export const signinSchema = z.strictObject({ name: z.string().min(1).max(64), password: z.string().min(1).max(256) });
export const userCreateSchema = z.strictObject({
  name: z.string().min(3).max(64).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  password: z.string().min(8).max(256),
  email: z.string().max(256).default(''),
  role: z.enum(['root', 'guest']).default('guest'),
});
export const userPatchSchema = z.strictObject({ role: z.enum(['root', 'guest']).optional(), state: z.enum(['enable', 'disable']).optional(), email: z.string().max(256).optional() });
export const resetPasswordSchema = z.strictObject({ old_password: z.string().max(256).optional(), new_password: z.string().min(8).max(256) });
export const tokenCreateSchema = z.strictObject({
  name: z.string().min(1).max(64),
  bio: z.string().max(1024).default(''),
  scopes: z.array(z.enum(['job', 'cluster'])).default([]),
  expired_at: z.iso.datetime({ offset: true }),
  user_id: z.number().int().positive().optional(),
});
export const tokenPatchSchema = z.strictObject({
  bio: z.string().max(1024).optional(),
  scopes: z.array(z.enum(['job', 'cluster'])).optional(),
  state: z.enum(['active', 'inactive']).optional(),
  expired_at: z.iso.datetime({ offset: true }).optional(),
});
export const searchQuerySchema = z.object({
  hostname: z.string().max(256).optional(),
  ip: z.string().max(64).optional(),
  idc: z.string().max(1024).optional(),
  location: z.string().max(1024).optional(),
});

/** Builds the manager app. Routes never hold state between requests. */
export function createApp(deps: ManagerDeps): Hono<AuthEnv> {
  const { kv, config, logger, metrics } = deps;
  const now = () => deps.clock.now();
  const nowIso = () => new Date(now()).toISOString();
  let secretPromise: Promise<string> | undefined;
  const jwtSecret = () => (secretPromise ??= resolveJwtSecret(kv, config.auth.jwtSecret).catch((err) => {
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
  };
  const userAuth = jwtAuth(jwtSecret, kv, now);
  const selfAuth = jwtAuth(jwtSecret, kv, now, true);
  const patAuth = tokenAuth(kv, now);
  const schedAuth = schedulerAuth(config.auth.schedulerSecret);
  const requireRoot = async (c: Context<AuthEnv>, next: () => Promise<void>) => {
    if (c.get('principal').role !== 'root') throw new ForbiddenError('permission denied');
    await next();
  };

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

  app.onError((err, c) => {
    const code = errorCode(err);
    const status = STATUS[code] ?? 500;
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
  if (metrics) {
    app.get('/metrics', async (c) => c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }));
  }

  // ---------------------------------------------------------------- users
  app.post('/api/v1/users/signin', async (c) => {
    const { name, password } = await body(c, signinSchema);
    const idx = await kv.get<{ id: number }>(managerKeys.userName(name));
    const user = idx && (await kv.get<UserRecord>(managerKeys.user(idx.value.id)));
    if (!user || user.value.state !== 'enable' || !(await verifyPassword(password, user.value.password_hash))) {
      throw new UnauthorizedError('incorrect name or password');
    }
    const out = await signUserJwt(await jwtSecret(), user.value, now(), config.auth.jwtTimeout);
    setCookie(c, 'jwt', out.token, { httpOnly: true, sameSite: 'Strict', path: '/', maxAge: Math.floor(config.auth.jwtTimeout / 1000) });
    return c.json(out);
  });
  app.post('/api/v1/users', userAuth, requireRoot, async (c) => {
    const req = await body(c, userCreateSchema);
    const id = await nextId(kv, 'user');
    const user: UserRecord = { id, name: req.name, email: req.email, role: req.role, state: 'enable', password_hash: await hashPassword(req.password), created_at: nowIso(), updated_at: nowIso() };
    try {
      await kv.transact([
        { type: 'create', key: managerKeys.userName(req.name), value: { id } },
        { type: 'create', key: managerKeys.user(id), value: user },
      ]);
    } catch (err) {
      if (err instanceof ConflictError) throw new ConflictError(`user ${req.name} already exists`);
      throw err;
    }
    return c.json(publicUser(user), 200);
  });
  app.get('/api/v1/users', userAuth, requireRoot, async (c) => {
    const q = query(c, pageQuery);
    const users = (await listAll<UserRecord>(kv, managerKeys.userPrefix())).map((r) => publicUser(r.value));
    return c.json(paginate(c, users, q.page, q.per_page));
  });
  app.get('/api/v1/users/:id', userAuth, async (c) => {
    const id = idParam(c);
    const p = c.get('principal');
    if (p.role !== 'root' && p.userId !== id) throw new ForbiddenError('permission denied');
    const rec = await kv.get<UserRecord>(managerKeys.user(id));
    if (!rec) throw new NotFoundError(`user ${id} not found`);
    return c.json(publicUser(rec.value));
  });
  app.patch('/api/v1/users/:id', userAuth, requireRoot, async (c) => {
    const id = idParam(c);
    const req = await body(c, userPatchSchema);
    const rec = await casUpdate<UserRecord>(kv, managerKeys.user(id), (u) => ({ ...u, ...req, updated_at: nowIso() }));
    return c.json(publicUser(rec.value));
  });
  app.post('/api/v1/users/:id/reset_password', selfAuth, async (c) => {
    const id = idParam(c);
    const p = c.get('principal');
    // Guests may change only their own password: allowed past the read-only role check on purpose.
    if (p.role !== 'root' && p.userId !== id) throw new ForbiddenError('permission denied');
    const req = await body(c, resetPasswordSchema);
    const rec = await kv.get<UserRecord>(managerKeys.user(id));
    if (!rec) throw new NotFoundError(`user ${id} not found`);
    if (p.role !== 'root' && !(req.old_password && (await verifyPassword(req.old_password, rec.value.password_hash)))) {
      throw new UnauthorizedError('incorrect password');
    }
    const hash = await hashPassword(req.new_password);
    await casUpdate<UserRecord>(kv, managerKeys.user(id), (u) => ({ ...u, password_hash: hash, updated_at: nowIso() }));
    return c.json({});
  });

  // ---------------------------------------------------------------- personal access tokens
  app.post('/api/v1/personal-access-tokens', selfAuth, async (c) => {
    const req = await body(c, tokenCreateSchema);
    const p = c.get('principal');
    const userId = req.user_id ?? p.userId;
    if (userId !== p.userId && p.role !== 'root') throw new ForbiddenError('permission denied');
    if (!(await kv.get(managerKeys.user(userId)))) throw new InvalidError('invalid request', { details: { fields: { user_id: `user ${userId} does not exist` } } });
    const token = generateToken();
    const id = await nextId(kv, 'pat');
    const hash = sha256Hex(token);
    const rec: TokenRecord = { id, name: req.name, bio: req.bio, scopes: req.scopes, state: 'active', expired_at: new Date(req.expired_at).toISOString(), user_id: userId, token_hash: hash, created_at: nowIso(), updated_at: nowIso() };
    try {
      await kv.transact([
        { type: 'create', key: managerKeys.tokenName(req.name), value: { id } },
        { type: 'create', key: managerKeys.tokenHash(hash), value: { id } },
        { type: 'create', key: managerKeys.token(id), value: rec },
      ]);
    } catch (err) {
      if (err instanceof ConflictError) throw new ConflictError(`token ${req.name} already exists`);
      throw err;
    }
    // The only time the token itself is returned.
    return c.json({ ...publicToken(rec), token });
  });
  const ownToken = async (c: Context<AuthEnv>): Promise<TokenRecord> => {
    const rec = await kv.get<TokenRecord>(managerKeys.token(idParam(c)));
    const p = c.get('principal');
    if (!rec || (p.role !== 'root' && rec.value.user_id !== p.userId)) throw new NotFoundError('token not found');
    return rec.value;
  };
  app.get('/api/v1/personal-access-tokens', userAuth, async (c) => {
    const q = query(c, pageQuery.extend({ user_id: z.coerce.number().int().positive().optional(), state: z.enum(['active', 'inactive']).optional() }));
    const p = c.get('principal');
    const all = (await listAll<TokenRecord>(kv, managerKeys.tokenPrefix()))
      .map((r) => r.value)
      .filter((t) => (p.role === 'root' || t.user_id === p.userId) && (q.user_id === undefined || t.user_id === q.user_id) && (!q.state || t.state === q.state))
      .map(publicToken);
    return c.json(paginate(c, all, q.page, q.per_page));
  });
  app.get('/api/v1/personal-access-tokens/:id', userAuth, async (c) => c.json(publicToken(await ownToken(c))));
  app.patch('/api/v1/personal-access-tokens/:id', selfAuth, async (c) => {
    const t = await ownToken(c);
    const req = await body(c, tokenPatchSchema);
    const rec = await casUpdate<TokenRecord>(kv, managerKeys.token(t.id), (cur) => ({
      ...cur,
      ...req,
      ...(req.expired_at ? { expired_at: new Date(req.expired_at).toISOString() } : {}),
      updated_at: nowIso(),
    }));
    return c.json(publicToken(rec.value));
  });
  app.delete('/api/v1/personal-access-tokens/:id', selfAuth, async (c) => {
    const t = await ownToken(c);
    await kv.transact([
      { type: 'delete', key: managerKeys.token(t.id) },
      { type: 'delete', key: managerKeys.tokenHash(t.token_hash) },
      { type: 'delete', key: managerKeys.tokenName(t.name) },
    ]);
    return c.json({});
  });

  // ---------------------------------------------------------------- clusters (façade: scheduler + seed-peer cluster)
  for (const [prefix, auth] of [
    ['/api/v1/clusters', userAuth],
    ['/oapi/v1/clusters', patAuth],
  ] as const) {
    app.post(prefix, auth, async (c) => {
      const req = await body(c, clusterCreateSchema);
      const id = await nextId(kv, 'cluster');
      const rec: ClusterRecord = {
        id,
        ...req,
        scheduler_cluster_config: { ...req.scheduler_cluster_config, job_rate_limit: req.scheduler_cluster_config.job_rate_limit ?? config.jobs.rateLimitPerCluster },
        created_at: nowIso(),
        updated_at: nowIso(),
      };
      try {
        await kv.transact([
          { type: 'create', key: managerKeys.clusterName(req.name), value: { id } },
          { type: 'create', key: managerKeys.cluster(id), value: rec },
        ]);
      } catch (err) {
        if (err instanceof ConflictError) throw new ConflictError(`cluster ${req.name} already exists`);
        throw err;
      }
      return c.json(publicCluster(rec));
    });
    app.get(prefix, auth, async (c) => {
      const q = query(c, pageQuery.extend({ name: z.string().optional() }));
      const all = (await listAll<ClusterRecord>(kv, managerKeys.clusterPrefix())).map((r) => r.value).filter((x) => !q.name || x.name === q.name);
      return c.json(paginate(c, all, q.page, q.per_page).map(publicCluster));
    });
    app.get(`${prefix}/:id`, auth, async (c) => {
      const rec = await kv.get<ClusterRecord>(managerKeys.cluster(idParam(c)));
      if (!rec) throw new NotFoundError('cluster not found');
      return c.json(publicCluster(rec.value));
    });
    app.patch(`${prefix}/:id`, auth, async (c) => {
      const id = idParam(c);
      const req = await body(c, clusterPatchSchema);
      const cur = await kv.get<ClusterRecord>(managerKeys.cluster(id));
      if (!cur) throw new NotFoundError('cluster not found');
      const next: ClusterRecord = { ...cur.value, ...Object.fromEntries(Object.entries(req).filter(([, v]) => v !== undefined)), updated_at: nowIso() };
      const ops: Parameters<KvStore['transact']>[0] = [{ type: 'update', key: managerKeys.cluster(id), value: next, expectedVersion: cur.version }];
      if (req.name && req.name !== cur.value.name) {
        ops.push({ type: 'create', key: managerKeys.clusterName(req.name), value: { id } }, { type: 'delete', key: managerKeys.clusterName(cur.value.name) });
      }
      try {
        await kv.transact(ops);
      } catch (err) {
        if (err instanceof ConflictError) throw new ConflictError('cluster changed concurrently or name taken; retry');
        throw err;
      }
      return c.json(publicCluster(next));
    });
    app.delete(`${prefix}/:id`, auth, async (c) => {
      const id = idParam(c);
      const cur = await kv.get<ClusterRecord>(managerKeys.cluster(id));
      if (!cur) throw new NotFoundError('cluster not found');
      if (cur.value.is_default) throw new ConflictError('the default cluster cannot be deleted');
      await kv.transact([
        { type: 'delete', key: managerKeys.cluster(id), expectedVersion: cur.version },
        { type: 'delete', key: managerKeys.clusterName(cur.value.name) },
      ]);
      return c.json({});
    });
  }

  // Dragonfly's separate scheduler-cluster and seed-peer-cluster resources, read-only here: each
  // façade cluster is both (same id), so tools that list them see the same clusters.
  for (const prefix of ['/api/v1/scheduler-clusters', '/api/v1/seed-peer-clusters']) {
    app.get(prefix, userAuth, async (c) => {
      const q = query(c, pageQuery);
      const all = (await listAll<ClusterRecord>(kv, managerKeys.clusterPrefix())).map((r) => r.value);
      return c.json(paginate(c, all, q.page, q.per_page).map(publicCluster));
    });
    app.get(`${prefix}/:id`, userAuth, async (c) => {
      const rec = await kv.get<ClusterRecord>(managerKeys.cluster(idParam(c)));
      if (!rec) throw new NotFoundError('cluster not found');
      return c.json(publicCluster(rec.value));
    });
  }

  // ---------------------------------------------------------------- schedulers
  const schedulerView = (s: SchedulerRecord) => ({ ...s, state: isActive(s, now(), config.schedulerKeepAliveInterval) ? 'active' : 'inactive' });
  app.get('/api/v1/schedulers/search', async (c) => {
    const q = query(c, searchQuerySchema);
    metrics?.search.inc();
    const clusters = (await listAll<ClusterRecord>(kv, managerKeys.clusterPrefix())).map((r) => r.value);
    for (const cluster of rankClusters(clusters, q)) {
      const active = (await listAll<SchedulerRecord>(kv, managerKeys.schedulerClusterPrefix(cluster.id)))
        .map((r) => r.value)
        .filter((s) => s.features.includes('schedule') && isActive(s, now(), config.schedulerKeepAliveInterval));
      if (active.length > 0) {
        return c.json({ scheduler_cluster_id: cluster.id, schedulers: active.map((s) => ({ ip: s.ip, port: s.port, hostname: s.hostname })) });
      }
    }
    metrics?.searchFailure.inc();
    throw new NotFoundError('no active scheduler serves this host');
  });
  app.post('/api/v1/schedulers', schedAuth, async (c) => {
    const req = await body(c, schedulerRegisterSchema);
    if (!(await kv.get(managerKeys.cluster(req.scheduler_cluster_id)))) {
      throw new InvalidError('invalid request', { details: { fields: { scheduler_cluster_id: `scheduler cluster ${req.scheduler_cluster_id} does not exist` } } });
    }
    const key = managerKeys.scheduler(req.scheduler_cluster_id, req.hostname, req.ip);
    for (let attempt = 0; attempt < 10; attempt++) {
      const cur = await kv.get<SchedulerRecord>(key);
      const id = cur?.value.id ?? (await nextId(kv, 'scheduler'));
      const rec: SchedulerRecord = {
        id,
        hostname: req.hostname,
        ip: req.ip,
        port: req.port,
        idc: req.idc,
        location: req.location,
        features: req.features,
        scheduler_cluster_id: req.scheduler_cluster_id,
        keep_alive_interval_ms: req.keep_alive_interval_ms ?? config.schedulerKeepAliveInterval,
        last_keep_alive_at: nowIso(),
        created_at: cur?.value.created_at ?? nowIso(),
        updated_at: nowIso(),
      };
      try {
        if (cur) await kv.update(key, rec, cur.version);
        else await kv.transact([{ type: 'create', key, value: rec }, { type: 'put', key: managerKeys.schedulerId(id), value: { key } }]);
        return c.json(schedulerView(rec));
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
      }
    }
    throw new ConflictError('scheduler registration raced; retry');
  });
  app.post('/api/v1/schedulers/keepalive', schedAuth, async (c) => {
    const req = await body(c, keepAliveSchema);
    const rec = await casUpdate<SchedulerRecord>(kv, managerKeys.scheduler(req.scheduler_cluster_id, req.hostname, req.ip), (s) => ({ ...s, last_keep_alive_at: nowIso() }));
    return c.json(schedulerView(rec.value));
  });
  app.get('/api/v1/schedulers', userAuth, async (c) => {
    const q = query(c, pageQuery.extend({ scheduler_cluster_id: z.coerce.number().int().positive().optional(), state: z.enum(['active', 'inactive']).optional() }));
    const prefix = q.scheduler_cluster_id ? managerKeys.schedulerClusterPrefix(q.scheduler_cluster_id) : managerKeys.schedulerPrefix();
    const all = (await listAll<SchedulerRecord>(kv, prefix)).map((r) => schedulerView(r.value)).filter((s) => !q.state || s.state === q.state);
    return c.json(paginate(c, all, q.page, q.per_page));
  });
  app.get('/api/v1/schedulers/:id', userAuth, async (c) => {
    const idx = await kv.get<{ key: string }>(managerKeys.schedulerId(idParam(c)));
    const rec = idx && (await kv.get<SchedulerRecord>(idx.value.key));
    if (!rec) throw new NotFoundError('scheduler not found');
    return c.json(schedulerView(rec.value));
  });

  // ---------------------------------------------------------------- jobs
  app.post('/api/v1/jobs/:id/report', schedAuth, async (c) => {
    const id = idParam(c);
    const req = await body(c, reportSchema);
    metrics?.jobReports.inc({ state: req.state });
    const job = await reportJob(jobDeps, id, req);
    const mine = job.result.job_states.find((s) => s.scheduler_cluster_id === req.scheduler_cluster_id);
    if (job.state !== 'PENDING') logger.info('job finished', { jobId: id, state: job.state });
    return c.json({ id, state: job.state, cluster_state: mine?.state ?? null });
  });
  for (const [prefix, auth] of [
    ['/api/v1/jobs', userAuth],
    ['/oapi/v1/jobs', patAuth],
  ] as const) {
    app.post(prefix, auth, async (c) => {
      let raw: unknown;
      try {
        raw = await c.req.json();
      } catch {
        throw new InvalidError('invalid request', { details: { fields: { '(body)': 'expected a JSON body' } } });
      }
      const type = typeof (raw as { type?: unknown })?.type === 'string' ? String((raw as { type: string }).type) : 'unknown';
      metrics?.createJob.inc({ name: type });
      const job = await createJob(jobDeps, raw, c.get('principal').userId);
      metrics?.createJobSuccess.inc({ name: job.type });
      logger.info('job created', { jobId: job.id, type: job.type, clusters: job.scheduler_clusters.map((x) => x.id) });
      return c.json(publicJob(job));
    });
    app.get(prefix, auth, async (c) => {
      const q = query(c, listJobsQuerySchema);
      const jobs = await listJobs(jobDeps, q);
      return c.json(paginate(c, jobs, q.page, q.per_page).map(publicJob));
    });
    app.get(`${prefix}/:id`, auth, async (c) => c.json(publicJob(await getJob(jobDeps, idParam(c)))));
    app.patch(`${prefix}/:id`, auth, async (c) => {
      const id = idParam(c);
      const req = await body(c, patchJobSchema);
      const rec = await casUpdate<JobRecord>(kv, managerKeys.job(id), (j) => ({ ...j, ...req, updated_at: nowIso() }));
      return c.json(publicJob(rec.value));
    });
    app.delete(`${prefix}/:id`, auth, async (c) => {
      const id = idParam(c);
      if (!(await kv.delete(managerKeys.job(id)))) throw new NotFoundError(`job ${id} not found`);
      return c.json({});
    });
  }

  return app;
}
