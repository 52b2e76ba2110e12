/** Records the manager keeps in the KV store, and their public (secret-free) views. */

export type Role = 'root' | 'guest';

export interface UserRecord {
  id: number;
  name: string;
  email: string;
  role: Role;
  state: 'enable' | 'disable';
  /** `scrypt$<saltHex>$<hashHex>`; never leaves the store. */
  password_hash: string;
  created_at: string;
  updated_at: string;
}

export type TokenScope = 'job' | 'cluster';

export interface TokenRecord {
  id: number;
  name: string;
  bio: string;
  scopes: TokenScope[];
  state: 'active' | 'inactive';
  expired_at: string;
  user_id: number;
  /** sha256 hex of the token; the token itself is shown once, at creation. */
  token_hash: string;
  created_at: string;
  updated_at: string;
}

export interface ClusterScopes {
  idc: string;
  location: string;
  cidrs: string[];
  hostnames: string[];
}

export interface ClusterRecord {
  id: number;
  name: string;
  bio: string;
  scopes: ClusterScopes;
  scheduler_cluster_config: { candidate_parent_limit: number; filter_parent_limit: number; job_rate_limit: number };
  seed_peer_cluster_config: { load_limit: number };
  peer_cluster_config: { load_limit: number };
  is_default: boolean;
  created_at: string;
  updated_at: string;
}

export interface SchedulerRecord {
  id: number;
  hostname: string;
  ip: string;
  port: number;
  idc: string;
  location: string;
  features: string[];
  scheduler_cluster_id: number;
  keep_alive_interval_ms: number;
  last_keep_alive_at: string;
  created_at: string;
  updated_at: string;
}

export type JobState = 'PENDING' | 'SUCCESS' | 'FAILURE';
import type { JobType } from '../../scheduler/protocol/job.js';

export type { JobType };

export interface JobClusterState {
  task_uuid: string;
  task_name: JobType;
  state: JobState;
  results: unknown[];
  error: string;
  created_at: string;
  ttl: number;
  scheduler_cluster_id: number;
  /** Free-form progress the worker reports while PENDING (e.g. blobs done / total). */
  progress?: { done: number; total: number };
}

export interface JobRecord {
  id: number;
  created_at: string;
  updated_at: string;
  is_del: 0;
  task_id: string;
  bio: string;
  type: JobType;
  state: JobState;
  /** Args with credentials removed (password dropped, header values redacted). */
  args: Record<string, unknown>;
  result: {
    group_uuid: string;
    state: JobState;
    created_at: string;
    updated_at: string;
    job_states: JobClusterState[];
  };
  user_id: number;
  scheduler_clusters: Array<{ id: number; name: string }>;
  seed_peer_clusters: Array<{ id: number; name: string }>;
  /** Epoch ms after which a still-PENDING job is FAILURE. */
  deadline_ms: number;
}

/** The user without its password hash. */
export function publicUser(u: UserRecord): Omit<UserRecord, 'password_hash'> {
  const { password_hash: _drop, ...rest } = u;
  return rest;
}

/** The token record without its hash. */
export function publicToken(t: TokenRecord): Omit<TokenRecord, 'token_hash'> {
  const { token_hash: _drop, ...rest } = t;
  return rest;
}

/** The job as the Dragonfly API returns it (internal bookkeeping fields dropped). */
export function publicJob(j: JobRecord): Omit<JobRecord, 'deadline_ms'> {
  const { deadline_ms: _drop, ...rest } = j;
  return rest;
}

/** The /clusters façade's view: one record is both the scheduler and the seed-peer cluster. */
export function publicCluster(c: ClusterRecord): ClusterRecord & { scheduler_cluster_id: number; seed_peer_cluster_id: number } {
  return { ...c, scheduler_cluster_id: c.id, seed_peer_cluster_id: c.id };
}
