/**
 * An in-process agent with no scheduler (its address refuses: every download goes to the origin)
 * and every listener on a port the kernel picks, its local API on `socket`: what the engine's own
 * tests start beside a test origin.
 */
import path from 'node:path';
import { silentLogger } from '../../adapters/log.js';
import { createAgent, type Agent } from '../../agent/agent.js';
import { parseAgentConfig } from '../../agent/config.js';

export function schedulerlessAgent(hostname: string, dir: string, socket: string, scheduler: Record<string, unknown> = {}): Agent {
  const any = { ip: '127.0.0.1', port: 0 };
  return createAgent(
    parseAgentConfig({
      host: { hostname, ip: '127.0.0.1' },
      storage: { dir: path.join(dir, 'storage') },
      scheduler: { addrs: ['127.0.0.1:1'], ...scheduler },
      upload: { server: any, pieceServer: any },
      download: { server: { socket } },
      proxy: { server: any },
      metrics: { server: any },
    }),
    silentLogger,
  );
}
