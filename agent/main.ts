/** `damselfly agent [--config FILE]`: runs a node agent, or a seed peer with `seedPeer.enable: true`. */
import { METRIC_PREFIX, collectRuntimeMetrics } from '../adapters/metrics.js';
import { runRole } from '../adapters/process.js';
import { startTracing } from '../adapters/tracing.js';
import { createAgent } from './agent.js';
import { loadAgentConfig, type AgentConfig } from './config.js';

const HELP = `usage: damselfly agent [--config FILE] [--data-dir DIR] [--log-level LEVEL]

Runs a Damselfly agent (peer): piece store, piece server, Dfdaemon gRPC service, local API socket,
registry mirror/proxy, metrics. With "seedPeer: {enable: true}" it runs as a seed peer.
Prints one JSON ready line on stdout once listening; logs go to stderr. SIGTERM/SIGINT stop it, as
does the exit of a parent that started it with an IPC channel (damselfly up).

options:
  -c, --config FILE     YAML configuration (keys: host, seedPeer, storage, scheduler, manager, upload,
                        download, proxy, metrics, gc); defaults apply to everything not given
  --data-dir DIR        this agent's own directory: storage in DIR/storage, the local API socket at
                        DIR/agent.sock, and every listener not pinned by the file on a port the kernel
                        picks (printed in the ready line), so several agents run side by side
  --log-level LEVEL     debug, info, warn or error (default info, or DAMSELFLY_LOG_LEVEL)
  -h, --help            this text

exit codes: 0 stopped by a signal, 1 failed at run time, 2 bad usage or configuration
`;

export function main(argv: string[]): Promise<number> {
  return runRole<AgentConfig>(
    {
      command: 'agent',
      help: HELP,
      options: { config: { type: 'string', short: 'c' }, 'data-dir': { type: 'string' } },
      configure: (v) => loadAgentConfig(v.config as string | undefined, { dataDir: v['data-dir'] as string | undefined }),
      role: (config) => (config.seedPeer.enable ? 'seed-peer' : 'agent'),
      async start(config, logger) {
        const agent = createAgent(config, logger);
        collectRuntimeMetrics(agent.metricsRegistry, METRIC_PREFIX.client);
        const stopTracing = await startTracing(config.tracing, config.seedPeer.enable ? 'damselfly-seed-peer' : 'damselfly-agent', { 'host.name': config.host.hostname });
        try {
          await agent.start();
        } catch (err) {
          await agent.stop().catch(() => undefined);
          await stopTracing();
          throw err;
        }
        const { ready: _ready, role: _role, ...ready } = agent.readyLine() as Record<string, unknown>;
        return {
          ready,
          async stop() {
            await agent.stop();
            await stopTracing();
          },
        };
      },
    },
    argv,
  );
}
