/**
 * Tracing across real processes: scheduler, seed peer and two agents export OTLP/HTTP to a receiver
 * in this test. One download through an agent is one trace holding the agent's own spans, the
 * scheduler's span of its AnnouncePeer stream (context through gRPC metadata) and the span of the
 * parent that served it pieces (context through the piece requests' traceparent header), each
 * parented on the span before it; piece traffic comes batched with its ranges and bytes; the agent's
 * log lines carry the trace's ID. With tracing off (no endpoint), nothing is sent anywhere.
 */
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MiB, fileSha256, startOrigin, type Origin } from '../support/origin.js';
import { apiGet, cleanupTempDirs, killAll, makeTempDir, startCluster, waitFor, type Cluster } from '../support/procs.js';
import { cliPath } from '../support/cli.js';
import { pollJob, startStack } from '../manager/flow.js';

interface Span {
  service: string;
  host?: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: Record<string, unknown>;
  events: Array<{ name: string; attributes: Record<string, unknown> }>;
}

const attrs = (list: Array<{ key: string; value: Record<string, unknown> }> = []) =>
  Object.fromEntries(list.map((a) => [a.key, a.value.stringValue ?? a.value.intValue ?? a.value.boolValue ?? a.value.doubleValue]));

/** An OTLP/HTTP trace receiver (JSON encoding, what @opentelemetry/exporter-trace-otlp-http sends). */
async function startReceiver(): Promise<{ url: string; spans: Span[]; posts: () => number; close(): Promise<void> }> {
  const spans: Span[] = [];
  let posts = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts++;
      if (req.url !== '/v1/traces' || req.method !== 'POST' || !String(req.headers['content-type']).includes('json')) {
        res.writeHead(415).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans: Array<{ resource: { attributes: [] }; scopeSpans: Array<{ spans: Array<Record<string, any>> }> }> }; // eslint-disable-line @typescript-eslint/no-explicit-any
      for (const rs of body.resourceSpans) {
        const r = attrs(rs.resource.attributes);
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) {
            spans.push({
              service: String(r['service.name']),
              host: r['host.name'] as string | undefined,
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId || undefined,
              name: s.name,
              attributes: attrs(s.attributes),
              events: (s.events ?? []).map((e: { name: string; attributes: [] }) => ({ name: e.name, attributes: attrs(e.attributes) })),
            });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, spans, posts: () => posts, close: () => new Promise((r) => server.close(() => r())) };
}

describe('tracing across agent, scheduler and parents', () => {
  let origin: Origin;
  let cluster: Cluster | undefined;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  afterAll(async () => {
    await killAll();
    await origin?.close();
    await receiver?.close();
    cleanupTempDirs();
  });

  it('one get through an agent is one trace: the agent, the scheduler and the parent that served pieces', async () => {
    origin = await startOrigin();
    receiver = await startReceiver();
    const tracing = { tracing: { endpoint: receiver.url } };
    cluster = await startCluster({ agents: 2, scheduler: tracing, agent: () => tracing, seedOverrides: tracing, env: { DAMSELFLY_LOG_LEVEL: 'debug' } });
    const url = origin.add('/trace/file.bin', { size: 12 * MiB, seed: `trace-${Date.now()}` });
    const out = makeTempDir('damselfly-trace-out-');
    // agent-0 first, so agent-1 has two parents with the whole file.
    for (const [i, a] of cluster.agents.entries()) {
      const r = await apiGet(a, url, path.join(out, `${i}.bin`), { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(await fileSha256(path.join(out, `${i}.bin`))).toBe(origin.sha256('/trace/file.bin'));
    }
    expect(origin.stats().byPath['/trace/file.bin']?.bytes).toBe(12 * MiB);

    const root = await waitFor(() => receiver.spans.find((s) => s.name === 'agent.download' && s.host === 'agent-1'), 'agent-1 download span', 15_000);
    expect(root.parentSpanId).toBeUndefined();
    const trace = () => receiver.spans.filter((s) => s.traceId === root.traceId);
    // Batches end after a second without pieces; the exporters send every half second.
    await waitFor(() => (trace().some((s) => s.name === 'agent.pieces_to_child') && trace().some((s) => s.name === 'scheduler.announce_peer') ? true : undefined), 'scheduler and parent spans in the trace', 15_000);
    const spans = trace();
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    process.stderr.write(`trace ${root.traceId}:\n  ${spans.map((s) => `${s.service}/${s.host ?? ''} ${s.name} ${JSON.stringify(s.attributes)}`).join('\n  ')}\n`);

    const taskId = root.attributes['damselfly.task_id'];
    expect(taskId).toMatch(/^[0-9a-f]{64}$/);
    expect(String(root.attributes['damselfly.peer_id'])).toContain('agent-1');

    const sched = spans.filter((s) => s.name === 'scheduler.announce_peer');
    expect(sched.map((s) => s.service)).toContain('damselfly-scheduler');
    const mine = sched.find((s) => s.attributes['damselfly.task_id'] === taskId)!;
    expect(mine).toBeDefined();
    expect(byId.get(mine.parentSpanId!)?.host, 'the scheduler span hangs below the agent').toBe('agent-1');
    expect(mine.events.some((e) => e.name === 'parents' && String(e.attributes['damselfly.parent_ids']).length > 0)).toBe(true);

    const down = spans.filter((s) => s.name === 'agent.pieces_from_parent');
    expect(down.length).toBeGreaterThan(0);
    for (const d of down) {
      expect(d.host).toBe('agent-1');
      expect(d.attributes['damselfly.pieces']).toMatch(/^\d+(-\d+)?(,\d+(-\d+)?)*$/);
      expect(String(d.attributes['server.address'])).toMatch(/127\.0\.0\.1:\d+/);
    }
    // Batched: far fewer spans than pieces, and together they cover the file.
    const pieceCount = down.reduce((a, d) => a + Number(d.attributes['damselfly.piece_count']), 0);
    expect(down.reduce((a, d) => a + Number(d.attributes['damselfly.bytes']), 0)).toBe(12 * MiB);
    expect(down.length).toBeLessThan(pieceCount);

    const up = spans.filter((s) => s.name === 'agent.pieces_to_child');
    for (const u of up) {
      expect(['seed', 'agent-0']).toContain(u.host);
      expect(byId.get(u.parentSpanId!)?.name, 'a parent span hangs below the child\'s batch').toBe('agent.pieces_from_parent');
    }
    expect(up.reduce((a, u) => a + Number(u.attributes['damselfly.bytes']), 0)).toBe(12 * MiB);

    // Log lines written while a span is active carry its IDs.
    const agent1 = cluster.agents[1];
    expect(agent1.logs().some((l) => l.trace_id === root.traceId && typeof l.span_id === 'string')).toBe(true);
    // The first download is a trace of its own (one get, one trace).
    const first = receiver.spans.find((s) => s.name === 'agent.download' && s.host === 'agent-0')!;
    expect(first.traceId).not.toBe(root.traceId);
  }, 120_000);

  it('a preheat is one trace: the manager\'s job, the scheduler\'s run of it, the seed peer\'s download and its origin read', async () => {
    const dir = makeTempDir('damselfly-trace-preheat-');
    const store = { kv: { kind: 'sqlite', path: path.join(dir, 'kv.db') }, queue: { kind: 'sqlite', path: path.join(dir, 'queue.db'), visibilityMs: 5_000 } };
    const stack = await startStack(cliPath(), store, { tracing: { endpoint: receiver.url } });
    const url = origin.add('/trace/preheat.bin', { size: 6 * MiB + 5, seed: `preheat-${Date.now()}` });
    // The caller's own trace context is honoured: the manager's span hangs below it.
    const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const created = await fetch(`${stack.managerUrl}/oapi/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.pat}`, traceparent: `00-${callerTrace}-00f067aa0ba902b7-01` },
      body: JSON.stringify({ type: 'preheat', args: { type: 'file', url } }),
    });
    expect(created.status).toBe(200);
    const job = await pollJob(stack, ((await created.json()) as { id: number }).id);
    expect(job.state, JSON.stringify(job.result)).toBe('SUCCESS');
    expect(origin.stats().byPath['/trace/preheat.bin']?.bytes).toBe(6 * MiB + 5);

    const inTrace = () => receiver.spans.filter((s) => s.traceId === callerTrace);
    await waitFor(() => (inTrace().some((s) => s.name === 'agent.back_to_source') && inTrace().some((s) => s.name === 'scheduler.job.run') ? true : undefined), 'the preheat trace to arrive', 15_000);
    const spans = inTrace();
    process.stderr.write(`preheat trace ${callerTrace}:\n  ${spans.map((s) => `${s.service}/${s.host ?? ''} ${s.name} ${JSON.stringify(s.attributes)}`).join('\n  ')}\n`);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const create = spans.find((s) => s.name === 'manager.job.create')!;
    expect(create.service).toBe('damselfly-manager');
    expect(create.parentSpanId).toBe('00f067aa0ba902b7');
    expect(create.attributes['damselfly.job_type']).toBe('preheat');
    const run = spans.find((s) => s.name === 'scheduler.job.run')!;
    expect(run.service).toBe('damselfly-scheduler');
    expect(run.parentSpanId, 'the scheduler run hangs below the manager span').toBe(create.spanId);
    expect(run.attributes['damselfly.job_state']).toBe('SUCCESS');
    const seedTask = spans.find((s) => s.name === 'agent.download_task')!;
    expect(seedTask.service).toBe('damselfly-seed-peer');
    expect(seedTask.parentSpanId, 'the seed peer download hangs below the scheduler run').toBe(run.spanId);
    const b2s = spans.find((s) => s.name === 'agent.back_to_source')!;
    // The origin read hangs (maybe through the task's own spans) below the seed's DownloadTask.
    let at: Span | undefined = b2s;
    while (at && at !== seedTask) at = at.parentSpanId ? byId.get(at.parentSpanId) : undefined;
    expect(at, 'agent.back_to_source is a descendant of agent.download_task').toBe(seedTask);
    await stack.seed.stop();
    await stack.agent.stop();
    await stack.scheduler.stop();
    await stack.manager.stop();
  }, 120_000);

  it('exports nothing when tracing.endpoint is unset', async () => {
    const quiet = await startReceiver();
    try {
      const c = await startCluster({ agents: 1 });
      const url = origin.add('/trace/quiet.bin', { size: 1 * MiB, seed: 'quiet' });
      const r = await apiGet(c.agents[0], url, path.join(makeTempDir('damselfly-trace-q-'), 'q.bin'), { timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(0);
      await new Promise((res) => setTimeout(res, 1500));
      expect(quiet.posts()).toBe(0);
      expect(c.agents[0].logs().some((l) => 'trace_id' in l)).toBe(false);
      await c.stop();
    } finally {
      await quiet.close();
    }
  }, 60_000);
});
