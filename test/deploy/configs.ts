/**
 * Validation of shipped configuration files with the roles' own schemas, shared by the compose and
 * Kubernetes checks. A role's file must pass exactly what `damselfly <role> --config FILE` parses,
 * including the store sections that the role hands to adapters/stores.ts.
 */
import { parseAgentConfig } from '../../agent/config.js';
import { parseKvConfig, parseQueueConfig } from '../../adapters/store-config.js';
import { managerConfig } from '../../control/manager/config.js';
import { schedulerConfig } from '../../scheduler/config.js';

export type Role = 'manager' | 'scheduler' | 'agent';
export const ROLES: readonly Role[] = ['manager', 'scheduler', 'agent'];

/** Validates a parsed YAML document as `role`'s config; returns the parsed config. Throws ConfigError. */
export function validateRoleConfig(role: Role, doc: unknown, source: string) {
  switch (role) {
    case 'agent':
      return { role, config: parseAgentConfig(doc, source) } as const;
    case 'scheduler': {
      const config = schedulerConfig(doc);
      if (config.job.queue !== undefined) parseQueueConfig(config.job.queue, `${source}: job.queue`);
      return { role, config } as const;
    }
    case 'manager': {
      const config = managerConfig(doc);
      if (config.store.kv !== undefined) parseKvConfig(config.store.kv, `${source}: store.kv`);
      if (config.store.queue !== undefined) parseQueueConfig(config.store.queue, `${source}: store.queue`);
      return { role, config } as const;
    }
  }
}

/** Host names (no port) that a config needs to resolve: its manager, scheduler and store addresses. */
export function referencedHosts(role: Role, config: ReturnType<typeof validateRoleConfig>['config']): string[] {
  const hosts: string[] = [];
  const fromUrl = (u: string | undefined) => {
    if (u) hosts.push(new URL(u).hostname);
  };
  const fromStore = (s: unknown) => {
    const url = (s as { url?: string } | undefined)?.url;
    fromUrl(url);
  };
  if (role === 'agent') {
    const c = config as ReturnType<typeof parseAgentConfig>;
    fromUrl(c.manager.addr);
    for (const a of c.scheduler.addrs) hosts.push(a.replace(/:\d+$/, ''));
  } else if (role === 'scheduler') {
    const c = config as ReturnType<typeof schedulerConfig>;
    fromUrl(c.manager.addr);
    fromStore(c.job.queue);
  } else {
    const c = config as ReturnType<typeof managerConfig>;
    fromStore(c.store.kv);
    fromStore(c.store.queue);
  }
  return hosts;
}
