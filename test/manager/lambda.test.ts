/** The Lambda entry (control/manager/lambda.ts `handler`) with synthetic Function URL / API Gateway v2 events. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

type Result = { statusCode: number; body: string; headers: Record<string, string>; cookies?: string[]; isBase64Encoded: boolean };
let handler: (event: unknown, ctx: unknown) => Promise<Result>;
const saved = { ...process.env };

function event(method: string, rawPath: string, opts: { query?: string; body?: unknown; form?: Record<string, string>; cookies?: string[]; headers?: Record<string, string>; base64?: boolean; apiGateway?: boolean } = {}) {
  const text = opts.form ? new URLSearchParams(opts.form).toString() : opts.body === undefined ? undefined : JSON.stringify(opts.body);
  return {
    ...(opts.cookies ? { cookies: opts.cookies } : {}),
    version: '2.0',
    routeKey: opts.apiGateway ? `${method} ${rawPath}` : '$default',
    rawPath,
    rawQueryString: opts.query ?? '',
    headers: { host: 'abc.lambda-url.us-east-1.on.aws', 'content-type': opts.form ? 'application/x-www-form-urlencoded' : 'application/json', ...opts.headers },
    requestContext: {
      accountId: '123456789012',
      apiId: opts.apiGateway ? 'api123' : 'abc',
      domainName: 'abc.lambda-url.us-east-1.on.aws',
      domainPrefix: 'abc',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'test' },
      requestId: 'req-1',
      routeKey: opts.apiGateway ? `${method} ${rawPath}` : '$default',
      stage: '$default',
      time: '01/Jan/2026:00:00:00 +0000',
      timeEpoch: 1767225600000,
    },
    body: text === undefined ? undefined : opts.base64 ? Buffer.from(text).toString('base64') : text,
    isBase64Encoded: Boolean(opts.base64),
  };
}
const ctx = { functionName: 'Manager', awsRequestId: 'req-1', getRemainingTimeInMillis: () => 30_000 };

beforeAll(async () => {
  process.env.DAMSELFLY_MANAGER_CONFIG = JSON.stringify({ store: { kv: { kind: 'memory' }, queue: { kind: 'memory' } } });
  process.env.DAMSELFLY_ROOT_PASSWORD = 'lambda-root-password';
  process.env.DAMSELFLY_JWT_SECRET = 'lambda-jwt-secret-0123456789';
  process.env.DAMSELFLY_SCHEDULER_SECRET = 'lambda-scheduler-secret-01234';
  handler = (await import('../../control/manager/lambda.js')).handler as never;
});
afterAll(() => {
  process.env = saved;
});

describe('manager on Lambda', () => {
  it('serves /healthy to a Function URL event', async () => {
    const res = await handler(event('GET', '/healthy'), ctx);
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body)).toBe('OK');
    // No public /metrics on a Function URL.
    expect((await handler(event('GET', '/metrics'), ctx)).statusCode).toBe(404);
  });

  it('signs in (base64 body), sets the jwt cookie, and authorises an API Gateway v2 event', async () => {
    const signin = await handler(event('POST', '/api/v1/users/signin', { body: { name: 'root', password: 'lambda-root-password' }, base64: true }), ctx);
    expect(signin.statusCode).toBe(200);
    const { token } = JSON.parse(signin.body) as { token: string };
    expect(signin.cookies?.some((c) => c.startsWith('jwt='))).toBe(true);
    const clusters = await handler(event('GET', '/api/v1/clusters', { query: 'page=1&per_page=5', headers: { authorization: `Bearer ${token}` }, apiGateway: true }), ctx);
    expect(clusters.statusCode).toBe(200);
    expect(JSON.parse(clusters.body)).toMatchObject([{ id: 1, is_default: true }]);
    expect(clusters.headers.link).toContain('per_page=5');
    const denied = await handler(event('GET', '/api/v1/clusters'), ctx);
    expect(denied.statusCode).toBe(401);
  });

  it('registers a scheduler and takes a Harbor-style job, then 400s a bad one', async () => {
    const reg = await handler(
      event('POST', '/api/v1/schedulers', {
        headers: { authorization: 'Bearer lambda-scheduler-secret-01234' },
        body: { hostname: 's', ip: '127.0.0.1', port: 8002, scheduler_cluster_id: 1 },
      }),
      ctx,
    );
    expect(reg.statusCode).toBe(200);
    const { token } = JSON.parse((await handler(event('POST', '/api/v1/users/signin', { body: { name: 'root', password: 'lambda-root-password' } }), ctx)).body);
    const auth = { authorization: `Bearer ${token}` };
    const job = await handler(
      event('POST', '/api/v1/jobs', { headers: auth, body: { type: 'preheat', args: { type: 'file', url: 'http://127.0.0.1/x', headers: { Authorization: 'Bearer s3cr3t' } }, scheduler_cluster_ids: null } }),
      ctx,
    );
    expect(job.statusCode).toBe(200);
    expect(job.body).not.toContain('s3cr3t');
    const id = (JSON.parse(job.body) as { id: number }).id;
    const got = await handler(event('GET', `/api/v1/jobs/${id}`, { headers: auth }), ctx);
    expect(JSON.parse(got.body)).toMatchObject({ id, state: 'PENDING' });
    const bad = await handler(event('POST', '/api/v1/jobs', { headers: auth, body: { type: 'preheat', args: { type: 'image' } } }), ctx);
    expect(bad.statusCode).toBe(400);
    expect(JSON.parse(bad.body).fields).toHaveProperty(['args.url']);
  });

  it('serves the console: the same assets, sign-in with CSRF and Secure cookies, pages and a form post', async () => {
    const { CONSOLE_CSS, CONSOLE_JS } = await import('../../control/manager/console/assets.js');
    const root = await handler(event('GET', '/'), ctx);
    expect(root.statusCode).toBe(303);
    expect(root.headers.location).toMatch(/^\/signin/);
    const js = await handler(event('GET', '/assets/console.js'), ctx);
    const css = await handler(event('GET', '/assets/console.css'), ctx);
    expect([js.statusCode, css.statusCode]).toEqual([200, 200]);
    expect(js.isBase64Encoded ? Buffer.from(js.body, 'base64').toString() : js.body).toBe(CONSOLE_JS);
    expect(css.isBase64Encoded ? Buffer.from(css.body, 'base64').toString() : css.body).toBe(CONSOLE_CSS);

    const form = await handler(event('GET', '/signin'), ctx);
    expect(form.statusCode).toBe(200);
    expect(form.headers['content-security-policy']).toContain("script-src 'self'");
    const pre = form.cookies!.find((c) => c.startsWith('damselfly_signin='))!;
    expect(pre).toMatch(/HttpOnly/i);
    expect(pre).toMatch(/Secure/i);
    const csrf = /name="_csrf" value="([^"]+)"/.exec(form.body)![1];
    const origin = 'https://abc.lambda-url.us-east-1.on.aws';
    const preCookie = pre.split(';')[0];
    // Without the pre-session cookie, or from another origin, the sign-in is refused.
    expect((await handler(event('POST', '/signin', { form: { name: 'root', password: 'lambda-root-password', _csrf: csrf }, headers: { origin } }), ctx)).statusCode).toBe(403);
    expect((await handler(event('POST', '/signin', { form: { name: 'root', password: 'lambda-root-password', _csrf: csrf }, cookies: [preCookie], headers: { origin: 'https://evil.example' } }), ctx)).statusCode).toBe(403);
    const fresh = await handler(event('GET', '/signin'), ctx);
    const csrf2 = /name="_csrf" value="([^"]+)"/.exec(fresh.body)![1];
    const pre2 = fresh.cookies!.find((c) => c.startsWith('damselfly_signin='))!.split(';')[0];
    const signed = await handler(event('POST', '/signin', { form: { name: 'root', password: 'lambda-root-password', _csrf: csrf2 }, cookies: [pre2], headers: { origin } }), ctx);
    expect(signed.statusCode).toBe(303);
    const jwt = signed.cookies!.find((c) => c.startsWith('jwt='))!;
    expect(jwt).toMatch(/HttpOnly/i);
    expect(jwt).toMatch(/SameSite=Strict/i);
    expect(jwt).toMatch(/Secure/i);
    const session = jwt.split(';')[0];

    const overview = await handler(event('GET', '/', { cookies: [session] }), ctx);
    expect(overview.statusCode).toBe(200);
    expect(overview.body).toContain('data-cluster="1"');
    const live = await handler(event('GET', '/', { query: 'fragment=1', cookies: [session] }), ctx);
    expect(live.statusCode).toBe(200);
    expect(live.body).toContain('id="overview"');
    expect(live.body).not.toContain('<html');

    const clusters = await handler(event('GET', '/clusters', { cookies: [session] }), ctx);
    const token = /name="_csrf" value="([^"]+)"/.exec(clusters.body)![1];
    const refused = await handler(event('POST', '/clusters', { form: { name: 'on-lambda', _csrf: 'x' }, cookies: [session], headers: { origin } }), ctx);
    expect(refused.statusCode).toBe(403);
    const made = await handler(event('POST', '/clusters', { form: { name: 'on-lambda', cidrs: '10.9.0.0/16', _csrf: token }, cookies: [session], headers: { origin } }), ctx);
    expect(made.statusCode).toBe(303);
    const page = await handler(event('GET', made.headers.location.split('?')[0], { cookies: [session] }), ctx);
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('on-lambda');
    expect(page.body).toContain('10.9.0.0/16');
  });
});
