/**
 * The agent's proxy port (default 4001): registry mirror for origin-form `/v2/...` requests, HTTP
 * forward proxy for absolute-URI requests, and CONNECT (intercepted for hijack hosts when a CA is
 * configured, tunneled untouched otherwise). Blob GETs matching a rule go P2P through the
 * TaskManager; everything else is passed straight through. Started by the agent via startProxy().
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Span } from '@opentelemetry/api';
import { Registry } from 'prom-client';
import { Agent, type Dispatcher } from 'undici';
import { ConfigError, errorCode, errorMessage } from '../../adapters/errors.js';
import type { Logger } from '../../adapters/log.js';
import { SpanKind, SpanStatusCode, contextFromHeaders, inSpan, redactUrl, traceHeaders, tracingEnabled } from '../../adapters/tracing.js';
import { compileHijackRules, hijackRuleFor, upstreamTls } from '../../adapters/source/client.js';
import { AccessChecker } from './access.js';
import { LeafSigner } from './ca.js';
import type { ProxyConfig } from '../proxy-config.js';
import { proxyMetrics, type ProxyMetrics, type ProxyRoute } from './metrics.js';
import { isHfMirrorPath, serveHfMirror } from './hf-mirror.js';
import { serveP2P, wantsP2P, type ProxyTaskManager } from './p2p.js';
import { relayResponse, upstreamRequest } from './passthrough.js';
import { applyRuleRewrite, blobDigest, chooseUpstream, DF_HEADER, passTraceContext, upstreamRequestHeaders } from './upstream.js';

export interface StartProxyOptions {
  /** The whole agent configuration; only `proxy` is read. */
  config: { proxy: ProxyConfig };
  taskManager: ProxyTaskManager;
  logger: Logger;
  metricsRegistry?: Registry;
}

export interface RunningProxy {
  port: number;
  close(): Promise<void>;
}

/** Where an intercepted TLS connection was CONNECTed to. */
interface Hijacked {
  authority: string;
  insecure: boolean;
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`proxy: cannot read ${what} ${file}: ${(e as Error).message}`);
  }
}

/**
 * Starts the proxy on config.proxy.server.{ip,port}. Throws ConfigError for unreadable/mismatched
 * CA files and rejects when the port cannot be bound.
 */
export async function startProxy(opts: StartProxyOptions): Promise<RunningProxy> {
  const config = opts.config.proxy;
  const log = opts.logger.child({ component: 'proxy' });
  const metrics = proxyMetrics(opts.metricsRegistry ?? new Registry());
  const upstream = upstreamTls(config.registryMirror);
  const secure = new Agent({ connect: { ...(upstream.ca ? { ca: upstream.ca } : {}), rejectUnauthorized: upstream.rejectUnauthorized }, keepAliveTimeout: 30_000 });
  const insecure = new Agent({ connect: { rejectUnauthorized: false }, keepAliveTimeout: 30_000 });
  let signer: LeafSigner | undefined;
  if (config.server.caCert || config.server.caKey) {
    if (!config.server.caCert || !config.server.caKey) throw new ConfigError('proxy.server: caCert and caKey must be set together');
    signer = new LeafSigner({ cert: readPem(config.server.caCert, 'proxy.server.caCert'), key: readPem(config.server.caKey, 'proxy.server.caKey') });
  }
  // Compared as digests in constant time: the length or a prefix of the secret never shows in timing.
  const expectedAuth = config.basicAuth
    ? createHash('sha256').update(`Basic ${Buffer.from(`${config.basicAuth.username}:${config.basicAuth.password}`).toString('base64')}`).digest()
    : undefined;
  const authorized = (req: IncomingMessage): boolean => {
    if (!expectedAuth) return true;
    const given = req.headers['proxy-authorization'];
    if (typeof given !== 'string') return false;
    // The scheme is case-insensitive (RFC 9110 §11.1); normalise it, keep the credentials as sent.
    const normal = given.replace(/^basic\s+/i, 'Basic ');
    return timingSafeEqual(createHash('sha256').update(normal).digest(), expectedAuth);
  };
  const PROXY_CHALLENGE = { 'proxy-authenticate': 'Basic realm="damselfly"', 'content-type': 'text/plain' };
  const access = config.registryMirror.checkAccess ? new AccessChecker({ ttlMs: config.registryMirror.accessCheckTTL, dispatcher: secure, logger: log }) : undefined;
  const hijackRules = compileHijackRules(config.hijackHTTPS.hosts);
  const hijacked = new WeakMap<object, Hijacked>();
  const pingFallback = new WeakSet<IncomingMessage>();

  const handle = (req: IncomingMessage, res: ServerResponse, origin?: Hijacked) => {
    void handleRequest(req, res, origin).catch((error: unknown) => {
      // Anything unexpected: a 502 if nothing was sent yet, otherwise a broken socket.
      log.warn('proxy request failed', { method: req.method, url: safeUrl(req.url), code: errorCode(error), error: errorMessage(error) });
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain', [DF_HEADER.errorType]: 'proxy' }).end(`damselfly proxy: ${errorMessage(error)}\n`);
      } else res.destroy();
    });
  };

  async function handleRequest(req: IncomingMessage, res: ServerResponse, origin?: Hijacked): Promise<void> {
    const raw = req.url ?? '/';
    if (!origin && (raw === '/healthy' || raw === '/healthz')) {
      metrics.requests.inc({ route: 'health', result: 'ok' });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    // Tunnels were authorised at CONNECT; everything else needs the proxy credentials.
    if (!origin && !authorized(req)) {
      metrics.requests.inc({ route: 'direct', result: 'unauthorized' });
      res.writeHead(407, PROXY_CHALLENGE).end('damselfly proxy: proxy authentication required (Proxy-Authorization: Basic)\n');
      return;
    }
    if (!origin && config.hfMirror.enable && raw.startsWith('/') && isHfMirrorPath(raw.split('?')[0]!)) {
      // A Hugging Face Hub client (HF_ENDPOINT pointing here): not a registry path. A span as for
      // registry requests, so the P2P task it starts (and the hub's CDN read) descend from it.
      await inSpan(
        'agent.proxy.request',
        () => ({ 'http.request.method': req.method, 'url.path': raw.split('?')[0]!, 'damselfly.route': 'hf-mirror' }),
        async (span) => {
          await serveHfMirror(req, res, { config, taskManager: opts.taskManager, dispatcher: secure, logger: log, metrics });
          span.setAttribute('http.response.status_code', res.statusCode);
        },
        contextFromHeaders(req.headers),
        SpanKind.SERVER,
      );
      return;
    }
    let target: URL;
    let dispatcher: Dispatcher = secure;
    if (origin) {
      target = new URL(raw, `https://${origin.authority}`);
      if (origin.insecure) dispatcher = insecure;
      applyRuleRewrite(target, config);
    } else if (/^https?:\/\//i.test(raw)) {
      target = new URL(raw);
      applyRuleRewrite(target, config);
    } else {
      const chosen = chooseUpstream(raw, req.headers, config);
      target = chosen.url;
      // A bare `/v2/` ping carries no upstream hint (containers/image pings a mirror's root); when
      // the default upstream is unreachable, answer it here so the client still uses the mirror.
      if (chosen.via === 'default' && target.pathname === '/v2/' && (req.method === 'GET' || req.method === 'HEAD')) pingFallback.add(req);
    }

    const route: ProxyRoute = wantsP2P(req.method, target, req.headers, config) ? 'p2p' : 'direct';
    log.debug('request', { method: req.method, url: safeUrl(raw), route });
    // Each proxied request is a span, continued from the client's traceparent or the root of a trace
    // of its own; a P2P download it starts runs in it, so the engine's spans (the task, its scheduler
    // stream, the parents' piece servers, the origin read) are its descendants.
    await inSpan(
      'agent.proxy.request',
      () => ({ 'http.request.method': req.method, 'url.full': redactUrl(target.href), 'damselfly.route': route, 'damselfly.blob_digest': blobDigest(target.pathname) }),
      (span) => proxied(req, res, target, dispatcher, route, span),
      contextFromHeaders(req.headers),
      SpanKind.SERVER,
    );
  }

  async function proxied(req: IncomingMessage, res: ServerResponse, target: URL, dispatcher: Dispatcher, route: ProxyRoute, span: Span): Promise<void> {
    if (route === 'p2p' && access) {
      const decision = await access.check(target, req.headers, dispatcher);
      if (!decision.allowed) {
        metrics.requests.inc({ route, result: 'denied' });
        span.setAttributes({ 'damselfly.result': 'denied', 'http.response.status_code': decision.status });
        log.info('blob refused: the registry did not confirm the client may read it', { url: safeUrl(target.href), status: decision.status });
        res.writeHead(decision.status, { ...decision.headers, 'content-length': decision.body.length }).end(req.method === 'HEAD' ? undefined : decision.body);
        return;
      }
    }
    if (route === 'p2p') {
      metrics.viaDfdaemon.inc();
      const r = await serveP2P(req, res, target, { config, taskManager: opts.taskManager, onBytes: (n) => metrics.bytes.inc({ source: 'p2p' }, n) });
      span.setAttribute('damselfly.result', r.outcome);
      if (r.outcome === 'served') {
        metrics.requests.inc({ route, result: 'ok' });
        if (span.isRecording()) {
          span.setAttributes({ 'damselfly.task_id': r.taskId, 'damselfly.bytes': r.bytes, 'damselfly.from_cache': r.fromCache === true, 'http.response.status_code': res.statusCode, ...(r.peerId ? { 'damselfly.peer_id': r.peerId } : {}) });
          if (r.fromCache) span.addEvent('served from the agent cache (no download)');
        }
        return;
      }
      if (r.outcome === 'source_error') {
        metrics.requests.inc({ route, result: 'source_error' });
        span.setAttribute('http.response.status_code', r.status);
        return;
      }
      if (r.outcome === 'broken') {
        metrics.requests.inc({ route, result: 'error' });
        metrics.failures.inc({ route });
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(r.error) });
        log.warn('p2p body failed after headers were sent', { url: safeUrl(target.href), error: errorMessage(r.error) });
        return;
      }
      metrics.fallbacks.inc({ reason: r.reason });
      span.setAttributes({ 'damselfly.fallback_reason': r.reason, ...(r.error !== undefined ? { 'damselfly.fallback_error': errorMessage(r.error) } : {}) });
      span.addEvent('served directly from the upstream', { 'damselfly.fallback_reason': r.reason });
      if (r.error !== undefined) log.info('p2p unavailable, fetching directly', { url: safeUrl(target.href), reason: r.reason, code: errorCode(r.error), error: errorMessage(r.error) });
    }
    await direct(req, res, target, dispatcher, route === 'p2p' ? 'fallback' : 'ok', span);
  }

  async function direct(req: IncomingMessage, res: ServerResponse, target: URL, dispatcher: Dispatcher, result: 'ok' | 'fallback', span: Span): Promise<void> {
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    let up;
    try {
      up = await upstreamRequest(target, {
        method: req.method ?? 'GET',
        // Tracing on: the upstream's span hangs below this request's span. Off: the proxy is
        // transparent and the client's own trace context goes on unchanged.
        headers: { ...upstreamRequestHeaders(req.headers), ...(tracingEnabled() ? traceHeaders() : passTraceContext(req.headers)) },
        body: hasBody ? req : undefined,
        dispatcher,
        signal: abort.signal,
      });
    } catch (error) {
      if (pingFallback.has(req)) {
        metrics.requests.inc({ route: 'direct', result: 'fallback' });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '2', 'docker-distribution-api-version': 'registry/2.0' }).end(req.method === 'HEAD' ? undefined : '{}');
        return;
      }
      metrics.requests.inc({ route: 'direct', result: 'error' });
      metrics.failures.inc({ route: 'direct' });
      span.setStatus({ code: SpanStatusCode.ERROR, message: `upstream unreachable: ${errorMessage(error)}` });
      log.warn('upstream unreachable', { method: req.method, url: safeUrl(target.href), error: errorMessage(error) });
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain', [DF_HEADER.errorType]: 'proxy' }).end('damselfly proxy: upstream unreachable\n');
      return;
    }
    const digest = req.method === 'GET' && !req.headers.range ? blobDigest(target.pathname) : undefined;
    try {
      let bytes = 0;
      span.setAttribute('http.response.status_code', up.status);
      await relayResponse(req, res, up, {
        verifyDigest: digest,
        onBytes: (n) => {
          bytes += n;
          metrics.bytes.inc({ source: 'direct' }, n);
        },
      });
      metrics.requests.inc({ route: 'direct', result });
      span.setAttributes({ 'damselfly.bytes': bytes, 'damselfly.served_by': 'upstream' });
    } catch (error) {
      metrics.requests.inc({ route: 'direct', result: 'error' });
      metrics.failures.inc({ route: 'direct' });
      log.warn('direct body failed', { url: safeUrl(target.href), code: errorCode(error), error: errorMessage(error) });
      res.destroy();
    }
  }

  // TLS-terminated CONNECT tunnels are fed into this server as ordinary connections.
  const inner = http.createServer((req, res) => {
    const origin = hijacked.get(req.socket);
    if (!origin) {
      res.writeHead(500).end();
      return;
    }
    handle(req, res, origin);
  });

  const server = http.createServer((req, res) => handle(req, res));
  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const authority = req.url ?? '';
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(authority);
    socket.on('error', () => socket.destroy());
    if (!authorized(req)) {
      metrics.requests.inc({ route: 'connect', result: 'unauthorized' });
      socket.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="damselfly"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    if (!m) {
      socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      return;
    }
    const host = m[1]!.replace(/^\[|\]$/g, '');
    const port = Number(m[2]);
    const rule = signer ? hijackRuleFor(hijackRules, host) : undefined;
    if (signer && rule) {
      metrics.requests.inc({ route: 'connect', result: 'ok' });
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) socket.unshift(head);
      const tlsSocket = new tls.TLSSocket(socket, {
        isServer: true,
        ALPNProtocols: ['http/1.1'],
        secureContext: signer.contextFor(host),
      });
      tlsSocket.on('error', () => tlsSocket.destroy());
      hijacked.set(tlsSocket, { authority: port === 443 ? m[1]! : authority, insecure: rule.insecure });
      inner.emit('connection', tlsSocket);
      return;
    }
    const upstream = net.connect(port, host, () => {
      metrics.requests.inc({ route: 'tunnel', result: 'ok' });
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => {
      metrics.requests.inc({ route: 'tunnel', result: 'error' });
      if (socket.writable) socket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
      socket.destroy();
    });
    socket.on('close', () => upstream.destroy());
  });
  // Registry blobs can take long; the client decides when to give up, not a server timeout.
  server.requestTimeout = 0;
  inner.requestTimeout = 0;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.server.port, config.server.ip, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  log.info('proxy listening', { ip: config.server.ip, port, intercept: !!signer });
  let closing: Promise<void> | undefined;
  const close = async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        inner.closeAllConnections();
      });
      inner.close();
      await Promise.all([secure.close(), insecure.close()]);
  };
  return { port, close: () => (closing ??= close()) };
}

/** A URL for logs: query dropped (it may carry signatures or tokens). */
function safeUrl(u: string | undefined): string {
  if (!u) return '';
  const q = u.indexOf('?');
  return q < 0 ? u : `${u.slice(0, q)}?…`;
}
