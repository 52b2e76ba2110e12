import { describe, expect, it } from 'vitest';
import { jobQueue } from '../../adapters/keys.js';
import type { JobMessage } from '../../scheduler/protocol/job.js';
import { unseal } from '../../scheduler/job/sealed.js';
import { SCHEDULER_SECRET, testManager } from './helpers.js';

const HARBOR_BODY = (url: string, clusterIds: number[] | null = null) => ({
  type: 'preheat',
  args: {
    type: 'image',
    url,
    tag: '',
    filtered_query_params: '',
    headers: { Authorization: 'Bearer harbor-registry-jwt' },
    scope: '',
    concurrent_count: 0,
    timeout: 0,
  },
  scheduler_cluster_ids: clusterIds,
});
const MANIFEST = 'http://127.0.0.1:5000/v2/library/alpine/manifests/3.19';

async function createPat(m: Awaited<ReturnType<typeof testManager>>, jwt: string, scopes: string[] = ['job'], name = 'harbor') {
  const res = await m.req('POST', '/api/v1/personal-access-tokens', {
    token: jwt,
    body: { name, scopes, expired_at: new Date(m.now() + 86_400_000).toISOString() },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { id: number; token: string; token_hash?: string };
}

describe('manager API: health, users, auth', () => {
  it('GET /healthy is 200 without auth', async () => {
    const m = await testManager();
    const res = await m.req('GET', '/healthy');
    expect(res.status).toBe(200);
    expect(await res.json()).toBe('OK');
  });

  it('signs in root, rejects bad passwords, and requires a JWT on /api/v1', async () => {
    const m = await testManager();
    expect((await m.req('POST', '/api/v1/users/signin', { body: { name: 'root', password: 'wrong-password' } })).status).toBe(401);
    expect((await m.req('POST', '/api/v1/users/signin', { body: { name: 'nobody', password: 'whatever1' } })).status).toBe(401);
    const bad = await m.req('POST', '/api/v1/users/signin', { body: { name: 'root' } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { fields: Record<string, string> }).fields).toHaveProperty('password');
    const jwt = await m.signin();
    expect((await m.req('GET', '/api/v1/clusters')).status).toBe(401);
    expect((await m.req('GET', '/api/v1/clusters', { token: 'garbage' })).status).toBe(401);
    expect((await m.req('GET', '/api/v1/clusters', { token: jwt })).status).toBe(200);
    expect((await m.req('GET', `/api/v1/clusters?token=${jwt}`)).status).toBe(200);
    expect((await m.req('GET', '/api/v1/clusters', { headers: { cookie: `jwt=${jwt}` } })).status).toBe(200);
  });

  it('expires JWTs after auth.jwtTimeout', async () => {
    const m = await testManager({ auth: { rootPassword: 'root-password-123', jwtTimeout: '1h' } });
    const jwt = await m.signin();
    expect((await m.req('GET', '/api/v1/clusters', { token: jwt })).status).toBe(200);
    m.advance(3_600_001);
    expect((await m.req('GET', '/api/v1/clusters', { token: jwt })).status).toBe(401);
  });

  it('users: root creates a guest; the guest may read but not write; users never expose hashes', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    const created = await m.req('POST', '/api/v1/users', { token: jwt, body: { name: 'alice', password: 'alice-password', role: 'guest' } });
    expect(created.status).toBe(200);
    const alice = (await created.json()) as Record<string, unknown>;
    expect(alice).not.toHaveProperty('password_hash');
    expect((await m.req('POST', '/api/v1/users', { token: jwt, body: { name: 'alice', password: 'alice-password' } })).status).toBe(409);
    const guest = await m.signin('alice', 'alice-password');
    expect((await m.req('GET', '/api/v1/clusters', { token: guest })).status).toBe(200);
    expect((await m.req('POST', '/api/v1/clusters', { token: guest, body: { name: 'x' } })).status).toBe(403);
    expect((await m.req('GET', '/api/v1/users', { token: guest })).status).toBe(403);
    expect((await m.req('GET', `/api/v1/users/${alice.id}`, { token: guest })).status).toBe(200);
    expect((await m.req('GET', '/api/v1/users/1', { token: guest })).status).toBe(403);
    const list = (await (await m.req('GET', '/api/v1/users', { token: jwt })).json()) as Array<Record<string, unknown>>;
    expect(list.map((u) => u.name)).toEqual(['root', 'alice']);
    expect(JSON.stringify(list)).not.toContain('scrypt');
    // Disabling a user cuts its existing JWT off at once.
    expect((await m.req('PATCH', `/api/v1/users/${alice.id}`, { token: jwt, body: { state: 'disable' } })).status).toBe(200);
    expect((await m.req('GET', '/api/v1/clusters', { token: guest })).status).toBe(401);
  });

  it('reset_password: own password needs the old one', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    const alice = (await (await m.req('POST', '/api/v1/users', { token: jwt, body: { name: 'alice', password: 'alice-password' } })).json()) as { id: number };
    const guest = await m.signin('alice', 'alice-password');
    expect((await m.req('POST', `/api/v1/users/${alice.id}/reset_password`, { token: guest, body: { old_password: 'nope-nope', new_password: 'new-password-1' } })).status).toBe(401);
    expect((await m.req('POST', `/api/v1/users/${alice.id}/reset_password`, { token: guest, body: { old_password: 'alice-password', new_password: 'new-password-1' } })).status).toBe(200);
    await m.signin('alice', 'new-password-1');
  });
});

describe('manager API: personal access tokens', () => {
  it('creates (token shown once), lists without secrets, authenticates /oapi by Bearer and access_token, revokes', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    const pat = await createPat(m, jwt, ['job']);
    expect(pat.token.length).toBeGreaterThan(30);
    expect(pat).not.toHaveProperty('token_hash');
    const list = await m.req('GET', '/api/v1/personal-access-tokens', { token: jwt });
    const text = await list.text();
    expect(text).not.toContain(pat.token);
    expect(text).not.toContain('token_hash');
    expect((await m.req('GET', '/oapi/v1/jobs', { token: pat.token })).status).toBe(200);
    expect((await m.req('GET', `/oapi/v1/jobs?access_token=${pat.token}`)).status).toBe(200);
    // Scoped to job: clusters are forbidden.
    expect((await m.req('GET', '/oapi/v1/clusters', { token: pat.token })).status).toBe(403);
    // A PAT is not a JWT.
    expect((await m.req('GET', '/api/v1/jobs', { token: pat.token })).status).toBe(401);
    expect((await m.req('GET', '/oapi/v1/jobs', { token: 'not-a-token' })).status).toBe(401);
    expect((await m.req('GET', '/oapi/v1/jobs')).status).toBe(401);
    // The stored record holds only the hash.
    const raw = JSON.stringify(await m.kv.list(''));
    expect(raw).not.toContain(pat.token);
    expect((await m.req('PATCH', `/api/v1/personal-access-tokens/${pat.id}`, { token: jwt, body: { state: 'inactive' } })).status).toBe(200);
    expect((await m.req('GET', '/oapi/v1/jobs', { token: pat.token })).status).toBe(403);
    expect((await m.req('DELETE', `/api/v1/personal-access-tokens/${pat.id}`, { token: jwt })).status).toBe(200);
    expect((await m.req('GET', '/oapi/v1/jobs', { token: pat.token })).status).toBe(401);
    expect((await m.req('GET', `/api/v1/personal-access-tokens/${pat.id}`, { token: jwt })).status).toBe(404);
  });

  it('expired tokens are refused; empty scopes allow every /oapi resource; guest tokens are read-only', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    const all = await createPat(m, jwt, [], 'all');
    expect((await m.req('GET', '/oapi/v1/clusters', { token: all.token })).status).toBe(200);
    expect((await m.req('GET', '/oapi/v1/jobs', { token: all.token })).status).toBe(200);
    m.advance(86_400_001);
    expect((await m.req('GET', '/oapi/v1/jobs', { token: all.token })).status).toBe(403);
    await m.req('POST', '/api/v1/users', { token: jwt, body: { name: 'guest1', password: 'guest-password' } });
    const gjwt = await m.signin('guest1', 'guest-password');
    const gpat = await createPat(m, gjwt, ['job'], 'guest-pat');
    expect((await m.req('GET', '/oapi/v1/jobs', { token: gpat.token })).status).toBe(200);
    expect((await m.req('POST', '/oapi/v1/jobs', { token: gpat.token, body: HARBOR_BODY(MANIFEST) })).status).toBe(403);
    // A guest cannot mint a token for root.
    const res = await m.req('POST', '/api/v1/personal-access-tokens', { token: gjwt, body: { name: 'steal', user_id: 1, expired_at: '2030-01-01T00:00:00Z' } });
    expect(res.status).toBe(403);
  });
});

describe('manager API: clusters', () => {
  it('has a default cluster; CRUD on /api/v1/clusters and /oapi/v1/clusters with validation', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    const pat = await createPat(m, jwt, ['cluster'], 'clusters');
    const list = (await (await m.req('GET', '/api/v1/clusters', { token: jwt })).json()) as Array<Record<string, unknown>>;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ id: 1, is_default: true, scheduler_cluster_id: 1, seed_peer_cluster_id: 1 });

    const bad = await m.req('POST', '/oapi/v1/clusters', { token: pat.token, body: { name: 'bad name!', scopes: { cidrs: ['10.0.0.0/99'], hostnames: ['('] } } });
    expect(bad.status).toBe(400);
    const fields = ((await bad.json()) as { fields: Record<string, string> }).fields;
    expect(Object.keys(fields).sort()).toEqual(['name', 'scopes.cidrs.0', 'scopes.hostnames.0']);

    const created = await m.req('POST', '/oapi/v1/clusters', { token: pat.token, body: { name: 'east', scopes: { idc: 'idc-a|idc-b', cidrs: ['10.1.0.0/16'] } } });
    expect(created.status).toBe(200);
    const east = (await created.json()) as { id: number; scopes: { idc: string } };
    expect(east.id).toBe(2);
    expect((await m.req('POST', '/api/v1/clusters', { token: jwt, body: { name: 'east' } })).status).toBe(409);
    const patched = await m.req('PATCH', `/api/v1/clusters/${east.id}`, { token: jwt, body: { bio: 'east coast', name: 'east-1' } });
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ bio: 'east coast', name: 'east-1', scopes: { idc: 'idc-a|idc-b' } });
    // the old name is free again
    expect((await m.req('POST', '/api/v1/clusters', { token: jwt, body: { name: 'east' } })).status).toBe(200);
    expect((await m.req('GET', `/oapi/v1/clusters/${east.id}`, { token: pat.token })).status).toBe(200);
    expect((await m.req('DELETE', '/api/v1/clusters/1', { token: jwt })).status).toBe(409);
    expect((await m.req('DELETE', `/oapi/v1/clusters/${east.id}`, { token: pat.token })).status).toBe(200);
    expect((await m.req('GET', `/api/v1/clusters/${east.id}`, { token: jwt })).status).toBe(404);
    expect((await m.req('GET', '/api/v1/clusters/abc', { token: jwt })).status).toBe(400);
    // Read-only Dragonfly aliases see the same clusters.
    const sc = (await (await m.req('GET', '/api/v1/scheduler-clusters', { token: jwt })).json()) as Array<{ id: number }>;
    // ids are never reused; a refused create (409) still consumed one
    expect(sc.map((x) => x.id)).toEqual([1, 4]);
    expect((await m.req('GET', '/api/v1/seed-peer-clusters/1', { token: jwt })).status).toBe(200);
    expect((await m.req('GET', '/api/v1/seed-peer-clusters/2', { token: jwt })).status).toBe(404);
  });
});

describe('manager API: schedulers and search', () => {
  it('registration needs the scheduler secret; schedulers go inactive after 3 missed keepalives', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    const body = { hostname: 's1', ip: '127.0.0.1', port: 8002, scheduler_cluster_id: 1 };
    expect((await m.req('POST', '/api/v1/schedulers', { body })).status).toBe(401);
    expect((await m.req('POST', '/api/v1/schedulers', { token: jwt, body })).status).toBe(401);
    expect((await m.req('POST', '/api/v1/schedulers', { token: SCHEDULER_SECRET, body: { ...body, scheduler_cluster_id: 99 } })).status).toBe(400);
    const s = await m.registerScheduler(1, 's1');
    const again = await m.registerScheduler(1, 's1');
    expect(again.id).toBe(s.id);
    const get = async () => (await (await m.req('GET', `/api/v1/schedulers/${s.id}`, { token: jwt })).json()) as { state: string };
    expect((await get()).state).toBe('active');
    m.advance(14_000);
    expect((await m.req('POST', '/api/v1/schedulers/keepalive', { token: SCHEDULER_SECRET, body: { hostname: 's1', ip: '127.0.0.1', scheduler_cluster_id: 1 } })).status).toBe(200);
    m.advance(14_000);
    expect((await get()).state).toBe('active');
    m.advance(1_001);
    expect((await get()).state).toBe('inactive');
    const listed = (await (await m.req('GET', '/api/v1/schedulers?scheduler_cluster_id=1&state=inactive', { token: jwt })).json()) as unknown[];
    expect(listed).toHaveLength(1);
    expect((await m.req('POST', '/api/v1/schedulers/keepalive', { token: SCHEDULER_SECRET, body: { hostname: 'unknown', ip: '127.0.0.1', scheduler_cluster_id: 1 } })).status).toBe(404);
  });

  it('search returns the best-scoring cluster with active schedulers, in the exact shape agents read', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    expect((await m.req('GET', '/api/v1/schedulers/search?hostname=h&ip=10.1.2.3')).status).toBe(404);
    const mk = async (body: unknown) => ((await (await m.req('POST', '/api/v1/clusters', { token: jwt, body })).json()) as { id: number }).id;
    const cidr = await mk({ name: 'cidr', scopes: { cidrs: ['10.1.0.0/16'] } });
    const idc = await mk({ name: 'idc', scopes: { idc: 'IDC-A|idc-b' } });
    const loc = await mk({ name: 'loc', scopes: { location: 'cn|zj|hz' } });
    await m.registerScheduler(1, 'default-s', '127.0.0.1', 8002);
    await m.registerScheduler(cidr, 'cidr-s', '127.0.0.2', 8003);
    await m.registerScheduler(idc, 'idc-s', '127.0.0.3', 8004);
    await m.registerScheduler(loc, 'loc-s', '127.0.0.4', 8005);
    const search = async (q: string) => {
      const res = await m.req('GET', `/api/v1/schedulers/search?${q}`);
      return { status: res.status, body: (await res.json()) as { scheduler_cluster_id: number; schedulers: unknown[] } };
    };
    expect((await search('hostname=h&ip=10.1.2.3&idc=idc-b')).body).toEqual({ scheduler_cluster_id: cidr, schedulers: [{ ip: '127.0.0.2', port: 8003, hostname: 'cidr-s' }] });
    expect((await search('hostname=h&ip=192.168.0.1&idc=idc-a')).body.scheduler_cluster_id).toBe(idc);
    expect((await search('hostname=h&ip=192.168.0.1&location=cn|zj')).body.scheduler_cluster_id).toBe(loc);
    expect((await search('hostname=h&ip=192.168.0.1')).body.scheduler_cluster_id).toBe(1);
    // The CIDR cluster's scheduler stops keeping alive: the next best cluster with active schedulers answers.
    m.advance(16_000);
    await m.registerScheduler(1, 'default-s', '127.0.0.1', 8002);
    await m.registerScheduler(idc, 'idc-s', '127.0.0.3', 8004);
    expect((await search('hostname=h&ip=10.1.2.3&idc=idc-b')).body.scheduler_cluster_id).toBe(idc);
    // Schedulers without the schedule feature are not offered to agents.
    m.advance(16_000);
    await m.registerScheduler(1, 'default-s', '127.0.0.1', 8002, ['preheat']);
    expect((await search('ip=192.168.0.1')).status).toBe(404);
  });
});

describe('manager API: jobs', () => {
  it('accepts exactly what Harbor posts and answers what Harbor parses; args are redacted on read', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    const pat = await createPat(m, jwt);
    // No active scheduler anywhere: nobody could run it.
    expect((await m.req('POST', '/oapi/v1/jobs', { token: pat.token, body: HARBOR_BODY(MANIFEST) })).status).toBe(503);
    await m.registerScheduler(1);
    const res = await m.req('POST', '/oapi/v1/jobs', { token: pat.token, body: HARBOR_BODY(MANIFEST) });
    expect(res.status).toBe(200);
    const job = (await res.json()) as Record<string, any>;
    expect(typeof job.id).toBe('number');
    expect(job.state).toBe('PENDING');
    expect(Number.isNaN(Date.parse(job.created_at))).toBe(false);
    expect(Number.isNaN(Date.parse(job.updated_at))).toBe(false);
    expect(job.args).toMatchObject({ type: 'image', url: MANIFEST, scope: 'single_seed_peer', concurrent_task_count: 8 });
    expect(job.args.headers).toEqual({ Authorization: '[REDACTED]' });
    expect(job.scheduler_clusters).toEqual([{ id: 1, name: 'cluster-1' }]);
    expect(job.result.job_states).toHaveLength(1);
    expect(job).not.toHaveProperty('deadline_ms');
    const text = JSON.stringify(await (await m.req('GET', `/oapi/v1/jobs/${job.id}`, { token: pat.token })).json());
    expect(text).not.toContain('harbor-registry-jwt');
    expect(JSON.stringify(await m.kv.list(''))).not.toContain('harbor-registry-jwt');
    // The queue message carries the credentials the scheduler needs, sealed under the scheduler secret.
    const [msg] = await m.queue.receive<JobMessage>(jobQueue('1'));
    expect(msg.body).toMatchObject({ job_id: job.id, scheduler_cluster_id: 1, type: 'preheat' });
    expect(JSON.stringify(msg.body)).not.toContain('harbor-registry-jwt');
    expect(unseal<{ headers: Record<string, string> }>(SCHEDULER_SECRET, msg.body.sealed_credentials!).headers.Authorization).toBe('Bearer harbor-registry-jwt');
  });

  it('a job whose messages cannot be enqueued is not stored: no job without its messages', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    await m.registerScheduler(1);
    await m.queue.close();
    const res = await m.req('POST', '/api/v1/jobs', { token: jwt, body: { type: 'get_task', args: { task_id: 'x' } } });
    // The status is the queue adapter's error mapped (a closed memory queue says INVALID → 400).
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(await (await m.req('GET', '/api/v1/jobs', { token: jwt })).json()).toEqual([]);
  });

  it('rejects bad jobs with 400 naming each field', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    await m.registerScheduler(1);
    const cases: Array<[unknown, string[]]> = [
      [{ type: 'gc', args: {} }, ['type']],
      [{ type: 'preheat', args: { type: 'image', url: 'http://x/notamanifest' } }, ['args.url']],
      [{ type: 'preheat', args: { type: 'blob', url: MANIFEST, scope: 'everyone', piece_length: 5 } }, ['args.piece_length', 'args.scope', 'args.type']],
      [{ type: 'preheat', args: { type: 'file' } }, ['args.url']],
      [{ type: 'preheat', args: { type: 'file', url: 'http://127.0.0.1/f', timeout: -1, platform: 'linux' } }, ['args.platform', 'args.timeout']],
      [{ type: 'get_task', args: {} }, ['args.task_id']],
      [{ type: 'preheat', args: { type: 'file', url: 'http://127.0.0.1/f' }, scheduler_cluster_ids: [42] }, ['scheduler_cluster_ids']],
    ];
    for (const [body, fields] of cases) {
      const res = await m.req('POST', '/api/v1/jobs', { token: jwt, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(Object.keys(((await res.json()) as { fields: Record<string, string> }).fields).sort(), JSON.stringify(body)).toEqual(fields);
    }
    expect((await m.req('POST', '/api/v1/jobs', { token: jwt, body: '{not json' })).status).toBe(400);
  });

  it('lists newest first with page/per_page and a Link header; GET/PATCH/DELETE by id', async () => {
    const m = await testManager({ jobs: { rateLimitPerCluster: 100 } });
    const jwt = await m.signin();
    await m.registerScheduler(1);
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) {
      const type = i % 2 === 0 ? 'preheat' : 'get_task';
      const args = type === 'preheat' ? { type: 'file', url: `http://127.0.0.1/f${i}` } : { task_id: `t${i}` };
      ids.push(((await (await m.req('POST', '/api/v1/jobs', { token: jwt, body: { type, args } })).json()) as { id: number }).id);
    }
    expect(ids).toEqual([1, 2, 3, 4, 5]);
    const p1 = await m.req('GET', '/api/v1/jobs?page=1&per_page=2', { token: jwt });
    expect(((await p1.json()) as Array<{ id: number }>).map((j) => j.id)).toEqual([5, 4]);
    const link = p1.headers.get('link')!;
    expect(link).toContain('page=2&per_page=2>;rel=next');
    expect(link).toContain('page=3&per_page=2>;rel=last');
    expect(p1.headers.get('x-total-count')).toBe('5');
    const p3 = (await (await m.req('GET', '/api/v1/jobs?page=3&per_page=2', { token: jwt })).json()) as Array<{ id: number }>;
    expect(p3.map((j) => j.id)).toEqual([1]);
    const onlyTasks = (await (await m.req('GET', '/api/v1/jobs?type=get_task', { token: jwt })).json()) as Array<{ id: number }>;
    expect(onlyTasks.map((j) => j.id)).toEqual([4, 2]);
    expect((await m.req('GET', '/api/v1/jobs?per_page=0', { token: jwt })).status).toBe(400);
    const patched = await m.req('PATCH', '/api/v1/jobs/3', { token: jwt, body: { bio: 'hello' } });
    expect(await patched.json()).toMatchObject({ id: 3, bio: 'hello' });
    expect((await m.req('PATCH', '/api/v1/jobs/3', { token: jwt, body: { state: 'SUCCESS' } })).status).toBe(400);
    expect((await m.req('DELETE', '/api/v1/jobs/3', { token: jwt })).status).toBe(200);
    expect((await m.req('GET', '/api/v1/jobs/3', { token: jwt })).status).toBe(404);
    expect((await m.req('DELETE', '/api/v1/jobs/3', { token: jwt })).status).toBe(404);
  });

  it('rate-limits job creation per cluster with 429, refilling over time', async () => {
    const m = await testManager({ jobs: { rateLimitPerCluster: 3 } });
    const jwt = await m.signin();
    await m.registerScheduler(1);
    const post = () => m.req('POST', '/api/v1/jobs', { token: jwt, body: { type: 'get_task', args: { task_id: 'x' } } });
    for (let i = 0; i < 3; i++) expect((await post()).status).toBe(200);
    const limited = await post();
    expect(limited.status).toBe(429);
    m.advance(400);
    expect((await post()).status).toBe(200);
    expect((await post()).status).toBe(429);
  });

  it('scheduler reports: progress, terminal states are final, reports are idempotent, timeouts fail the job', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    await m.registerScheduler(1);
    const job = (await (await m.req('POST', '/api/v1/jobs', { token: jwt, body: { type: 'preheat', args: { type: 'file', url: 'http://127.0.0.1/f', timeout: 60e9 } } })).json()) as { id: number };
    const report = (body: unknown, token = SCHEDULER_SECRET) => m.req('POST', `/api/v1/jobs/${job.id}/report`, { token, body });
    expect((await report({ scheduler_cluster_id: 1, state: 'SUCCESS' }, jwt)).status).toBe(401);
    expect((await m.req('POST', '/api/v1/jobs/999/report', { token: SCHEDULER_SECRET, body: { scheduler_cluster_id: 1, state: 'PENDING' } })).status).toBe(404);
    expect(await (await report({ scheduler_cluster_id: 1, state: 'PENDING', progress: { done: 1, total: 2 } })).json()).toMatchObject({ state: 'PENDING', cluster_state: 'PENDING' });
    const results = [{ success_tasks: [{ url: 'http://127.0.0.1/f', hostname: 'seed', ip: '127.0.0.1' }], failure_tasks: [], scheduler_cluster_id: 1 }];
    expect(await (await report({ scheduler_cluster_id: 1, state: 'SUCCESS', results })).json()).toMatchObject({ state: 'SUCCESS' });
    // A late FAILURE (e.g. a redelivered message) changes nothing.
    expect(await (await report({ scheduler_cluster_id: 1, state: 'FAILURE', error: 'late' })).json()).toMatchObject({ state: 'SUCCESS' });
    const got = (await (await m.req('GET', `/api/v1/jobs/${job.id}`, { token: jwt })).json()) as any;
    expect(got.state).toBe('SUCCESS');
    expect(got.result.job_states[0]).toMatchObject({ state: 'SUCCESS', error: '', results });

    const slow = (await (await m.req('POST', '/api/v1/jobs', { token: jwt, body: { type: 'preheat', args: { type: 'file', url: 'http://127.0.0.1/g', timeout: 60e9 } } })).json()) as { id: number };
    m.advance(59_000);
    expect(((await (await m.req('GET', `/api/v1/jobs/${slow.id}`, { token: jwt })).json()) as any).state).toBe('PENDING');
    m.advance(1_000);
    const failed = (await (await m.req('GET', `/api/v1/jobs/${slow.id}`, { token: jwt })).json()) as any;
    expect(failed.state).toBe('FAILURE');
    expect(failed.result.job_states[0].error).toMatch(/timed out/);
    // A success that arrives after the timeout does not resurrect it.
    expect(await (await m.req('POST', `/api/v1/jobs/${slow.id}/report`, { token: SCHEDULER_SECRET, body: { scheduler_cluster_id: 1, state: 'SUCCESS' } })).json()).toMatchObject({ state: 'FAILURE' });
  });

  it('fans out to every cluster with an active preheat scheduler; one failed cluster fails the job', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    const c2 = ((await (await m.req('POST', '/api/v1/clusters', { token: jwt, body: { name: 'two' } })).json()) as { id: number }).id;
    await m.req('POST', '/api/v1/clusters', { token: jwt, body: { name: 'three' } }); // no scheduler: not targeted
    await m.registerScheduler(1, 'a');
    await m.registerScheduler(c2, 'b');
    const job = (await (await m.req('POST', '/api/v1/jobs', { token: jwt, body: HARBOR_BODY(MANIFEST) })).json()) as any;
    expect(job.result.job_states.map((s: any) => s.scheduler_cluster_id)).toEqual([1, c2]);
    expect(await m.queue.receive(jobQueue('1'))).toHaveLength(1);
    expect(await m.queue.receive(jobQueue(String(c2)))).toHaveLength(1);
    await m.req('POST', `/api/v1/jobs/${job.id}/report`, { token: SCHEDULER_SECRET, body: { scheduler_cluster_id: 1, state: 'SUCCESS' } });
    expect(((await (await m.req('GET', `/api/v1/jobs/${job.id}`, { token: jwt })).json()) as any).state).toBe('PENDING');
    await m.req('POST', `/api/v1/jobs/${job.id}/report`, { token: SCHEDULER_SECRET, body: { scheduler_cluster_id: c2, state: 'FAILURE', error: 'blob sha256:abc: 404' } });
    const done = (await (await m.req('GET', `/api/v1/jobs/${job.id}`, { token: jwt })).json()) as any;
    expect(done.state).toBe('FAILURE');
    expect(done.result.job_states.map((s: any) => s.error)).toEqual(['', 'blob sha256:abc: 404']);
  });
});

describe('bootstrap', () => {
  it('with requireRootPassword (Lambda) refuses to generate a root password; creates root and the default cluster once', async () => {
    const { MemoryKvStore } = await import('../../adapters/kv/memory.js');
    const { bootstrap } = await import('../../control/manager/bootstrap.js');
    const { silentLogger } = await import('../../adapters/log.js');
    const kv = new MemoryKvStore();
    await expect(bootstrap(kv, { jobRateLimit: 10, now: new Date(), logger: silentLogger, requireRootPassword: true })).rejects.toMatchObject({ code: 'CONFIG' });
    const first = await bootstrap(kv, { jobRateLimit: 10, now: new Date(), logger: silentLogger });
    expect(first.generatedRootPassword).toMatch(/^[\w-]{16}$/);
    const again = await Promise.all([1, 2, 3].map(() => bootstrap(kv, { jobRateLimit: 10, now: new Date(), logger: silentLogger })));
    expect(again.every((r) => r.generatedRootPassword === undefined)).toBe(true);
    expect((await kv.list('v1/clusters/')).items).toHaveLength(1);
    expect((await kv.list('v1/mgr-users/')).items).toHaveLength(1);
  });
});

describe('manager API: metrics and errors', () => {
  it('exposes dragonfly_manager_* metrics and answers unknown routes with JSON 404', async () => {
    const m = await testManager();
    const jwt = await m.signin();
    await m.registerScheduler(1);
    await m.req('POST', '/api/v1/jobs', { token: jwt, body: { type: 'get_task', args: { task_id: 'x' } } });
    await m.req('GET', '/api/v1/schedulers/search?ip=127.0.0.1');
    const text = await (await m.req('GET', '/metrics')).text();
    expect(text).toMatch(/dragonfly_manager_create_job_success_total\{name="get_task"\} 1/);
    expect(text).toMatch(/dragonfly_manager_search_scheduler_cluster_total 1/);
    expect(text).toMatch(/dragonfly_manager_requests_total\{code="200",method="POST",url="\/api\/v1\/jobs"\} 1/);
    const nf = await m.req('GET', '/nope');
    expect(nf.status).toBe(404);
    expect(await nf.json()).toMatchObject({ code: 'NOT_FOUND' });
  });
});
