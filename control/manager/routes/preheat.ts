/**
 * The preheat call Dragonfly's guides teach (`POST /api/v1/preheat`, `GET /api/v1/preheat/{id}`,
 * often from a Kubernetes CronJob), as an alias onto the job API: an image reference such as
 * `harbor.example.com/production/myapp:v2.0.0` becomes its manifest URL, and the job is an
 * ordinary preheat job. Auth: a personal access token with the `job` scope.
 */
import type { MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { InvalidError } from '../../../adapters/errors.js';
import { type AuthEnv, tokenAuth } from '../auth.js';
import { UnauthorizedError } from '../errors.js';
import { body, idParam } from '../http.js';
import { MANIFEST_URL, createJob, getJob } from '../jobs.js';
import type { RouteModule } from './context.js';

export const TOKEN_HINT =
  'a personal access token with the "job" scope is required (Authorization: Bearer <token>): create one in the console under Tokens, or POST /api/v1/personal-access-tokens {"name":"preheat","scopes":["job"],"expired_at":"2030-01-01T00:00:00Z"} signed in as root';

const LOCAL = /^(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?$/;

/**
 * An image reference or manifest URL to its manifest URL. `nginx` → Docker Hub library/nginx:latest;
 * a registry without a scheme is https, except a loopback one (http, as Docker treats it).
 * Returns undefined when `ref` is not a reference.
 */
export function manifestUrl(ref: string): string | undefined {
  if (MANIFEST_URL.test(ref)) return ref;
  const m = /^(?:(https?):\/\/)?([^@]+?)(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(sha256:[a-f0-9]{64}))?$/.exec(ref);
  if (!m) return undefined;
  const [, scheme, path, tag, digest] = m;
  const parts = path.split('/');
  if (parts.some((p) => !p)) return undefined;
  let registry = 'registry-1.docker.io';
  if (parts.length > 1 && (/[.:]/.test(parts[0]) || parts[0] === 'localhost')) registry = parts.shift()!;
  else if (parts.length === 1) parts.unshift('library');
  const repo = parts.join('/');
  if (!/^[a-z0-9]+(?:[._-]+[a-z0-9]+|__)*(?:\/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*$/.test(repo)) return undefined;
  const proto = scheme ?? (LOCAL.test(registry) ? 'http' : 'https');
  return `${proto}://${registry}/v2/${repo}/manifests/${digest ?? tag ?? 'latest'}`;
}

const preheatSchema = z.strictObject({
  type: z.enum(['image', 'file']),
  url: z.string().min(1).max(4096),
  scope: z.enum(['', 'single_seed_peer', 'all_seed_peers', 'all_peers']).optional(),
  headers: z.record(z.string(), z.string()).optional(),
  username: z.string().max(1024).optional(),
  password: z.string().max(1024).optional(),
  platform: z.string().max(64).optional(),
  tag: z.string().max(1024).optional(),
  filtered_query_params: z.string().max(1024).optional(),
  scheduler_cluster_ids: z.array(z.number().int().positive()).max(1000).optional(),
  timeout: z.number().int().nonnegative().optional(),
});

const STATUS: Record<string, string> = { PENDING: 'RUNNING', SUCCESS: 'SUCCESS', FAILURE: 'FAIL' };

export const preheatRoutes: RouteModule = (app, ctx) => {
  const { kv, jobDeps, now } = ctx;
  const inner = tokenAuth(kv, now, 'job');
  const auth: MiddlewareHandler<AuthEnv> = async (c, next) => {
    try {
      await inner(c, next);
    } catch (err) {
      if (err instanceof UnauthorizedError) throw new UnauthorizedError(TOKEN_HINT);
      throw err;
    }
  };

  const view = (job: Awaited<ReturnType<typeof getJob>>) => ({
    id: String(job.id),
    job_id: job.id,
    state: job.state,
    // Dragonfly's v1 preheat answers status RUNNING | SUCCESS | FAIL.
    status: STATUS[job.state] ?? job.state,
    start_time: job.created_at,
    finish_time: job.state === 'PENDING' ? null : job.updated_at,
    scheduler_clusters: job.result.job_states.map((s) => ({ id: s.scheduler_cluster_id, state: s.state, error: s.error || null })),
  });

  app.post('/api/v1/preheat', auth, async (c) => {
    const req = await body(c, preheatSchema);
    const url = req.type === 'image' ? manifestUrl(req.url) : req.url;
    if (!url) {
      throw new InvalidError('invalid request', {
        details: { fields: { url: 'expected an image reference (registry/repository:tag or @sha256:digest) or <scheme>://<registry>/v2/<repo>/manifests/<ref>' } },
      });
    }
    const { scheduler_cluster_ids, ...rest } = req;
    const job = await createJob(jobDeps, { type: 'preheat', args: { ...rest, url }, scheduler_cluster_ids }, c.get('principal').userId, c.req.header());
    return c.json(view(job));
  });
  app.get('/api/v1/preheat/:id', auth, async (c) => c.json(view(await getJob(jobDeps, idParam(c)))));
};
