/** Schedulers: registration and keepalive (scheduler secret), listing, and the agents' search. */
import { z } from 'zod';
import { ConflictError, InvalidError, NotFoundError } from '../../../adapters/errors.js';
import { managerKeys } from '../../../adapters/keys.js';
import { redactConfig } from '../../../adapters/log.js';
import { body, decimalQueryInt, idParam, pageQuery, paginate, query } from '../http.js';
import { isActive } from '../jobs.js';
import type { ClusterRecord, SchedulerRecord } from '../models.js';
import { rankClusters } from '../searcher.js';
import { casUpdate, listAll, nextId } from '../store.js';
import type { RouteModule } from './context.js';

const hostnameSchema = z.string().min(1).max(256).regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, 'a hostname: letters, digits, _ . - only');
export const schedulerRegisterSchema = z.strictObject({
  hostname: hostnameSchema,
  ip: z.union([z.ipv4(), z.ipv6()]),
  port: z.number().int().min(1).max(65535),
  idc: z.string().max(1024).default(''),
  location: z.string().max(1024).default(''),
  features: z.array(z.enum(['schedule', 'preheat'])).default(['schedule', 'preheat']),
  scheduler_cluster_id: z.number().int().positive(),
  keep_alive_interval_ms: z.number().int().min(100).max(3_600_000).optional(),
  /** The scheduler's effective configuration, redacted (shown on the console's configuration page). */
  config: z.record(z.string(), z.unknown()).optional(),
});
export const keepAliveSchema = z.strictObject({
  hostname: hostnameSchema,
  ip: z.union([z.ipv4(), z.ipv6()]),
  scheduler_cluster_id: z.number().int().positive(),
});
export const searchQuerySchema = z.object({
  hostname: z.string().max(256).optional(),
  ip: z.string().max(64).optional(),
  idc: z.string().max(1024).optional(),
  location: z.string().max(1024).optional(),
});
export const schedulerListQuerySchema = pageQuery.extend({ scheduler_cluster_id: decimalQueryInt(1).optional(), state: z.enum(['active', 'inactive']).optional() });

export const schedulerRoutes: RouteModule = (app, ctx) => {
  const { kv, config, metrics, userAuth, schedAuth, now, nowIso } = ctx;
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
        // Redacted again: what a scheduler sends is never trusted to be clean.
        ...(req.config ? { config: redactConfig(req.config) } : cur?.value.config ? { config: cur.value.config } : {}),
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
    const q = query(c, schedulerListQuerySchema);
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
};
