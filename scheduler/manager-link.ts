// Placeholder until the manager integration lands (owned by the manager engineer, who replaces
// this file): without a manager address the scheduler runs standalone.
import { ConfigError } from '../adapters/errors.js';
import type { Logger } from '../adapters/log.js';
import type { SchedulerConfig } from './config.js';
import type { Scheduler } from './server.js';

export interface ManagerLink {
  stop(): Promise<void>;
}

/** Throws ConfigError when manager.addr is set: not available in this build yet. */
export async function startManagerLink(_scheduler: Scheduler, config: SchedulerConfig, _logger: Logger): Promise<ManagerLink> {
  if (!config.manager.addr) return { stop: async () => {} };
  throw new ConfigError('manager integration is not available in this build yet');
}
