/**
 * Tracing across real processes: scheduler, seed peer and two agents export OTLP/HTTP to a receiver
 * in this test. One download through an agent is one trace holding the agent's own spans, the
 * scheduler's span of its AnnouncePeer stream (context through gRPC metadata) and the span of the
 * parent that served it pieces (context through the piece requests' traceparent header), each
 * parented on the span before it; piece traffic comes batched with its ranges and bytes; the agent's
 * log lines carry the trace's ID. A registry blob pulled through an agent's mirror is one trace too,
 * rooted in the proxy's request span (or the client's traceparent); a cached hit is a lone short
 * span, a request the mirror serves directly carries the reason. `damselfly get` with
 * DAMSELFLY_TRACING_ENDPOINT is the root of its own download's trace; without it, get loads no
 * OpenTelemetry module, sends no traceparent and exports nothing. With tracing off (no endpoint),
 * nothing is sent anywhere.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { MiB, fileSha256, startOrigin, type Origin } from '../support/origin.js';
import { apiGet, cleanupTempDirs, killAll, makeTempDir, proxyUrl, runCli, startCluster, waitFor, type Cluster } from '../support/procs.js';
import { startDirOrigin } from '../support/dir-origin.js';
import { startHub } from '../support/hub.js';
import { buildImage, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
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

const registryTools = registryToolsAvailable();

/** Every span of `spans` but the roots named in `roots` has its parent among them: one connected tree. */
function expectConnected(spans: Span[], roots: Set<string | undefined>): void {
  const ids = new Set(spans.map((s) => s.spanId));
  const orphans = spans.filter((s) => !ids.has(s.parentSpanId ?? '') && !roots.has(s.parentSpanId));
  expect(orphans.map((s) => `${s.service}/${s.host ?? ''} ${s.name}`), 'spans whose parent is not in the trace').toEqual([]);
}

/** The chain of spans from `s` up to the topmost one of its trace that `byId` holds. */
function ancestry(s: Span, byId: Map<string, Span>): Span[] {
  const out: Span[] = [];
  for (let at: Span | undefined = s; at; at = at.parentSpanId ? byId.get(at.parentSpanId) : undefined) out.push(at);
  return out;
}

/**
 * A module-resolution hook for the `get` process (NODE_OPTIONS=--import): every module URL it
 * resolves is appended to `log`, so a test can see whether the OpenTelemetry SDK was loaded.
 */
function moduleLogHook(dir: string): { env: Record<string, string>; loaded: () => string[] } {
  const log = path.join(dir, 'modules.log');
  writeFileSync(log, '');
  writeFileSync(path.join(dir, 'loader.mjs'), `import { appendFileSync } from 'node:fs';\nexport async function resolve(s, c, next) { const r = await next(s, c); appendFileSync(${JSON.stringify(log)}, r.url + '\\n'); return r; }\n`);
  writeFileSync(path.join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(new URL(`file://${path.join(dir, 'loader.mjs')}`).href)});\n`);
  return { env: { NODE_OPTIONS: `--import=${path.join(dir, 'register.mjs')}` }, loaded: () => readFileSync(log, 'utf8').split('\n').filter(Boolean) };
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
    const originStats = origin.stats().byPath['/trace/file.bin']!;
    expect(originStats.bytes).toBe(12 * MiB);

    // The origin read carries the reading peer's back-to-source span as its parent (W3C traceparent).
    expect(originStats.traceparents.length, 'every origin request carried a traceparent').toBe(originStats.requests);
    const b2s = await waitFor(() => receiver.spans.find((s) => s.name === 'agent.back_to_source' && `00-${s.traceId}-${s.spanId}-01` === originStats.traceparents.at(-1)), 'the back-to-source span named by the origin request\'s traceparent', 15_000);
    expect(b2s.attributes['damselfly.fallback_reason']).toBeTruthy();

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

  it.skipIf(!registryTools.ok)('a blob pulled through the mirror is one trace: the proxy request, the agent, the scheduler and the parent that served pieces; a cached hit and a direct answer are spans of their own', async () => {
    const [a0, a1] = cluster!.agents as [Cluster['agents'][0], Cluster['agents'][0]];
    let reg: RunningRegistry | undefined;
    let image: BuiltImage | undefined;
    try {
      [reg, image] = await Promise.all([startRegistry(), buildImage({ layers: [10 * MiB + 123] })]);
      await pushImage(image, `${reg.host}/trace/app:v1`);
      reg.resetCounters();
      const layer = image.layers[0]!;
      const blobPath = `/v2/trace/app/blobs/${layer.digest}`;
      // The runtime's request to a mirror: origin-form /v2/ path, the registry named by header.
      const pull = async (agent: typeof a0, headers: Record<string, string> = {}) => {
        const res = await request(`${proxyUrl(agent)}${blobPath}`, { headers: { 'x-dragonfly-registry': reg!.url, ...headers } });
        const body = Buffer.from(await res.body.arrayBuffer());
        return { status: res.statusCode, headers: res.headers, body };
      };
      const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

      // agent-0 first (through the seed peer, which reads the registry), so agent-1 has parents.
      const first = await pull(a0);
      expect(first.status).toBe(200);
      expect(sha(first.body)).toBe(layer.digest);
      // The client continues a trace of its own: the proxy span hangs below its span.
      const clientTrace = createHash('sha256').update(`mirror-${Date.now()}`).digest('hex').slice(0, 32);
      const clientSpan = '1122334455667788';
      const second = await pull(a1, { traceparent: `00-${clientTrace}-${clientSpan}-01` });
      expect(second.status).toBe(200);
      expect(sha(second.body)).toBe(layer.digest);
      expect(reg.blobGets.get(layer.digest), 'the registry served the blob once (to the seed peer)').toBe(1);

      const inTrace = () => receiver.spans.filter((s) => s.traceId === clientTrace);
      await waitFor(() => (inTrace().some((s) => s.name === 'agent.pieces_to_child') && inTrace().some((s) => s.name === 'scheduler.announce_peer') && inTrace().some((s) => s.name === 'agent.pieces_from_parent') ? true : undefined), 'the mirror pull trace to arrive', 15_000);
      await new Promise((r) => setTimeout(r, 1500)); // the last batches end after a second without pieces
      const spans = inTrace();
      process.stderr.write(`mirror trace ${clientTrace}:\n  ${spans.map((s) => `${s.service}/${s.host ?? ''} ${s.name} ${JSON.stringify(s.attributes)}`).join('\n  ')}\n`);
      const byId = new Map(spans.map((s) => [s.spanId, s]));
      const proxy = spans.filter((s) => s.name === 'agent.proxy.request');
      expect(proxy).toHaveLength(1);
      const root = proxy[0]!;
      expect(root.host).toBe('agent-1');
      expect(root.parentSpanId, 'the proxy span continues the client\'s traceparent').toBe(clientSpan);
      expect(root.attributes['damselfly.route']).toBe('p2p');
      expect(root.attributes['damselfly.result']).toBe('served');
      expect(root.attributes['damselfly.from_cache']).toBe(false);
      expect(Number(root.attributes['damselfly.bytes'])).toBe(layer.size);
      expect(root.attributes['damselfly.blob_digest']).toBe(layer.digest);
      const taskId = root.attributes['damselfly.task_id'];
      expect(taskId).toMatch(/^[0-9a-f]{64}$/);
      expect(String(root.attributes['damselfly.peer_id'])).toContain('agent-1');
      // One tree: every span's parent is in the trace, but the proxy span's (the client's).
      expectConnected(spans, new Set([clientSpan]));
      expect(new Set(spans.map((s) => s.service))).toEqual(new Set(['damselfly-agent', 'damselfly-scheduler', ...(spans.some((s) => s.service === 'damselfly-seed-peer') ? ['damselfly-seed-peer'] : [])]));
      const sched = spans.find((s) => s.name === 'scheduler.announce_peer' && s.attributes['damselfly.task_id'] === taskId)!;
      expect(sched, 'the scheduler\'s stream of this task').toBeDefined();
      expect(ancestry(sched, byId).at(-1), 'the scheduler span descends from the proxy request').toBe(root);
      const down = spans.filter((s) => s.name === 'agent.pieces_from_parent');
      for (const d of down) expect(ancestry(d, byId).at(-1)).toBe(root);
      expect(down.reduce((a, d) => a + Number(d.attributes['damselfly.bytes']), 0)).toBe(layer.size);
      const up = spans.filter((s) => s.name === 'agent.pieces_to_child');
      expect(up.length).toBeGreaterThan(0);
      for (const u of up) {
        expect(['seed', 'agent-0']).toContain(u.host);
        expect(byId.get(u.parentSpanId!)?.name).toBe('agent.pieces_from_parent');
        expect(ancestry(u, byId).at(-1)).toBe(root);
      }
      expect(up.reduce((a, u) => a + Number(u.attributes['damselfly.bytes']), 0)).toBe(layer.size);
      // agent-0's pull was a trace of its own, rooted in its proxy span.
      const a0Proxy = receiver.spans.find((s) => s.name === 'agent.proxy.request' && s.host === 'agent-0' && s.attributes['damselfly.blob_digest'] === layer.digest)!;
      expect(a0Proxy.parentSpanId).toBeUndefined();
      expect(a0Proxy.traceId).not.toBe(clientTrace);

      // Pulled again from agent-1: its cache answers; a lone short span says so.
      const before = new Set(receiver.spans.map((s) => s.spanId));
      const third = await pull(a1);
      expect(sha(third.body)).toBe(layer.digest);
      const hit = await waitFor(() => receiver.spans.find((s) => !before.has(s.spanId) && s.name === 'agent.proxy.request' && s.host === 'agent-1'), 'the cached hit span', 10_000);
      expect(hit.parentSpanId).toBeUndefined();
      expect(hit.attributes['damselfly.from_cache']).toBe(true);
      expect(hit.attributes['damselfly.task_id']).toBe(taskId);
      expect(hit.events.map((e) => e.name)).toContain('served from the agent cache (no download)');
      await new Promise((r) => setTimeout(r, 1500));
      expect(receiver.spans.filter((s) => s.traceId === hit.traceId).map((s) => s.name), 'a cached hit starts no download').toEqual(['agent.proxy.request']);

      // A suffix range is not served from pieces: the mirror answers from the registry, and says why.
      const tail = await pull(a1, { range: 'bytes=-100' });
      expect(tail.status).toBe(206);
      expect(tail.body.length).toBe(100);
      const direct = await waitFor(() => receiver.spans.find((s) => !before.has(s.spanId) && s.name === 'agent.proxy.request' && s.attributes['damselfly.result'] === 'fallback'), 'the direct answer span', 10_000);
      expect(direct.attributes['damselfly.fallback_reason']).toBe('range');
      expect(direct.attributes['damselfly.served_by']).toBe('upstream');
      expect(Number(direct.attributes['damselfly.bytes'])).toBe(100);
      expect(Number(direct.attributes['http.response.status_code'])).toBe(206);
      // The registry saw the proxy span as the parent of that request, not the client's span.
      const upstreamTp = reg.requests.filter((r) => r.url.includes(layer.digest) && r.status === 206).at(-1)?.traceparent;
      expect(upstreamTp).toBe(`00-${direct.traceId}-${direct.spanId}-01`);
    } finally {
      await reg?.close();
      await image?.cleanup();
    }
  }, 180_000);

  it('damselfly get with DAMSELFLY_TRACING_ENDPOINT is the root of its download\'s trace; without it, get loads no OpenTelemetry module, sends no traceparent, exports nothing', async () => {
    const [a0, a1] = cluster!.agents as [Cluster['agents'][0], Cluster['agents'][0]];
    const url = origin.add('/trace/get.bin', { size: 6 * MiB + 7, seed: `get-${Date.now()}` });
    const out = makeTempDir('damselfly-trace-get-');
    expect((await apiGet(a0, url, path.join(out, 'a0.bin'), { timeoutMs: 60_000 })).code).toBe(0);
    const hook = moduleLogHook(out);
    const r = await runCli(['get', url, '-O', path.join(out, 'on.bin'), '--endpoint', String(a1.ready.socket), '--no-progress', '--json'], { env: { ...hook.env, DAMSELFLY_TRACING_ENDPOINT: receiver.url } });
    expect(r.code, r.stderr).toBe(0);
    expect(await fileSha256(path.join(out, 'on.bin'))).toBe(origin.sha256('/trace/get.bin'));
    const result = JSON.parse(r.stdout.trim()) as { ok: boolean; via: string; bytes: number; task_id: string; trace_id: string };
    expect(result).toMatchObject({ ok: true, via: 'agent', bytes: 6 * MiB + 7 });
    expect(result.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(hook.loaded().some((u) => u.includes('@opentelemetry/sdk-trace-base')), 'with tracing on, get loads the SDK').toBe(true);
    // get flushed before exiting: its root span is there already; the agent's spans follow.
    const inTrace = () => receiver.spans.filter((s) => s.traceId === result.trace_id);
    const root = inTrace().find((s) => s.name === 'cli.get');
    expect(root, 'get exported its span before it exited').toBeDefined();
    await waitFor(() => (inTrace().some((s) => s.name === 'agent.pieces_to_child') && inTrace().some((s) => s.name === 'scheduler.announce_peer') ? true : undefined), 'the get trace to arrive', 15_000);
    await new Promise((res) => setTimeout(res, 1500));
    const spans = inTrace();
    process.stderr.write(`get trace ${result.trace_id}:\n  ${spans.map((s) => `${s.service}/${s.host ?? ''} ${s.name} ${JSON.stringify(s.attributes)}`).join('\n  ')}\n`);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    expect(root!.service).toBe('damselfly-get');
    expect(root!.parentSpanId, 'the CLI\'s span is the root').toBeUndefined();
    expect(spans.filter((s) => !s.parentSpanId)).toHaveLength(1);
    expect(root!.attributes['damselfly.via']).toBe('agent');
    expect(Number(root!.attributes['damselfly.bytes'])).toBe(6 * MiB + 7);
    const download = spans.find((s) => s.name === 'agent.download')!;
    expect(download.host).toBe('agent-1');
    expect(download.parentSpanId, 'the agent\'s span hangs below get\'s (its traceparent)').toBe(root!.spanId);
    expect(download.attributes['damselfly.task_id']).toBe(result.task_id);
    expect(root!.attributes['damselfly.task_id']).toBe(result.task_id);
    expectConnected(spans, new Set([undefined]));
    const sched = spans.find((s) => s.name === 'scheduler.announce_peer' && s.attributes['damselfly.task_id'] === result.task_id)!;
    expect(ancestry(sched, byId).at(-1)).toBe(root);
    for (const u of spans.filter((s) => s.name === 'agent.pieces_to_child')) expect(ancestry(u, byId).at(-1)).toBe(root);

    // Tracing off: no OpenTelemetry module at all, no trace_id, no span from get, and the agent's
    // span of this download is a root (no traceparent came with the request).
    const url2 = origin.add('/trace/get-off.bin', { size: 2 * MiB, seed: `get-off-${Date.now()}` });
    const hookOff = moduleLogHook(makeTempDir('damselfly-trace-get-off-'));
    const getSpans = receiver.spans.filter((s) => s.service === 'damselfly-get').length;
    const off = await runCli(['get', url2, '-O', path.join(out, 'off.bin'), '--endpoint', String(a1.ready.socket), '--no-progress', '--json'], { env: { ...hookOff.env, DAMSELFLY_TRACING_ENDPOINT: '' } });
    expect(off.code, off.stderr).toBe(0);
    const offResult = JSON.parse(off.stdout.trim()) as Record<string, unknown>;
    expect(offResult).toMatchObject({ ok: true, via: 'agent' });
    expect('trace_id' in offResult).toBe(false);
    expect(hookOff.loaded().length, 'the hook saw get load its modules').toBeGreaterThan(5);
    expect(hookOff.loaded().filter((u) => u.includes('@opentelemetry')), 'with tracing off, get loads no OpenTelemetry module').toEqual([]);
    const agentSpan = await waitFor(() => receiver.spans.find((s) => s.name === 'agent.download' && s.attributes['damselfly.task_id'] === offResult.task_id), 'the agent span of the untraced get', 15_000);
    expect(agentSpan.parentSpanId, 'no traceparent was sent').toBeUndefined();
    await new Promise((res) => setTimeout(res, 1000));
    expect(receiver.spans.filter((s) => s.service === 'damselfly-get').length, 'get exported nothing').toBe(getSpans);
  }, 120_000);

  it('damselfly get -r with tracing on: one trace, the CLI\'s root span, a span per file, each file\'s agent download below it', async () => {
    const a1 = cluster!.agents[1]!;
    const src = makeTempDir('damselfly-trace-rsrc-');
    writeFileSync(path.join(src, 'one.bin'), Buffer.alloc(300_000, 1));
    writeFileSync(path.join(src, 'two.bin'), Buffer.alloc(200_000, 2));
    const dir = await startDirOrigin(src);
    try {
      const out = path.join(makeTempDir('damselfly-trace-rout-'), 'tree');
      const r = await runCli(['get', '-r', dir.url('/'), '-O', out, '--endpoint', String(a1.ready.socket), '--no-progress', '--json'], { env: { DAMSELFLY_TRACING_ENDPOINT: receiver.url } });
      expect(r.code, r.stderr).toBe(0);
      const sum = JSON.parse(r.stdout.trim()) as { downloaded: number; trace_id: string };
      expect(sum.downloaded).toBe(2);
      expect(sum.trace_id).toMatch(/^[0-9a-f]{32}$/);
      const inTrace = () => receiver.spans.filter((s) => s.traceId === sum.trace_id);
      await waitFor(() => (inTrace().filter((s) => s.name === 'agent.download').length === 2 ? true : undefined), 'both files\' agent spans', 15_000);
      const spans = inTrace();
      const root = spans.find((s) => s.name === 'cli.get')!;
      expect(root.parentSpanId).toBeUndefined();
      expect(root.attributes['damselfly.recursive']).toBe(true);
      const files = spans.filter((s) => s.name === 'cli.get.file');
      expect(files.map((f) => f.attributes['damselfly.path']).sort()).toEqual(['one.bin', 'two.bin']);
      for (const f of files) expect(f.parentSpanId).toBe(root.spanId);
      const downloads = spans.filter((s) => s.name === 'agent.download');
      expect(new Set(downloads.map((d) => d.parentSpanId))).toEqual(new Set(files.map((f) => f.spanId)));
      for (const d of downloads) expect(d.host).toBe('agent-1');
    } finally {
      await dir.close();
    }
  }, 60_000);

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

  it('a Hugging Face Hub client through the agent (HF_ENDPOINT): one trace from the client\'s traceparent to the CDN read', async () => {
    const hub = await startHub();
    try {
      hub.commit('models', 'org/traced', { 'model.safetensors': { size: 6 * MiB, seed: `hf-trace-${Date.now()}` } });
      receiver = await startReceiver();
      const tracing = { tracing: { endpoint: receiver.url } };
      cluster = await startCluster({ agents: 1, scheduler: tracing, agent: () => ({ ...tracing, proxy: { hfMirror: { endpoint: hub.base } } }), seedOverrides: tracing });
      const traceId = randomBytes(16).toString('hex');
      const parent = randomBytes(8).toString('hex');
      const r = await fetch(`${proxyUrl(cluster.agents[0]!)}/org/traced/resolve/main/model.safetensors`, { headers: { traceparent: `00-${traceId}-${parent}-01` } });
      const body = Buffer.from(await r.arrayBuffer());
      expect(r.status).toBe(200);
      expect(body.length).toBe(6 * MiB);
      const req = await waitFor(() => receiver.spans.find((sp) => sp.name === 'agent.proxy.request' && sp.traceId === traceId), 'the mirror request span', 15_000);
      expect(req.parentSpanId, 'continues the client\'s trace').toBe(parent);
      expect(req.attributes).toMatchObject({ 'damselfly.route': 'hf-mirror', 'http.response.status_code': 200 });
      // The P2P task it started descends from it: the scheduler's stream of the task, and the seed
      // peer it triggered for it, down to the seed's read of the CDN.
      const inTrace = () => receiver.spans.filter((sp) => sp.traceId === traceId);
      await waitFor(() => (inTrace().some((sp) => sp.name === 'agent.back_to_source') && inTrace().some((sp) => sp.name === 'scheduler.announce_peer') && inTrace().some((sp) => sp.name === 'agent.pieces_from_parent') ? true : undefined), 'the scheduler, the seed\'s CDN read and the pieces in the client\'s trace', 15_000).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}; spans: ${receiver.spans.map((sp) => `${sp.service}/${sp.host ?? ''} ${sp.name} ${sp.traceId === traceId ? 'IN' : 'out'}`).join('; ')}`);
      });
      const spans = inTrace();
      const byId = new Map(spans.map((sp) => [sp.spanId, sp]));
      expectConnected(spans, new Set([parent]));
      const b2s = spans.find((sp) => sp.name === 'agent.back_to_source')!;
      expect(b2s.service).toBe('damselfly-seed-peer');
      expect(ancestry(b2s, byId).at(-1), 'the seed\'s CDN read descends from the mirror request').toBe(req);
      const cdn = Object.values(hub.cdn.stats().byPath).flatMap((p) => p.traceparents);
      expect(cdn.length, 'the CDN read carried a traceparent').toBeGreaterThan(0);
      expect(cdn, 'the CDN read named the seed\'s back-to-source span').toContain(`00-${traceId}-${b2s.spanId}-01`);
    } finally {
      await killAll();
      await hub.close();
    }
  }, 90_000);

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
