/**
 * The manager's OpenAPI 3.1 description: a route table (method, path, who may call it, what it does)
 * joined with the zod schemas the handlers parse requests with, turned into JSON Schema by
 * z.toJSONSchema — so a field added to a schema appears here without an edit. Served at
 * /openapi.json (registerOpenApi) and rendered into infra/docs/api.md. test/manager/openapi.test.ts
 * fails when a route the app registers is missing here (or has no description), or the reverse.
 */
import type { Hono } from 'hono';
import { z } from 'zod';
import { version } from '../../adapters/version.js';
// The request schemas, where the handlers define them.
import { clusterCreateSchema, clusterPatchSchema } from './routes/clusters.js';
import { keepAliveSchema, schedulerRegisterSchema, searchQuerySchema } from './routes/schedulers.js';
import { tokenCreateSchema, tokenPatchSchema } from './routes/tokens.js';
import { resetPasswordSchema, signinSchema, userCreateSchema, userPatchSchema } from './routes/users.js';
import { pageQuery } from './http.js';
import type { AuthEnv } from './auth.js';
import { createJobSchema, listJobsQuerySchema, patchJobSchema, preheatArgsSchema, reportSchema, taskArgsSchema } from './jobs.js';

type Method = 'get' | 'post' | 'patch' | 'put' | 'delete';
/** Who may call a route: nobody in particular, a signed-in user (root only), a personal access token, a scheduler. */
export type Auth = 'none' | 'user' | 'root' | 'pat' | 'scheduler';

export interface RouteDoc {
  method: Method;
  /** Hono syntax (`/api/v1/jobs/:id`). */
  path: string;
  tag: string;
  summary: string;
  description?: string;
  auth: Auth;
  body?: z.ZodType;
  query?: z.ZodType;
  /** Success response: status and what it carries. */
  ok?: { status: number; description: string; contentType?: string };
}

const json200 = (description: string): NonNullable<RouteDoc['ok']> => ({ status: 200, description });

function clusterRoutes(prefix: string, auth: Auth, what: string, whats: string): RouteDoc[] {
  const tag = 'clusters';
  return [
    { method: 'post', path: prefix, tag, auth, summary: `Create a ${what}`, description: 'Scopes (CIDRs, hostname regexes, IDC, location) decide which agents the cluster serves.', body: clusterCreateSchema, ok: json200('The cluster created') },
    { method: 'get', path: prefix, tag, auth, summary: `List ${whats}`, query: pageQuery, ok: json200('One page of clusters; Link and X-Total-Count headers as Dragonfly') },
    { method: 'get', path: `${prefix}/:id`, tag, auth, summary: `Get a ${what}`, ok: json200('The cluster') },
    { method: 'patch', path: `${prefix}/:id`, tag, auth, summary: `Update a ${what}`, body: clusterPatchSchema, ok: json200('The cluster updated') },
    { method: 'delete', path: `${prefix}/:id`, tag, auth, summary: `Delete a ${what}`, description: 'Refused (409) while schedulers are registered in it.', ok: json200('Deleted') },
  ];
}

function jobRoutes(prefix: string, auth: Auth): RouteDoc[] {
  const tag = 'jobs';
  return [
    {
      method: 'post',
      path: prefix,
      tag,
      auth,
      summary: 'Create a job (preheat, get_task, delete_task)',
      description:
        'Stored, then one message per scheduler cluster is queued; answers at once with state PENDING. `args` is a preheat (`type: image|file`) or task job\'s arguments: see the PreheatArgs and TaskArgs schemas. This is the endpoint Harbor\'s Dragonfly provider posts to.',
      body: createJobSchema,
      ok: json200('The job, state PENDING'),
    },
    { method: 'get', path: prefix, tag, auth, summary: 'List jobs', query: listJobsQuerySchema, ok: json200('One page of jobs, newest first') },
    { method: 'get', path: `${prefix}/:id`, tag, auth, summary: 'Get a job', description: 'State PENDING until every scheduler cluster reported, then SUCCESS or FAILURE with per-cluster results.', ok: json200('The job') },
    { method: 'patch', path: `${prefix}/:id`, tag, auth, summary: 'Update a job\'s bio or owner', body: patchJobSchema, ok: json200('The job updated') },
    { method: 'delete', path: `${prefix}/:id`, tag, auth, summary: 'Delete a job', ok: json200('Deleted') },
  ];
}

/** Every route the manager serves. Order is the reference's order. */
export const ROUTES: RouteDoc[] = [
  { method: 'get', path: '/healthy', tag: 'operations', auth: 'none', summary: 'Liveness', ok: json200('"OK"') },
  { method: 'get', path: '/metrics', tag: 'operations', auth: 'none', summary: 'Prometheus metrics', description: 'dragonfly_manager_* (infra/docs/metrics.md). Not served on Lambda.', ok: { status: 200, description: 'Prometheus text format', contentType: 'text/plain' } },
  { method: 'get', path: '/openapi.json', tag: 'operations', auth: 'none', summary: 'This OpenAPI 3.1 description', ok: json200('The document') },

  { method: 'post', path: '/api/v1/users/signin', tag: 'users', auth: 'none', summary: 'Sign in', description: 'Answers an HS256 JWT (`token`) for /api/v1, also set as cookie `jwt`.', body: signinSchema, ok: json200('{token, expire}') },
  { method: 'post', path: '/api/v1/users', tag: 'users', auth: 'root', summary: 'Create a user', body: userCreateSchema, ok: json200('The user (no password hash)') },
  { method: 'get', path: '/api/v1/users', tag: 'users', auth: 'root', summary: 'List users', query: pageQuery, ok: json200('One page of users') },
  { method: 'get', path: '/api/v1/users/:id', tag: 'users', auth: 'user', summary: 'Get a user', description: 'Root, or the user themself.', ok: json200('The user') },
  { method: 'patch', path: '/api/v1/users/:id', tag: 'users', auth: 'root', summary: 'Update a user\'s role, state or email', body: userPatchSchema, ok: json200('The user updated') },
  { method: 'post', path: '/api/v1/users/:id/reset_password', tag: 'users', auth: 'user', summary: 'Change a password', description: 'A user needs their old password; root does not.', body: resetPasswordSchema, ok: json200('{}') },

  { method: 'post', path: '/api/v1/personal-access-tokens', tag: 'tokens', auth: 'user', summary: 'Create a personal access token', description: 'For /oapi/v1 (Harbor, CI). The token is in this answer only; the store keeps its hash.', body: tokenCreateSchema, ok: json200('The token record with `token`') },
  { method: 'get', path: '/api/v1/personal-access-tokens', tag: 'tokens', auth: 'user', summary: 'List personal access tokens', query: pageQuery, ok: json200('One page of tokens (no secrets)') },
  { method: 'get', path: '/api/v1/personal-access-tokens/:id', tag: 'tokens', auth: 'user', summary: 'Get a personal access token', ok: json200('The token record (no secret)') },
  { method: 'patch', path: '/api/v1/personal-access-tokens/:id', tag: 'tokens', auth: 'user', summary: 'Update a personal access token', body: tokenPatchSchema, ok: json200('The token record') },
  { method: 'delete', path: '/api/v1/personal-access-tokens/:id', tag: 'tokens', auth: 'user', summary: 'Revoke a personal access token', ok: json200('Deleted') },

  ...clusterRoutes('/api/v1/clusters', 'root', 'cluster', 'clusters'),
  ...clusterRoutes('/oapi/v1/clusters', 'pat', 'cluster (token scope `cluster`)', 'clusters (token scope `cluster`)'),
  { method: 'get', path: '/api/v1/scheduler-clusters', tag: 'clusters', auth: 'user', summary: 'List scheduler clusters (Dragonfly\'s view of clusters)', ok: json200('Scheduler clusters') },
  { method: 'get', path: '/api/v1/scheduler-clusters/:id', tag: 'clusters', auth: 'user', summary: 'Get a scheduler cluster', ok: json200('The scheduler cluster') },
  { method: 'get', path: '/api/v1/seed-peer-clusters', tag: 'clusters', auth: 'user', summary: 'List seed peer clusters (Dragonfly\'s view of clusters)', ok: json200('Seed peer clusters') },
  { method: 'get', path: '/api/v1/seed-peer-clusters/:id', tag: 'clusters', auth: 'user', summary: 'Get a seed peer cluster', ok: json200('The seed peer cluster') },

  { method: 'get', path: '/api/v1/schedulers/search', tag: 'schedulers', auth: 'none', summary: 'Find the schedulers that serve an agent', description: 'By the agent\'s IP, hostname, IDC and location against the clusters\' scopes; agents cache the answer.', query: searchQuerySchema, ok: json200('Active schedulers of the best-matching cluster') },
  { method: 'post', path: '/api/v1/schedulers', tag: 'schedulers', auth: 'scheduler', summary: 'Register a scheduler', body: schedulerRegisterSchema, ok: json200('The scheduler record') },
  { method: 'post', path: '/api/v1/schedulers/keepalive', tag: 'schedulers', auth: 'scheduler', summary: 'Keep a scheduler active', description: 'Missing keepalives make it inactive (excluded from search).', body: keepAliveSchema, ok: json200('{}') },
  { method: 'get', path: '/api/v1/schedulers', tag: 'schedulers', auth: 'user', summary: 'List schedulers', query: pageQuery, ok: json200('One page of schedulers') },
  { method: 'get', path: '/api/v1/schedulers/:id', tag: 'schedulers', auth: 'user', summary: 'Get a scheduler', ok: json200('The scheduler') },

  { method: 'post', path: '/api/v1/jobs/:id/report', tag: 'jobs', auth: 'scheduler', summary: 'Report a job\'s result for one scheduler cluster', body: reportSchema, ok: json200('{id, state, cluster_state}') },
  ...jobRoutes('/api/v1/jobs', 'user'),
  ...jobRoutes('/oapi/v1/jobs', 'pat'),

  { method: 'post', path: '/api/v1/certificates', tag: 'certificates', auth: 'none', summary: 'Issue a component certificate (the manager as the cluster CA)', description: 'Authorised by the join token (`Authorization: Bearer <security.joinToken>`) for a first certificate, or by a valid certificate of this CA whose key signed the new CSR (renewal). Body `{csr, certificate?, signature?}`.', ok: json200('{certificate_chain: [leaf, ca]}') },
  { method: 'get', path: '/api/v1/certificates/ca', tag: 'certificates', auth: 'none', summary: 'The cluster CA certificate (PEM)', ok: { status: 200, description: 'PEM', contentType: 'application/x-pem-file' } },

  { method: 'post', path: '/api/v1/schedulers/report', tag: 'visibility', auth: 'scheduler', summary: 'Store a scheduler\'s bounded summary of its hosts, peers and tasks', description: 'One KV record per scheduler with a TTL of 3 keepalive intervals (scheduler/report-schema.ts caps its size).', ok: json200('{}') },
  { method: 'get', path: '/api/v1/peers', tag: 'visibility', auth: 'user', summary: 'Hosts and peers the schedulers reported (Dragonfly\'s Peer fields)', ok: json200('Peers') },
  { method: 'get', path: '/api/v1/tasks', tag: 'visibility', auth: 'user', summary: 'Tasks the schedulers reported, paged with a cursor', description: 'Filters `scheduler_cluster_id`, `state`, `host`, `url`; answers `{tasks, next_cursor}`.', ok: json200('One page of tasks') },
  { method: 'get', path: '/api/v1/tasks/:id', tag: 'visibility', auth: 'user', summary: 'A task with the peers holding it and the parent edges between them', ok: json200('The task') },
  { method: 'get', path: '/api/v1/overview', tag: 'visibility', auth: 'user', summary: 'Per cluster: schedulers and seed peers, active peers, tasks in flight, P2P share, back-to-source rate', ok: json200('{clusters}') },
  { method: 'post', path: '/api/v1/preheat', tag: 'jobs', auth: 'pat', summary: 'Preheat (the call Dragonfly guides teach), an alias onto the job API', description: 'Body `{type, url, scope, headers}`; image references without `/v2/…/manifests/` are accepted.', ok: json200('The preheat job') },
  { method: 'get', path: '/api/v1/preheat/:id', tag: 'jobs', auth: 'pat', summary: 'A preheat job created by POST /api/v1/preheat', ok: json200('The preheat job') },

  ...consolePages(),
];

/** The console's HTML pages and assets (control/manager/routes/console.ts): a session cookie, not the JSON API. */
function consolePages(): RouteDoc[] {
  const html = (description: string): NonNullable<RouteDoc['ok']> => ({ status: 200, description, contentType: 'text/html' });
  const page = (method: Method, path: string, summary: string, auth: Auth = 'user'): RouteDoc => ({ method, path, tag: 'console', auth, summary, ok: html(summary) });
  return [
    { method: 'get', path: '/assets/console.css', tag: 'console', auth: 'none', summary: 'Console stylesheet', ok: { status: 200, description: 'CSS', contentType: 'text/css' } },
    { method: 'get', path: '/assets/console.js', tag: 'console', auth: 'none', summary: 'Console script (live parts)', ok: { status: 200, description: 'JavaScript', contentType: 'text/javascript' } },
    page('get', '/signin', 'Console sign-in page', 'none'),
    page('post', '/signin', 'Console sign-in (sets the session cookie)', 'none'),
    page('post', '/signout', 'Console sign-out'),
    page('get', '/', 'Console overview'),
    page('get', '/clusters', 'Console: clusters'),
    page('post', '/clusters', 'Console: create a cluster', 'root'),
    page('get', '/clusters/:id{[0-9]+}', 'Console: one cluster and its scopes'),
    page('post', '/clusters/:id{[0-9]+}', 'Console: edit a cluster (scopes and scheduling limits)', 'root'),
    page('post', '/clusters/:id{[0-9]+}/delete', 'Console: delete a cluster (not the default one)', 'root'),
    page('get', '/schedulers', 'Console: schedulers and seed peers'),
    page('get', '/peers', 'Console: peers'),
    page('get', '/tasks', 'Console: tasks in flight and history'),
    page('get', '/tasks/:id', 'Console: a task and its parent graph'),
    page('get', '/jobs', 'Console: jobs'),
    page('post', '/jobs', 'Console: create a job', 'root'),
    page('get', '/jobs/:id{[0-9]+}', 'Console: one job'),
    page('get', '/tokens', 'Console: personal access tokens'),
    page('post', '/tokens', 'Console: create a token'),
    page('post', '/tokens/:id{[0-9]+}/revoke', 'Console: revoke a token'),
    page('get', '/users', 'Console: users'),
    page('post', '/users', 'Console: create a user', 'root'),
    page('post', '/users/:id{[0-9]+}', "Console: change a user's role or state", 'root'),
    page('post', '/users/password', 'Console: change your password'),
    page('get', '/config', 'Console: effective configuration (secrets redacted)'),
  ];
}

const SECURITY: Record<Exclude<Auth, 'none'>, string> = { user: 'userJwt', root: 'userJwt', pat: 'personalAccessToken', scheduler: 'schedulerSecret' };
const AUTH_TEXT: Record<Auth, string> = {
  none: 'none',
  user: 'user JWT',
  root: 'user JWT, role root',
  pat: 'personal access token',
  scheduler: 'scheduler secret',
};

type Json = Record<string, unknown>;
const toSchema = (s: z.ZodType): Json => {
  const out = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }) as Json;
  delete out.$schema;
  return out;
};

/** `/api/v1/jobs/:id` → `/api/v1/jobs/{id}` */
export const openApiPath = (p: string) => p.replace(/:(\w+)/g, '{$1}');

function operation(r: RouteDoc): Json {
  const params: Json[] = [...r.path.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'integer', minimum: 1 } }));
  if (r.query) {
    const q = toSchema(r.query) as { properties?: Record<string, Json>; required?: string[] };
    for (const [name, schema] of Object.entries(q.properties ?? {})) params.push({ name, in: 'query', required: (q.required ?? []).includes(name), schema });
  }
  const ok = r.ok ?? json200('OK');
  const op: Json = {
    operationId: `${r.method}${openApiPath(r.path).replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase())}`,
    tags: [r.tag],
    summary: r.summary,
    ...(r.description ? { description: r.description } : {}),
    ...(params.length ? { parameters: params } : {}),
    ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: toSchema(r.body) } } } } : {}),
    responses: {
      [String(ok.status)]: { description: ok.description, content: { [ok.contentType ?? 'application/json']: { schema: {} } } },
      default: { description: 'An error: 400 invalid input (with `fields` naming each bad field), 401, 403, 404, 409, 429, 5xx', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    },
    security: r.auth === 'none' ? [] : [{ [SECURITY[r.auth]]: [] }],
  };
  return op;
}

/** The OpenAPI 3.1 document. */
export function openApiDocument(): Json {
  const paths: Record<string, Json> = {};
  for (const r of ROUTES) (paths[openApiPath(r.path)] ??= {})[r.method] = operation(r);
  return {
    openapi: '3.1.0',
    info: {
      title: 'Damselfly manager',
      version,
      description: 'The manager\'s HTTP API, compatible with Dragonfly\'s manager where Dragonfly has the route (Harbor\'s preheat calls /oapi/v1/jobs).',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    paths,
    components: {
      securitySchemes: {
        userJwt: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'From POST /api/v1/users/signin (also accepted as cookie `jwt` or `?token=`).' },
        personalAccessToken: { type: 'http', scheme: 'bearer', description: 'A personal access token with the route\'s scope (`job`, `cluster`); also `?access_token=`.' },
        schedulerSecret: { type: 'http', scheme: 'bearer', description: 'The cluster\'s shared scheduler secret (auth.schedulerSecret).' },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['code', 'message'],
          properties: {
            code: { type: 'string', description: 'Stable error code (INVALID, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, RATE_LIMITED, UNAVAILABLE, INTERNAL)' },
            message: { type: 'string' },
            errors: { type: 'string', description: 'The message again, where Dragonfly clients read it' },
            fields: { type: 'object', additionalProperties: { type: 'string' }, description: 'Bad input: what was expected, by field path' },
          },
        },
        PreheatArgs: toSchema(preheatArgsSchema),
        TaskArgs: toSchema(taskArgsSchema),
      },
    },
  };
}

/** Serves the document at GET /openapi.json on `app` (built once, on first request). */
export function registerOpenApi(app: Hono<AuthEnv>): void {
  let doc: Json | undefined;
  app.get('/openapi.json', (c) => c.json((doc ??= openApiDocument())));
}

/** The API reference (infra/docs/api.md): one table of routes, then each route's inputs. */
export function renderApiReference(): string {
  const doc = openApiDocument() as { paths: Record<string, Record<string, Json>> };
  const out: string[] = [
    '<!-- Generated by control/manager/openapi.ts from its route table and the zod schemas. Do not edit: run',
    '     `DAMSELFLY_UPDATE=1 npx vitest run test/manager/openapi.test.ts`. -->',
    '# Manager API reference',
    '',
    'The manager serves this description as OpenAPI 3.1 at `GET /openapi.json`. Errors are JSON',
    '`{code, message, errors, fields?}` with a stable `code`; bad input is 400 with `fields` naming each',
    'bad field and what was expected.',
    '',
    '| method | path | auth | summary |',
    '|---|---|---|---|',
    ...ROUTES.map((r) => `| ${r.method.toUpperCase()} | \`${r.path}\` | ${AUTH_TEXT[r.auth]} | ${r.summary} |`),
    '',
  ];
  for (const r of ROUTES) {
    const op = doc.paths[openApiPath(r.path)][r.method] as { parameters?: Array<{ name: string; in: string; required: boolean; schema: Json }>; requestBody?: { content: Record<string, { schema: Json }> } };
    out.push(`## ${r.method.toUpperCase()} \`${r.path}\``, '', r.summary + '.' + (r.description ? ` ${r.description}` : ''), '', `Auth: ${AUTH_TEXT[r.auth]}.`, '');
    const rows: string[] = [];
    for (const p of op.parameters ?? []) rows.push(`| ${p.in} | \`${p.name}\` | ${typeText(p.schema)} | ${p.required ? 'yes' : ''} |`);
    const body = op.requestBody?.content['application/json'].schema as { properties?: Record<string, Json>; required?: string[] } | undefined;
    for (const [name, s] of Object.entries(body?.properties ?? {})) rows.push(`| body | \`${name}\` | ${typeText(s)} | ${(body?.required ?? []).includes(name) ? 'yes' : ''} |`);
    if (rows.length) out.push('| in | name | type | required |', '|---|---|---|---|', ...rows, '');
  }
  const schemas = (doc as unknown as { components: { schemas: Record<string, { properties?: Record<string, Json>; required?: string[] }> } }).components.schemas;
  for (const [name, what] of [['PreheatArgs', '`args` of a `preheat` job'], ['TaskArgs', '`args` of a `get_task` or `delete_task` job']] as const) {
    const sch = schemas[name];
    out.push(`## ${name}`, '', `The ${what}.`, '', '| name | type | required |', '|---|---|---|');
    for (const [field, fs] of Object.entries(sch.properties ?? {})) out.push(`| \`${field}\` | ${typeText(fs)} | ${(sch.required ?? []).includes(field) ? 'yes' : ''} |`);
    out.push('');
  }
  return out.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n';
}

function typeText(s: Json): string {
  const x = s as { type?: string | string[]; enum?: unknown[]; anyOf?: Json[]; items?: Json; minimum?: number; maximum?: number; exclusiveMinimum?: number; maxLength?: number; minLength?: number; format?: string; default?: unknown };
  let t: string;
  if (x.enum) t = x.enum.map((v) => `\`${JSON.stringify(v)}\``).join(' \\| ');
  else if (x.anyOf) t = x.anyOf.map(typeText).filter((v) => v !== 'null').join(' or ') + (x.anyOf.some((v) => (v as { type?: string }).type === 'null') ? ' (nullable)' : '');
  else if (x.type === 'array') t = `array of ${x.items ? typeText(x.items) : 'any'}`;
  else t = Array.isArray(x.type) ? x.type.join(' or ') : (x.type ?? 'any');
  const bounds: string[] = [];
  if (x.format) bounds.push(x.format);
  // zod's int() adds the safe-integer range: not worth a reader's attention.
  const min = x.minimum === -Number.MAX_SAFE_INTEGER ? undefined : x.minimum;
  const max = x.maximum === Number.MAX_SAFE_INTEGER ? undefined : x.maximum;
  if (x.exclusiveMinimum !== undefined && max === undefined) bounds.push(`> ${x.exclusiveMinimum}`);
  else if (min !== undefined && max === undefined) bounds.push(`≥ ${min}`);
  else if (max !== undefined) bounds.push(`${min ?? (x.exclusiveMinimum !== undefined ? `> ${x.exclusiveMinimum}` : '')}–${max}`);
  if (x.minLength !== undefined || x.maxLength !== undefined) bounds.push(`length ${x.minLength ?? 0}–${x.maxLength ?? ''}`);
  if (x.default !== undefined) bounds.push(`default \`${JSON.stringify(x.default)}\``);
  return t + (bounds.length ? ` (${bounds.join(', ')})` : '');
}
