/**
 * Property-based fuzz of every manager route (issue 14): each route's body and query fields come
 * from the zod schemas the routes parse with; one field at a time gets a value that is bad for it
 * (wrong type, past any cap, NUL, lone surrogate, ...), or the path id a spelling that is not a
 * decimal id, or the auth a forged / wrong-kind / missing credential. Every answer must be a 4xx
 * (never 5xx, never 2xx), every 400 must name a field, the store and the queue must be unchanged,
 * and no planted secret may appear in any response or log line.
 */
import fc from 'fast-check';
import { sign } from 'hono/jwt';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { MemoryKvStore } from '../../adapters/kv/memory.js';
import { jobQueue } from '../../adapters/keys.js';
import { createLogger } from '../../adapters/log.js';
import { MemoryQueue } from '../../adapters/queue/memory.js';
import { createApp } from '../../control/manager/app.js';
import { bootstrap } from '../../control/manager/bootstrap.js';
import { managerConfig } from '../../control/manager/config.js';
import { createJobSchema, listJobsQuerySchema, patchJobSchema, preheatArgsSchema, reportSchema, taskArgsSchema } from '../../control/manager/jobs.js';
import { pageQuery } from '../../control/manager/http.js';
import { clusterCreateSchema, clusterListQuerySchema, clusterPatchSchema, scopesSchema } from '../../control/manager/routes/clusters.js';
import { keepAliveSchema, schedulerListQuerySchema, schedulerRegisterSchema, searchQuerySchema } from '../../control/manager/routes/schedulers.js';
import { tokenCreateSchema, tokenListQuerySchema, tokenPatchSchema } from '../../control/manager/routes/tokens.js';
import { resetPasswordSchema, signinSchema, userCreateSchema, userPatchSchema } from '../../control/manager/routes/users.js';

const ROOT_PASSWORD = 'planted-root-Password-1';
const SCHEDULER_SECRET = 'planted-scheduler-secret-0123456789';
const JWT_SECRET = 'planted-jwt-secret-0123456789abcdef';
const REGISTRY_PASSWORD = 'planted-registry-pw-42';

type Auth = 'none' | 'jwt' | 'pat' | 'sched';
interface Route {
  method: string;
  path: string;
  auth: Auth;
  body?: { schema: z.ZodType; base: Record<string, unknown>; nested?: Record<string, { schema: z.ZodType; base: Record<string, unknown> }> };
  query?: z.ZodType;
}

const RAW_ID = ':id';
const ROUTES: Route[] = [
  { method: 'POST', path: '/api/v1/users/signin', auth: 'none', body: { schema: signinSchema, base: { name: 'root', password: 'not-the-password' } } },
  { method: 'POST', path: '/api/v1/users', auth: 'jwt', body: { schema: userCreateSchema, base: { name: 'fuzzer', password: 'password-123' } } },
  { method: 'GET', path: '/api/v1/users', auth: 'jwt', query: pageQuery },
  { method: 'GET', path: `/api/v1/users/${RAW_ID}`, auth: 'jwt' },
  { method: 'PATCH', path: `/api/v1/users/${RAW_ID}`, auth: 'jwt', body: { schema: userPatchSchema, base: { email: 'a@b.c' } } },
  { method: 'POST', path: `/api/v1/users/${RAW_ID}/reset_password`, auth: 'jwt', body: { schema: resetPasswordSchema, base: { new_password: 'password-123' } } },
  { method: 'POST', path: '/api/v1/personal-access-tokens', auth: 'jwt', body: { schema: tokenCreateSchema, base: { name: 'fz', expired_at: '2030-01-01T00:00:00Z' } } },
  { method: 'GET', path: '/api/v1/personal-access-tokens', auth: 'jwt', query: tokenListQuerySchema },
  { method: 'GET', path: `/api/v1/personal-access-tokens/${RAW_ID}`, auth: 'jwt' },
  { method: 'PATCH', path: `/api/v1/personal-access-tokens/${RAW_ID}`, auth: 'jwt', body: { schema: tokenPatchSchema, base: { bio: 'x' } } },
  { method: 'DELETE', path: `/api/v1/personal-access-tokens/${RAW_ID}`, auth: 'jwt' },
  ...['/api/v1/clusters', '/oapi/v1/clusters'].flatMap((p): Route[] => {
    const auth: Auth = p.startsWith('/oapi') ? 'pat' : 'jwt';
    return [
      { method: 'POST', path: p, auth, body: { schema: clusterCreateSchema, base: { name: 'fz' }, nested: { scopes: { schema: scopesSchema, base: {} } } } },
      { method: 'GET', path: p, auth, query: clusterListQuerySchema },
      { method: 'GET', path: `${p}/${RAW_ID}`, auth },
      { method: 'PATCH', path: `${p}/${RAW_ID}`, auth, body: { schema: clusterPatchSchema, base: { bio: 'x' } } },
      { method: 'DELETE', path: `${p}/${RAW_ID}`, auth },
    ];
  }),
  { method: 'GET', path: '/api/v1/scheduler-clusters', auth: 'jwt', query: pageQuery },
  { method: 'GET', path: `/api/v1/seed-peer-clusters/${RAW_ID}`, auth: 'jwt' },
  { method: 'GET', path: '/api/v1/schedulers/search', auth: 'none', query: searchQuerySchema },
  { method: 'POST', path: '/api/v1/schedulers', auth: 'sched', body: { schema: schedulerRegisterSchema, base: { hostname: 'h', ip: '127.0.0.1', port: 1, scheduler_cluster_id: 1 } } },
  { method: 'POST', path: '/api/v1/schedulers/keepalive', auth: 'sched', body: { schema: keepAliveSchema, base: { hostname: 'sched-1', ip: '127.0.0.1', scheduler_cluster_id: 1 } } },
  { method: 'GET', path: '/api/v1/schedulers', auth: 'jwt', query: schedulerListQuerySchema },
  { method: 'GET', path: `/api/v1/schedulers/${RAW_ID}`, auth: 'jwt' },
  { method: 'POST', path: `/api/v1/jobs/${RAW_ID}/report`, auth: 'sched', body: { schema: reportSchema, base: { scheduler_cluster_id: 1, state: 'PENDING' } } },
  ...['/api/v1/jobs', '/oapi/v1/jobs'].flatMap((p): Route[] => {
    const auth: Auth = p.startsWith('/oapi') ? 'pat' : 'jwt';
    return [
      {
        method: 'POST',
        path: p,
        auth,
        body: { schema: createJobSchema, base: { type: 'preheat', args: { type: 'file', url: 'http://origin.example/f' } }, nested: { args: { schema: preheatArgsSchema, base: { type: 'file', url: 'http://origin.example/f' } } } },
      },
      { method: 'POST', path: p, auth, body: { schema: createJobSchema, base: { type: 'get_task', args: { task_id: 'abc' } }, nested: { args: { schema: taskArgsSchema, base: { task_id: 'abc' } } } } },
      { method: 'GET', path: p, auth, query: listJobsQuerySchema },
      { method: 'GET', path: `${p}/${RAW_ID}`, auth },
      { method: 'PATCH', path: `${p}/${RAW_ID}`, auth, body: { schema: patchJobSchema, base: { bio: 'x' } } },
      { method: 'DELETE', path: `${p}/${RAW_ID}`, auth },
    ];
  }),
];

/** The field's base zod type, under optional/default/nullable/pipe wrappers. */
function baseType(s: z.ZodType): string {
  let def = (s as unknown as { _zod: { def: Record<string, any> } })._zod.def;
  for (let i = 0; i < 10; i++) {
    if (['optional', 'default', 'prefault', 'nullable', 'readonly'].includes(def.type)) def = def.innerType._zod.def;
    else if (def.type === 'pipe') def = (def.in._zod.def.type === 'transform' ? def.out : def.in)._zod.def;
    else break;
  }
  return def.type;
}

function fieldsOf(schema: z.ZodType): Record<string, z.ZodType> {
  return ((schema as unknown as { shape?: Record<string, z.ZodType> }).shape ?? {}) as Record<string, z.ZodType>;
}

const HUGE = 'h'.repeat(300 * 1024);
/** Values bad for a field of this base type (never null/undefined: many fields are nullish). */
function badValues(type: string): unknown[] {
  const always: unknown[] = ['a\u0000b', 'x\ud800', '\udfff', HUGE, { '\u0000': 1 }, [[[[[[[[[['deep']]]]]]]]]]];
  switch (type) {
    case 'string':
      return [...always, 12345, true, ['s'], { s: 1 }, 'y'.repeat(70_000)];
    case 'number':
    case 'int':
      return [...always, '1', '1e0', 1.5, -1e308, 1e308, Number.MAX_SAFE_INTEGER * 4, true, [1]];
    case 'boolean':
      return [...always, 'true', 1, [true]];
    case 'enum':
      return [...always, 'not-a-member', 7, ['preheat']];
    case 'array':
      // A nested array is still an array (results: unknown[]); not bad here.
      return [...always.slice(0, 5), 'x', 5, { 0: 'a' }, Array.from({ length: 5000 }, () => 'a'.repeat(60))];
    case 'record':
    case 'object':
      return [...always, 'x', 5, [1, 2]];
    default:
      return always;
  }
}

const BAD_IDS = ['1e0', '0x1', '01', '1.0', '%201', '-1', '0', 'abc', '9'.repeat(30), '1%00', '%ED%A0%80', '1;DROP'];
const BAD_QUERY_VALUES = ['%00', 'a%00b', '1e1', '0x1', '-5', '1.5', 'zz-not-valid', '9'.repeat(30), `${'q'.repeat(2000)}`];

async function setup() {
  let nowMs = Date.parse('2026-06-01T00:00:00Z');
  const clock = { now: () => nowMs };
  const kv = new MemoryKvStore(clock.now);
  const queue = new MemoryQueue({ maxReceives: 5, visibilityMs: 30_000 });
  const logs: string[] = [];
  const logger = createLogger({ role: 'manager' }, { level: 'debug', write: (l) => logs.push(l) });
  const config = managerConfig({ auth: { rootPassword: ROOT_PASSWORD, schedulerSecret: SCHEDULER_SECRET, jwtSecret: JWT_SECRET, signinThrottle: { perUser: 1_000_000, perAddress: 1_000_000 } } });
  await bootstrap(kv, { rootPassword: ROOT_PASSWORD, jobRateLimit: 1_000_000, now: new Date(nowMs), logger });
  const app = createApp({ kv, queue, config, clock, logger });
  const call = async (method: string, path: string, token?: string, body?: string) => {
    const res = await app.request(path, { method, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body });
    return { status: res.status, text: await res.text(), headers: JSON.stringify([...res.headers]) };
  };
  const jwt = JSON.parse((await call('POST', '/api/v1/users/signin', undefined, JSON.stringify({ name: 'root', password: ROOT_PASSWORD }))).text).token as string;
  const pat = JSON.parse((await call('POST', '/api/v1/personal-access-tokens', jwt, JSON.stringify({ name: 'fuzz-pat', expired_at: '2030-01-01T00:00:00Z' }))).text).token as string;
  await call('POST', '/api/v1/schedulers', SCHEDULER_SECRET, JSON.stringify({ hostname: 'sched-1', ip: '127.0.0.1', port: 1, scheduler_cluster_id: 1 }));
  const job = await call('POST', '/api/v1/jobs', jwt, JSON.stringify({ type: 'preheat', args: { type: 'file', url: 'http://origin.example/f', username: 'u', password: REGISTRY_PASSWORD } }));
  expect(job.status).toBe(200);
  nowMs += 1000;
  const forged = await sign({ id: 1, role: 'root', exp: Math.floor(nowMs / 1000) + 3600 }, 'not-the-jwt-secret-0123456789', 'HS256');
  const expired = await sign({ id: 1, role: 'root', exp: Math.floor(nowMs / 1000) - 10 }, JWT_SECRET, 'HS256');
  const snapshot = async () =>
    JSON.stringify((await kv.list('', { limit: 10_000 })).items.filter((r) => !/mgr-signin-failures|mgr-job-ratelimit/.test(r.key)).map((r) => [r.key, r.value, r.version]));
  return { kv, queue, logs, call, tokens: { jwt, pat, sched: SCHEDULER_SECRET, none: undefined } as Record<Auth, string | undefined>, forged, expired, snapshot, secrets: [ROOT_PASSWORD, SCHEDULER_SECRET, JWT_SECRET, REGISTRY_PASSWORD, pat, jwt] };
}

type Case =
  | { kind: 'body'; route: Route; path: string[]; value: unknown }
  | { kind: 'json'; route: Route; raw: string }
  | { kind: 'query'; route: Route; field: string; value: string }
  | { kind: 'id'; route: Route; id: string }
  | { kind: 'auth'; route: Route; token: string | undefined };

function cases(forged: string, expired: string, jwt: string, pat: string): fc.Arbitrary<Case> {
  const arbs: fc.Arbitrary<Case>[] = [];
  for (const route of ROUTES) {
    if (route.body) {
      const { schema, base, nested } = route.body;
      const targets: Array<[string[], z.ZodType]> = Object.entries(fieldsOf(schema)).map(([k, s]) => [[k], s]);
      for (const [parent, n] of Object.entries(nested ?? {})) for (const [k, s] of Object.entries(fieldsOf(n.schema))) targets.push([[parent, k], s]);
      arbs.push(
        fc.constantFrom(...targets).chain(([path, s]) => fc.constantFrom(...badValues(baseType(s))).map((value): Case => ({ kind: 'body', route, path, value }))),
        fc.constantFrom('', '{', 'null', '[]', '"s"', '1', '{"a":', '\u0000', JSON.stringify({ ...base, zz_unknown: 'x' }).replace('}', ',}')).map((raw): Case => ({ kind: 'json', route, raw })),
      );
    }
    if (route.query) {
      const qf = Object.keys(fieldsOf(route.query));
      if (qf.length) arbs.push(fc.record({ field: fc.constantFrom(...qf), value: fc.constantFrom(...BAD_QUERY_VALUES) }).map((r): Case => ({ kind: 'query', route, ...r })));
    }
    if (route.path.includes(RAW_ID)) arbs.push(fc.constantFrom(...BAD_IDS).map((id): Case => ({ kind: 'id', route, id })));
    if (route.auth !== 'none') {
      const wrong = route.auth === 'pat' ? [jwt, SCHEDULER_SECRET] : route.auth === 'sched' ? [jwt, pat] : [pat, SCHEDULER_SECRET, forged, expired];
      arbs.push(fc.constantFrom(undefined, 'garbage', `${jwt}x`, ...wrong).map((token): Case => ({ kind: 'auth', route, token })));
    }
  }
  return fc.oneof(...arbs);
}

/** Whether a query value is bad for this field (a few values are fine for free-text fields). */
function queryValueBad(route: Route, field: string, value: string): boolean {
  const t = baseType(fieldsOf(route.query!)[field]);
  if (value.includes('%00')) return true;
  if (t === 'string') return value.length > 1024 + 3 || (field === 'hostname' && value.length > 256) || (field === 'ip' && value.length > 64);
  return true;
}

describe('fuzz: every manager route', () => {
  it('bad input is 4xx naming the field, never 5xx or 2xx; the store, the queue and every secret stay put', async () => {
    const env = await setup();
    const before = await env.snapshot();
    const queued = (await env.queue.receive(jobQueue('1'), { visibilityMs: 1 })).length;
    const seen: string[] = [];
    await fc.assert(
      fc.asyncProperty(cases(env.forged, env.expired, env.tokens.jwt!, env.tokens.pat!), async (c) => {
        const r = c.route;
        let path = r.path.replace(RAW_ID, '1');
        let token = env.tokens[r.auth];
        let body: string | undefined = r.body ? JSON.stringify(r.body.base) : undefined;
        let mustFail = true;
        if (c.kind === 'body') {
          const b = structuredClone(r.body!.base) as Record<string, any>;
          if (c.path.length === 2) b[c.path[0]] = { ...(r.body!.nested![c.path[0]].base as object), [c.path[1]]: c.value };
          else b[c.path[0]] = c.value;
          body = JSON.stringify(b);
        } else if (c.kind === 'json') body = c.raw;
        else if (c.kind === 'id') path = r.path.replace(RAW_ID, c.id);
        else if (c.kind === 'query') {
          path = `${path}?${c.field}=${c.value}`;
          mustFail = queryValueBad(r, c.field, c.value);
        } else token = c.token;
        const res = await env.call(r.method, path, token, body);
        const { route: _r, ...what } = c;
        const label = `${r.method} ${path.slice(0, 120)} ${c.kind} ${JSON.stringify(what).slice(0, 300)} -> ${res.status} ${res.text.slice(0, 300)}`;
        seen.push(`${r.method} ${r.path}`);
        expect(res.status, label).toBeLessThan(500);
        if (mustFail) {
          expect(res.status, label).toBeGreaterThanOrEqual(400);
          if (res.status === 400) expect(Object.keys(JSON.parse(res.text).fields ?? {}).length, label).toBeGreaterThan(0);
        }
        for (const s of env.secrets.slice(0, 4)) expect(res.text + res.headers, `${label}: planted secret`).not.toContain(s);
      }),
      { numRuns: 3000, seed: Number(process.env.FUZZ_SEED ?? Date.now() % 100000) },
    );
    expect(await env.snapshot()).toBe(before);
    expect((await env.queue.receive(jobQueue('1'), { visibilityMs: 1, max: 10 })).length).toBe(queued);
    const log = env.logs.join('\n');
    expect(log.length).toBeGreaterThan(0);
    for (const s of env.secrets) expect(log).not.toContain(s);
    // Every route was tried.
    expect(new Set(seen).size).toBe(new Set(ROUTES.map((x) => `${x.method} ${x.path}`)).size);
  }, 120_000);
});
