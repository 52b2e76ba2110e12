/**
 * `damselfly scheduler`: runs a scheduler until SIGTERM/SIGINT. Prints one ready line on stdout
 * once listening: {"ready":true,"role":"scheduler","grpc":"ip:port","metrics":"ip:port"}.
 */
import { parseCommand } from '../adapters/cli.js';
import { InvalidError, errorCode, errorMessage } from '../adapters/errors.js';
import { createLogger } from '../adapters/log.js';
import { METRIC_PREFIX, collectRuntimeMetrics } from '../adapters/metrics.js';
import { startTracing } from '../adapters/tracing.js';
import { loadSchedulerConfig } from './config.js';
import { startManagerLink } from './manager-link.js';
import { createScheduler } from './server.js';

const HELP = `usage: damselfly scheduler [--config FILE] [--port N] [--metrics-port N]

Runs a scheduler: agents announce their hosts and open one stream per download; the scheduler
answers with parents (or sends the first peer to the origin).

options:
  --config FILE       YAML configuration (server, metrics, scheduling, gc, seedPeer, manager, job)
  --port N            gRPC port (overrides server.port; 0 = ephemeral)
  --metrics-port N    Prometheus /metrics port (overrides metrics.port; 0 = ephemeral)
  --help              show this help
`;

function port(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidError(`${flag}: expected a port number, got "${v}"`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand('scheduler', HELP, {
    args: argv,
    options: { config: { type: 'string' }, port: { type: 'string' }, 'metrics-port': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const logger = createLogger({ role: 'scheduler' });
  // Installed before anything starts, so a SIGTERM during startup still ends in a clean exit 0.
  let signalled: string | undefined;
  let onStop: (() => void) | undefined;
  const onSignal = (sig: string): void => {
    signalled ??= sig;
    onStop?.();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    return await serve(values, logger, () => signalled, (f) => (onStop = f));
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

async function serve(
  values: { config?: string; port?: string; 'metrics-port'?: string },
  logger: ReturnType<typeof createLogger>,
  signalled: () => string | undefined,
  whenSignalled: (f: () => void) => void,
): Promise<number> {
  const config = loadSchedulerConfig(values.config);
  const p = port(values.port, '--port');
  if (p !== undefined) config.server.port = p;
  const mp = port(values['metrics-port'], '--metrics-port');
  if (mp !== undefined) config.metrics.port = mp;

  const scheduler = createScheduler(config, logger);
  collectRuntimeMetrics(scheduler.metrics.registry, METRIC_PREFIX.scheduler);
  const stopTracing = startTracing(config.tracing, 'damselfly-scheduler');
  const addresses = await scheduler.start();
  let link;
  try {
    link = await startManagerLink(scheduler, config, logger);
  } catch (err) {
    await scheduler.stop();
    throw err;
  }
  process.stdout.write(JSON.stringify({ ready: true, role: 'scheduler', ...addresses }) + '\n');

  await new Promise<void>((resolve) => {
    if (signalled()) resolve();
    else whenSignalled(resolve);
  });
  logger.info('shutting down', { signal: signalled() });
  try {
    await link.stop();
  } catch (err) {
    logger.warn('manager link did not stop cleanly', { code: errorCode(err), error: errorMessage(err) });
  }
  await scheduler.stop();
  await stopTracing();
  return 0;
}
