import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schedulerConfig } from './config.js';
import { DfdaemonClient } from './dfdaemon-client.js';
import { loadProto } from './protocol/loader.js';
import { createScheduler, type Scheduler } from './server.js';
import { SimPeer, hostMsg, schedulerClient, unaryCall } from '../test/scheduler/support.js';
import { HELD_TASK_DESCRIPTION } from './protocol/messages.js';
import { ReportBuilder } from './report.js';

const PL = 4 * 1024 * 1024;
const digest = (s: string) => 'sha256:' + createHash('sha256').update(s).digest('hex');
let n = 0;
const taskId = () => createHash('sha256').update(`task-${n++}-${Math.random()}`).digest('hex');

function btsPiece(number: number) {
  return { piece: { number, offset: number * PL, length: PL, digest: digest(`p${number}`), traffic_type: 'BACK_TO_SOURCE', cost_ms: 5 } };
}

describe('scheduler over real gRPC streams', () => {
  let scheduler: Scheduler;
  let client: grpc.Client & Record<string, any>;
  const peers: SimPeer[] = [];
  const open = (host: string, task: string, id: string) => {
    const p = new SimPeer(client, host, task, id);
    peers.push(p);
    return p;
  };

  beforeAll(async () => {
    scheduler = createScheduler(
      schedulerConfig({
        server: { ip: '127.0.0.1', port: 0 },
        metrics: { ip: '127.0.0.1', port: 0 },
        scheduling: { rejoinGrace: 0, retryInterval: '20ms', retryLimit: 4, retryBackToSourceLimit: 2, backToSourceCount: 1 },
        seedPeer: { triggerTimeout: '2s' },
      }),
    );
    const addr = await scheduler.start();
    client = schedulerClient(addr.grpc);
    for (const h of ['a', 'b', 'c', 'd']) await unaryCall(client, 'AnnounceHost', { host: hostMsg(h), interval_ms: 60_000 });
  });

  afterAll(async () => {
    for (const p of peers) p.call.cancel();
    client?.close();
    await scheduler?.stop();
  });

  it('rejects a peer of an unknown host with NOT_FOUND', async () => {
    const p = open('nope', taskId(), 'x');
    p.register();
    const err = await p.closed();
    expect(err?.code).toBe(grpc.status.NOT_FOUND);
  });

  it('reports exact traffic per peer, task and host: each piece once, at its own length (a short last piece), held tasks announced again are no traffic', async () => {
    const t = taskId();
    const SIZE = 2 * PL + 1000;
    const lengths = [PL, PL, 1000];
    const piece = (num: number, parent = '') => ({ piece: { number: num, offset: num * PL, length: lengths[num], digest: digest(`x${num}`), parent_id: parent, traffic_type: parent ? 'REMOTE_PEER' : 'BACK_TO_SOURCE', cost_ms: 3 } });
    const builder = new ReportBuilder(scheduler.resources, { hostname: 's', ip: '127.0.0.1', clusterId: 1, intervalMs: 1_000 });
    builder.build(1_000);
    const src = open('c', t, 'tc');
    src.register();
    await src.next('need_back_to_source_response');
    src.send('download_peer_back_to_source_started_request', { content_length: SIZE, piece_length: PL });
    for (const num of [0, 1, 1, 2]) src.send('download_piece_back_to_source_finished_request', piece(num)); // piece 1 twice
    await waitFor(() => scheduler.resources.tasks.get(t)?.pieces.size === 3);
    const child = open('d', t, 'td');
    child.register();
    await child.next('normal_task_response');
    child.send('download_peer_started_request');
    for (const num of [0, 1, 2, 2]) child.send('download_piece_finished_request', piece(num, 'tc'));
    // Host b announces the same task as held (what an agent tells a restarted scheduler): no traffic.
    const held = open('b', t, 'tb-held');
    held.register({ need_back_to_source: true });
    held.send('download_peer_back_to_source_started_request', { description: HELD_TASK_DESCRIPTION, content_length: SIZE, piece_length: PL });
    for (const num of [0, 1, 2]) held.send('download_piece_back_to_source_finished_request', piece(num));
    await waitFor(() => scheduler.resources.peer('td')?.finishedPieces.size === 3 && scheduler.resources.peer('tb-held')?.finishedPieces.size === 3);

    const r = builder.build(3_000); // 2 s after the first build
    const task = r.tasks.find((x) => x.id === t)!;
    expect(task).toMatchObject({ bytes_from_origin: SIZE, bytes_from_peers: SIZE });
    const byId = Object.fromEntries(task.peers.map((p) => [p.id, p]));
    expect(byId.tc).toMatchObject({ bytes_from_origin: SIZE, bytes_from_peers: 0, finished_pieces: 3 });
    expect(byId.td).toMatchObject({ bytes_from_origin: 0, bytes_from_peers: SIZE, finished_pieces: 3 });
    expect(byId['tb-held']).toMatchObject({ bytes_from_origin: 0, bytes_from_peers: 0, finished_pieces: 3 });
    const host = (id: string) => r.hosts.find((h) => h.id === id)!;
    expect(host('c')).toMatchObject({ upload_rate: Math.round(SIZE / 2), download_rate: Math.round(SIZE / 2) });
    expect(host('d')).toMatchObject({ upload_rate: 0, download_rate: Math.round(SIZE / 2) });
    expect(host('b')).toMatchObject({ upload_rate: 0, download_rate: 0 });
    // The next interval moved nothing: the rates fall to 0, the task keeps its totals.
    const r2 = builder.build(4_000);
    expect(r2.hosts.find((h) => h.id === 'c')).toMatchObject({ upload_rate: 0, download_rate: 0 });
    expect(r2.tasks.find((x) => x.id === t)).toMatchObject({ bytes_from_origin: SIZE, bytes_from_peers: SIZE });
    for (const p of [src, child, held]) p.call.cancel();
  });

  it('a peer registered for a range that finishes holding every piece is a source: the next peer gets it as parent; one holding part stays partial', async () => {
    const t = taskId();
    const ranged = open('a', t, 'r-whole');
    ranged.register({ range: { start: 0, length: 1 } }); // a client's byte-0 probe, then the whole file
    await ranged.next('need_back_to_source_response');
    ranged.send('download_peer_back_to_source_started_request', { content_length: 3 * PL, piece_length: PL });
    for (const num of [0, 1, 2]) ranged.send('download_piece_back_to_source_finished_request', btsPiece(num));
    ranged.send('download_peer_back_to_source_finished_request', { content_length: 3 * PL, piece_count: 3 });
    await waitFor(() => scheduler.resources.peer('r-whole')?.state === 'Succeeded');
    expect(scheduler.resources.peer('r-whole')!.partial).toBe(false);
    expect(scheduler.resources.tasks.get(t)!.state).toBe('Succeeded');
    const next = open('b', t, 'r-next');
    next.register();
    const r = await next.next('normal_task_response');
    expect(r.normal_task_response.candidate_parents.map((p: any) => p.id)).toEqual(['r-whole']);

    const t2 = taskId();
    const part = open('c', t2, 'r-part');
    part.register({ range: { start: 0, length: PL } });
    await part.next('need_back_to_source_response');
    part.send('download_peer_back_to_source_started_request', { content_length: 3 * PL, piece_length: PL });
    part.send('download_piece_back_to_source_finished_request', btsPiece(0));
    part.send('download_peer_back_to_source_finished_request', { content_length: 3 * PL, piece_count: 3 });
    await waitFor(() => scheduler.resources.peer('r-part')?.state === 'Succeeded');
    expect(scheduler.resources.peer('r-part')!.partial).toBe(true);
    expect(scheduler.resources.tasks.get(t2)!.state).not.toBe('Succeeded');
    for (const p of [ranged, next, part]) p.call.cancel();
  });

  it('sends the first peer to the source, relays digests, caps back-to-source, blocklists and reschedules', async () => {
    const t = taskId();
    const a = open('a', t, 'pa');
    a.register();
    await a.next('need_back_to_source_response');
    a.send('download_peer_back_to_source_started_request', { content_length: 3 * PL, piece_length: PL });
    a.send('download_piece_back_to_source_finished_request', btsPiece(0));
    // Streams are independent: make sure a's report landed before b registers.
    await waitFor(() => scheduler.resources.tasks.get(t)?.pieces.size === 1);

    const b = open('b', t, 'pb');
    b.register();
    const rb = await b.next('normal_task_response');
    expect(rb.normal_task_response.candidate_parents.map((p: any) => p.id)).toEqual(['pa']);
    expect(rb.normal_task_response.candidate_parents[0].host.download_port).toBe(2);
    const task = rb.normal_task_response.task;
    expect(task.content_length).toBe(3 * PL);
    expect(task.piece_count).toBe(3);
    expect(task.pieces.map((p: any) => [p.number, p.digest])).toEqual([[0, digest('p0')]]);
    b.send('download_peer_started_request');

    // New digests are pushed to running peers, batched.
    a.send('download_piece_back_to_source_finished_request', btsPiece(1));
    a.send('download_piece_back_to_source_finished_request', btsPiece(2));
    const pushed = new Map<number, string>();
    while (!pushed.has(1) || !pushed.has(2)) {
      const m = await b.next('task_pieces_response', 3000, []);
      for (const p of m.task_pieces_response.task.pieces) pushed.set(p.number, p.digest);
    }
    // (piece 0 may be pushed again if it landed within b's first batch window: harmless, same digest)
    for (const [num, dg] of pushed) expect(dg).toBe(digest(`p${num}`));
    b.send('download_piece_finished_request', { piece: { number: 0, parent_id: 'pa', offset: 0, length: PL, digest: digest('p0'), traffic_type: 'REMOTE_PEER', cost_ms: 7 } });

    // Cap of 1 back-to-source: the third peer gets parents, a and the running b.
    const c = open('c', t, 'pc');
    c.register();
    const rc = await c.next('normal_task_response');
    expect(new Set(rc.normal_task_response.candidate_parents.map((p: any) => p.id))).toEqual(new Set(['pa', 'pb']));
    expect(rc.normal_task_response.task.pieces.map((p: any) => p.number).sort()).toEqual([0, 1, 2]);
    c.send('download_peer_started_request');

    // A failed piece blocklists the parent; rescheduling never offers it again.
    c.send('download_piece_failed_request', { piece_number: 1, parent_id: 'pa', temporary: true, reason: 'digest mismatch' });
    c.send('reschedule_peer_request', { candidate_parent_ids: ['pa'] });
    const rc2 = await c.next('normal_task_response');
    expect(rc2.normal_task_response.candidate_parents.map((p: any) => p.id)).toEqual(['pb']);
    // Each digest crosses a stream once: the answer to a reschedule carries none c was sent.
    expect(rc2.normal_task_response.task.pieces ?? []).toEqual([]);
    expect(rc2.normal_task_response.task.piece_count).toBe(3);
    expect(scheduler.resources.hosts.get('a')!.uploadFailedCount).toBe(1);

    // b blocks a: its only other candidate is c, whose parent is b (a cycle), and a holds the only
    // back-to-source slot, so scheduling gives up with FAILED_PRECONDITION.
    b.send('reschedule_peer_request', { candidate_parent_ids: ['pa'] });
    const err = await b.closed();
    expect(err?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(scheduler.resources.tasks.get(t)!.dag.hasCycle()).toBe(false);
    await waitFor(() => !scheduler.resources.peer('pb'));

    // The source's stream breaks: it leaves, freeing the slot; a rescheduled peer goes to the source.
    a.call.cancel();
    await waitFor(() => !scheduler.resources.peer('pa'));
    c.send('reschedule_peer_request', { candidate_parent_ids: [] });
    await c.next('need_back_to_source_response');
    c.send('download_peer_back_to_source_finished_request', { content_length: 3 * PL, piece_count: 3 });
    expect(await c.closed()).toBeUndefined();

    // A finished peer stays in the task as a parent candidate.
    const peersNow = await unaryCall<any>(client, 'ListTaskPeers', { task_id: t });
    expect(peersNow.peers.map((p: any) => [p.id, p.state, p.is_finished])).toEqual([['pc', 'Succeeded', true]]);
    const d = open('d', t, 'pd');
    d.register();
    const rd = await d.next('normal_task_response');
    expect(rd.normal_task_response.candidate_parents.map((p: any) => p.id)).toEqual(['pc']);
    expect(rd.normal_task_response.task.pieces).toHaveLength(3);
    const stat = await unaryCall<any>(client, 'StatTask', { task_id: t });
    expect(stat.state).toBe('Succeeded');
  });

  it('offers a peer that finished to running peers with room for another parent', async () => {
    const t = taskId();
    const a = open('a', t, 'fa');
    a.register();
    await a.next('need_back_to_source_response');
    a.send('download_peer_back_to_source_started_request', { content_length: PL, piece_length: PL });
    const d = open('d', t, 'fd');
    d.register();
    expect((await d.next('normal_task_response')).normal_task_response.candidate_parents.map((p: any) => p.id)).toEqual(['fa']);
    d.send('download_peer_started_request');
    const b = open('b', t, 'fb');
    b.register();
    const rb = await b.next('normal_task_response');
    expect(new Set(rb.normal_task_response.candidate_parents.map((p: any) => p.id))).toEqual(new Set(['fa', 'fd']));
    b.send('download_peer_started_request');
    // b finishes first (its parent edges go): d, still running with one parent, is offered b.
    b.send('download_peer_finished_request', { content_length: PL, piece_count: 1 });
    await b.closed();
    const offer = await d.next('normal_task_response');
    expect(offer.normal_task_response.candidate_parents.map((p: any) => p.id)).toEqual(['fb']);
    expect(offer.normal_task_response.task.content_length).toBe(PL);
    expect([...scheduler.resources.tasks.get(t)!.dag.parents('fd')].sort()).toEqual(['fa', 'fb']);
    // a (back-to-source) is not offered anything.
    await new Promise((r) => setTimeout(r, 100));
    expect(a.drain().filter((m) => m.response === 'normal_task_response')).toEqual([]);
    expect(scheduler.resources.tasks.get(t)!.dag.hasCycle()).toBe(false);
  });

  it('answers an empty task with empty_task_response', async () => {
    const t = taskId();
    const a = open('a', t, 'ea');
    a.register();
    await a.next('need_back_to_source_response');
    a.send('download_peer_back_to_source_started_request', { content_length: 0, piece_length: PL });
    a.send('download_peer_back_to_source_finished_request', { content_length: 0, piece_count: 0 });
    await a.closed();
    const b = open('b', t, 'eb');
    b.register();
    await b.next('empty_task_response');
  });

  it('gives two peers registering at once exactly one back-to-source slot', async () => {
    const t = taskId();
    const x = open('a', t, 'x1');
    const y = open('b', t, 'y1');
    x.register();
    y.register();
    const [mx, my] = await Promise.all([x.next(), y.next()]);
    const kinds = [mx.response, my.response].sort();
    expect(kinds).toEqual(['need_back_to_source_response', 'normal_task_response']);
  });

  it('frees the back-to-source slot when the source fails, and sends the next peer to the origin', async () => {
    const t = taskId();
    const x = open('a', t, 'bf1');
    x.register();
    await x.next('need_back_to_source_response');
    x.send('download_peer_back_to_source_failed_request', { description: 'origin said 503' });
    expect(await x.closed()).toBeUndefined();
    expect((await unaryCall<any>(client, 'StatTask', { task_id: t })).state).toBe('Failed');
    const y = open('b', t, 'bf2');
    y.register();
    await y.next('need_back_to_source_response');
    y.send('download_peer_failed_request', { description: 'disk full' });
    await y.closed();
    const z = open('c', t, 'bf3');
    z.register();
    await z.next('need_back_to_source_response');
  });

  it('fails StatTask for an unknown task with NOT_FOUND and lists hosts', async () => {
    await expect(unaryCall(client, 'StatTask', { task_id: 'missing' })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    const hosts = await unaryCall<any>(client, 'ListHosts', {});
    expect(hosts.hosts.map((h: any) => h.id).sort()).toEqual(expect.arrayContaining(['a', 'b', 'c', 'd']));
  });

  it('exposes dragonfly_scheduler_* metrics on its own port', async () => {
    const res = await fetch(`http://${scheduler.addresses!.metrics}/metrics`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(metric(text, 'dragonfly_scheduler_announce_host_total')).toBeGreaterThanOrEqual(4);
    expect(metric(text, 'dragonfly_scheduler_register_peer_total')).toBeGreaterThanOrEqual(5);
    expect(metric(text, 'dragonfly_scheduler_download_peer_back_to_source_started_total')).toBeGreaterThanOrEqual(2);
    expect(metric(text, 'dragonfly_scheduler_download_piece_finished_total')).toBeGreaterThanOrEqual(4);
    expect(metric(text, 'dragonfly_scheduler_traffic')).toBeGreaterThanOrEqual(4 * PL);
    expect(metric(text, 'dragonfly_scheduler_leave_peer_total')).toBeGreaterThanOrEqual(1);
    expect(text).toContain('dragonfly_scheduler_schedule_duration_milliseconds_count');
    // 12 MiB is Dragonfly's level 4 (8 MiB to 16 MiB).
    expect(text).toMatch(/dragonfly_scheduler_download_peer_duration_milliseconds_count\{task_size_level="4"\} [1-9]/);
    expect(text).toMatch(/dragonfly_scheduler_version\{git_version="\d+\.\d+\.\d+"/);
  });
});

describe('seed peer trigger', () => {
  let scheduler: Scheduler;
  let client: grpc.Client & Record<string, any>;
  let seedServer: grpc.Server;
  const peers: SimPeer[] = [];
  const downloads: any[] = [];

  beforeAll(async () => {
    scheduler = createScheduler(
      schedulerConfig({ server: { ip: '127.0.0.1', port: 0 }, metrics: { enable: false }, scheduling: { rejoinGrace: 0, retryInterval: '20ms', retryBackToSourceLimit: 200, retryLimit: 400 }, seedPeer: { triggerTimeout: '3s' } }),
    );
    const addr = await scheduler.start();
    client = schedulerClient(addr.grpc);
    // A simulated seed agent: a real Dfdaemon server that, asked to download, registers its own
    // peer over the real AnnouncePeer stream and reads "from the source".
    const { Dfdaemon } = loadProto();
    seedServer = new grpc.Server();
    seedServer.addService(Dfdaemon.service, {
      DownloadTask: (call: grpc.ServerWritableStream<any, any>) => {
        const d = call.request.download;
        downloads.push(d);
        const task = d.url.split('#')[1];
        if (d.url.includes('cached')) {
          // Held in the seed's cache already: it answers at once and registers nothing.
          call.write({ task_id: task, peer_id: 'old-seed-peer', is_finished: true, content_length: PL, piece_count: 1, finished_piece_count: 1 });
          call.end();
          return;
        }
        const p = new SimPeer(client, 'seed', task, `seed-${task.slice(0, 8)}`);
        peers.push(p);
        p.register({ ...d });
        p.next('need_back_to_source_response').then(() => {
          p.send('download_peer_back_to_source_started_request', { content_length: PL, piece_length: PL });
          p.send('download_piece_back_to_source_finished_request', btsPiece(0));
          p.send('download_peer_back_to_source_finished_request', { content_length: PL, piece_count: 1 });
          call.write({ task_id: task, peer_id: p.peerId, is_finished: true, content_length: PL, piece_count: 1, finished_piece_count: 1 });
          call.end();
        }, (err) => call.destroy(err));
      },
      StatTask: (_c: any, cb: any) => cb({ code: grpc.status.NOT_FOUND }),
      DeleteTask: (_c: any, cb: any) => cb({ code: grpc.status.NOT_FOUND }),
    });
    const port = await new Promise<number>((resolve, reject) =>
      seedServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    await unaryCall(client, 'AnnounceHost', { host: hostMsg('seed', { type: 'SUPER_SEED', port }), interval_ms: 60_000 });
    await unaryCall(client, 'AnnounceHost', { host: hostMsg('n1'), interval_ms: 60_000 });
  });

  afterAll(async () => {
    for (const p of peers) p.call.cancel();
    client?.close();
    seedServer?.forceShutdown();
    await scheduler?.stop();
  });

  it('asks the seed peer to go back to source and gives the normal peer the seed as parent', async () => {
    const t = taskId();
    const p = new SimPeer(client, 'n1', t, 'n1-peer');
    peers.push(p);
    p.register({ url: `http://127.0.0.1:1/file#${t}`, request_header: { Authorization: 'Bearer x' } });
    const r = await p.next('normal_task_response');
    expect(r.normal_task_response.candidate_parents.map((c: any) => c.host.id)).toEqual(['seed']);
    expect(downloads).toHaveLength(1);
    expect(downloads[0].need_back_to_source).toBe(true);
    expect(downloads[0].request_header).toEqual({ Authorization: 'Bearer x' });
  });

  it('does not keep a peer waiting for a seed that answered from its cache without registering', async () => {
    const t = taskId();
    const p = new SimPeer(client, 'n1', t, 'n1-cached');
    peers.push(p);
    const t0 = Date.now();
    p.register({ url: `http://127.0.0.1:1/cached#${t}` });
    await p.next('need_back_to_source_response');
    // Well before seedPeer.triggerTimeout (3 s).
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('maps Dfdaemon statuses to typed errors in the client', async () => {
    const seed = scheduler.resources.hosts.get('seed')!;
    const c = scheduler.dfdaemon.get(seed.info);
    await expect(c.statTask('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(c.deleteTask('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const dead = new DfdaemonClient('127.0.0.1:1');
    await expect(dead.statTask('x', 2000)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    dead.close();
  });

  it('sends the normal peer to the source when the seed trigger fails', async () => {
    await unaryCall(client, 'LeaveHost', { id: 'seed' });
    // A seed host whose Dfdaemon port has nothing listening.
    const dead = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) =>
      dead.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    dead.forceShutdown();
    await unaryCall(client, 'AnnounceHost', { host: hostMsg('seed2', { type: 'SUPER_SEED', port }), interval_ms: 60_000 });
    const t = taskId();
    const p = new SimPeer(client, 'n1', t, 'n1-peer2');
    peers.push(p);
    p.register({ url: `http://127.0.0.1:1/file#${t}` });
    const r = await p.next('need_back_to_source_response');
    expect(r.need_back_to_source_response.description).toBeTruthy();
    expect(scheduler.resources.tasks.get(t)!.seedFailedAt).toBeDefined();
  });
});

function metric(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ') || line.startsWith(name + '{')) sum += Number(line.split(' ').pop());
  }
  return sum;
}

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
