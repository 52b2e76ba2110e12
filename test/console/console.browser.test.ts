/**
 * The console in a real browser (playwright-core driving Debian's /usr/bin/chromium) against real
 * processes: `damselfly manager` on SQLite, a scheduler reporting every second, a seed peer and
 * three agents downloading a rate-limited file, a registry image preheated from the form. Every page
 * is screenshotted into test-artifacts/console/ (1280×800, and the overview at phone width).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser, type BrowserContext, type Page, chromium } from 'playwright-core';
import { cliPath, repoRoot } from '../support/cli.js';
import { MiB, startOrigin, type Origin } from '../support/origin.js';
import { agentConfigFor, apiGet, cleanupTempDirs, killAll, makeTempDir, spawnRole, waitFor, type RoleProcess } from '../support/procs.js';
import { buildImage, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
import { requireOrSkip } from '../support/require.js';
import { ROOT_PASSWORD, http, startStack, type Stack } from '../manager/flow.js';
import { formatSize } from '../../adapters/config.js';

const CHROMIUM = process.env.DAMSELFLY_CHROMIUM ?? '/usr/bin/chromium';
const tools = registryToolsAvailable();
const ARTIFACTS = path.join(repoRoot, 'test-artifacts', 'console');
const ready = requireOrSkip(existsSync(CHROMIUM), 'chromium', `${CHROMIUM} missing`) && requireOrSkip(tools.ok, 'docker-registry/umoci/skopeo', `missing: ${tools.missing.join(', ')}`);

/** Run in the page (a string: the tests' tsconfig has no DOM types): what a keyboard or screen-reader user would miss. */
const AUDIT_SCRIPT = `(() => {
  const out = [];
  const named = (el) => {
    const aria = (el.getAttribute('aria-label') || '').trim();
    const by = el.getAttribute('aria-labelledby');
    const labels = el.labels;
    return aria !== '' || (by !== null && by.split(' ').every((id) => document.getElementById(id))) || (labels != null && [...labels].some((l) => (l.textContent || '').trim() !== ''));
  };
  const what = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.getAttribute('name') ? '[name=' + el.getAttribute('name') + ']' : '');
  if (document.documentElement.lang !== 'en') out.push('html has no lang');
  if (!document.title.trim()) out.push('no title');
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) out.push(h1 + ' h1 elements');
  // Hidden ones (a username field kept for password managers) are not in the accessibility tree.
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) if (!el.closest('[hidden]') && !named(el)) out.push('unlabelled ' + what(el));
  for (const el of document.querySelectorAll('button, a[href]')) if (!(el.textContent || '').trim() && !named(el) && !el.getAttribute('title')) out.push('nameless ' + what(el));
  for (const el of document.querySelectorAll('svg')) if (el.getAttribute('aria-hidden') !== 'true' && !(el.getAttribute('role') === 'img' && (named(el) || el.querySelector('title')))) out.push('svg without role=img and a name');
  for (const el of document.querySelectorAll('table')) if (!el.querySelector('th')) out.push('table without header cells');
  const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
  for (const id of new Set(ids)) if (ids.filter((x) => x === id).length > 1) out.push('duplicate id ' + id);
  if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push('scrolls sideways: ' + document.documentElement.scrollWidth + 'px in ' + window.innerWidth + 'px');
  return out;
})()`;

/** The focused element (null: none), with where it is, and whether it can be seen. */
const FOCUS_SCRIPT = `(() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const r = el.getBoundingClientRect();
  return { key: el.tagName + ':' + (el.textContent || '').trim().slice(0, 20) + ':' + (el.getAttribute('name') || '') + ':' + (el.getAttribute('href') || '') + ':' + Math.round(r.x) + ',' + Math.round(r.y), visible: r.width > 0 && r.height > 0 };
})()`;

describe.skipIf(!ready)('web console in chromium', () => {
  let browser: Browser;
  let ctx: BrowserContext;
  let pg: Page;
  let stack: Stack;
  let origin: Origin;
  let registry: RunningRegistry;
  let image: BuiltImage;
  const agents: RoleProcess[] = [];
  const cspViolations: string[] = [];
  let base: string;

  const shot = async (p: Page, name: string) => p.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  const watchCsp = (p: Page) => {
    p.on('console', (m) => {
      if (/Content Security Policy|Refused to/.test(m.text())) cspViolations.push(m.text());
    });
  };

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const dir = makeTempDir('damselfly-console-');
    const store = { kv: { kind: 'sqlite', path: path.join(dir, 'kv.db') }, queue: { kind: 'sqlite', path: path.join(dir, 'queue.db'), visibilityMs: 5_000 } };
    [registry, image, origin] = await Promise.all([startRegistry(), buildImage({ layers: [600_000, 900_000] }), startOrigin({ rate: 6 * MiB })]);
    await pushImage(image, `${registry.host}/test/app:v1`);
    stack = await startStack(cliPath(), store);
    agents.push(stack.agent);
    const sched = String(stack.scheduler.ready.grpc);
    for (const name of ['agent-1', 'agent-2']) {
      const d = makeTempDir(`damselfly-console-${name}-`);
      agents.push(await spawnRole('agent', agentConfigFor(name, d, [sched]), { cli: cliPath(), dir: d, name }));
    }
    base = stack.managerUrl;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    pg = await ctx.newPage();
    watchCsp(pg);
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await killAll();
    await origin?.close();
    await registry?.close();
    await image?.cleanup();
    cleanupTempDirs();
  });

  it('serves the console with a CSP and no inline script, and asks for a sign-in', async () => {
    const res = await pg.goto(`${base}/`);
    expect(new URL(pg.url()).pathname).toBe('/signin');
    const csp = res!.headers()['content-security-policy'];
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    // Every script comes from the package's own file; no inline handlers anywhere.
    const html = await pg.content();
    expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
    expect(html).not.toMatch(/\son[a-z]+=/);
    expect((await http('GET', `${base}/assets/console.js`)).status).toBe(200);
    await shot(pg, '01-signin');
    await pg.getByLabel('User name').fill('root');
    await pg.getByLabel('Password').fill('wrong-password');
    await pg.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => pg.locator('.flash.error').textContent()).toContain('incorrect name or password');
    await pg.getByLabel('User name').fill('root');
    await pg.getByLabel('Password').fill(ROOT_PASSWORD);
    await pg.getByRole('button', { name: 'Sign in' }).click();
    await pg.waitForURL(`${base}/`);
    const cookie = (await ctx.cookies()).find((c) => c.name === 'jwt')!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(await pg.evaluate('document.cookie')).toBe('');
    await expect.poll(() => pg.locator('[data-cluster="1"] [data-stat="schedulers"]').textContent()).toBe('1 up / 0 down');
  }, 30_000);

  it('creates cluster B with a CIDR scope; the empty cluster shows how to add a scheduler and an agent', async () => {
    await pg.goto(`${base}/clusters`);
    await pg.getByLabel('Name', { exact: true }).fill('cluster-b');
    await pg.getByLabel(/^CIDRs/).fill('10.20.0.0/16\n192.168.7.0/24');
    await pg.getByLabel('IDC', { exact: true }).fill('idc-b');
    await pg.getByRole('button', { name: 'Create cluster' }).click();
    await expect.poll(() => pg.locator('.flash.ok').textContent()).toContain('cluster cluster-b created');
    const id = Number(new URL(pg.url()).pathname.split('/').pop());
    const rec = await http('GET', `${base}/api/v1/clusters/${id}`, { token: stack.jwt });
    expect(rec.json.scopes).toMatchObject({ cidrs: ['10.20.0.0/16', '192.168.7.0/24'], idc: 'idc-b' });
    // A bad CIDR is refused with the field named, and nothing is created.
    await pg.goto(`${base}/clusters`);
    await pg.getByLabel('Name', { exact: true }).fill('cluster-c');
    await pg.getByLabel(/^CIDRs/).fill('10.0.0.0/99');
    await pg.getByRole('button', { name: 'Create cluster' }).click();
    await expect.poll(() => pg.locator('.flash.error').textContent()).toContain('scopes.cidrs.0');
    expect((await http('GET', `${base}/api/v1/clusters?name=cluster-c`, { token: stack.jwt })).json).toEqual([]);
    await pg.goto(`${base}/`);
    const card = pg.locator(`[data-cluster="${id}"]`);
    await expect.poll(() => card.locator('pre[data-command="agent"]').textContent()).toContain('damselfly agent --config agent.yaml');
    expect(await card.locator('pre[data-command="scheduler"]').textContent()).toContain(`clusterId: ${id}`);
    await shot(pg, '02-overview');
    await pg.goto(`${base}/clusters/${id}`);
    await shot(pg, '03-cluster');
    await pg.goto(`${base}/clusters`);
    await shot(pg, '04-clusters');
  }, 30_000);

  it('shows the swarm: peers, the task in flight with progress, its parent graph, then the finished task', async () => {
    const url = origin.add('/console/big.bin', { seed: 'console', size: 30 * MiB });
    const outDir = makeTempDir('damselfly-console-out-');
    // The seed first, so the agents find a parent; all three agents at once.
    const downloads = agents.map((a, i) => apiGet(a, url, path.join(outDir, `out-${i}`), { timeoutMs: 90_000 }));
    await pg.goto(`${base}/tasks`);
    const row = pg.locator('tr[data-task]').filter({ hasText: 'big.bin' });
    await expect.poll(() => row.count(), { timeout: 15_000 }).toBeGreaterThan(0);
    await expect.poll(() => row.first().locator('.state-Running').count(), { timeout: 15_000 }).toBe(1);
    await shot(pg, '05-tasks-in-flight');
    const progress = Number(await row.first().locator('progress').getAttribute('value'));
    expect(progress).toBeLessThan(1);
    const taskId = (await row.first().getAttribute('data-task'))!;
    await pg.goto(`${base}/tasks/${encodeURIComponent(taskId)}`);
    await expect.poll(() => pg.locator('svg.graph [data-peer]').count(), { timeout: 15_000 }).toBeGreaterThanOrEqual(3);
    await expect.poll(() => pg.locator('svg.graph [data-edge]').count(), { timeout: 15_000 }).toBeGreaterThanOrEqual(1);
    await shot(pg, '06-task-graph');
    await pg.goto(`${base}/peers`);
    for (const h of ['agent-0', 'agent-1', 'agent-2', 'seed']) await expect.poll(() => pg.locator(`tr[data-peer-host="${h}"]`).count(), { timeout: 10_000 }).toBe(1);
    await shot(pg, '07-peers');
    const results = await Promise.all(downloads);
    const want = origin.sha256('/console/big.bin');
    for (const [i, r] of results.entries()) {
      expect(r.code, r.stderr).toBe(0);
      expect(`sha256:${createHash('sha256').update(readFileSync(path.join(outDir, `out-${i}`))).digest('hex')}`).toBe(want);
    }
    await pg.goto(`${base}/tasks?url=big.bin&state=Succeeded`);
    await expect.poll(() => pg.locator('tr[data-task] .state-Succeeded').count(), { timeout: 15_000 }).toBeGreaterThan(0);
    // Exact traffic from the piece reports: four peers (three agents and the seed) each got the
    // 30 MiB once, and the origin sent it at least once; per peer too, once every report is in.
    const detailOf = async () => (await http('GET', `${base}/api/v1/tasks/${encodeURIComponent(taskId)}`, { token: stack.jwt })).json;
    await expect.poll(async () => { const d = await detailOf(); return d.bytes_from_peers + d.bytes_from_origin; }, { timeout: 15_000 }).toBe(4 * 30 * MiB);
    const detail = await detailOf();
    expect(detail.bytes_from_origin).toBeGreaterThanOrEqual(30 * MiB);
    expect(detail.peers.map((p: any) => p.bytes_from_peers + p.bytes_from_origin)).toEqual(detail.peers.map(() => 30 * MiB));
    await pg.goto(`${base}/tasks/${encodeURIComponent(taskId)}`);
    await expect.poll(() => pg.locator('#task th', { hasText: 'From origin' }).count()).toBe(1);
    const cells = await pg.locator('#task table td').allTextContents();
    for (const p of detail.peers) for (const b of [p.bytes_from_peers, p.bytes_from_origin]) expect(cells).toContain(formatSize(b, ' '));
    await pg.goto(`${base}/schedulers`);
    await expect.poll(() => pg.locator('text=seed').count()).toBeGreaterThan(0);
    await shot(pg, '08-schedulers');
  }, 120_000);

  it('creates a preheat job in the form and watches it reach SUCCESS', async () => {
    await pg.goto(`${base}/jobs`);
    await pg.getByLabel('Job').selectOption('preheat-image');
    await pg.getByLabel(/^Image reference or URL/).fill(`${registry.host}/test/app:v1`);
    await pg.getByLabel('Scope').selectOption('single_seed_peer');
    await pg.getByRole('button', { name: 'Create job' }).click();
    await pg.waitForURL(/\/jobs\/[0-9]+/);
    // The page is not reloaded: the live region is polled by console.js.
    await expect.poll(() => pg.locator('[data-job-state]').textContent(), { timeout: 60_000 }).toBe('SUCCESS');
    await shot(pg, '09-job');
    await pg.goto(`${base}/jobs`);
    await shot(pg, '10-jobs');
  }, 90_000);

  it('shows a new token once, and it works for the preheat API', async () => {
    await pg.goto(`${base}/tokens`);
    await pg.getByLabel('Name').fill('cronjob');
    await pg.getByRole('button', { name: 'Create token' }).click();
    const token = (await pg.locator('#new-token').textContent())!.trim();
    expect(token).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    await shot(pg, '11-token-once');
    await pg.goto(`${base}/tokens`);
    expect(await pg.content()).not.toContain(token);
    expect(await pg.locator('tr[data-token="cronjob"]').count()).toBe(1);
    await shot(pg, '12-tokens');
    const jobs = (await http('GET', `${base}/api/v1/jobs`, { token: stack.jwt })).json;
    expect((await http('GET', `${base}/api/v1/preheat/${jobs[0].id}`, { token })).status).toBe(200);
    pg.once('dialog', (d) => void d.accept());
    await pg.locator('tr[data-token="cronjob"]').getByRole('button', { name: /Revoke/ }).click();
    await expect.poll(() => pg.locator('.flash.ok').textContent()).toContain('token revoked');
    expect((await http('GET', `${base}/api/v1/preheat/${jobs[0].id}`, { token })).status).toBe(403);
  }, 30_000);

  it('refuses form posts without the CSRF token or from another origin', async () => {
    const before = (await http('GET', `${base}/api/v1/clusters?per_page=100`, { token: stack.jwt })).json.length;
    const noToken = await pg.request.post(`${base}/clusters`, { form: { name: 'evil-1' } });
    expect(noToken.status()).toBe(403);
    await pg.goto(`${base}/clusters`);
    const csrf = (await pg.locator('input[name=_csrf]').first().getAttribute('value'))!;
    const crossSite = await pg.request.post(`${base}/clusters`, { form: { name: 'evil-2', _csrf: csrf }, headers: { origin: 'http://evil.example' } });
    expect(crossSite.status()).toBe(403);
    const wrong = await pg.request.post(`${base}/clusters`, { form: { name: 'evil-3', _csrf: `${csrf.slice(0, -2)}xx` } });
    expect(wrong.status()).toBe(403);
    expect((await http('GET', `${base}/api/v1/clusters?per_page=100`, { token: stack.jwt })).json.length).toBe(before);
    await pg.goto(`${base}/config`);
    const cfg = (await pg.locator('#manager-config').textContent())!;
    expect(cfg).toContain('[REDACTED]');
    expect(cfg).not.toContain(ROOT_PASSWORD);
    expect(cfg).not.toContain('e2e-scheduler-secret');
    // The running scheduler's own effective configuration, as it registered.
    const sched = (await pg.locator('[data-scheduler-config]').first().textContent())!;
    expect(JSON.parse(sched)).toMatchObject({ scheduling: expect.any(Object), job: { enable: true } });
    expect(sched).not.toContain('e2e-scheduler-secret');
    await shot(pg, '13-config');
    await pg.goto(`${base}/users`);
    await shot(pg, '14-users');
  }, 30_000);

  it('root manages users and clusters: creates a user by keyboard, changes a role, sets limits, deletes a cluster', async () => {
    await pg.goto(`${base}/users`);
    // Keyboard only: focus the first field, Tab through the form in order, Enter submits.
    await pg.getByLabel(/^Name/).focus();
    await pg.keyboard.type('alice');
    await pg.keyboard.press('Tab');
    expect(await pg.evaluate('document.activeElement.id')).toBe('n-email');
    await pg.keyboard.type('alice@example.com');
    await pg.keyboard.press('Tab');
    expect(await pg.evaluate('document.activeElement.id')).toBe('n-role');
    await pg.keyboard.press('Tab');
    expect(await pg.evaluate('document.activeElement.id')).toBe('n-password');
    await pg.keyboard.type('alice-password-1');
    await pg.keyboard.press('Enter');
    await expect.poll(() => pg.locator('.flash.ok').textContent()).toContain('user alice created');
    const users = (await http('GET', `${base}/api/v1/users?per_page=100`, { token: stack.jwt })).json as any[];
    const alice = users.find((u) => u.name === 'alice');
    expect(alice).toMatchObject({ role: 'guest', state: 'enable', email: 'alice@example.com' });
    expect(JSON.stringify(users)).not.toContain('alice-password-1');
    // A short password is refused naming the field; nothing is created.
    await pg.getByLabel(/^Name/).fill('bob');
    await pg.locator('#n-password').evaluate((e) => e.removeAttribute('minlength'));
    await pg.locator('#n-password').fill('short');
    await pg.getByRole('button', { name: 'Create user' }).click();
    await expect.poll(() => pg.locator('.flash.error').textContent()).toContain('password');
    expect(((await http('GET', `${base}/api/v1/users?per_page=100`, { token: stack.jwt })).json as any[]).some((u) => u.name === 'bob')).toBe(false);
    // Role and state per user; root's own row has no form, and the API refuses self-demotion.
    await pg.goto(`${base}/users`);
    await pg.getByLabel('Role of alice').selectOption('root');
    await pg.getByRole('button', { name: 'Save alice' }).click();
    await expect.poll(() => pg.locator('.flash.ok').textContent()).toContain('user alice saved');
    expect((await http('GET', `${base}/api/v1/users/${alice.id}`, { token: stack.jwt })).json.role).toBe('root');
    await pg.getByLabel('State of alice').selectOption('disable');
    await pg.getByRole('button', { name: 'Save alice' }).click();
    await expect.poll(() => pg.locator('.flash.ok').textContent()).toContain('user alice saved');
    expect((await http('GET', `${base}/api/v1/users/${alice.id}`, { token: stack.jwt })).json.state).toBe('disable');
    expect(await pg.locator('tr[data-user="root"] select').count()).toBe(0);
    const rootId = users.find((u) => u.name === 'root').id;
    const self = await http('PATCH', `${base}/api/v1/users/${rootId}`, { token: stack.jwt, body: { role: 'guest' } });
    expect(self.status).toBe(409);
    expect((await http('GET', `${base}/api/v1/users/${rootId}`, { token: stack.jwt })).json).toMatchObject({ role: 'root', state: 'enable' });
    await shot(pg, '14b-users-managed');

    // Cluster scheduling limits, a bad one refused naming its field, then delete (the default cluster cannot be).
    const created = await http('POST', `${base}/api/v1/clusters`, { token: stack.jwt, body: { name: 'cluster-del' } });
    expect(created.status).toBe(200);
    await pg.goto(`${base}/clusters/${created.json.id}`);
    await pg.getByLabel(/^Candidate parents/).fill('6');
    await pg.getByLabel(/^Peer load limit/).fill('150');
    await pg.getByRole('button', { name: 'Save cluster' }).click();
    await expect.poll(() => pg.locator('.flash.ok').textContent()).toContain('cluster saved');
    const saved = (await http('GET', `${base}/api/v1/clusters/${created.json.id}`, { token: stack.jwt })).json;
    expect(saved.scheduler_cluster_config).toMatchObject({ candidate_parent_limit: 6, filter_parent_limit: 15 });
    expect(saved.peer_cluster_config.load_limit).toBe(150);
    await pg.locator('#c-filter').evaluate((e) => e.removeAttribute('max'));
    await pg.getByLabel(/^Filtered parents/).fill('5000');
    await pg.getByRole('button', { name: 'Save cluster' }).click();
    await expect.poll(() => pg.locator('.flash.error').textContent()).toContain('scheduler_cluster_config.filter_parent_limit');
    expect((await http('GET', `${base}/api/v1/clusters/${created.json.id}`, { token: stack.jwt })).json.scheduler_cluster_config.filter_parent_limit).toBe(15);
    await pg.goto(`${base}/clusters/${created.json.id}`);
    await shot(pg, '04b-cluster-edit');
    pg.once('dialog', (d) => void d.accept());
    await pg.getByRole('button', { name: 'Delete cluster cluster-del' }).click();
    await expect.poll(() => pg.locator('.flash.ok').textContent()).toContain('cluster deleted');
    expect((await http('GET', `${base}/api/v1/clusters/${created.json.id}`, { token: stack.jwt })).status).toBe(404);
    await pg.goto(`${base}/clusters/1`);
    expect(await pg.getByRole('button', { name: /^Delete cluster/ }).count()).toBe(0);
  }, 60_000);

  it('a guest can read every page and change nothing', async () => {
    expect((await http('POST', `${base}/api/v1/users`, { token: stack.jwt, body: { name: 'viewer', password: 'viewer-password-1', role: 'guest' } })).status).toBe(200);
    const gctx = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const g = await gctx.newPage();
    watchCsp(g);
    await g.goto(`${base}/signin`);
    await g.getByLabel('User name').fill('viewer');
    await g.getByLabel('Password').fill('viewer-password-1');
    await g.getByRole('button', { name: 'Sign in' }).click();
    await g.waitForURL(`${base}/`);
    await shot(g, '15-overview-phone-guest');
    await g.goto(`${base}/clusters`);
    expect(await g.getByRole('button', { name: 'Create cluster' }).count()).toBe(0);
    await g.goto(`${base}/jobs`);
    expect(await g.getByRole('button', { name: 'Create job' }).count()).toBe(0);
    await shot(g, '16-jobs-phone-guest');
    // With a valid CSRF token the API's role check still refuses.
    const csrf = (await g.locator('input[name=_csrf]').first().getAttribute('value'))!;
    const before = (await http('GET', `${base}/api/v1/clusters?per_page=100`, { token: stack.jwt })).json.length;
    const post = await g.request.post(`${base}/clusters`, { form: { name: 'guest-made', _csrf: csrf } });
    expect(post.status()).toBe(403);
    const job = await g.request.post(`${base}/jobs`, { form: { type: 'preheat-file', url: 'http://127.0.0.1:9/x', _csrf: csrf } });
    expect(job.status()).toBe(403);
    expect((await http('GET', `${base}/api/v1/clusters?per_page=100`, { token: stack.jwt })).json.length).toBe(before);
    await gctx.close();
    expect(cspViolations).toEqual([]);
  }, 30_000);

  it('every page passes an accessibility audit at 1280×800 and at phone width: names for every control, link and graph, a language, a heading, no page-wide sideways scroll, and Tab reaches the controls in order', async () => {
    const taskId = (await http('GET', `${base}/api/v1/tasks?limit=1`, { token: stack.jwt })).json.tasks[0]?.id as string | undefined;
    const jobId = (await http('GET', `${base}/oapi/v1/jobs?per_page=1`, { token: stack.pat })).json[0]?.id as number | undefined;
    expect(taskId && jobId, 'a task and a job from the tests above').toBeTruthy();
    const pages = ['/', '/clusters', '/clusters/1', '/schedulers', '/peers', '/tasks', `/tasks/${encodeURIComponent(taskId!)}`, '/jobs', `/jobs/${jobId}`, '/tokens', '/users', '/config'];
    const problems: string[] = [];
    for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 844 }]) {
      await pg.setViewportSize(viewport);
      for (const p of pages) {
        await pg.goto(`${base}${p}`);
        const found = (await pg.evaluate(AUDIT_SCRIPT)) as string[];
        for (const f of found) problems.push(`${viewport.width}px ${p}: ${f}`);
        // Tab from the top reaches a control, and each press moves on (no trap) to a visible one.
        await pg.keyboard.press('Tab');
        const seen: string[] = [];
        for (let i = 0; i < 6; i++) {
          const f = (await pg.evaluate(FOCUS_SCRIPT)) as { key: string; visible: boolean } | null;
          if (!f) {
            problems.push(`${viewport.width}px ${p}: Tab press ${i + 1} focused nothing`);
            break;
          }
          if (!f.visible) problems.push(`${viewport.width}px ${p}: focus on an invisible element ${f.key}`);
          if (seen.includes(f.key)) {
            problems.push(`${viewport.width}px ${p}: focus stuck on ${f.key}`);
            break;
          }
          seen.push(f.key);
          await pg.keyboard.press('Tab');
        }
      }
    }
    await pg.setViewportSize({ width: 1280, height: 800 });
    expect(problems).toEqual([]);
  }, 90_000);
});
