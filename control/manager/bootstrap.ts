/**
 * First start: the root user and the default cluster. Safe to run on every start and from many
 * instances at once (marker keys are created conditionally; the loser of a race does nothing).
 */
import { randomBytes } from 'node:crypto';
import { ConfigError, ConflictError } from '../../adapters/errors.js';
import type { KvStore } from '../../adapters/kv/port.js';
import type { Logger } from '../../adapters/log.js';
import { hashPassword } from './auth.js';
import { managerKeys } from '../../adapters/keys.js';
import type { ClusterRecord, UserRecord } from './models.js';
import { nextId } from './store.js';

export interface BootstrapResult {
  /** Set only when this call created root with a generated password; the caller prints it once. */
  generatedRootPassword?: string;
}

/**
 * Creates root and the default cluster when absent. Throws UnavailableError from the store, and
 * ConfigError when root must be created, no password is given and `requireRootPassword` is set.
 */
export async function bootstrap(kv: KvStore, opts: { rootPassword?: string; jobRateLimit: number; now: Date; logger: Logger; requireRootPassword?: boolean }): Promise<BootstrapResult> {
  const result: BootstrapResult = {};
  const nowIso = opts.now.toISOString();
  if (!(await kv.get(managerKeys.userName('root')))) {
    if (!opts.rootPassword && opts.requireRootPassword) {
      throw new ConfigError('no root user yet and no root password: set auth.rootPassword or DAMSELFLY_ROOT_PASSWORD');
    }
    const password = opts.rootPassword ?? randomBytes(12).toString('base64url');
    const id = await nextId(kv, 'user');
    const user: UserRecord = {
      id,
      name: 'root',
      email: '',
      role: 'root',
      state: 'enable',
      password_hash: await hashPassword(password),
      created_at: nowIso,
      updated_at: nowIso,
    };
    try {
      await kv.transact([
        { type: 'create', key: managerKeys.userName('root'), value: { id } },
        { type: 'create', key: managerKeys.user(id), value: user },
      ]);
      if (!opts.rootPassword) result.generatedRootPassword = password;
      opts.logger.info('created root user', { userId: id, generatedPassword: !opts.rootPassword });
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  }
  try {
    await kv.create(managerKeys.meta('default-cluster'), { at: nowIso });
    const id = await nextId(kv, 'cluster');
    const cluster: ClusterRecord = {
      id,
      name: 'cluster-1',
      bio: 'default cluster',
      scopes: { idc: '', location: '', cidrs: [], hostnames: [] },
      scheduler_cluster_config: { candidate_parent_limit: 4, filter_parent_limit: 15, job_rate_limit: opts.jobRateLimit },
      seed_peer_cluster_config: { load_limit: 2000 },
      peer_cluster_config: { load_limit: 200 },
      is_default: true,
      created_at: nowIso,
      updated_at: nowIso,
    };
    await kv.transact([
      { type: 'create', key: managerKeys.clusterName(cluster.name), value: { id } },
      { type: 'create', key: managerKeys.cluster(id), value: cluster },
    ]);
    opts.logger.info('created default cluster', { clusterId: id });
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
  }
  return result;
}
