/**
 * Every KV key and queue name Damselfly uses is built here, nowhere else, so the layout of the
 * store is visible in one place and can be versioned as a whole. KV keys are `v1/<kind>/<id>[/...]`
 * (slash-separated, compared byte-wise, so `list(prefix)` over `v1/<kind>/` enumerates one kind);
 * queue names are `<purpose>-<id>` in [A-Za-z0-9_-] because SQS allows nothing else.
 *
 * Builders throw InvalidError when a segment is empty or contains `/` (it would change the key's shape).
 */
import { InvalidError } from './errors.js';

/** Bumped when the key layout changes incompatibly; old and new layouts never share a prefix. */
export const KEY_VERSION = 'v1';

function segment(s: string, what: string): string {
  if (typeof s !== 'string' || s.length === 0 || s.includes('/')) throw new InvalidError(`${what} must be a non-empty string without "/"`);
  return s;
}

/** Joins segments under the versioned root: key('jobs', id) → `v1/jobs/<id>`. */
export function key(kind: string, ...ids: string[]): string {
  return [KEY_VERSION, segment(kind, 'key kind'), ...ids.map((id) => segment(id, `${kind} id`))].join('/');
}

/** The prefix that lists every record of `kind` (optionally below some ids): `v1/jobs/`. */
export function prefix(kind: string, ...ids: string[]): string {
  return `${key(kind, ...ids)}/`;
}

/** The id part of a key built by key(kind, id). */
export function idOf(fullKey: string): string {
  return fullKey.slice(fullKey.lastIndexOf('/') + 1);
}

/** `v1/jobs/<id>` */
export const jobKey = (id: string): string => key('jobs', id);
/** `v1/clusters/<id>` */
export const clusterKey = (id: string): string => key('clusters', id);

function queuePart(s: string, what: string): string {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_]+$/.test(s)) throw new InvalidError(`${what} must be non-empty [A-Za-z0-9_]`);
  return s;
}

/** Queue names: queueName('jobs', 'cluster', id) → `jobs-cluster-<id>`. */
export function queueName(purpose: string, ...parts: string[]): string {
  const name = [queuePart(purpose, 'queue purpose'), ...parts.map((p) => queuePart(p.replace(/-/g, '_'), 'queue name part'))].join('-');
  if (name.length > 76) throw new InvalidError(`queue name ${name} is longer than 76 characters`);
  return name;
}

/** The job queue of one scheduler cluster: `jobs-cluster-<id>`. */
export const jobQueue = (clusterId: string): string => queueName('jobs', 'cluster', clusterId);

// ---- manager (control/manager) -------------------------------------------------------------
// Numeric ids are zero-padded so that ascending key order is id order.
const padId = (n: number): string => String(n).padStart(12, '0');
/** The manager's records. Hostnames and IPs are segments, so they must not contain "/" (they cannot). */
export const managerKeys = {
  counter: (name: string) => key('mgr-counters', name),
  meta: (name: string) => key('mgr-meta', name),
  user: (id: number) => key('mgr-users', padId(id)),
  userPrefix: () => prefix('mgr-users'),
  userName: (name: string) => key('mgr-user-names', name),
  token: (id: number) => key('mgr-tokens', padId(id)),
  tokenPrefix: () => prefix('mgr-tokens'),
  tokenName: (name: string) => key('mgr-token-names', name),
  tokenHash: (sha256Hex: string) => key('mgr-token-hashes', sha256Hex),
  cluster: (id: number) => clusterKey(padId(id)),
  clusterPrefix: () => prefix('clusters'),
  clusterName: (name: string) => key('mgr-cluster-names', name),
  scheduler: (clusterId: number, hostname: string, ip: string) => key('mgr-schedulers', padId(clusterId), hostname, ip),
  schedulerClusterPrefix: (clusterId: number) => prefix('mgr-schedulers', padId(clusterId)),
  schedulerPrefix: () => prefix('mgr-schedulers'),
  schedulerId: (id: number) => key('mgr-scheduler-ids', padId(id)),
  job: (id: number) => jobKey(padId(id)),
  jobPrefix: () => prefix('jobs'),
  /** A scheduler's latest summary of its hosts and tasks (one record per scheduler, with a TTL). */
  report: (clusterId: number, hostname: string, ip: string) => key('mgr-reports', padId(clusterId), hostname, ip),
  reportClusterPrefix: (clusterId: number) => prefix('mgr-reports', padId(clusterId)),
  reportPrefix: () => prefix('mgr-reports'),
  rateLimit: (clusterId: number) => key('mgr-job-ratelimit', padId(clusterId)),
  /** Failed sign-ins in the current window, per user name or client address (both as sha256 hex). */
  signinFailures: (kind: 'user' | 'address', sha256Hex: string) => key('mgr-signin-failures', kind, sha256Hex),
};

/** Queue dedup id: one message per (job, cluster), so a retried send never enqueues twice. */
export const jobMessageDedupId = (jobId: number, clusterId: number): string => `job-${jobId}-cluster-${clusterId}`;
