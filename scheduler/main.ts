/**
 * `damselfly scheduler`: runs a scheduler until SIGTERM/SIGINT. Prints one ready line on stdout
 * once listening: {"ready":true,"role":"scheduler","grpc":"ip:port","metrics":"ip:port"}.
 */
import { errorCode, errorMessage } from '../adapters/errors.js';
import { METRIC_PREFIX, collectRuntimeMetrics } from '../adapters/metrics.js';
import { portFlag, runRole } from '../adapters/process.js';
import { startTracing } from '../adapters/tracing.js';
import { loadSchedulerConfig, type SchedulerConfig } from './config.js';
import { startManagerLink } from './manager-link.js';
import { createScheduler } from './server.js';

const HELP = `usage: damselfly scheduler [--config FILE] [--port N] [--metrics-port N] [--log-level LEVEL]

Runs a scheduler: agents announce their hosts and open one stream per download; the scheduler
answers with parents (or sends the first peer to the origin).

options:
  -c, --config FILE   YAML configuration (server, metrics, scheduling, gc, seedPeer, manager, job)
  --port N            gRPC port (overrides server.port; 0 = ephemeral)
  --metrics-port N    Prometheus /metrics port (overrides metrics.port; 0 = ephemeral)
  --log-level LEVEL   debug, info, warn or error (default info, or DAMSELFLY_LOG_LEVEL)
  -h, --help          show this help

exit codes: 0 stopped by a signal (or the exit of a parent that started it with an IPC channel),
1 failed at run time, 2 bad usage or configuration
`;

export function main(argv: string[]): Promise<number> {
  return runRole<SchedulerConfig>(
    {
      command: 'scheduler',
      help: HELP,
      options: { config: { type: 'string', short: 'c' }, port: { type: 'string' }, 'metrics-port': { type: 'string' } },
      configure(values) {
        const config = loadSchedulerConfig(values.config as string | undefined);
        const p = portFlag('--port', values.port);
        if (p !== undefined) config.server.port = p;
        const mp = portFlag('--metrics-port', values['metrics-port']);
        if (mp !== undefined) config.metrics.port = mp;
        return config;
      },
      role: () => 'scheduler',
      async start(config, logger) {
        const scheduler = createScheduler(config, logger);
        collectRuntimeMetrics(scheduler.metrics.registry, METRIC_PREFIX.scheduler);
        const stopTracing = await startTracing(config.tracing, 'damselfly-scheduler');
        let link: Awaited<ReturnType<typeof startManagerLink>>;
        let addresses: Record<string, unknown>;
        try {
          addresses = { ...(await scheduler.start()) };
          link = await startManagerLink(scheduler, config, logger);
        } catch (err) {
          await scheduler.stop().catch(() => undefined);
          await stopTracing();
          throw err;
        }
        return {
          ready: addresses,
          async stop() {
            try {
              await link.stop();
            } catch (err) {
              logger.warn('manager link did not stop cleanly', { code: errorCode(err), error: errorMessage(err) });
            }
            await scheduler.stop();
            await stopTracing();
          },
        };
      },
    },
    argv,
  );
}
