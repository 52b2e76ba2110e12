/**
 * Runs one job message on this scheduler: preheat (image or files) by driving seed peers or peers
 * through their Dfdaemon DownloadTask, get_task (which peers hold a task) and delete_task (evict
 * a task everywhere). Results take Dragonfly's shapes (research/dragonfly.md §1.3–1.4).
 */
import { createHash } from 'node:crypto';
import { errorMessage } from '../../adapters/errors.js';
import type { Logger } from '../../adapters/log.js';
import { sourceList } from '../../adapters/source/sources.js';
import { encodeDownload } from '../protocol/download.js';
import type { JobMessage } from '../protocol/job.js';
import { DEFAULT_FILTERED_QUERY_PARAMS, taskIdOf as computeTaskId } from '../protocol/task-id.js';
import { HashRing } from '../protocol/hashring.js';
import type { Host } from '../resource/host.js';
import type { Scheduler } from '../server.js';
import { resolveImage, type ImageBlob } from './image.js';

export interface JobOutcome {
  state: 'SUCCESS' | 'FAILURE';
  results: unknown[];
  error: string;
}

export interface RunOptions {
  signal: AbortSignal;
  logger: Logger;
  onProgress?: (done: number, total: number) => void;
  /**
   * How long a preheat waits for a target host to announce before failing for want of one (default
   * 60 s, never past the deadline): a scheduler that just restarted knows no seed peer until its
   * seed peers announce again, and jobs queued meanwhile must not fail for that.
   */
  hostWaitMs?: number;
}

const DEFAULT_HOST_WAIT_MS = 60_000;
/** setTimeout and gRPC deadlines overflow past 2^31-1 ms (24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

async function waitForHosts(scheduler: Scheduler, args: Record<string, unknown>, msg: JobMessage, opts: RunOptions): Promise<void> {
  const until = Math.min(msg.deadline_ms, Date.now() + (opts.hostWaitMs ?? DEFAULT_HOST_WAIT_MS));
  while (targetHosts(scheduler, args, 'probe').length === 0 && Date.now() < until && !opts.signal.aborted) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, Math.min(250, Math.max(1, until - Date.now())));
      function done() {
        clearTimeout(t);
        opts.signal.removeEventListener('abort', done);
        resolve();
      }
      opts.signal.addEventListener('abort', done, { once: true });
    });
  }
}


const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && v > 0 ? v : undefined);

function filteredParams(args: Record<string, unknown>): string[] {
  const raw = str(args.filtered_query_params);
  return raw ? raw.split('&').filter(Boolean) : DEFAULT_FILTERED_QUERY_PARAMS;
}

/** A preheat URL naming a directory: an hf:// or modelscope:// repository root, or any source URL ending in '/'. */
export function isDirectoryUrl(url: string): boolean {
  if (/^hf:\/\/(?:(?:models|datasets|spaces)\/)?[^/@?#]+\/[^/@?#]+(?:@[^/?#]+)?\/?$/i.test(url)) return true;
  if (/^modelscope:\/\/(?:(?:models|datasets)\/)?[^/@?#]+\/[^/@?#]+(?:@[^/?#]+)?\/?$/i.test(url)) return true;
  return /^(?:https?|s3|hf|modelscope):\/\/[^?#]*\/$/i.test(url);
}

function taskIdOf(url: string, args: Record<string, unknown>): string {
  return computeTaskId(url, { tag: str(args.tag), application: str(args.application), pieceLength: num(args.piece_length), filteredQueryParams: filteredParams(args) });
}

async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) await fn(items[next++]);
  });
  await Promise.all(workers);
}

/** Hosts a preheat targets, per scope; ips > count > percentage narrow the all_* scopes. */
export function targetHosts(scheduler: Scheduler, args: Record<string, unknown>, taskId: string): Host[] {
  const scope = str(args.scope) ?? 'single_seed_peer';
  if (scope === 'single_seed_peer') {
    const seeds = scheduler.resources.hosts.list({ type: 'seed' });
    const picked = new HashRing(seeds.map((h) => h.id)).pick(taskId);
    return seeds.filter((h) => h.id === picked);
  }
  let hosts = scheduler.resources.hosts.list({ type: scope === 'all_seed_peers' ? 'seed' : 'normal' });
  hosts.sort((a, b) => (a.id < b.id ? -1 : 1));
  const ips = Array.isArray(args.ips) ? (args.ips as string[]) : [];
  if (ips.length > 0) return hosts.filter((h) => ips.includes(h.info.ip));
  const count = num(args.count);
  if (count) return hosts.slice(0, count);
  const pct = num(args.percentage);
  if (pct) hosts = hosts.slice(0, Math.max(1, Math.floor((hosts.length * pct) / 100)));
  return hosts;
}

async function preheat(scheduler: Scheduler, msg: JobMessage, opts: RunOptions): Promise<JobOutcome> {
  const a = msg.args;
  const headers = (a.headers ?? {}) as Record<string, string>;
  let blobs: Array<Pick<ImageBlob, 'url'> & { digest?: string }>;
  let requestHeaders = headers;
  if (a.type === 'image') {
    try {
      const img = await resolveImage(String(a.url), {
        headers,
        username: str(a.username),
        password: str(a.password),
        platform: str(a.platform),
        signal: opts.signal,
      });
      blobs = img.blobs;
      requestHeaders = img.headers;
    } catch (err) {
      return { state: 'FAILURE', results: [], error: `resolve ${String(a.url)}: ${errorMessage(err)}` };
    }
  } else {
    const urls = [...((a.urls as string[] | undefined) ?? []), ...(str(a.url) ? [String(a.url)] : [])];
    // A directory (an hf:// or modelscope:// repository, a URL ending in '/') becomes one task per file below it.
    const files: string[] = [];
    for (const url of new Set(urls)) {
      if (!isDirectoryUrl(url)) {
        files.push(url);
        continue;
      }
      try {
        for (const e of await sourceList(url, headers, opts.signal)) files.push(e.url);
      } catch (err) {
        return { state: 'FAILURE', results: [], error: `list ${url}: ${errorMessage(err)}` };
      }
    }
    blobs = [...new Set(files)].map((url) => ({ url }));
  }
  const success: Array<{ url: string; hostname: string; ip: string }> = [];
  const failure: Array<{ url: string; hostname: string; ip: string; description: string }> = [];
  const errors: string[] = [];
  let done = 0;
  opts.onProgress?.(0, blobs.length);
  const scope = str(a.scope) ?? 'single_seed_peer';
  // Whether any host is targeted does not depend on the task ID (only which seed peer does).
  if (blobs.length > 0) await waitForHosts(scheduler, a, msg, opts);
  await pool(blobs, num(a.concurrent_task_count) ?? 8, async (blob) => {
    const id = taskIdOf(blob.url, a);
    const hosts = targetHosts(scheduler, a, id);
    if (hosts.length === 0) {
      const description = scope === 'single_seed_peer' ? 'no seed peer is announced to this scheduler' : `no peer matches scope ${scope}`;
      failure.push({ url: blob.url, hostname: '', ip: '', description });
      errors.push(`${blob.digest ?? blob.url}: ${description}`);
    } else {
      let ok = 0;
      const hostErrors: string[] = [];
      await pool(hosts, num(a.concurrent_peer_count) ?? 500, async (host) => {
        try {
          if (opts.signal.aborted) throw opts.signal.reason ?? new Error('aborted');
          await scheduler.dfdaemon.get(host.info).downloadTask(
            encodeDownload({
              url: blob.url,
              digest: blob.digest,
              tag: str(a.tag),
              application: str(a.application),
              filteredQueryParams: filteredParams(a),
              requestHeaders,
              pieceLength: num(a.piece_length),
              isPreheat: true,
            }),
            { signal: opts.signal, timeoutMs: Math.min(MAX_TIMER_MS, Math.max(1, msg.deadline_ms - Date.now())) },
          );
          ok++;
          success.push({ url: blob.url, hostname: host.info.hostname, ip: host.info.ip });
        } catch (err) {
          const description = errorMessage(err);
          hostErrors.push(`${host.info.hostname}: ${description}`);
          failure.push({ url: blob.url, hostname: host.info.hostname, ip: host.info.ip, description });
        }
      });
      // Dragonfly: an all_* scope fails a blob only when every peer failed it.
      if (ok === 0) errors.push(`${blob.digest ?? blob.url}: ${hostErrors.join('; ')}`);
    }
    done++;
    opts.onProgress?.(done, blobs.length);
  });
  const results = [{ success_tasks: success, failure_tasks: failure, scheduler_cluster_id: msg.scheduler_cluster_id }];
  return errors.length > 0 ? { state: 'FAILURE', results, error: errors.join('\n') } : { state: 'SUCCESS', results, error: '' };
}

function taskIdFromArgs(a: Record<string, unknown>): string {
  if (str(a.task_id)) return String(a.task_id);
  // Dragonfly: a task ID from content is sha256(content).
  if (str(a.content_for_calculating_task_id)) return sha256Hex(String(a.content_for_calculating_task_id));
  return taskIdOf(String(a.url), a);
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

async function getTask(scheduler: Scheduler, msg: JobMessage): Promise<JobOutcome> {
  const id = taskIdFromArgs(msg.args);
  const peers = scheduler.resources.peersOfTask(id).map((p) => ({
    id: p.id,
    hostname: p.host.info.hostname,
    ip: p.host.info.ip,
    host_type: p.host.info.type === 'NORMAL' ? 'normal' : 'super',
    created_at: new Date(p.createdAt).toISOString(),
    updated_at: new Date(p.updatedAt).toISOString(),
    IsFinished: p.state === 'Succeeded',
  }));
  return { state: 'SUCCESS', results: [{ task_id: id, peers, scheduler_cluster_id: msg.scheduler_cluster_id }], error: '' };
}

async function deleteTask(scheduler: Scheduler, msg: JobMessage, opts: RunOptions): Promise<JobOutcome> {
  const id = taskIdFromArgs(msg.args);
  const success: Array<{ hostname: string; ip: string; host_type: string }> = [];
  const failure: Array<{ hostname: string; ip: string; host_type: string; description: string }> = [];
  // Every announced host, not only the peers the scheduler tracks: after a scheduler restart the
  // agents still hold tasks this scheduler never saw.
  await pool(scheduler.resources.hosts.list(), 32, async (host) => {
    const h = { hostname: host.info.hostname, ip: host.info.ip, host_type: host.isSeed ? 'super' : 'normal' };
    try {
      if (opts.signal.aborted) throw new Error('job deadline passed');
      await scheduler.dfdaemon.get(host.info).deleteTask(id);
      success.push(h);
    } catch (err) {
      if ((err as { code?: string }).code === 'NOT_FOUND') return;
      failure.push({ ...h, description: errorMessage(err) });
    }
  });
  scheduler.resources.deleteTask(id);
  const results = [{ task_id: id, success_tasks: success, failure_tasks: failure, scheduler_cluster_id: msg.scheduler_cluster_id }];
  return failure.length > 0 ? { state: 'FAILURE', results, error: failure.map((f) => `${f.hostname}: ${f.description}`).join('\n') } : { state: 'SUCCESS', results, error: '' };
}

/** Runs the job; never throws (failures come back as a FAILURE outcome). */
export async function runJob(scheduler: Scheduler, msg: JobMessage, opts: RunOptions): Promise<JobOutcome> {
  try {
    switch (msg.type) {
      case 'preheat':
        return await preheat(scheduler, msg, opts);
      case 'get_task':
        return await getTask(scheduler, msg);
      case 'delete_task':
        return await deleteTask(scheduler, msg, opts);
      default:
        return { state: 'FAILURE', results: [], error: `unknown job type ${String((msg as { type?: unknown }).type)}` };
    }
  } catch (err) {
    return { state: 'FAILURE', results: [], error: errorMessage(err) };
  }
}
