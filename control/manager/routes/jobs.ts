/** Jobs: creation (users, tokens), listing, and the schedulers' reports. Logic lives in ../jobs.ts. */
import { NotFoundError } from '../../../adapters/errors.js';
import { managerKeys } from '../../../adapters/keys.js';
import { body, idParam, paginate, query, rawBody } from '../http.js';
import { createJob, getJob, listJobs, listJobsQuerySchema, patchJobSchema, reportJob, reportSchema } from '../jobs.js';
import { type JobRecord, publicJob } from '../models.js';
import { casUpdate } from '../store.js';
import type { RouteModule } from './context.js';

export const jobRoutes: RouteModule = (app, ctx) => {
  const { kv, logger, metrics, userAuth, patAuth, schedAuth, jobDeps, nowIso } = ctx;

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
      const raw = await rawBody(c);
      const type = typeof (raw as { type?: unknown })?.type === 'string' ? String((raw as { type: string }).type) : 'unknown';
      metrics?.createJob.inc({ name: type });
      const job = await createJob(jobDeps, raw, c.get('principal').userId, c.req.header());
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
};
