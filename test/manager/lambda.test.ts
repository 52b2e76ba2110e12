/** The Lambda entry (control/manager/lambda.ts `handler`) with synthetic Function URL / API Gateway v2 events. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

type Result = { statusCode: number; body: string; headers: Record<string, string>; cookies?: string[]; isBase64Encoded: boolean };
let handler: (event: unknown, ctx: unknown) => Promise<Result>;
const saved = { ...process.env };

function event(method: string, rawPath: string, opts: { query?: string; body?: unknown; headers?: Record<string, string>; base64?: boolean; apiGateway?: boolean } = {}) {
  const text = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  return {
    version: '2.0',
    routeKey: opts.apiGateway ? `${method} ${rawPath}` : '$default',
    rawPath,
    rawQueryString: opts.query ?? '',
    headers: { host: 'abc.lambda-url.us-east-1.on.aws', 'content-type': 'application/json', ...opts.headers },
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
});
