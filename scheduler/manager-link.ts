/**
 * The scheduler's side of the manager: registration and keepalive over HTTP, and the worker that
 * consumes this cluster's job queue (preheat, get_task, delete_task) and reports results back.
 *
 * Auth: every call carries the shared scheduler secret (`DAMSELFLY_SCHEDULER_SECRET`, or
 * `opts.secret`) as a Bearer token; the manager's `auth.schedulerSecret` must match.
 *
 * Delivery: at least once. A message is hidden while it runs (visibility extended every third of
 * the visibility timeout) and acked only after the manager recorded the final report, so a
 * scheduler that dies mid-job leaves the message to another delivery. Work is idempotent by
 * (job id, cluster): before starting, the worker reports PENDING and stops if the manager says the
 * cluster's part is already terminal; the blobs themselves are cached by task ID on the peers, so a
 * repeated download is served from the P2P cache, not the origin.
 */
import { hostname as osHostname } from 'node:os';
import { ConfigError, NotFoundError, UnavailableError, errorMessage } from '../adapters/errors.js';
import { ManagerClient, ManagerRefusedError } from '../adapters/manager-client.js';
import { jobQueue } from '../adapters/keys.js';
import { redactConfig, type Logger } from '../adapters/log.js';
import type { Queue, QueueMessage } from '../adapters/queue/port.js';
import { createQueue } from '../adapters/stores.js';
import { parseQueueConfig } from '../adapters/store-config.js';
import type { SchedulerConfig } from './config.js';
import { MAX_REPORT_BYTES, MAX_REPORT_ERROR, redactUrlCredentials, truncateText } from './job/limits.js';
import { MAX_TIMER_MS, runJob, type JobOutcome } from './job/runner.js';
import type { JobMessage } from './protocol/job.js';
import { unseal } from './job/sealed.js';
import type { Scheduler } from './server.js';
import { ReportBuilder, startReporter } from './report.js';
import { SpanKind, contextFromHeaders, inSpan } from '../adapters/tracing.js';

export interface ManagerLink {
  /** Registered with the manager at least once. */
  readonly registered: boolean;
  stop(): Promise<void>;
}

export interface ManagerLinkOptions {
  /** The shared scheduler secret; defaults to $DAMSELFLY_SCHEDULER_SECRET. */
  secret?: string;
  /** Use this queue instead of opening `job.queue` (e.g. `damselfly up` shares the manager's). */
  queue?: Queue;
  hostname?: string;
  /** Jobs run at once. */
  concurrency?: number;
  /** How long after it was sent a message may name a job the manager has not stored yet (default 30 s). */
  unknownJobGraceMs?: number;
  /** How long a preheat waits for a seed peer (or scope's peers) to announce (runner.ts RunOptions.hostWaitMs). */
  hostWaitMs?: number;
}

/** A report cut to what the manager always accepts (limits.ts), with URL credentials redacted. */
export function boundReport(body: { state: string; results?: unknown[]; error?: string }): { state: string; results?: unknown[]; error?: string } {
  const error = body.error === undefined ? undefined : truncateText(redactUrlCredentials(body.error), MAX_REPORT_ERROR);
  let results = body.results;
  const fits = () => Buffer.byteLength(JSON.stringify({ ...body, error, results })) <= MAX_REPORT_BYTES - 1024;
  // Halve the longest lists inside results (success_tasks / failure_tasks / peers) until it fits.
  for (let i = 0; i < 40 && results && !fits(); i++) {
    results = results.slice(0, 1000).map((r) => {
      if (!r || typeof r !== 'object') return r;
      const o = { ...(r as Record<string, unknown>) };
      for (const [k, v] of Object.entries(o)) if (Array.isArray(v) && v.length > 0) o[k] = v.slice(0, Math.floor(v.length / 2));
      o.truncated = true;
      return o;
    });
  }
  if (results && !fits()) results = [];
  return { ...body, ...(error === undefined ? {} : { error }), ...(results === undefined ? {} : { results }) };
}

/** Sets a timer that may lie further ahead than setTimeout's 2^31-1 ms (which would fire at once). */
function longTimeout(fn: () => void, ms: number): { clear(): void } {
  let t: NodeJS.Timeout;
  const arm = (left: number) => {
    t = setTimeout(() => (left > MAX_TIMER_MS ? arm(left - MAX_TIMER_MS) : fn()), Math.min(left, MAX_TIMER_MS));
  };
  arm(Math.max(0, ms));
  return { clear: () => clearTimeout(t) };
}

interface ReportAnswer {
  id: number;
  state: 'PENDING' | 'SUCCESS' | 'FAILURE';
  cluster_state: 'PENDING' | 'SUCCESS' | 'FAILURE' | null;
}

const UNKNOWN_JOB_GRACE_MS = 30_000;
const REPORT_PROGRESS_EVERY_MS = 1_000;
const REPORT_ATTEMPTS = 8;

function splitAddress(addr: string): { ip: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(addr);
  if (!m) throw new ConfigError(`cannot parse scheduler address ${addr}`);
  return { ip: m[1], port: Number(m[2]) };
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/**
 * Starts registration/keepalive and (when `job.enable` and a queue is configured) the job worker.
 * Without `manager.addr` it does nothing. Throws ConfigError (no secret, bad job.queue) and
 * UnavailableError when the job queue cannot be opened. An unreachable manager is not an error:
 * registration is retried every keepalive interval.
 */
export async function startManagerLink(scheduler: Scheduler, config: SchedulerConfig, logger: Logger, opts: ManagerLinkOptions = {}): Promise<ManagerLink> {
  if (!config.manager.addr) return { registered: false, stop: async () => {} };
  const base = (/^https?:\/\//.test(config.manager.addr) ? config.manager.addr : `http://${config.manager.addr}`).replace(/\/+$/, '');
  const secret = opts.secret ?? process.env.DAMSELFLY_SCHEDULER_SECRET;
  if (!secret) throw new ConfigError('manager.addr is set but no scheduler secret: set DAMSELFLY_SCHEDULER_SECRET (the manager\'s auth.schedulerSecret)');
  if (!scheduler.addresses) throw new ConfigError('start the scheduler before its manager link');
  const log = logger.child({ component: 'manager-link' });
  const clusterId = config.manager.clusterId;
  const { ip, port } = splitAddress(scheduler.addresses.grpc);
  const hostname = opts.hostname ?? osHostname();
  const interval = config.manager.keepAliveInterval;
  const stopper = new AbortController();
  let registered = false;

  const manager = new ManagerClient(base, { token: secret });
  const call = <T>(method: string, path: string, body: unknown, timeoutMs?: number): Promise<T> => manager.json<T>(method, path, body, timeoutMs);

  const features = config.job.enable ? ['schedule', 'preheat'] : ['schedule'];
  const register = async (): Promise<void> => {
    await call('POST', '/api/v1/schedulers', { hostname, ip, port, features, scheduler_cluster_id: clusterId, keep_alive_interval_ms: interval, config: redactConfig(config) });
    if (!registered) log.info('registered with manager', { manager: base, clusterId });
    registered = true;
  };
  const keepAlive = async (): Promise<void> => {
    try {
      if (!registered) await register();
      else await call('POST', '/api/v1/schedulers/keepalive', { hostname, ip, scheduler_cluster_id: clusterId });
    } catch (err) {
      if (err instanceof NotFoundError) {
        // The manager lost us (new store, record deleted): register again.
        registered = false;
        await register().catch((e) => log.warn('manager registration failed', { error: errorMessage(e) }));
      } else {
        log.warn('manager keepalive failed', { error: errorMessage(err) });
      }
    }
  };
  await keepAlive();
  const timer = setInterval(() => void keepAlive(), interval);
  timer.unref();
  // Hosts and tasks for the console: one bounded summary per interval (scheduler/report.ts).
  const reporter = startReporter(new ReportBuilder(scheduler.resources, { hostname, ip, clusterId, intervalMs: interval }), interval, (r) => (registered ? call('POST', '/api/v1/schedulers/report', r) : Promise.resolve()), log);

  // ------------------------------------------------------------------ job worker
  let queue: Queue | undefined;
  let ownQueue = false;
  let visibilityMs = 30_000;
  if (config.job.enable && (opts.queue || config.job.queue)) {
    if (opts.queue) queue = opts.queue;
    else {
      const qc = parseQueueConfig(config.job.queue, 'job.queue');
      visibilityMs = qc.visibilityMs;
      queue = await createQueue(qc);
      ownQueue = true;
    }
  }
  const inflight = new Map<string, Promise<void>>();
  const openCredentials = (msg: JobMessage): JobMessage => {
    if (!msg.sealed_credentials) return msg;
    const { sealed_credentials, ...rest } = msg;
    return { ...rest, args: { ...msg.args, ...unseal<Record<string, unknown>>(secret, sealed_credentials) } };
  };
  const queueName = jobQueue(String(clusterId));

  const report = async (msg: JobMessage, body: { state: string; results?: unknown[]; error?: string; progress?: unknown }): Promise<ReportAnswer> =>
    call<ReportAnswer>('POST', `/api/v1/jobs/${msg.job_id}/report`, { scheduler_cluster_id: msg.scheduler_cluster_id, ...boundReport(body) });

  /**
   * Delivers a final report; true when the message may be acked. A report the manager refuses is
   * sent once more as a bare FAILURE with the reason, then the message is acked either way: a
   * refused report used to be retried forever and hold a worker slot. An unreachable manager is
   * retried a few times; after that the slot is freed and the message left for redelivery (the
   * queue dead-letters it after maxReceives).
   */
  const reportFinal = async (msg: JobMessage, outcome: JobOutcome): Promise<boolean> => {
    let body: Parameters<typeof report>[1] = { state: outcome.state, results: outcome.results, error: outcome.error };
    let refusals = 0;
    for (let attempt = 0, delay = 200; attempt < REPORT_ATTEMPTS && !stopper.signal.aborted; attempt++, delay = Math.min(delay * 2, 5_000)) {
      try {
        await report(msg, body);
        return true;
      } catch (err) {
        if (err instanceof NotFoundError) return true; // the job was deleted: nothing to record
        if (err instanceof ManagerRefusedError) {
          if (++refusals > 1) {
            log.error('manager refused the job report twice; dropping the message', { jobId: msg.job_id, error: errorMessage(err) });
            return true;
          }
          body = { state: 'FAILURE', results: [], error: truncateText(`the manager refused this job's report (${err.status}); first error: ${outcome.error}`, 2048) };
          continue;
        }
        log.warn('job report failed; retrying', { jobId: msg.job_id, error: errorMessage(err) });
        await sleep(delay, stopper.signal);
      }
    }
    return false;
  };

  const handle = async (q: Queue, m: QueueMessage<JobMessage>): Promise<void> => {
    const msg = m.body;
    const jlog = log.child({ jobId: msg.job_id, type: msg.type });
    const heartbeat = setInterval(() => {
      q.extend(queueName, m.receipt, visibilityMs).catch((err) => jlog.warn('cannot extend job visibility', { error: errorMessage(err) }));
    }, Math.max(500, Math.floor(visibilityMs / 3)));
    heartbeat.unref();
    try {
      let answer: ReportAnswer;
      try {
        answer = await report(msg, { state: 'PENDING' });
      } catch (err) {
        if (err instanceof NotFoundError) {
          if (Date.now() - m.sentAt < (opts.unknownJobGraceMs ?? UNKNOWN_JOB_GRACE_MS)) {
            // The manager enqueues before it stores: give it a moment, then look again.
            await q.extend(queueName, m.receipt, 1_000);
          } else {
            jlog.warn('dropping a message for a job the manager does not know');
            await q.ack(queueName, m.receipt);
          }
          return;
        }
        // Manager unreachable: leave the message for a later delivery.
        jlog.warn('manager unreachable; job left for redelivery', { error: errorMessage(err) });
        return;
      }
      if (answer.cluster_state !== 'PENDING' || answer.state !== 'PENDING') {
        await q.ack(queueName, m.receipt);
        return;
      }
      const ac = new AbortController();
      const onStop = () => ac.abort(new Error('scheduler stopping'));
      stopper.signal.addEventListener('abort', onStop, { once: true });
      const deadline = longTimeout(() => ac.abort(new Error('job deadline passed')), msg.deadline_ms - Date.now());
      let lastProgress = 0;
      jlog.info('job started', { receiveCount: m.receiveCount });
      let runnable: JobMessage;
      try {
        runnable = openCredentials(msg);
      } catch (err) {
        if (await reportFinal(msg, { state: 'FAILURE', results: [], error: errorMessage(err) })) await q.ack(queueName, m.receipt);
        return;
      }
      // One span for the run, a child of the manager's (the message's traceparent): the seed peers'
      // DownloadTask calls made inside it carry it on (scheduler/dfdaemon-client.ts).
      const outcome = await inSpan(
        'scheduler.job.run',
        { 'damselfly.job_id': msg.job_id, 'damselfly.job_type': msg.type },
        async (span) => {
          const o = await runJob(scheduler, runnable, {
            signal: ac.signal,
            logger: jlog,
            hostWaitMs: opts.hostWaitMs,
            onProgress: (done, total) => {
              const now = Date.now();
              if (now - lastProgress < REPORT_PROGRESS_EVERY_MS && done < total) return;
              lastProgress = now;
              report(msg, { state: 'PENDING', progress: { done, total } }).catch(() => {});
            },
          });
          span.setAttribute('damselfly.job_state', o.state);
          return o;
        },
        contextFromHeaders(msg.traceparent ? { traceparent: msg.traceparent } : {}),
        SpanKind.CONSUMER,
      ).finally(() => {
        deadline.clear();
        stopper.signal.removeEventListener('abort', onStop);
      });
      if (stopper.signal.aborted) {
        // Not recorded, not acked: make it visible again so another scheduler finishes it now.
        await q.extend(queueName, m.receipt, 0).catch(() => {});
        return;
      }
      jlog.info('job finished', { state: outcome.state });
      if (await reportFinal(msg, outcome)) await q.ack(queueName, m.receipt);
    } catch (err) {
      jlog.error('job handling failed; left for redelivery', { error: errorMessage(err) });
    } finally {
      clearInterval(heartbeat);
    }
  };

  const concurrency = opts.concurrency ?? 4;
  const loop = async (q: Queue): Promise<void> => {
    while (!stopper.signal.aborted) {
      if (inflight.size >= concurrency) {
        await Promise.race(inflight.values());
        continue;
      }
      let msgs: QueueMessage<JobMessage>[];
      try {
        msgs = await q.receive<JobMessage>(queueName, { max: concurrency - inflight.size, waitMs: 5_000, visibilityMs, signal: stopper.signal });
      } catch (err) {
        if (stopper.signal.aborted) break;
        log.warn('job queue receive failed', { error: errorMessage(err) });
        await sleep(1_000, stopper.signal);
        continue;
      }
      for (const m of msgs) {
        const key = `${m.body.job_id}/${m.body.scheduler_cluster_id}`;
        if (inflight.has(key)) continue; // a redelivery of what this scheduler is running now
        const p = handle(q, m).finally(() => inflight.delete(key));
        inflight.set(key, p);
      }
    }
  };
  const looping = queue ? loop(queue) : Promise.resolve();
  if (queue) log.info('consuming job queue', { queue: queueName, kind: queue.kind });

  return {
    get registered() {
      return registered;
    },
    async stop() {
      clearInterval(timer);
      reporter.stop();
      stopper.abort();
      await looping;
      await Promise.allSettled(inflight.values());
      if (ownQueue) await queue?.close();
    },
  };
}
