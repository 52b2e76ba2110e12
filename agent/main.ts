/** `damselfly agent [--config FILE]`: runs a node agent, or a seed peer with `seedPeer.enable: true`. */
import { errorMessage } from '../adapters/errors.js';
import { createLogger } from '../adapters/log.js';
import { METRIC_PREFIX, collectRuntimeMetrics } from '../adapters/metrics.js';
import { startTracing } from '../adapters/tracing.js';
import { createAgent } from './agent.js';
import { loadAgentConfig } from './config.js';

const HELP = `usage: damselfly agent [--config FILE]

Runs a Damselfly agent (peer): piece store, piece server, Dfdaemon gRPC service, local API socket,
registry mirror/proxy, metrics. With "seedPeer: {enable: true}" it runs as a seed peer.
Prints one JSON ready line on stdout once listening; logs go to stderr. SIGTERM/SIGINT stop it.

options:
  --config FILE   YAML configuration (keys: host, seedPeer, storage, scheduler, manager, upload,
                  download, proxy, metrics, gc); defaults apply to everything not given
  --help          this text
`;

export async function main(argv: string[]): Promise<number> {
  let file: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write(HELP);
      return 0;
    } else if (a === '--config' || a === '-c') file = argv[++i];
    else if (a.startsWith('--config=')) file = a.slice('--config='.length);
    else {
      process.stderr.write(`damselfly agent: unknown option "${a}"\n\n${HELP}`);
      return 2;
    }
  }
  let config;
  try {
    config = loadAgentConfig(file);
  } catch (err) {
    process.stderr.write(`damselfly agent: ${errorMessage(err)}\n`);
    return 2;
  }
  const logger = createLogger({ role: config.seedPeer.enable ? 'seed-peer' : 'agent' });
  const agent = createAgent(config, logger);
  collectRuntimeMetrics(agent.metricsRegistry, METRIC_PREFIX.client);
  const stopTracing = startTracing(config.tracing, config.seedPeer.enable ? 'damselfly-seed-peer' : 'damselfly-agent', { 'host.name': config.host.hostname });
  try {
    await agent.start();
  } catch (err) {
    process.stderr.write(`damselfly agent: cannot start: ${errorMessage(err)}\n`);
    await agent.stop().catch(() => undefined);
    return 1;
  }
  process.stdout.write(JSON.stringify(agent.readyLine()) + '\n');
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      logger.info('shutting down', { signal: sig });
      resolve();
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  await agent.stop();
  await stopTracing();
  // Keep-alive sockets of undici/grpc may hold the loop open; stop means stop.
  setTimeout(() => process.exit(0), 300).unref();
  return 0;
}
