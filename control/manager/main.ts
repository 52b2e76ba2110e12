/** `damselfly manager [--config FILE] [--port N]`: the manager's HTTP API as a Node server. */
import { startTracing } from '../../adapters/tracing.js';
import { portFlag, runRole } from '../../adapters/process.js';
import { loadManagerConfig, type ManagerConfig } from './config.js';
import { startManager } from './server.js';

const HELP = `usage: damselfly manager [--config FILE] [--port N] [--log-level LEVEL]

Runs the manager: users and tokens, clusters, scheduler registration and discovery, and the
Dragonfly-compatible job API (/api/v1/jobs with a JWT, /oapi/v1/jobs with a personal access token).
State lives in the configured KV store and queue (default: SQLite under store.dataDir).

  -c, --config FILE   YAML configuration (server, store, auth, jobs, schedulerKeepAliveInterval)
  --port N            listen port (overrides server.port; 0 = ephemeral)
  --log-level LEVEL   debug, info, warn or error (default info, or DAMSELFLY_LOG_LEVEL)
  -h, --help          this help

Environment: DAMSELFLY_ROOT_PASSWORD, DAMSELFLY_JWT_SECRET, DAMSELFLY_SCHEDULER_SECRET.
exit codes: 0 stopped by a signal (or the exit of a parent that started it with an IPC channel),
1 failed at run time, 2 bad usage or configuration
`;

export function main(argv: string[]): Promise<number> {
  return runRole<ManagerConfig>(
    {
      command: 'manager',
      help: HELP,
      options: { config: { type: 'string', short: 'c' }, port: { type: 'string' } },
      configure(values) {
        const config = loadManagerConfig(values.config as string | undefined);
        const p = portFlag('--port', values.port);
        return p === undefined ? config : { ...config, server: { ...config.server, port: p } };
      },
      role: () => 'manager',
      async start(config, logger) {
        const stopTracing = await startTracing(config.tracing, 'damselfly-manager');
        let started: Awaited<ReturnType<typeof startManager>>;
        try {
          started = await startManager(config, { logger, metricsDefaults: true });
        } catch (err) {
          await stopTracing();
          throw err;
        }
        logger.info('manager listening', { http: started.address, kv: started.deps.kv.kind, queue: started.deps.queue.kind });
        return {
          ready: { http: started.address },
          async stop() {
            await started.close();
            await stopTracing();
          },
        };
      },
    },
    argv,
  );
}
