/**
 * OpenTelemetry tracing for every role, off unless `tracing.endpoint` is set (then spans go out as
 * OTLP over HTTP: Jaeger, Tempo and the OpenTelemetry collector all take it). When off, nothing is
 * installed: the API's no-op tracer answers and the hooks below cost a map lookup at most.
 *
 * Context travels as W3C `traceparent`: in gRPC metadata (agent → scheduler stream) and in HTTP
 * headers (child → parent piece requests; any client → the agent's local API), and in the preheat
 * job's queue message (manager → scheduler → seed peer's DownloadTask). Piece traffic is recorded in batches, one span per (task, parent) on the child and per
 * (task, child) on the parent, carrying the piece ranges and bytes, never one span per piece.
 *
 * The hooks other modules call are single lines; the logic stays here.
 */
import { context, propagation, trace, INVALID_SPAN_CONTEXT, SpanKind, SpanStatusCode, type Context, type Span } from '@opentelemetry/api';
import type { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { z } from 'zod';

export { SpanKind, SpanStatusCode };

export const tracingConfigSchema = z
  .strictObject({
    /**
     * OTLP/HTTP endpoint, e.g. `http://jaeger:4318` (`/v1/traces` is appended unless the URL already
     * ends with it). Unset: tracing is off.
     */
    endpoint: z.string().url().optional(),
    /** Share of new traces recorded (0–1); a request that arrives with a sampled trace is always recorded. */
    sampleRatio: z.number().min(0).max(1).default(1),
  })
  .prefault({});

export type TracingConfig = z.output<typeof tracingConfigSchema>;

let enabled = false;
let provider: BasicTracerProvider | undefined;
const tracer = () => trace.getTracer('damselfly');

/**
 * Starts exporting when `config.endpoint` is set; resolves with a flush-and-stop. Once per process.
 * The SDK and exporter load only here: a process with tracing off (every `damselfly get`, say)
 * never loads more than the small API package.
 */
export async function startTracing(config: TracingConfig, serviceName: string, attributes: Record<string, string> = {}): Promise<() => Promise<void>> {
  if (!config.endpoint || enabled) return async () => undefined;
  const [{ AsyncLocalStorageContextManager }, { W3CTraceContextPropagator }, { OTLPTraceExporter }, { resourceFromAttributes }, { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler }] = await Promise.all([
    import('@opentelemetry/context-async-hooks'),
    import('@opentelemetry/core'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace-base'),
  ]);
  // Parent-based: a request that arrives sampled stays sampled, so one pull is one whole trace.
  const samplerFor = (ratio: number) => new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  const url = config.endpoint.replace(/\/+$/, '').endsWith('/v1/traces') ? config.endpoint : `${config.endpoint.replace(/\/+$/, '')}/v1/traces`;
  provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName, ...attributes }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url }), { scheduledDelayMillis: 500 })],
    sampler: samplerFor(config.sampleRatio),
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  enabled = true;
  return async () => {
    await provider?.forceFlush().catch(() => undefined);
    await provider?.shutdown().catch(() => undefined);
  };
}


/** Whether startTracing ran (an endpoint is configured): spans are recorded and exported. */
export function tracingEnabled(): boolean {
  return enabled;
}

/** `trace_id`/`span_id` of the active span, for log lines; empty when none (or tracing is off). */
export function logFields(): Record<string, string> {
  if (!enabled) return {};
  const sc = trace.getActiveSpan()?.spanContext();
  return sc && trace.isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}

type Attrs = Record<string, string | number | boolean | undefined>;
/** The span `fn` gets while tracing is off: every call on it is a no-op, and isRecording() is false. */
const NOT_RECORDING = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
const clean = (a: Attrs) => Object.fromEntries(Object.entries(a).filter(([, v]) => v !== undefined)) as Record<string, string | number | boolean>;

/**
 * Runs `fn` in a new active span (child of `parent`, else of the active context); ends it when fn
 * settles. `attrs` may be a function, called only when tracing is on (a hot path pays nothing then).
 */
export async function inSpan<T>(name: string, attrs: Attrs | (() => Attrs), fn: (span: Span) => Promise<T>, parent?: Context, kind = SpanKind.INTERNAL): Promise<T> {
  if (!enabled) return fn(NOT_RECORDING);
  const span = tracer().startSpan(name, { attributes: clean(typeof attrs === 'function' ? attrs() : attrs), kind }, parent ?? context.active());
  try {
    return await context.with(trace.setSpan(parent ?? context.active(), span), () => fn(span));
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message });
    throw err;
  } finally {
    span.end();
  }
}

// ---- carriers ----------------------------------------------------------------------------------

type HeaderBag = Record<string, string | string[] | undefined>;
const headerGetter = {
  get: (h: HeaderBag, k: string) => h[k.toLowerCase()] ?? h[k],
  keys: (h: HeaderBag) => Object.keys(h),
};

/** The context a request's `traceparent` header carries (the active context when none). */
export function contextFromHeaders(headers: HeaderBag): Context {
  return enabled ? propagation.extract(context.active(), headers, headerGetter) : context.active();
}

/** `{traceparent}` for `ctx` (default: the active context); `{}` when off or nothing is traced. */
export function traceHeaders(ctx: Context = context.active()): Record<string, string> {
  const out: Record<string, string> = {};
  if (enabled) propagation.inject(ctx, out);
  return out;
}

interface MetadataLike {
  set(k: string, v: string): void;
  get(k: string): unknown[];
  getMap(): Record<string, unknown>;
}

/** Puts the active context into gRPC metadata (on the calling side). */
export function injectMetadata<M extends MetadataLike>(md: M, ctx: Context = context.active()): M {
  if (enabled) propagation.inject(ctx, md, { set: (m, k, v) => m.set(k, v) });
  return md;
}

/** The context gRPC metadata carries (on the serving side). */
export function contextFromMetadata(md: MetadataLike): Context {
  if (!enabled) return context.active();
  return propagation.extract(context.active(), md, { get: (m, k) => m.get(k).map(String)[0], keys: (m) => Object.keys(m.getMap()) });
}

// ---- tasks: the context a download runs in, by task ID (the agent's task manager) --------------

const taskContexts = new Map<string, Context>();

/** Remembers the active context as task `taskId`'s (called where the task is created). */
export function bindTask(taskId: string, peerId: string): void {
  if (!enabled) return;
  trace.getActiveSpan()?.setAttributes({ 'damselfly.task_id': taskId, 'damselfly.peer_id': peerId });
  taskContexts.set(taskId, context.active());
}

/** The context task `taskId` runs in (the active one when unknown). */
export function taskContext(taskId: string): Context {
  return taskContexts.get(taskId) ?? context.active();
}

/** Ends task `taskId`'s piece batches and forgets its context. */
export function unbindTask(taskId: string): void {
  if (!enabled) return;
  for (const [k, b] of batches) if (b.taskId === taskId) b.end(k);
  taskContexts.delete(taskId);
}

/** Runs `fn` in task `taskId`'s context (e.g. opening its scheduler stream). */
export function inTask<T>(taskId: string, fn: () => T): T {
  return enabled ? context.with(taskContext(taskId), fn) : fn();
}

/** A back-to-source read of `url` for task `taskId`, as a span under the task (`reason`: why the origin). */
export function backToSource<T>(taskId: string, url: string, reason: string, fn: (span: Span) => Promise<T>): Promise<T> {
  return inSpan('agent.back_to_source', { 'damselfly.task_id': taskId, 'url.full': redactUrl(url), 'damselfly.fallback_reason': reason }, fn, taskContext(taskId), SpanKind.CLIENT);
}

/** `u` without credentials and query (tokens ride in queries), for span attributes. */
export const redactUrl = (u: string) => {
  try {
    const x = new URL(u);
    x.username = '';
    x.password = '';
    x.search = x.search ? '?…' : '';
    return x.toString();
  } catch {
    return '';
  }
};

// ---- batched piece spans --------------------------------------------------------------------------

const IDLE_MS = 1000;
const batches = new Map<string, PieceBatch>();

class PieceBatch {
  private pieces: number[] = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(
    readonly taskId: string,
    readonly span: Span,
  ) {}
  add(key: string, piece: number, bytes: number): void {
    this.pieces.push(piece);
    this.bytes += bytes;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.end(key), IDLE_MS);
    this.timer.unref();
  }
  end(key: string): void {
    clearTimeout(this.timer);
    batches.delete(key);
    this.span.setAttributes({ 'damselfly.pieces': ranges(this.pieces), 'damselfly.piece_count': this.pieces.length, 'damselfly.bytes': this.bytes });
    this.span.end();
  }
}

/** "0-3,5,7-9" */
export function ranges(ns: number[]): string {
  const s = [...new Set(ns)].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j] + 1) j++;
    out.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

function batch(key: string, make: () => Span, taskId: string): PieceBatch {
  let b = batches.get(key);
  if (!b) batches.set(key, (b = new PieceBatch(taskId, make())));
  return b;
}

/**
 * The child's side: the span that covers task `taskId`'s pieces from one parent. Its context goes
 * into the piece requests (`traceHeaders(pieceContext(...))`), so the parent's spans hang below it.
 */
export function pieceContext(taskId: string, parentId: string, parentHost: string): Context {
  if (!enabled) return context.active();
  const parent = taskContext(taskId);
  const b = batch(`down:${taskId}:${parentId}`, () => tracer().startSpan('agent.pieces_from_parent', { kind: SpanKind.CLIENT, attributes: { 'damselfly.task_id': taskId, 'damselfly.parent_id': parentId, 'server.address': parentHost } }, parent), taskId);
  return trace.setSpan(parent, b.span);
}

/** The child's side: one piece arrived from `parentId`. */
export function pieceFromParent(taskId: string, parentId: string, parentHost: string, piece: number, bytes: number): void {
  if (!enabled) return;
  pieceContext(taskId, parentId, parentHost);
  batches.get(`down:${taskId}:${parentId}`)?.add(`down:${taskId}:${parentId}`, piece, bytes);
}

/** The parent's side: one piece sent to a child whose request carried `headers`. */
export function pieceServed(headers: HeaderBag, taskId: string, piece: number, bytes: number, child: string | undefined): void {
  if (!enabled) return;
  const ctx = contextFromHeaders(headers);
  const sc = trace.getSpanContext(ctx);
  if (!sc || !trace.isSpanContextValid(sc)) return; // an untraced child: nothing to join
  const key = `up:${taskId}:${sc.spanId}`;
  batch(key, () => tracer().startSpan('agent.pieces_to_child', { kind: SpanKind.SERVER, attributes: clean({ 'damselfly.task_id': taskId, 'client.address': child }) }, ctx), taskId).add(key, piece, bytes);
}

// ---- the scheduler's side of an AnnouncePeer stream ------------------------------------------------

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
interface StreamLike {
  metadata: MetadataLike;
  on(event: string, f: (...a: any[]) => void): unknown; // eslint-disable-line @typescript-eslint/no-explicit-any
  write(m: Msg, ...rest: unknown[]): boolean;
}

/**
 * Runs the scheduler's handler of one AnnouncePeer stream inside a span that continues the agent's
 * trace (from the stream's metadata) and lasts as long as the stream: task and peer IDs from the
 * registration, every scheduling answer as an event (parents offered, or back to source and why),
 * pieces reported by traffic type.
 */
export function traceAnnouncePeer(stream: object, handle: () => void): void {
  if (!enabled) return handle();
  const call = stream as StreamLike;
  const span = tracer().startSpan('scheduler.announce_peer', { kind: SpanKind.SERVER }, contextFromMetadata(call.metadata));
  const pieces: Record<string, number> = {};
  call.on('data', (req: Msg) => {
    if (req.register_peer_request) span.setAttributes(clean({ 'damselfly.task_id': req.task_id, 'damselfly.peer_id': req.peer_id, 'damselfly.host_id': req.host_id, 'url.full': redactUrl(String(req.register_peer_request.download?.url ?? '')) }));
    if (req.download_piece_finished_request) pieces.REMOTE_PEER = (pieces.REMOTE_PEER ?? 0) + 1;
    if (req.download_piece_back_to_source_finished_request) pieces.BACK_TO_SOURCE = (pieces.BACK_TO_SOURCE ?? 0) + 1;
    if (req.download_piece_failed_request) span.addEvent('piece failed', clean({ 'damselfly.parent_id': req.download_piece_failed_request.parent_id, 'damselfly.reason': req.download_piece_failed_request.reason }));
    if (req.download_peer_back_to_source_started_request) span.addEvent('back to source started');
  });
  const write = call.write.bind(call);
  call.write = (m: Msg, ...rest: unknown[]) => {
    if (m.need_back_to_source_response) span.addEvent('back to source', clean({ 'damselfly.fallback_reason': m.need_back_to_source_response.description }));
    if (m.normal_task_response) {
      const parents = (m.normal_task_response.candidate_parents ?? []) as Msg[];
      span.addEvent('parents', { 'damselfly.parent_ids': parents.map((p) => String(p.id)).join(','), 'damselfly.parent_hosts': parents.map((p) => `${p.host?.ip ?? ''}:${p.host?.download_port ?? ''}`).join(',') });
    }
    return write(m, ...rest);
  };
  let ended = false;
  const end = (err?: unknown) => {
    if (ended) return;
    ended = true;
    span.setAttributes({ 'damselfly.pieces_remote': pieces.REMOTE_PEER ?? 0, 'damselfly.pieces_back_to_source': pieces.BACK_TO_SOURCE ?? 0 });
    if (err) span.setStatus({ code: SpanStatusCode.ERROR, message: String((err as Error)?.message ?? err) });
    span.end();
  };
  for (const ev of ['end', 'finish', 'close', 'cancelled']) call.on(ev, () => end());
  call.on('error', (e: unknown) => end(e));
  // The handler's message listeners run in the span's context too (a stream's events come from
  // gRPC's own async context, not from where the listener was added): what a message makes the
  // scheduler call, such as a seed peer's DownloadTask for the peer that registered, carries the
  // peer's trace.
  const ctx = trace.setSpan(context.active(), span);
  const on = call.on.bind(call);
  call.on = (event: string, f: (...a: any[]) => void) => on(event, event === 'data' ? context.bind(ctx, f) : f); // eslint-disable-line @typescript-eslint/no-explicit-any
  context.with(ctx, handle);
}
