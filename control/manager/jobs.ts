/**
 * Jobs: Dragonfly-compatible request schemas (research/dragonfly.md §1.2–1.6), creation with
 * fan-out through the queue, scheduler reports and the state machine.
 *
 * Crash safety — "enqueue first, idempotent consumer": creation allocates the id, sends one message
 * per target cluster (dedup id job-<id>-cluster-<cid>), and only then stores the job. A crash between
 * the two leaves messages for a job nobody was told about; the worker finds no job when it reports
 * (404) and drops the message. A crash after both is an ordinary job. So no stored job ever lacks
 * its messages. Credentials travel only in the messages, sealed (scheduler/job/sealed.ts); the stored
 * args are redacted.
 *
 * Per-cluster state transitions (anything else is ignored, never an error, so reports are idempotent):
 *   PENDING → PENDING (progress) | SUCCESS | FAILURE;   SUCCESS, FAILURE → (terminal)
 * Job state = FAILURE if any cluster failed, else PENDING if any is pending, else SUCCESS (Dragonfly's
 * GetGroupJobState). A PENDING job past its deadline becomes FAILURE when next read or reported.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { ConflictError, InvalidError, NotFoundError, UnavailableError } from '../../adapters/errors.js';
import type { KvStore } from '../../adapters/kv/port.js';
import type { Queue } from '../../adapters/queue/port.js';
import { REDACTED } from '../../adapters/log.js';
import { RateLimitedError } from './errors.js';
import { jobMessageDedupId, jobQueue, managerKeys } from '../../adapters/keys.js';
import type { JobMessage } from '../../scheduler/protocol/job.js';
import type { ClusterRecord, JobClusterState, JobRecord, JobState, JobType, SchedulerRecord } from './models.js';
import { casUpdate, listAll, nextId } from './store.js';
import { decimalQueryInt, invalid } from './http.js';
import { seal } from '../../scheduler/job/sealed.js';
import { MAX_ARG_LENGTH, MAX_HEADERS, MAX_HEADER_VALUE, MAX_URLS, MAX_URL_LENGTH } from '../../scheduler/job/limits.js';

export { invalid };

const MIB = 1024 * 1024;
export const DEFAULT_CONCURRENT_TASK_COUNT = 8;
export const DEFAULT_CONCURRENT_PEER_COUNT = 500;
export const MANIFEST_URL = /^(.*):\/\/(.*)\/v2\/(.*)\/manifests\/(.*)$/;

/** Harbor sends "" for unset strings and 0 for unset numbers: both mean "default". */
const optStr = z
  .string()
  .max(MAX_ARG_LENGTH)
  .nullish()
  .transform((v) => (v ? v : undefined));

/**
 * A job URL: bounded (scheduler/job/limits.ts, so the worker's report about it always fits) and
 * without userinfo, which would be stored in the job's args and echoed in error text. Credentials
 * go in `username`/`password` or `headers`, which are never stored or returned.
 */
const jobUrl = z
  .string()
  .max(MAX_URL_LENGTH)
  .superRefine((s, ctx) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not a URL' });
      return;
    }
    if (u.username || u.password) ctx.addIssue({ code: 'custom', message: 'credentials in the URL are not allowed: use username/password or headers' });
  });
const optUrl = jobUrl
  .nullish()
  .or(z.literal(''))
  .transform((v) => (v ? v : undefined));
const optInt = (min: number, max: number) =>
  z
    .number()
    .int()
    .nullish()
    .transform((v) => (v ? v : undefined))
    .pipe(z.number().int().min(min).max(max).optional());

const timeoutNs = z
  .number()
  .int()
  .nonnegative()
  .nullish()
  .transform((v) => (v ? v : undefined));

export const preheatArgsSchema = z
  .object({
    type: z.enum(['image', 'file']),
    url: optUrl,
    urls: z.array(jobUrl).max(MAX_URLS).nullish(),
    piece_length: optInt(4 * MIB, 64 * MIB),
    tag: optStr,
    application: optStr,
    filtered_query_params: optStr,
    headers: z
      .record(z.string().min(1).max(256), z.string().max(MAX_HEADER_VALUE))
      .refine((h) => Object.keys(h).length <= MAX_HEADERS, `at most ${MAX_HEADERS} headers`)
      .nullish(),
    username: optStr,
    password: optStr,
    platform: optStr.pipe(z.string().regex(/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/, 'expected os/arch[/variant]').optional()),
    scope: z
      .enum(['', 'single_seed_peer', 'all_seed_peers', 'all_peers'])
      .nullish()
      .transform((v) => (v ? v : 'single_seed_peer')),
    ips: z.array(z.union([z.ipv4(), z.ipv6()])).max(100).nullish(),
    count: optInt(1, 200),
    percentage: optInt(1, 100),
    concurrent_task_count: optInt(1, 100),
    concurrent_peer_count: optInt(1, 1000),
    timeout: timeoutNs,
  })
  .superRefine((a, ctx) => {
    if (a.type === 'image') {
      if (!a.url) ctx.addIssue({ code: 'custom', path: ['url'], message: 'required for an image preheat' });
      else if (!MANIFEST_URL.test(a.url)) ctx.addIssue({ code: 'custom', path: ['url'], message: 'expected <scheme>://<registry>/v2/<repo>/manifests/<ref>' });
    } else if (!a.url && !(a.urls && a.urls.length > 0)) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'url or urls is required' });
    }
  });

export const taskArgsSchema = z
  .object({
    task_id: optStr,
    url: optUrl,
    piece_length: optInt(4 * MIB, 64 * MIB),
    tag: optStr,
    application: optStr,
    filtered_query_params: optStr,
    content_for_calculating_task_id: z.string().max(MAX_URL_LENGTH).nullish().transform((v) => (v ? v : undefined)),
    concurrent_peer_count: optInt(1, 1000),
    timeout: timeoutNs,
  })
  .superRefine((a, ctx) => {
    if (!a.task_id && !a.url && !a.content_for_calculating_task_id) {
      ctx.addIssue({ code: 'custom', path: ['task_id'], message: 'task_id, url or content_for_calculating_task_id is required' });
    }
  });

export type PreheatArgs = z.output<typeof preheatArgsSchema>;
export type TaskArgs = z.output<typeof taskArgsSchema>;

export const createJobSchema = z.object({
  bio: z.string().max(1024).nullish(),
  type: z.enum(['preheat', 'get_task', 'delete_task'], { message: 'unknown job type: expected preheat, get_task or delete_task' }),
  args: z.record(z.string(), z.unknown()).nullish(),
  user_id: z.number().int().nonnegative().nullish(),
  scheduler_cluster_ids: z.array(z.number().int().positive()).max(1000).nullish(),
  seed_peer_cluster_ids: z.array(z.number().int().positive()).max(1000).nullish(),
});

export const patchJobSchema = z.strictObject({
  bio: z.string().max(1024).optional(),
  user_id: z.number().int().nonnegative().optional(),
});

export const listJobsQuerySchema = z.object({
  type: z.enum(['preheat', 'get_task', 'delete_task']).optional(),
  state: z.enum(['PENDING', 'RECEIVED', 'STARTED', 'RETRY', 'SUCCESS', 'FAILURE']).optional(),
  user_id: decimalQueryInt(0).optional(),
  page: decimalQueryInt(1).default(1),
  per_page: decimalQueryInt(1, 1000).default(10),
});

export const reportSchema = z.strictObject({
  scheduler_cluster_id: z.number().int().positive(),
  state: z.enum(['PENDING', 'SUCCESS', 'FAILURE']),
  results: z.array(z.unknown()).max(1000).optional(),
  error: z.string().max(64 * 1024).optional(),
  progress: z.strictObject({ done: z.number().int().nonnegative(), total: z.number().int().nonnegative() }).optional(),
});
export type JobReport = z.output<typeof reportSchema>;


/** Removes credentials before args are stored or returned: password dropped, header values hidden. */
export function redactArgs(args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...args };
  delete out.password;
  if (out.headers && typeof out.headers === 'object') {
    out.headers = Object.fromEntries(Object.keys(out.headers as object).map((k) => [k, REDACTED]));
  }
  return out;
}

/** Dragonfly's GetGroupJobState over the per-cluster states. */
export function aggregateState(states: JobClusterState[]): JobState {
  if (states.some((s) => s.state === 'FAILURE')) return 'FAILURE';
  if (states.some((s) => s.state === 'PENDING')) return 'PENDING';
  return 'SUCCESS';
}

function recompute(job: JobRecord, nowIso: string): JobRecord {
  const state = aggregateState(job.result.job_states);
  return { ...job, state, updated_at: nowIso, result: { ...job.result, state, updated_at: nowIso } };
}

/** The job with every PENDING cluster failed for timeout, or undefined when not yet due. */
export function applyTimeout(job: JobRecord, nowMs: number): JobRecord | undefined {
  if (job.state !== 'PENDING' || nowMs < job.deadline_ms) return undefined;
  const nowIso = new Date(nowMs).toISOString();
  const job_states = job.result.job_states.map((s) =>
    s.state === 'PENDING' ? { ...s, state: 'FAILURE' as const, error: s.error || `job timed out after ${Math.round((job.deadline_ms - Date.parse(job.created_at)) / 1000)}s` } : s,
  );
  return recompute({ ...job, result: { ...job.result, job_states } }, nowIso);
}

/** Applies a scheduler's report; undefined when it changes nothing (terminal, unknown cluster, repeat). */
export function applyReport(job: JobRecord, report: JobReport, nowMs: number): JobRecord | undefined {
  const i = job.result.job_states.findIndex((s) => s.scheduler_cluster_id === report.scheduler_cluster_id);
  if (i < 0) return undefined;
  const cur = job.result.job_states[i];
  if (cur.state !== 'PENDING') return undefined;
  const next: JobClusterState = {
    ...cur,
    state: report.state,
    results: report.results ?? cur.results,
    error: report.error ?? cur.error,
    progress: report.progress ?? cur.progress,
  };
  const job_states = job.result.job_states.slice();
  job_states[i] = next;
  return recompute({ ...job, result: { ...job.result, job_states } }, new Date(nowMs).toISOString());
}

export function isActive(s: SchedulerRecord, nowMs: number, defaultIntervalMs: number): boolean {
  const interval = s.keep_alive_interval_ms || defaultIntervalMs;
  return nowMs - Date.parse(s.last_keep_alive_at) <= 3 * interval;
}

export interface JobDeps {
  kv: KvStore;
  queue: Queue;
  now: () => number;
  defaultTimeoutMs: number;
  rateLimitPerCluster: number;
  keepAliveIntervalMs: number;
  /** Seals credentials in queued messages; without it a job carrying credentials is refused. */
  schedulerSecret?: string;
}

/** Token bucket per cluster in the KV store. Throws RateLimitedError when empty. */
async function takeToken(deps: JobDeps, cluster: ClusterRecord): Promise<void> {
  const rate = cluster.scheduler_cluster_config.job_rate_limit || deps.rateLimitPerCluster;
  const key = managerKeys.rateLimit(cluster.id);
  for (let i = 0; i < 20; i++) {
    const now = deps.now();
    const rec = await deps.kv.get<{ tokens: number; at: number }>(key);
    const tokens = rec ? Math.min(rate, rec.value.tokens + ((now - rec.value.at) / 1000) * rate) : rate;
    if (tokens < 1) throw new RateLimitedError();
    try {
      if (rec) await deps.kv.update(key, { tokens: tokens - 1, at: now }, rec.version, { ttlMs: 60_000 });
      else await deps.kv.create(key, { tokens: tokens - 1, at: now }, { ttlMs: 60_000 });
      return;
    } catch (err) {
      if (!(err instanceof ConflictError) && !(err instanceof NotFoundError)) throw err;
    }
  }
  throw new RateLimitedError();
}

async function targetClusters(deps: JobDeps, ids: number[] | null | undefined, feature: string): Promise<ClusterRecord[]> {
  if (ids && ids.length > 0) {
    const out: ClusterRecord[] = [];
    for (const id of [...new Set(ids)]) {
      const rec = await deps.kv.get<ClusterRecord>(managerKeys.cluster(id));
      if (!rec) throw new InvalidError('invalid request', { details: { fields: { scheduler_cluster_ids: `scheduler cluster ${id} does not exist` } } });
      out.push(rec.value);
    }
    return out;
  }
  const clusters = (await listAll<ClusterRecord>(deps.kv, managerKeys.clusterPrefix())).map((r) => r.value);
  const schedulers = (await listAll<SchedulerRecord>(deps.kv, managerKeys.schedulerPrefix())).map((r) => r.value);
  const now = deps.now();
  const served = clusters.filter((c) =>
    schedulers.some((s) => s.scheduler_cluster_id === c.id && s.features.includes(feature) && isActive(s, now, deps.keepAliveIntervalMs)),
  );
  if (served.length === 0) throw new UnavailableError('no active scheduler with the preheat feature in any cluster');
  return served;
}

/** Validates, rate-limits, enqueues and stores a job. Throws InvalidError, RateLimitedError, UnavailableError. */
export async function createJob(deps: JobDeps, body: unknown, userId: number): Promise<JobRecord> {
  const parsed = createJobSchema.safeParse(body);
  if (!parsed.success) throw invalid(parsed.error);
  const req = parsed.data;
  const argsResult = (req.type === 'preheat' ? preheatArgsSchema : taskArgsSchema).safeParse(req.args ?? {});
  if (!argsResult.success) throw invalid(argsResult.error, 'args');
  const args = Object.fromEntries(Object.entries(argsResult.data).filter(([, v]) => v !== undefined && v !== null)) as Record<string, unknown>;
  if (req.type === 'preheat') {
    args.concurrent_task_count ??= DEFAULT_CONCURRENT_TASK_COUNT;
    args.concurrent_peer_count ??= DEFAULT_CONCURRENT_PEER_COUNT;
  }
  const timeoutMs = typeof args.timeout === 'number' ? Math.ceil(args.timeout / 1e6) : deps.defaultTimeoutMs;

  const clusters = await targetClusters(deps, req.scheduler_cluster_ids, 'preheat');
  for (const c of clusters) await takeToken(deps, c);

  const { password, headers, ...plainArgs } = args;
  const credentials = Object.fromEntries(Object.entries({ password, headers }).filter(([, v]) => v !== undefined));
  let sealed: string | undefined;
  if (Object.keys(credentials).length > 0) {
    // No secret means no scheduler can register either; refusing beats queueing a password in clear.
    if (!deps.schedulerSecret) throw new UnavailableError('no scheduler secret is configured (auth.schedulerSecret): credentials cannot be sealed for the queue');
    sealed = seal(deps.schedulerSecret, credentials);
  }

  const id = await nextId(deps.kv, 'job');
  const now = deps.now();
  const nowIso = new Date(now).toISOString();
  const deadline = now + timeoutMs;
  const states: JobClusterState[] = [];
  for (const c of clusters) {
    const task_uuid = `task_${randomUUID()}`;
    const message: JobMessage = { job_id: id, scheduler_cluster_id: c.id, type: req.type, args: plainArgs, deadline_ms: deadline, task_uuid, ...(sealed ? { sealed_credentials: sealed } : {}) };
    await deps.queue.send(jobQueue(String(c.id)), message, { dedupId: jobMessageDedupId(id, c.id) });
    states.push({ task_uuid, task_name: req.type, state: 'PENDING', results: [], error: '', created_at: nowIso, ttl: 0, scheduler_cluster_id: c.id });
  }
  const group = `group_${randomUUID()}`;
  const job: JobRecord = {
    id,
    created_at: nowIso,
    updated_at: nowIso,
    is_del: 0,
    task_id: group,
    bio: req.bio ?? '',
    type: req.type,
    state: 'PENDING',
    args: redactArgs(args),
    result: { group_uuid: group, state: 'PENDING', created_at: nowIso, updated_at: nowIso, job_states: states },
    user_id: req.user_id || userId,
    scheduler_clusters: clusters.map((c) => ({ id: c.id, name: c.name })),
    seed_peer_clusters: clusters.map((c) => ({ id: c.id, name: c.name })),
    deadline_ms: deadline,
  };
  await deps.kv.create(managerKeys.job(id), job);
  return job;
}

/** Reads a job, settling its timeout first. Throws NotFoundError. */
export async function getJob(deps: JobDeps, id: number): Promise<JobRecord> {
  const rec = await deps.kv.get<JobRecord>(managerKeys.job(id));
  if (!rec) throw new NotFoundError(`job ${id} not found`);
  if (!applyTimeout(rec.value, deps.now())) return rec.value;
  return (await casUpdate<JobRecord>(deps.kv, managerKeys.job(id), (j) => applyTimeout(j, deps.now()))).value;
}

/** Records a scheduler's report (idempotent; terminal states never change). Throws NotFoundError. */
export async function reportJob(deps: JobDeps, id: number, report: JobReport): Promise<JobRecord> {
  const key = managerKeys.job(id);
  const rec = await casUpdate<JobRecord>(deps.kv, key, (j) => {
    const timedOut = applyTimeout(j, deps.now());
    return timedOut ?? applyReport(j, report, deps.now());
  });
  return rec.value;
}

/** Every job, newest first, filtered; the caller pages. */
export async function listJobs(deps: JobDeps, q: z.output<typeof listJobsQuerySchema>): Promise<JobRecord[]> {
  const all = (await listAll<JobRecord>(deps.kv, managerKeys.jobPrefix())).map((r) => applyTimeout(r.value, deps.now()) ?? r.value);
  return all
    .filter((j) => (!q.type || j.type === q.type) && (!q.state || j.state === q.state) && (q.user_id === undefined || j.user_id === q.user_id))
    .sort((a, b) => b.id - a.id);
}
