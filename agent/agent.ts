/**
 * Wires an agent (or seed peer) together: piece store, rate limiters, scheduler client, task manager,
 * piece server, Dfdaemon gRPC server, local API socket, metrics server, GC and the proxy.
 */
import http from 'node:http';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../adapters/log.js';
import { grpcChannelCredentials, grpcServerCredentials, startIdentity, type ClusterIdentity } from '../adapters/tls.js';
import { warmProto } from '../scheduler/protocol/loader.js';
import type { AgentConfig } from './config.js';
import { startDfdaemonServer } from './dfdaemon-server.js';
import { gcOnce, startGc, type GcOptions } from './gc.js';
import type { Host__Output as HostMsg } from '../scheduler/protocol/messages.js';
import { startLocalApi } from './local-api.js';
import { createAgentMetrics } from './metrics.js';
import { startPieceServer } from './piece-server.js';
import { startProxy } from './proxy/server.js';
import { TokenBucket } from './ratelimit.js';
import { SchedulerClient } from './scheduler-client.js';
import { configureSourceTls, sourceTls, warmSourceClient } from '../adapters/source/client.js';
import { PieceStore } from './storage/store.js';
import { MIN_PIECE_LENGTH } from '../scheduler/protocol/task-id.js';
import { TaskManager } from './download/manager.js';

export interface AgentPorts {
  grpc: number;
  pieces: number;
  metrics: number;
  proxy?: number;
  socket: string;
}

export interface Agent {
  start(): Promise<AgentPorts>;
  stop(): Promise<void>;
  taskManager: TaskManager;
  ports: AgentPorts;
  metricsRegistry: Registry;
  hostId: string;
  role: 'agent' | 'seed-peer';
  /** The ready line printed on stdout by `damselfly agent`. */
  readyLine(): Record<string, unknown>;
}

function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Builds an agent from a validated config. Nothing listens until start(), which throws when a port cannot be bound. */
export function createAgent(config: AgentConfig, logger: Logger): Agent {
  const seed = config.seedPeer.enable;
  const role = seed ? 'seed-peer' : 'agent';
  const hostId = `${config.host.ip}-${config.host.hostname}${seed ? '-seed' : ''}`;
  const log = logger.child({ role, hostId });
  const metrics = createAgentMetrics();
  const store = new PieceStore(config.storage.dir, log, config.storage.pieceCacheSize, config.storage.directIO);
  const limits = {
    download: new TokenBucket(config.download.rateLimit),
    upload: new TokenBucket(config.upload.rateLimit),
    source: new TokenBucket(config.download.backToSourceRateLimit),
    // One bucket for every background prefetch of the proxy (Dragonfly's prefetch_rate_limiter).
    prefetch: new TokenBucket(config.proxy.prefetchRateLimit),
  };
  const ports: AgentPorts = { grpc: 0, pieces: 0, metrics: 0, socket: config.download.server.socket };
  const host = (): HostMsg => ({
    id: hostId,
    type: seed ? 'SUPER_SEED' : 'NORMAL',
    hostname: config.host.hostname,
    ip: config.host.ip,
    port: ports.grpc,
    download_port: ports.pieces,
    idc: config.host.idc,
    location: config.host.location,
    max_tx_bandwidth: Math.min(config.upload.rateLimit, Number.MAX_SAFE_INTEGER),
    upload_limit: config.upload.concurrentLimit,
    concurrent_upload_count: 0,
    proxy_port: ports.proxy ?? 0,
    scheduler_cluster_id: 0,
    disable_shared: false,
    os: process.platform,
    platform: `${os.platform()}/${os.arch()}`,
  });
  const hasSchedulers = config.scheduler.addrs.length > 0 || !!config.manager.addr;
  // Set by start() when security.mtls is on, before anything listens or dials.
  let identity: ClusterIdentity | undefined;
  const mtls = config.security.mtls;
  const scheduler = hasSchedulers
    ? new SchedulerClient(host(), {
        addrs: config.scheduler.addrs,
        announceIntervalMs: config.scheduler.announceInterval,
        manager: config.manager.addr ? { addr: config.manager.addr, refreshIntervalMs: config.manager.refreshInterval, cacheFile: path.join(config.storage.dir, 'dynconfig.json') } : undefined,
        logger: log,
        credentials: () => grpcChannelCredentials(identity),
      })
    : undefined;
  // Origins behind a private CA (or with verification off) are reached the same way by the proxy's
  // direct path and by back-to-source: both follow proxy.registryMirror.{certs,insecureSkipVerify}.
  // Origins behind a private CA, with verification off, or hijacked hosts marked `insecure`
  // (self-signed) are reached by back-to-source as by the proxy's direct path.
  configureSourceTls(sourceTls(config.proxy));
  let gcNow: (() => Promise<unknown>) | undefined;
  const taskManager = new TaskManager({
    config, store, scheduler, host, metrics, logger: log, limits,
    gcNow: () => gcNow?.() ?? Promise.resolve(),
    pieceTls: () => identity?.clientContext(),
  });
  const closers: (() => Promise<void> | void)[] = [];

  async function start(): Promise<AgentPorts> {
    identity = await startIdentity(config.security, { managerAddr: config.manager.addr, dir: path.join(config.storage.dir, 'tls'), hostname: config.host.hostname, ip: config.host.ip, logger: log });
    if (identity) closers.push(() => identity?.close());
    store.load(config.storage.keep);
    // Piece buffers are mapped now, not while the first pull waits (and on every node at once).
    const buffers = store.cache.prefill(MIN_PIECE_LENGTH);
    warmProto(); // likewise the scheduler messages' code (protobufjs generates it on first use)
    log.info('piece store loaded', { dir: config.storage.dir, tasks: store.tasks.size, pieceBuffers: buffers });
    const pieces = await startPieceServer({ ip: config.upload.pieceServer.ip, port: config.upload.pieceServer.port, store, limiter: limits.upload, concurrentLimit: config.upload.concurrentLimit, metrics, logger: log, tls: identity ? { identity, mode: mtls } : undefined });
    closers.push(() => pieces.close());
    ports.pieces = pieces.port;
    const grpcServer = await startDfdaemonServer({ ip: config.upload.server.ip, port: config.upload.server.port, taskManager, hostId: () => hostId, logger: log, credentials: grpcServerCredentials(identity, mtls) });
    closers.push(() => grpcServer.close());
    ports.grpc = grpcServer.port;
    const api = await startLocalApi({ socket: config.download.server.socket, taskManager, logger: log });
    closers.push(() => api.close());
    const metricsServer = http.createServer((req, res) => {
      if (req.url?.startsWith('/metrics')) {
        metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
          () => res.writeHead(500).end(),
        );
      } else if (req.url === '/healthy') res.writeHead(200).end('ok');
      else res.writeHead(404).end();
    });
    metricsServer.listen(config.metrics.server.port, config.metrics.server.ip);
    await once(metricsServer, 'listening');
    ports.metrics = (metricsServer.address() as AddressInfo).port;
    closers.push(
      () =>
        new Promise<void>((r) => {
          metricsServer.close(() => r());
          metricsServer.closeAllConnections();
        }),
    );
    // Seed peers read origins first: their HTTP client should be ready before the first task.
    if (seed) {
      const ip = config.metrics.server.ip;
      const local = ip === '0.0.0.0' ? '127.0.0.1' : ip === '::' ? '[::1]' : ip.includes(':') ? `[${ip}]` : ip;
      void warmSourceClient(`http://${local}:${ports.metrics}/healthy`);
    }
    const proxy = await startProxy({ config, taskManager, logger: log, metricsRegistry: metrics.registry });
    ports.proxy = proxy.port;
    closers.push(() => proxy.close());
    if (scheduler) {
      scheduler.setHost(host());
      scheduler.onReachable = (addr) => taskManager.schedulerReachable(addr);
      await scheduler.start();
      closers.push(() => scheduler.close());
    }
    const gcOptions: GcOptions = {
        store,
        taskTTL: config.gc.taskTTL,
        highPercent: config.gc.diskHighThresholdPercent,
        lowPercent: config.gc.diskLowThresholdPercent,
        diskThreshold: config.gc.diskThreshold,
        evict: (id) => taskManager.delete(id),
        logger: log,
        onUsage: (u) => {
          metrics.diskSpaceTotal.set(u.total);
          metrics.diskUsageSpaceTotal.set(u.used);
        },
      };
    const stopGc = startGc(gcOptions, config.gc.interval);
    // A download that filled the disk runs a pass at once (after freeing its own partial task).
    gcNow = () => gcOnce(gcOptions);
    closers.push(stopGc);
    return ports;
  }

  async function stop(): Promise<void> {
    taskManager.stop();
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn('shutdown step failed', { err });
      }
    }
    closers.length = 0;
    await store.close();
  }

  return {
    start,
    stop,
    taskManager,
    ports,
    metricsRegistry: metrics.registry,
    hostId,
    role,
    readyLine: () => ({
      ready: true,
      role,
      hostId,
      grpc: hostPort(config.upload.server.ip, ports.grpc),
      pieces: hostPort(config.upload.pieceServer.ip, ports.pieces),
      ...(ports.proxy !== undefined ? { proxy: hostPort(config.proxy.server.ip, ports.proxy) } : {}),
      metrics: hostPort(config.metrics.server.ip, ports.metrics),
      socket: ports.socket,
      mtls,
    }),
  };
}
