/**
 * The web console at `/`: server-rendered pages (console/layout.ts) over the manager's own API. Every
 * read and write goes through `app.request` to /api/v1 with the signed-in user's JWT, so the console
 * has exactly the API's validation, roles (guest reads only) and errors, and holds nothing between
 * requests (Lambda serves it too).
 *
 * Security: the session is the API's JWT in an HttpOnly, SameSite=Strict cookie; every POST carries
 * a CSRF token (HMAC of the session under the JWT key; sign-in uses a random pre-session cookie) and
 * must come from this origin; every response has a CSP without inline scripts or styles.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { html } from 'hono/html';
import { verify } from 'hono/jwt';
import { managerKeys } from '../../../adapters/keys.js';
import { redactConfig } from '../../../adapters/log.js';
import { type AuthEnv, safeEqual } from '../auth.js';
import { isSameOrigin } from '../http.js';
import { CONSOLE_CSS, CONSOLE_JS } from '../console/assets.js';
import { type Fragment, type Viewer, csrfField, fmtAgo, fmtBytes, fmtPct, graphSvg, page, state } from '../console/layout.js';
import type { UserRecord } from '../models.js';
import type { RouteModule } from './context.js';

export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const SESSION = 'jwt';
const PRE = 'damselfly_signin';

type C = Context<AuthEnv>;
interface ApiAnswer {
  status: number;
  json: any;
  headers: Headers;
}

/** The API's error as one line: message plus each named field. */
function errorText(a: ApiAnswer): string {
  const fields = a.json?.fields ? Object.entries(a.json.fields as Record<string, string>).map(([k, v]) => `${k}: ${v}`) : [];
  return [a.json?.message ?? `error ${a.status}`, ...fields].join(' — ');
}

const lines = (s: unknown): string[] =>
  String(s ?? '')
    .split(/[\n,]/)
    .map((x) => x.trim())
    .filter(Boolean);

/** Credentials inside URLs (postgres://user:pass@…) are not keys redact() can see. */

export const consoleRoutes: RouteModule = (app, ctx) => {
  const { kv, config, jwtSecret, now, deps } = ctx;

  const hmac = async (what: string) => createHmac('sha256', await jwtSecret()).update(what).digest('base64url');
  const api = async (jwt: string, method: string, path: string, body?: unknown): Promise<ApiAnswer> => {
    const res = await app.request(path, {
      method,
      headers: { authorization: `Bearer ${jwt}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: any = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
    return { status: res.status, json, headers: res.headers };
  };

  const secure = (c: C) => new URL(c.req.url).protocol === 'https:' || c.req.header('x-forwarded-proto') === 'https';

  /** The signed-in user, or undefined (expired, disabled or no session). */
  const viewerOf = async (c: C): Promise<{ viewer: Viewer; jwt: string } | undefined> => {
    const jwt = getCookie(c, SESSION);
    if (!jwt) return undefined;
    try {
      const claims = (await verify(jwt, await jwtSecret(), { alg: 'HS256', exp: false, nbf: false, iat: false })) as { id: number; exp: number };
      if (typeof claims.exp !== 'number' || claims.exp * 1000 <= now()) return undefined;
      const user = await kv.get<UserRecord>(managerKeys.user(Number(claims.id)));
      if (!user || user.value.state !== 'enable') return undefined;
      return { jwt, viewer: { name: user.value.name, role: user.value.role, userId: user.value.id, csrf: await hmac(`csrf:${jwt}`) } };
    } catch {
      return undefined;
    }
  };

  const sameOrigin = (c: C): boolean => isSameOrigin(c);

  const render = (c: C, opts: Parameters<typeof page>[0], status = 200) => {
    c.header('cache-control', 'no-store');
    return c.html(page(opts), status as 200);
  };

  type Handler = (c: C, s: { viewer: Viewer; jwt: string }) => Promise<Response>;
  /** A page for signed-in users; `?fragment=1` answers only its live regions (polled by console.js). */
  const view = (path: string, title: string, body: (c: C, s: { viewer: Viewer; jwt: string }) => Promise<Fragment>): void => {
    app.get(path, async (c) => {
      const s = await viewerOf(c);
      if (!s) return c.redirect(`/signin?next=${encodeURIComponent(c.req.path)}`, 303);
      const content = await body(c, s);
      if (c.req.query('fragment') === '1') {
        c.header('cache-control', 'no-store');
        return c.html(content);
      }
      const msg = c.req.query('ok');
      return render(c, { title, path: c.req.path, viewer: s.viewer, body: content, flash: msg ? { kind: 'ok', text: msg.slice(0, 200) } : undefined });
    });
  };
  /** A form post: session, same origin and CSRF token checked before anything runs. */
  const action = (path: string, handler: (c: C, s: { viewer: Viewer; jwt: string }, form: Record<string, string>) => Promise<Response>): void => {
    app.post(path, async (c) => {
      const s = await viewerOf(c);
      if (!s) return c.redirect('/signin', 303);
      const form = (await c.req.parseBody()) as Record<string, string>;
      if (!sameOrigin(c) || typeof form._csrf !== 'string' || !safeEqual(form._csrf, s.viewer.csrf)) {
        return render(c, { title: 'Refused', path: c.req.path, viewer: s.viewer, body: html`<p>The form's CSRF token is missing or wrong. Reload the page and try again.</p>`, flash: { kind: 'error', text: 'invalid CSRF token' } }, 403);
      }
      return handler(c, s, form);
    });
  };
  const failed = (c: C, s: { viewer: Viewer }, title: string, a: ApiAnswer, back: string) =>
    render(c, { title, path: back, viewer: s.viewer, body: html`<p><a href="${back}">Back</a></p>`, flash: { kind: 'error', text: errorText(a) } }, a.status >= 400 && a.status < 500 ? a.status : 502);
  const done = (c: C, to: string, text: string) => c.redirect(`${to}${to.includes('?') ? '&' : '?'}ok=${encodeURIComponent(text)}`, 303);
  const isRoot = (v: Viewer) => v.role === 'root';

  // Headers on every console response (routes registered after this line; the API's are before it).
  app.use('*', async (c, next) => {
    await next();
    c.header('content-security-policy', CSP);
    c.header('x-content-type-options', 'nosniff');
    c.header('referrer-policy', 'same-origin');
    c.header('x-frame-options', 'DENY');
  });

  app.get('/assets/console.css', (c) => c.body(CONSOLE_CSS, 200, { 'content-type': 'text/css; charset=utf-8', 'cache-control': 'public, max-age=300' }));
  app.get('/assets/console.js', (c) => c.body(CONSOLE_JS, 200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'public, max-age=300' }));

  // ------------------------------------------------------------------ sign in / out
  const signinForm = (c: C, pre: string, error?: string, status = 200) =>
    render(
      c,
      {
        title: 'Sign in',
        path: '/signin',
        flash: error ? { kind: 'error', text: error } : undefined,
        body: html`<div class="card signin"><form class="stack" method="post" action="/signin">
<input type="hidden" name="_csrf" value="${pre}"><input type="hidden" name="next" value="${(c.req.query('next') ?? '/').startsWith('/') ? c.req.query('next') ?? '/' : '/'}">
<label for="name">User name<input id="name" name="name" autocomplete="username" required autofocus></label>
<label for="password">Password<input id="password" name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form></div>`,
      },
      status,
    );
  app.get('/signin', async (c) => {
    const token = randomBytes(18).toString('base64url');
    setCookie(c, PRE, token, { httpOnly: true, sameSite: 'Strict', path: '/signin', secure: secure(c), maxAge: 3600 });
    return signinForm(c, await hmac(`signin:${token}`));
  });
  app.post('/signin', async (c) => {
    const form = (await c.req.parseBody()) as Record<string, string>;
    const pre = getCookie(c, PRE);
    const fresh = randomBytes(18).toString('base64url');
    setCookie(c, PRE, fresh, { httpOnly: true, sameSite: 'Strict', path: '/signin', secure: secure(c), maxAge: 3600 });
    const again = await hmac(`signin:${fresh}`);
    if (!sameOrigin(c) || !pre || typeof form._csrf !== 'string' || !safeEqual(form._csrf, await hmac(`signin:${pre}`))) return signinForm(c, again, 'invalid CSRF token: reload the page', 403);
    const res = await app.request('/api/v1/users/signin', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: form.name ?? '', password: form.password ?? '' }) }, c.env);
    if (res.status !== 200) {
      const a = { status: res.status, json: await res.json().catch(() => null), headers: res.headers };
      return signinForm(c, again, errorText(a), res.status === 429 ? 429 : 401);
    }
    const { token } = (await res.json()) as { token: string };
    setCookie(c, SESSION, token, { httpOnly: true, sameSite: 'Strict', path: '/', secure: secure(c), maxAge: Math.floor(config.auth.jwtTimeout / 1000) });
    const next = typeof form.next === 'string' && /^\/(?!\/)/.test(form.next) ? form.next : '/';
    return c.redirect(next, 303);
  });
  action('/signout', async (c) => {
    deleteCookie(c, SESSION, { path: '/' });
    return c.redirect('/signin', 303);
  });

  // ------------------------------------------------------------------ overview
  const agentCommand = (clusterId: number, c: C) => {
    const manager = new URL(c.req.url).origin;
    return `cat > agent.yaml <<'EOF'\nmanager:\n  addr: ${manager}\nEOF\ndamselfly agent --config agent.yaml`;
  };
  const schedulerCommand = (clusterId: number, c: C) =>
    `export DAMSELFLY_SCHEDULER_SECRET=<the manager's auth.schedulerSecret>\ncat > scheduler.yaml <<'EOF'\nmanager:\n  addr: ${new URL(c.req.url).origin}\n  clusterId: ${clusterId}\nEOF\ndamselfly scheduler --config scheduler.yaml`;

  view('/', 'Overview', async (c, s) => {
    const ov = await api(s.jwt, 'GET', '/api/v1/overview');
    const clusters = (ov.json?.clusters ?? []) as any[];
    return html`<section id="overview" data-live aria-live="polite">${clusters.map(
      (cl) => html`<div class="card" data-cluster="${cl.id}"><h2><a href="/clusters/${cl.id}">${cl.name}</a>${cl.is_default ? html` <span class="muted">(default)</span>` : ''}</h2>
<div class="grid">
<div class="stat"><b data-stat="schedulers">${cl.schedulers.active} up / ${cl.schedulers.inactive} down</b><span>schedulers</span></div>
<div class="stat"><b data-stat="seed_peers">${cl.seed_peers.active}</b><span>seed peers up</span></div>
<div class="stat${cl.seed_peers.inactive > 0 ? ' warn' : ''}"><b data-stat="seed_peers_down">${cl.seed_peers.inactive}</b><span>seed peers down</span></div>
<div class="stat"><b data-stat="active_peers">${cl.active_peers}</b><span>active peers</span></div>
<div class="stat"><b data-stat="tasks_in_flight">${cl.tasks_in_flight}</b><span>tasks in flight (of ${cl.tasks})</span></div>
<div class="stat"><b data-stat="p2p_share">${fmtPct(cl.p2p_share)}</b><span>bytes from peers</span></div>
<div class="stat"><b data-stat="back_to_source_rate">${fmtPct(cl.back_to_source_rate)}</b><span>back-to-source rate</span></div>
<div class="stat"><b>${fmtBytes(cl.download_rate)}/s</b><span>download rate</span></div>
</div>
${cl.schedulers.active === 0
  ? html`<h2>No scheduler is up in this cluster</h2><p>Start one that reports to this manager:</p><pre data-command="scheduler">${schedulerCommand(cl.id, c)}</pre>`
  : ''}
${cl.hosts === 0
  ? html`<h2>No agent in this cluster yet</h2><p>On a host that matches this cluster's scopes, run:</p><pre data-command="agent">${agentCommand(cl.id, c)}</pre>`
  : ''}
</div>`,
    )}</section>`;
  });

  // ------------------------------------------------------------------ clusters
  const clusterForm = (v: Viewer, action: string, cl: any | undefined) => html`<form class="stack" method="post" action="${action}">${csrfField(v)}
<label for="c-name">Name<input id="c-name" name="name" required value="${cl?.name ?? ''}" pattern="[A-Za-z0-9_.\-]+"></label>
<label for="c-bio">Description<input id="c-bio" name="bio" value="${cl?.bio ?? ''}"></label>
<div class="row"><label for="c-idc">IDC<input id="c-idc" name="idc" value="${cl?.scopes?.idc ?? ''}"></label>
<label for="c-location">Location<input id="c-location" name="location" value="${cl?.scopes?.location ?? ''}"></label></div>
<label for="c-cidrs">CIDRs <span class="hint">one per line, e.g. 10.0.0.0/8</span><textarea id="c-cidrs" name="cidrs">${(cl?.scopes?.cidrs ?? []).join('\n')}</textarea></label>
<label for="c-hostnames">Hostname patterns <span class="hint">RE2 regular expressions, one per line</span><textarea id="c-hostnames" name="hostnames">${(cl?.scopes?.hostnames ?? []).join('\n')}</textarea></label>
<label class="check" for="c-default"><input id="c-default" type="checkbox" name="is_default" value="1"${cl?.is_default ? html` checked` : ''}> Default cluster (serves hosts no scope matches)</label>
<fieldset><legend>Scheduling</legend><div class="row">
<label for="c-candidate">Candidate parents <span class="hint">1–20, scored per decision</span><input id="c-candidate" name="candidate_parent_limit" type="number" min="1" max="20" value="${cl?.scheduler_cluster_config?.candidate_parent_limit ?? 4}"></label>
<label for="c-filter">Filtered parents <span class="hint">10–1000, sampled per decision</span><input id="c-filter" name="filter_parent_limit" type="number" min="10" max="1000" value="${cl?.scheduler_cluster_config?.filter_parent_limit ?? 15}"></label>
<label for="c-jobrate">Job rate limit <span class="hint">jobs per second, empty: none</span><input id="c-jobrate" name="job_rate_limit" type="number" min="1" max="1000000" value="${cl?.scheduler_cluster_config?.job_rate_limit ?? ''}"></label></div>
<div class="row"><label for="c-seedload">Seed peer load limit <span class="hint">uploads at once, 1–50000</span><input id="c-seedload" name="seed_load_limit" type="number" min="1" max="50000" value="${cl?.seed_peer_cluster_config?.load_limit ?? 2000}"></label>
<label for="c-peerload">Peer load limit <span class="hint">uploads at once, 1–2000</span><input id="c-peerload" name="peer_load_limit" type="number" min="1" max="2000" value="${cl?.peer_cluster_config?.load_limit ?? 200}"></label></div></fieldset>
<button type="submit">${cl ? 'Save cluster' : 'Create cluster'}</button></form>`;
  /** A number field of a form: absent when empty, the number (or NaN, which the API refuses naming the field) otherwise. */
  const num = (v: unknown): number | undefined => (v === undefined || String(v).trim() === '' ? undefined : Number(String(v).trim()));
  const clusterBody = (f: Record<string, string>) => ({
    name: f.name ?? '',
    bio: f.bio ?? '',
    scopes: { idc: f.idc ?? '', location: f.location ?? '', cidrs: lines(f.cidrs), hostnames: String(f.hostnames ?? '').split('\n').map((x) => x.trim()).filter(Boolean) },
    is_default: f.is_default === '1',
    scheduler_cluster_config: { candidate_parent_limit: num(f.candidate_parent_limit) ?? 4, filter_parent_limit: num(f.filter_parent_limit) ?? 15, ...(num(f.job_rate_limit) !== undefined ? { job_rate_limit: num(f.job_rate_limit) } : {}) },
    seed_peer_cluster_config: { load_limit: num(f.seed_load_limit) ?? 2000 },
    peer_cluster_config: { load_limit: num(f.peer_load_limit) ?? 200 },
  });
  view('/clusters', 'Clusters', async (_c, s) => {
    const list = (await api(s.jwt, 'GET', '/api/v1/clusters?per_page=1000')).json as any[];
    return html`<div class="table card"><table><caption class="muted">Each cluster is one scheduler cluster and its seed peers; hosts join the cluster whose scopes match them.</caption>
<thead><tr><th scope="col">ID</th><th scope="col">Name</th><th scope="col">IDC</th><th scope="col">Location</th><th scope="col">CIDRs</th><th scope="col">Hostnames</th><th scope="col">Default</th></tr></thead>
<tbody>${list.map((cl) => html`<tr data-cluster="${cl.name}"><td>${cl.id}</td><td><a href="/clusters/${cl.id}">${cl.name}</a></td><td>${cl.scopes.idc}</td><td>${cl.scopes.location}</td><td>${cl.scopes.cidrs.join(', ')}</td><td>${cl.scopes.hostnames.join(', ')}</td><td>${cl.is_default ? 'yes' : ''}</td></tr>`)}</tbody></table></div>
${isRoot(s.viewer) ? html`<div class="card"><h2>Create a cluster</h2>${clusterForm(s.viewer, '/clusters', undefined)}</div>` : html`<p class="muted">Guests can look but not change clusters.</p>`}`;
  });
  action('/clusters', async (c, s, f) => {
    const a = await api(s.jwt, 'POST', '/api/v1/clusters', clusterBody(f));
    return a.status === 200 ? done(c, `/clusters/${a.json.id}`, `cluster ${a.json.name} created`) : failed(c, s, 'Cluster not created', a, '/clusters');
  });
  view('/clusters/:id{[0-9]+}', 'Cluster', async (c, s) => {
    const id = c.req.param('id');
    const a = await api(s.jwt, 'GET', `/api/v1/clusters/${id}`);
    if (a.status !== 200) return html`<div class="flash error" role="alert">${errorText(a)}</div>`;
    const scheds = ((await api(s.jwt, 'GET', `/api/v1/schedulers?scheduler_cluster_id=${id}&per_page=1000`)).json ?? []) as any[];
    return html`<div class="card"><h2>${a.json.name}</h2><p>${a.json.bio}</p><p>Schedulers: ${scheds.length === 0 ? 'none registered' : scheds.map((x) => html`${x.hostname} (${state(x.state)}) `)}</p>
${scheds.length === 0 ? html`<p>Start one:</p><pre data-command="scheduler">${schedulerCommand(a.json.id, c)}</pre><p>then agents:</p><pre data-command="agent">${agentCommand(a.json.id, c)}</pre>` : ''}</div>
${isRoot(s.viewer) ? html`<div class="card"><h2>Edit cluster</h2>${clusterForm(s.viewer, `/clusters/${a.json.id}`, a.json)}</div>` : ''}
${isRoot(s.viewer) && !a.json.is_default
  ? html`<div class="card"><h2>Delete this cluster</h2><p class="muted">Its hosts join another cluster whose scopes match them, or the default cluster, at their next scheduler lookup.</p>
<form method="post" action="/clusters/${a.json.id}/delete" data-confirm="Delete cluster ${a.json.name}?">${csrfField(s.viewer)}<button class="danger" type="submit">Delete cluster ${a.json.name}</button></form></div>`
  : ''}`;
  });
  action('/clusters/:id{[0-9]+}/delete', async (c, s) => {
    const id = c.req.param('id');
    const a = await api(s.jwt, 'DELETE', `/api/v1/clusters/${id}`);
    return a.status === 200 ? done(c, '/clusters', 'cluster deleted') : failed(c, s, 'Cluster not deleted', a, `/clusters/${id}`);
  });
  action('/clusters/:id{[0-9]+}', async (c, s, f) => {
    const id = c.req.param('id');
    const a = await api(s.jwt, 'PATCH', `/api/v1/clusters/${id}`, clusterBody(f));
    return a.status === 200 ? done(c, `/clusters/${id}`, 'cluster saved') : failed(c, s, 'Cluster not saved', a, `/clusters/${id}`);
  });

  // ------------------------------------------------------------------ schedulers, peers, tasks
  view('/schedulers', 'Schedulers & seed peers', async (_c, s) => {
    const scheds = ((await api(s.jwt, 'GET', '/api/v1/schedulers?per_page=1000')).json ?? []) as any[];
    const seeds = ((await api(s.jwt, 'GET', '/api/v1/peers?per_page=1000')).json ?? []).filter((p: any) => p.type !== 'normal') as any[];
    return html`<section id="schedulers" data-live><h2>Schedulers</h2><div class="table"><table><thead><tr><th scope="col">Host</th><th scope="col">Address</th><th scope="col">Cluster</th><th scope="col">Features</th><th scope="col">State</th><th scope="col">Last keepalive</th></tr></thead>
<tbody>${scheds.map((x) => html`<tr><td>${x.hostname}</td><td>${x.ip}:${x.port}</td><td>${x.scheduler_cluster_id}</td><td>${x.features.join(', ')}</td><td>${state(x.state)}</td><td>${fmtAgo(x.last_keep_alive_at, now())}</td></tr>`)}</tbody></table></div>
<h2>Seed peers</h2>${seeds.length === 0 ? html`<p class="muted">No seed peer reported by any scheduler.</p>` : html`<div class="table"><table><thead><tr><th scope="col">Host</th><th scope="col">Address</th><th scope="col">Cluster</th><th scope="col">Type</th><th scope="col">Uploading</th><th scope="col">Pieces served</th><th scope="col">Last seen</th></tr></thead>
<tbody>${seeds.map((p) => html`<tr><td>${p.host_name}</td><td>${p.ip}:${p.port}</td><td>${p.scheduler_cluster_id}</td><td>${p.type}</td><td>${p.concurrent_upload_count}/${p.upload_limit}</td><td class="num">${p.pieces_served}</td><td>${fmtAgo(p.last_seen, now())}</td></tr>`)}</tbody></table></div>`}</section>`;
  });

  view('/peers', 'Peers', async (c, s) => {
    const q = new URLSearchParams();
    for (const k of ['scheduler_cluster_id', 'host_name', 'type']) {
      const v = c.req.query(k);
      if (v) q.set(k, v);
    }
    q.set('per_page', '1000');
    const a = await api(s.jwt, 'GET', `/api/v1/peers?${q}`);
    const peers = (a.status === 200 ? a.json : []) as any[];
    return html`<form class="row card" method="get" action="/peers" role="search">
<label for="f-cluster">Cluster ID<input id="f-cluster" name="scheduler_cluster_id" inputmode="numeric" value="${c.req.query('scheduler_cluster_id') ?? ''}"></label>
<label for="f-host">Host name<input id="f-host" name="host_name" value="${c.req.query('host_name') ?? ''}"></label>
<label for="f-type">Type<select id="f-type" name="type"><option value="">any</option>${['normal', 'super', 'strong', 'weak'].map((t) => html`<option${c.req.query('type') === t ? html` selected` : ''}>${t}</option>`)}</select></label>
<div><button type="submit">Filter</button></div></form>
${a.status !== 200 ? html`<div class="flash error" role="alert">${errorText(a)}</div>` : ''}
<section id="peers" data-live><p class="muted">${peers.length} hosts</p><div class="table"><table><thead><tr><th scope="col">Host</th><th scope="col">IP</th><th scope="col">Cluster</th><th scope="col">Type</th><th scope="col" class="hide-sm">Peers</th><th scope="col">Upload</th><th scope="col">Download</th><th scope="col" class="hide-sm">Load</th><th scope="col">Pieces served</th><th scope="col" class="hide-sm">Last seen</th></tr></thead>
<tbody>${peers.map((p) => html`<tr data-peer-host="${p.host_name}"><td>${p.host_name}</td><td>${p.ip}</td><td>${p.scheduler_cluster_id}</td><td>${p.type}</td><td class="num hide-sm">${p.peer_count}</td><td class="num">${fmtBytes(p.upload_rate)}/s</td><td class="num">${fmtBytes(p.download_rate)}/s</td><td class="num hide-sm">${fmtPct(p.load)}</td><td class="num">${p.pieces_served}</td><td class="hide-sm">${fmtAgo(p.last_seen, now())}</td></tr>`)}</tbody></table></div></section>`;
  });

  const taskRow = (t: any) => html`<tr data-task="${t.id}"><td><a href="/tasks/${encodeURIComponent(t.id)}">${t.id.slice(0, 12)}…</a></td><td class="url">${t.url.length > 80 ? `${t.url.slice(0, 80)}…` : t.url}</td><td>${state(t.state)}</td><td><progress max="1" value="${t.progress}" aria-label="progress">${fmtPct(t.progress)}</progress> ${fmtPct(t.progress)}</td><td class="num">${t.peer_count}</td><td class="num">${fmtBytes(t.content_length)}</td><td class="num">${fmtBytes(t.bytes_from_peers)}</td><td class="num">${fmtBytes(t.bytes_from_origin)}</td><td>${t.scheduler_cluster_id}</td></tr>`;
  view('/tasks', 'Tasks', async (c, s) => {
    const q = new URLSearchParams();
    for (const k of ['scheduler_cluster_id', 'state', 'host', 'url', 'cursor']) {
      const v = c.req.query(k);
      if (v) q.set(k, v);
    }
    q.set('limit', '50');
    const a = await api(s.jwt, 'GET', `/api/v1/tasks?${q}`);
    const tasks = (a.json?.tasks ?? []) as any[];
    const next = a.json?.next_cursor as string | null | undefined;
    const nextQ = new URLSearchParams(q);
    if (next) nextQ.set('cursor', next);
    nextQ.delete('limit');
    return html`<form class="row card" method="get" action="/tasks" role="search">
<label for="t-state">State<select id="t-state" name="state"><option value="">any</option>${['Pending', 'Running', 'Succeeded', 'Failed', 'Leave'].map((x) => html`<option${c.req.query('state') === x ? html` selected` : ''}>${x}</option>`)}</select></label>
<label for="t-cluster">Cluster ID<input id="t-cluster" name="scheduler_cluster_id" inputmode="numeric" value="${c.req.query('scheduler_cluster_id') ?? ''}"></label>
<label for="t-host">Host<input id="t-host" name="host" value="${c.req.query('host') ?? ''}"></label>
<label for="t-url">URL contains<input id="t-url" name="url" value="${c.req.query('url') ?? ''}"></label>
<div><button type="submit">Filter</button></div></form>
${a.status !== 200 ? html`<div class="flash error" role="alert">${errorText(a)}</div>` : ''}
<section id="tasks" data-live><div class="table"><table><thead><tr><th scope="col">Task</th><th scope="col">URL</th><th scope="col">State</th><th scope="col">Progress</th><th scope="col">Peers</th><th scope="col">Size</th><th scope="col">From peers</th><th scope="col">From origin</th><th scope="col">Cluster</th></tr></thead>
<tbody>${tasks.map(taskRow)}</tbody></table></div>${tasks.length === 0 ? html`<p class="muted">No task reported.</p>` : ''}</section>
${next ? html`<p><a href="/tasks?${nextQ.toString()}" rel="next">Next page</a></p>` : ''}`;
  });
  view('/tasks/:id', 'Task', async (c, s) => {
    const a = await api(s.jwt, 'GET', `/api/v1/tasks/${encodeURIComponent(c.req.param('id') ?? '')}`);
    if (a.status !== 200) return html`<div class="flash error" role="alert">${errorText(a)}</div>`;
    const t = a.json;
    return html`<section id="task" data-live><div class="card"><p><b>URL</b> <code>${t.url}</code></p><p><b>Task ID</b> <code>${t.id}</code></p>
<div class="grid"><div class="stat"><b>${state(t.state)}</b><span>state</span></div><div class="stat"><b>${fmtPct(t.progress)}</b><span>progress (furthest peer)</span></div>
<div class="stat"><b>${t.peer_count}</b><span>peers</span></div><div class="stat"><b>${fmtBytes(t.content_length)}</b><span>size</span></div>
<div class="stat"><b>${fmtBytes(t.bytes_from_peers)}</b><span>from peers</span></div><div class="stat"><b>${fmtBytes(t.bytes_from_origin)}</b><span>from origin</span></div></div></div>
<h2>Parent graph</h2>${graphSvg(t.peers, t.edges, t.total_piece_count)}
<h2>Peers</h2><div class="table"><table><thead><tr><th scope="col">Peer</th><th scope="col">Host</th><th scope="col">Type</th><th scope="col">State</th><th scope="col">Pieces</th><th scope="col">From peers</th><th scope="col">From origin</th><th scope="col">Parents</th></tr></thead>
<tbody>${(t.peers as any[]).map((p) => html`<tr><td><code>${p.id.slice(0, 24)}</code></td><td>${p.host_name}</td><td>${p.type}</td><td>${state(p.state)}</td><td class="num">${p.finished_pieces}/${t.total_piece_count}</td><td class="num">${fmtBytes(p.bytes_from_peers)}</td><td class="num">${fmtBytes(p.bytes_from_origin)}</td><td>${(t.edges as any[]).filter((e) => e.child === p.id).map((e) => (t.peers as any[]).find((x) => x.id === e.parent)?.host_name ?? e.parent).join(', ') || (p.back_to_source ? 'origin' : '—')}</td></tr>`)}</tbody></table></div></section>`;
  });

  // ------------------------------------------------------------------ jobs
  view('/jobs', 'Jobs', async (_c, s) => {
    const jobs = ((await api(s.jwt, 'GET', '/api/v1/jobs?per_page=50')).json ?? []) as any[];
    const clusters = ((await api(s.jwt, 'GET', '/api/v1/clusters?per_page=1000')).json ?? []) as any[];
    jobs.sort((a, b) => b.id - a.id);
    return html`${isRoot(s.viewer)
      ? html`<div class="card"><h2>New job</h2><form class="stack" method="post" action="/jobs">${csrfField(s.viewer)}
<label for="j-type">Job<select id="j-type" name="type"><option value="preheat-image">Preheat an image</option><option value="preheat-file">Preheat a file</option><option value="get_task">Find a task (get_task)</option><option value="delete_task">Delete a task (delete_task)</option></select></label>
<label for="j-url">Image reference or URL <span class="hint">e.g. harbor.example.com/library/app:v1, or a file URL</span><input id="j-url" name="url" required></label>
<label for="j-scope">Scope<select id="j-scope" name="scope"><option value="single_seed_peer">single seed peer</option><option value="all_seed_peers">all seed peers</option><option value="all_peers">all peers</option></select></label>
<label for="j-platform">Platform <span class="hint">optional, e.g. linux/amd64</span><input id="j-platform" name="platform"></label>
<fieldset><legend>Clusters <span class="hint">none ticked: every cluster</span></legend>${clusters.map((cl) => html`<label class="check" for="j-c${cl.id}"><input id="j-c${cl.id}" type="checkbox" name="cluster_${cl.id}" value="1"> ${cl.name}</label>`)}</fieldset>
<button type="submit">Create job</button></form></div>`
      : ''}
<section id="jobs" data-live><div class="table"><table><thead><tr><th scope="col">ID</th><th scope="col">Type</th><th scope="col">URL</th><th scope="col">State</th><th scope="col">Per cluster</th><th scope="col">Created</th></tr></thead>
<tbody>${jobs.map((j) => html`<tr data-job="${j.id}"><td><a href="/jobs/${j.id}">${j.id}</a></td><td>${j.type}</td><td>${String(j.args?.url ?? '').slice(0, 80)}</td><td data-job-state>${state(j.state)}</td><td>${(j.result?.job_states ?? []).map((x: any) => html`${x.scheduler_cluster_id}: ${state(x.state)} `)}</td><td>${fmtAgo(j.created_at, now())}</td></tr>`)}</tbody></table></div></section>`;
  });
  action('/jobs', async (c, s, f) => {
    const ids = Object.keys(f).filter((k) => /^cluster_[0-9]+$/.test(k)).map((k) => Number(k.slice(8)));
    const url = String(f.url ?? '').trim();
    let a: ApiAnswer;
    if (f.type === 'preheat-image' || f.type === 'preheat-file') {
      // Through the preheat alias's reference parsing, but as the user: same job API underneath.
      const { manifestUrl } = await import('./preheat.js');
      const u = f.type === 'preheat-image' ? manifestUrl(url) : url;
      if (!u) return failed(c, s, 'Job not created', { status: 400, json: { message: 'invalid request', fields: { url: 'expected an image reference (registry/repository:tag) or a manifest URL' } }, headers: new Headers() }, '/jobs');
      a = await api(s.jwt, 'POST', '/api/v1/jobs', { type: 'preheat', args: { type: f.type === 'preheat-image' ? 'image' : 'file', url: u, scope: f.scope || undefined, platform: f.platform || undefined }, scheduler_cluster_ids: ids.length ? ids : undefined });
    } else {
      a = await api(s.jwt, 'POST', '/api/v1/jobs', { type: f.type, args: { url }, scheduler_cluster_ids: ids.length ? ids : undefined });
    }
    return a.status === 200 ? done(c, `/jobs/${a.json.id}`, `job ${a.json.id} created`) : failed(c, s, 'Job not created', a, '/jobs');
  });
  view('/jobs/:id{[0-9]+}', 'Job', async (c, s) => {
    const a = await api(s.jwt, 'GET', `/api/v1/jobs/${c.req.param('id')}`);
    if (a.status !== 200) return html`<div class="flash error" role="alert">${errorText(a)}</div>`;
    const j = a.json;
    return html`<section id="job" data-live><div class="card"><p><b>Job ${j.id}</b> · ${j.type} · <span data-job-state>${state(j.state)}</span></p><p><code>${String(j.args?.url ?? '')}</code></p>
<div class="table"><table><thead><tr><th scope="col">Cluster</th><th scope="col">State</th><th scope="col">Progress</th><th scope="col">Error</th></tr></thead>
<tbody>${(j.result?.job_states ?? []).map((x: any) => html`<tr><td>${x.scheduler_cluster_id}</td><td>${state(x.state)}</td><td>${x.progress ? `${x.progress.done}/${x.progress.total}` : ''}</td><td>${x.error ?? ''}</td></tr>`)}</tbody></table></div></div>
<details><summary>Result</summary><pre>${JSON.stringify(j.result, null, 2)}</pre></details></section>`;
  });

  // ------------------------------------------------------------------ tokens
  view('/tokens', 'Personal access tokens', async (_c, s) => {
    const toks = ((await api(s.jwt, 'GET', `/api/v1/personal-access-tokens?per_page=1000${isRoot(s.viewer) ? '' : `&user_id=${s.viewer.userId}`}`)).json ?? []) as any[];
    return html`<div class="card"><h2>Create a token</h2><form class="stack" method="post" action="/tokens">${csrfField(s.viewer)}
<label for="k-name">Name<input id="k-name" name="name" required pattern="[A-Za-z0-9_.\-]+"></label>
<fieldset><legend>Scopes</legend><label class="check" for="k-job"><input id="k-job" type="checkbox" name="scope_job" value="1" checked> job (preheat, get_task, delete_task)</label><label class="check" for="k-cluster"><input id="k-cluster" type="checkbox" name="scope_cluster" value="1"> cluster</label></fieldset>
<label for="k-days">Valid for (days)<input id="k-days" name="days" type="number" min="1" max="3650" value="90" required></label>
<button type="submit">Create token</button></form></div>
<div class="table card"><table><thead><tr><th scope="col">Name</th><th scope="col">Scopes</th><th scope="col">State</th><th scope="col">Expires</th><th scope="col">Action</th></tr></thead>
<tbody>${toks.map((t) => html`<tr data-token="${t.name}"><td>${t.name}</td><td>${t.scopes.join(', ') || 'all'}</td><td>${state(t.state)}</td><td>${t.expired_at}</td><td>${t.state === 'active' ? html`<form class="inline" method="post" action="/tokens/${t.id}/revoke" data-confirm="Revoke token ${t.name}?">${csrfField(s.viewer)}<button class="danger" type="submit" aria-label="Revoke ${t.name}">Revoke</button></form>` : ''}</td></tr>`)}</tbody></table></div>`;
  });
  action('/tokens', async (c, s, f) => {
    const days = Number(f.days);
    const scopes = [f.scope_job === '1' ? 'job' : '', f.scope_cluster === '1' ? 'cluster' : ''].filter(Boolean);
    if (!Number.isInteger(days) || days < 1 || days > 3650) return failed(c, s, 'Token not created', { status: 400, json: { message: 'invalid request', fields: { days: 'expected a whole number of days, 1 to 3650' } }, headers: new Headers() }, '/tokens');
    const a = await api(s.jwt, 'POST', '/api/v1/personal-access-tokens', { name: f.name ?? '', scopes, expired_at: new Date(now() + days * 86_400_000).toISOString() });
    if (a.status !== 200) return failed(c, s, 'Token not created', a, '/tokens');
    // Shown once, in this response only: never stored in clear, never in a URL or a redirect.
    return render(c, {
      title: 'Token created',
      path: '/tokens',
      viewer: s.viewer,
      body: html`<div class="card"><p>Copy the token now: it is shown only this once.</p><code class="secret" id="new-token">${a.json.token}</code>
<p>Use it as <code>Authorization: Bearer &lt;token&gt;</code>, e.g. <code>POST /api/v1/preheat</code>.</p><p><a href="/tokens">Back to tokens</a></p></div>`,
    });
  });
  action('/tokens/:id{[0-9]+}/revoke', async (c, s) => {
    const a = await api(s.jwt, 'PATCH', `/api/v1/personal-access-tokens/${c.req.param('id')}`, { state: 'inactive' });
    return a.status === 200 ? done(c, '/tokens', 'token revoked') : failed(c, s, 'Token not revoked', a, '/tokens');
  });

  // ------------------------------------------------------------------ users, configuration
  view('/users', 'Users', async (_c, s) => {
    const users = isRoot(s.viewer) ? (((await api(s.jwt, 'GET', '/api/v1/users?per_page=1000')).json ?? []) as any[]) : [];
    const opt = (value: string, cur: string) => html`<option value="${value}"${value === cur ? html` selected` : ''}>${value}</option>`;
    const row = (u: any) =>
      u.id === s.viewer.userId
        ? html`<tr data-user="${u.name}"><td>${u.name}</td><td>${u.email}</td><td>${u.role}</td><td>${u.state}</td><td class="muted">you</td></tr>`
        : html`<tr data-user="${u.name}"><td>${u.name}</td><td>${u.email}</td><td colspan="2"><form class="inline" method="post" action="/users/${u.id}">${csrfField(s.viewer)}
<label for="u-role-${u.id}" class="sr-only">Role of ${u.name}</label><select id="u-role-${u.id}" name="role">${opt('guest', u.role)}${opt('root', u.role)}</select>
<label for="u-state-${u.id}" class="sr-only">State of ${u.name}</label><select id="u-state-${u.id}" name="state">${opt('enable', u.state)}${opt('disable', u.state)}</select>
<button type="submit" aria-label="Save ${u.name}">Save</button></form></td><td></td></tr>`;
    return html`${users.length ? html`<div class="table card"><table><thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Role</th><th scope="col">State</th><th scope="col"></th></tr></thead><tbody>${users.map(row)}</tbody></table></div>
<div class="card"><h2>Create a user</h2><form class="stack" method="post" action="/users">${csrfField(s.viewer)}
<label for="n-name">Name <span class="hint">3–64 letters, digits, _ . -</span><input id="n-name" name="name" required minlength="3" maxlength="64" pattern="[A-Za-z0-9_.\-]+" autocomplete="off"></label>
<label for="n-email">Email<input id="n-email" name="email" type="email" maxlength="256"></label>
<label for="n-role">Role<select id="n-role" name="role">${opt('guest', 'guest')}${opt('root', 'guest')}</select></label>
<label for="n-password">Password <span class="hint">at least 8 characters</span><input id="n-password" name="password" type="password" autocomplete="new-password" minlength="8" required></label>
<button type="submit">Create user</button></form></div>` : ''}
<div class="card"><h2>Change my password</h2><form class="stack" method="post" action="/users/password">${csrfField(s.viewer)}
<input type="text" name="username" autocomplete="username" value="${s.viewer.name}" hidden>
<label for="u-old">Current password<input id="u-old" name="old_password" type="password" autocomplete="current-password" required></label>
<label for="u-new">New password <span class="hint">at least 8 characters</span><input id="u-new" name="new_password" type="password" autocomplete="new-password" minlength="8" required></label>
<button type="submit">Change password</button></form></div>`;
  });
  action('/users/password', async (c, s, f) => {
    // The API lets root skip the old password; the console asks for it from everyone.
    const check = await app.request('/api/v1/users/signin', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: s.viewer.name, password: f.old_password ?? '' }) });
    if (check.status !== 200) return failed(c, s, 'Password not changed', { status: 401, json: { message: 'the current password is wrong' }, headers: new Headers() }, '/users');
    const a = await api(s.jwt, 'POST', `/api/v1/users/${s.viewer.userId}/reset_password`, { old_password: f.old_password ?? '', new_password: f.new_password ?? '' });
    return a.status === 200 ? done(c, '/users', 'password changed') : failed(c, s, 'Password not changed', a, '/users');
  });
  action('/users', async (c, s, f) => {
    const a = await api(s.jwt, 'POST', '/api/v1/users', { name: f.name ?? '', email: f.email ?? '', role: f.role ?? 'guest', password: f.password ?? '' });
    return a.status === 200 ? done(c, '/users', `user ${a.json.name} created`) : failed(c, s, 'User not created', a, '/users');
  });
  action('/users/:id{[0-9]+}', async (c, s, f) => {
    const a = await api(s.jwt, 'PATCH', `/api/v1/users/${c.req.param('id')}`, { role: f.role ?? '', state: f.state ?? '' });
    return a.status === 200 ? done(c, '/users', `user ${a.json.name} saved`) : failed(c, s, 'User not saved', a, '/users');
  });
  view('/config', 'Configuration', async (_c, s) => {
    const scheds = ((await api(s.jwt, 'GET', '/api/v1/schedulers?per_page=1000')).json ?? []) as any[];
    const effective = redactConfig(deps.config);
    return html`<div class="card"><h2>Manager</h2><p class="muted">Effective configuration; secrets are replaced by [REDACTED].</p><pre id="manager-config">${JSON.stringify(effective, null, 2)}</pre></div>
<div class="card"><h2>Schedulers</h2><p class="muted">Each scheduler's effective configuration, as it sent it when it registered (secrets redacted by the scheduler and again here).</p>
${scheds.length === 0 ? html`<p>No scheduler has registered.</p>` : scheds.map((x) => html`<h3>${x.hostname} (${x.ip}:${x.port}, cluster ${x.scheduler_cluster_id}, ${x.state})</h3><pre data-scheduler-config="${x.hostname}">${JSON.stringify(redactConfig(x.config ?? { note: 'this scheduler did not send its configuration' }), null, 2)}</pre>`)}</div>`;
  });
};
