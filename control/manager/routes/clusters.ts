/**
 * Clusters: the façade where one record is both Dragonfly's scheduler cluster and seed-peer cluster
 * (same id), writable on /api/v1 and /oapi/v1, plus the read-only scheduler-/seed-peer-cluster views.
 */
import { z } from 'zod';
import { ConflictError, NotFoundError } from '../../../adapters/errors.js';
import type { KvStore } from '../../../adapters/kv/port.js';
import { managerKeys } from '../../../adapters/keys.js';
import { body, idParam, pageQuery, paginate, query } from '../http.js';
import { type ClusterRecord, publicCluster } from '../models.js';
import { compileHostnamePattern } from '../searcher.js';
import { listAll, nextId } from '../store.js';
import type { RouteModule } from './context.js';

export const cidrSchema = z.string().max(64).refine((s) => {
  const [ip, bits, extra] = s.split('/');
  if (extra !== undefined || !ip) return false;
  const v4 = z.ipv4().safeParse(ip).success;
  const v6 = z.ipv6().safeParse(ip).success;
  if (!v4 && !v6) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return Number.isInteger(n) && n >= 0 && n <= (v4 ? 32 : 128);
}, 'expected a CIDR such as 10.0.0.0/8');

export const regexSchema = z.string().max(1024).refine((s) => compileHostnamePattern(s) !== null, 'not a regular expression RE2 accepts (no backreferences or lookaround)');

export const scopesSchema = z.strictObject({
  idc: z.string().max(1024).default(''),
  location: z.string().max(1024).default(''),
  cidrs: z.array(cidrSchema).max(100).default([]),
  hostnames: z.array(regexSchema).max(100).default([]),
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
export const clusterListQuerySchema = pageQuery.extend({ name: z.string().max(40).optional() });

export const clusterRoutes: RouteModule = (app, ctx) => {
  const { kv, config, userAuth, patAuth, nowIso } = ctx;

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
      const q = query(c, clusterListQuerySchema);
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
};
