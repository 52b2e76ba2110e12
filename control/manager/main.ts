/** `damselfly manager [--config FILE] [--port N]`: the manager's HTTP API as a Node server. */
import { startTracing } from '../../adapters/tracing.js';
import { parseCommand } from '../../adapters/cli.js';
import { errorCode, errorMessage } from '../../adapters/errors.js';
import { createLogger } from '../../adapters/log.js';
import { loadManagerConfig } from './config.js';
import { startManager } from './server.js';

const HELP = `usage: damselfly manager [--config FILE] [--port N]

Runs the manager: users and tokens, clusters, scheduler registration and discovery, and the
Dragonfly-compatible job API (/api/v1/jobs with a JWT, /oapi/v1/jobs with a personal access token).
State lives in the configured KV store and queue (default: SQLite under store.dataDir).

  --config FILE   YAML configuration (server, store, auth, jobs, schedulerKeepAliveInterval)
  --port N        listen port (overrides server.port; 0 = ephemeral)
  -h, --help      this help

Environment: DAMSELFLY_ROOT_PASSWORD, DAMSELFLY_JWT_SECRET, DAMSELFLY_SCHEDULER_SECRET.
`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand('manager', HELP, { args: argv, options: { config: { type: 'string' }, port: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const logger = createLogger({ role: 'manager' });
  let config;
  try {
    config = loadManagerConfig(values.config);
    if (values.port !== undefined) {
      const p = Number(values.port);
      if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error(`--port: expected 0..65535, got ${values.port}`);
      config = { ...config, server: { ...config.server, port: p } };
    }
  } catch (err) {
    process.stderr.write(`damselfly manager: ${errorMessage(err)}\n`);
    return 2;
  }
  const stopTracing = startTracing(config.tracing, 'damselfly-manager');
  const started = await startManager(config, { logger, metricsDefaults: true });
  process.stdout.write(JSON.stringify({ ready: true, role: 'manager', http: started.address }) + '\n');
  logger.info('manager listening', { http: started.address, kv: started.deps.kv.kind, queue: started.deps.queue.kind });
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  try {
    await started.close();
    await stopTracing();
  } catch (err) {
    logger.error('shutdown failed', { code: errorCode(err), err });
    return 1;
  }
  return 0;
}
