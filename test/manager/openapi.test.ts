/**
 * The manager's OpenAPI description against the app itself: every route Hono registers is
 * described (with a summary) and every described route exists; request schemas are the handlers'
 * own zod schemas (a document-valid body is accepted, one missing a required field is refused with
 * that field named); GET /openapi.json serves it; infra/docs/api.md is generated from it
 * (stale → fail, `DAMSELFLY_UPDATE=1` rewrites).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROUTES, openApiDocument, openApiPath, registerOpenApi, renderApiReference } from '../../control/manager/openapi.js';
import { repoRoot } from '../support/cli.js';
import { testManager } from './helpers.js';

const API_MD = path.join(repoRoot, 'infra/docs/api.md');
const text = renderApiReference();
if (process.env.DAMSELFLY_UPDATE === '1') writeFileSync(API_MD, text);

type Doc = { openapi: string; paths: Record<string, Record<string, { summary?: string; requestBody?: { content: Record<string, { schema: { required?: string[]; properties?: Record<string, unknown> } }> } }>> };

describe('manager OpenAPI description', () => {
  it('describes exactly the routes the app registers, each with a summary', async () => {
    const h = await testManager();
    registerOpenApi(h.app);
    const registered = new Set(h.app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method.toLowerCase()} ${openApiPath(r.path)}`));
    const doc = openApiDocument() as Doc;
    const described = new Set(Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`)));
    const undocumented = [...registered].filter((r) => !described.has(r));
    const stale = [...described].filter((r) => !registered.has(r));
    expect(undocumented, 'routes without a description: add them to ROUTES in control/manager/openapi.ts').toEqual([]);
    expect(stale, 'described routes the app does not register').toEqual([]);
    expect(registered.size).toBeGreaterThan(40);
    for (const r of ROUTES) expect(r.summary.trim().length, `${r.method} ${r.path}`).toBeGreaterThan(5);
    expect(new Set(ROUTES.map((r) => `${r.method} ${r.path}`)).size).toBe(ROUTES.length);
  });

  it('serves a 3.1 document at /openapi.json whose body schemas are the ones the handlers enforce', async () => {
    const h = await testManager();
    registerOpenApi(h.app);
    const res = await h.req('GET', '/openapi.json');
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Doc;
    expect(doc.openapi).toBe('3.1.0');
    expect(doc).toEqual(JSON.parse(JSON.stringify(openApiDocument())));
    const signin = doc.paths['/api/v1/users/signin'].post.requestBody!.content['application/json'].schema;
    expect(signin.required?.sort()).toEqual(['name', 'password']);
    // What the document requires, the handler requires: drop a required field, get a 400 naming it.
    const create = doc.paths['/api/v1/jobs'].post.requestBody!.content['application/json'].schema;
    expect(create.required).toContain('type');
    const token = await h.signin();
    const bad = await h.req('POST', '/api/v1/jobs', { token, body: { args: { type: 'file', url: 'http://127.0.0.1/f' } } });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toMatch(/type/);
    const search = doc.paths['/api/v1/schedulers/search'].get as unknown as { parameters: Array<{ name: string; in: string }> };
    expect(search.parameters.filter((p) => p.in === 'query').map((p) => p.name)).toContain('ip');
  });

  it('renders infra/docs/api.md, up to date', () => {
    expect(existsSync(API_MD)).toBe(true);
    expect(readFileSync(API_MD, 'utf8'), 'stale: run DAMSELFLY_UPDATE=1 npx vitest run test/manager/openapi.test.ts').toBe(text);
    for (const r of ROUTES) expect(text).toContain(`## ${r.method.toUpperCase()} \`${r.path}\``);
    expect(text).toMatch(/\| body \| `password` \| string \(length 1–256\) \| yes \|/);
  });
});
