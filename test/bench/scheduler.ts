/**
 * Scheduler throughput: one in-process scheduler, N simulated peers of one task over real gRPC
 * streams. The first peer reads "from the source" and reports P pieces with digests; the others
 * are scheduled onto it and report each piece as received from their parents. Prints wall time,
 * messages per second and the scheduler's process CPU time.
 *
 *   npm run bench:scheduler --  [peers=16] [pieces=1000]
 */
import { createHash } from 'node:crypto';
import { schedulerConfig } from '../../scheduler/config.js';
import { createScheduler } from '../../scheduler/server.js';
import { SimPeer, hostMsg, schedulerClient, unaryCall } from '../scheduler/support.js';

async function main(): Promise<void> {
  const peers = Number(process.argv[2] ?? 16);
  const pieces = Number(process.argv[3] ?? 1000);
  const PL = 4 << 20;
  const s = createScheduler(schedulerConfig({ server: { ip: '127.0.0.1', port: 0 }, metrics: { enable: false } }));
  const { grpc } = await s.start();
  const client = schedulerClient(grpc);
  const task = createHash('sha256').update('bench').digest('hex');
  for (let i = 0; i < peers; i++) await unaryCall(client, 'AnnounceHost', { host: hostMsg(`h${i}`), interval_ms: 60_000 });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const src = new SimPeer(client, 'h0', task, 'p0');
  src.register();
  await src.next('need_back_to_source_response');
  src.send('download_peer_back_to_source_started_request', { content_length: pieces * PL, piece_length: PL });
  const sims: SimPeer[] = [];
  for (let i = 1; i < peers; i++) {
    const p = new SimPeer(client, `h${i}`, task, `p${i}`);
    p.register();
    sims.push(p);
  }
  const parents = await Promise.all(sims.map(async (p) => (await p.next('normal_task_response')).normal_task_response.candidate_parents.map((c: { id: string }) => c.id)));
  for (const p of sims) p.send('download_peer_started_request');
  let messages = 1 + 2 * sims.length;
  for (let n = 0; n < pieces; n++) {
    const digest = 'sha256:' + createHash('sha256').update(String(n)).digest('hex');
    src.send('download_piece_back_to_source_finished_request', { piece: { number: n, offset: n * PL, length: PL, digest, traffic_type: 'BACK_TO_SOURCE', cost_ms: 3 } });
    sims.forEach((p, i) =>
      p.send('download_piece_finished_request', { piece: { number: n, parent_id: parents[i][n % parents[i].length], offset: n * PL, length: PL, digest, traffic_type: 'REMOTE_PEER', cost_ms: 4 } }),
    );
    messages += 1 + sims.length;
    if (n % 50 === 49) await new Promise((r) => setImmediate(r));
  }
  src.send('download_peer_back_to_source_finished_request', { content_length: pieces * PL, piece_count: pieces });
  for (const p of sims) p.send('download_peer_finished_request', { content_length: pieces * PL, piece_count: pieces });
  await Promise.all([src, ...sims].map((p) => p.closed(60_000)));
  messages += peers;
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const pushes = sims.reduce((a, p) => a + p.drain().filter((m) => m.response === 'task_pieces_response').length, 0);
  const peersDone = s.resources.peersOfTask(task).filter((p) => p.state === 'Succeeded').length;
  console.log(
    JSON.stringify({ peers, pieces, messages, wallMs: Math.round(ms), msgPerSec: Math.round(messages / (ms / 1000)), cpuMs: Math.round((cpu.user + cpu.system) / 1000), pushesReceived: pushes, peersSucceeded: peersDone }),
  );
  client.close();
  await s.stop();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
