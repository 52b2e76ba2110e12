/**
 * Builds a scheduler: registry, scheduling, gRPC server, metrics endpoint and GC timer. Used by
 * `damselfly scheduler`, by `damselfly up` and by tests (in-process, on port 0).
 *
 *   const s = createScheduler(schedulerConfig({ server: { ip: '127.0.0.1', port: 0 } }), logger);
 *   const { grpc, metrics } = await s.start();   // "127.0.0.1:PORT"
 *   s.resources.hosts.list({ type: 'seed' }); s.resources.peersOfTask(id);
 *   await s.stop();
 */
import type { Server as HttpServer } from 'node:http';
import { networkInterfaces } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { UnavailableError, errorMessage } from '../adapters/errors.js';
import os from 'node:os';
import { silentLogger, type Logger } from '../adapters/log.js';
import { grpcChannelCredentials, grpcServerCredentials, startIdentity, type ClusterIdentity } from '../adapters/tls.js';
import { traceAnnouncePeer } from '../adapters/tracing.js';
import { systemClock, type Clock } from '../adapters/clock.js';
import type { SchedulerConfig } from './config.js';
import { DfdaemonClientPool } from './dfdaemon-client.js';
import { collectGarbage } from './gc.js';
import { toGrpcStatus } from './protocol/grpc-status.js';
import { SchedulerMetrics, serveMetrics } from './metrics.js';
import { encodeOnce } from './protocol/encode-once.js';
import { loadProto, warmProto } from './protocol/loader.js';
import type { AnnounceHostRequest, AnnouncePeerRequest__Output, AnnouncePeerResponse, LeaveHostRequest, ListTaskPeersRequest, StatTaskRequest } from './protocol/messages.js';
import { Resources } from './resource/resources.js';
import { SchedulerService } from './service.js';

export interface SchedulerAddresses {
  /** "ip:port" agents dial (the advertise IP, or loopback when bound to a wildcard). */
  grpc: string;
  /** "ip:port" of /metrics, absent when metrics are disabled. */
  metrics?: string;
}

export interface Scheduler {
  readonly config: SchedulerConfig;
  readonly resources: Resources;
  readonly service: SchedulerService;
  readonly metrics: SchedulerMetrics;
  /** Agent gRPC clients, shared with job code (preheat, get_task, delete_task). */
  readonly dfdaemon: DfdaemonClientPool;
  /** Binds the gRPC and metrics ports and starts GC. Throws UnavailableError when a port cannot be bound. */
  start(): Promise<SchedulerAddresses>;
  /** Stops accepting, ends streams, stops timers. Idempotent. */
  stop(): Promise<void>;
  /** Runs one GC sweep now (also run every gc.interval). */
  gc(): void;
  readonly addresses: SchedulerAddresses | undefined;
}

/** This machine's first non-internal IPv4 address (what other hosts reach it at), if it has one. */
function externalIPv4(): string | undefined {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

/**
 * The address others dial. The gRPC address is registered with the manager and handed to agents on
 * other hosts, so a wildcard bind advertises the machine's own address, not loopback (found on the
 * netns test bed: a scheduler on 0.0.0.0 registered 127.0.0.1 and no remote agent could reach it).
 */
function dialable(ip: string, advertise: string | undefined, port: number, remote = false): string {
  const wildcard = remote ? (externalIPv4() ?? '127.0.0.1') : '127.0.0.1';
  const host = advertise ?? (ip === '0.0.0.0' ? wildcard : ip === '::' ? '::1' : ip);
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

type Handler<Req, Res> = (req: Req) => Res;

function unary<Req, Res>(fn: Handler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, cb) => {
    try {
      cb(null, fn(call.request));
    } catch (err) {
      cb(toGrpcStatus(err) as grpc.ServiceError);
    }
  };
}

/** Creates (but does not start) a scheduler. */
export function createScheduler(config: SchedulerConfig, logger: Logger = silentLogger, opts: { clock?: Clock } = {}): Scheduler {
  const clock = opts.clock ?? systemClock;
  const log = logger.child({ role: 'scheduler' });
  const resources = new Resources();
  const metrics = new SchedulerMetrics();
  const dfdaemon = new DfdaemonClientPool();
  const service = new SchedulerService({ resources, config, clock, metrics, logger: log, dfdaemon });
  let server: grpc.Server | undefined;
  let metricsServer: HttpServer | undefined;
  let gcTimer: NodeJS.Timeout | undefined;
  let addresses: SchedulerAddresses | undefined;
  let identity: ClusterIdentity | undefined;

  const refreshGauges = (): void => {
    metrics.hosts.reset();
    for (const h of resources.hosts.list()) metrics.hosts.inc({ host_type: h.isSeed ? 'super' : 'normal' });
    metrics.tasks.reset();
    for (const t of resources.tasks.list()) metrics.tasks.inc({ state: t.state });
    metrics.peers.reset();
    for (const p of resources.allPeers()) metrics.peers.inc({ state: p.state });
  };

  const gc = (): void => {
    const r = collectGarbage(resources, config.gc, clock.now());
    if (r.hosts + r.peers + r.tasks > 0) log.info('garbage collected', { ...r });
  };

  const self: Scheduler = {
    config,
    resources,
    service,
    metrics,
    dfdaemon,
    gc,
    get addresses() {
      return addresses;
    },
    async start() {
      const { ip, port, advertiseIp } = config.server;
      identity = await startIdentity(config.security, { managerAddr: config.manager.addr, hostname: os.hostname(), ip: advertiseIp ?? ip, logger: log });
      dfdaemon.credentials = identity ? () => grpcChannelCredentials(identity) : undefined;
      const { Scheduler: Svc } = loadProto();
      warmProto(); // message code generated now, not while the first swarm registers
      server = new grpc.Server({ 'grpc.keepalive_permit_without_calls': 1 });
      // Digest pushes reach every running peer of a task: encoded once, not once per stream.
      const announcePeer = Svc.service.AnnouncePeer;
      const definition = { ...Svc.service, AnnouncePeer: { ...announcePeer, responseSerialize: encodeOnce(announcePeer.responseSerialize) } };
      server.addService(definition, {
        AnnounceHost: unary((req: AnnounceHostRequest) => (service.announceHost(req), {})),
        LeaveHost: unary((req: LeaveHostRequest) => (service.leaveHost(req), {})),
        StatTask: unary((req: StatTaskRequest) => service.statTask(req)),
        ListTaskPeers: unary((req: ListTaskPeersRequest) => service.listTaskPeers(req)),
        ListHosts: unary(() => service.listHosts()),
        AnnouncePeer: (call: grpc.ServerDuplexStream<AnnouncePeerRequest__Output, AnnouncePeerResponse>) => traceAnnouncePeer(call, () => service.announcePeer(call)),
      });
      const bindHost = ip.includes(':') ? `[${ip}]` : ip;
      const bound = await new Promise<number>((resolve, reject) =>
        server!.bindAsync(`${bindHost}:${port}`, grpcServerCredentials(identity, config.security.mtls), (err, p) =>
          err ? reject(new UnavailableError(`cannot listen on ${bindHost}:${port}: ${errorMessage(err)}`, { cause: err })) : resolve(p),
        ),
      );
      addresses = { grpc: dialable(ip, advertiseIp, bound, true) };
      if (config.metrics.enable) {
        try {
          const m = await serveMetrics(metrics, config.metrics.ip, config.metrics.port, refreshGauges);
          metricsServer = m.server;
          addresses.metrics = dialable(config.metrics.ip, undefined, m.port);
        } catch (err) {
          server.forceShutdown();
          throw new UnavailableError(`cannot listen for metrics on ${config.metrics.ip}:${config.metrics.port}: ${errorMessage(err)}`, { cause: err });
        }
      }
      gcTimer = setInterval(gc, config.gc.interval);
      gcTimer.unref();
      log.info('scheduler started', { ...addresses });
      return addresses;
    },
    async stop() {
      if (gcTimer) clearInterval(gcTimer);
      gcTimer = undefined;
      identity?.close();
      service.close();
      dfdaemon.closeAll();
      const s = server;
      server = undefined;
      if (s) {
        // Streams are long-lived; give unary calls a moment, then cut the rest.
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            s.forceShutdown();
            resolve();
          }, 1000);
          s.tryShutdown(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      const ms = metricsServer;
      metricsServer = undefined;
      if (ms) {
        ms.closeAllConnections();
        await new Promise<void>((resolve) => ms.close(() => resolve()));
      }
    },
  };
  return self;
}
