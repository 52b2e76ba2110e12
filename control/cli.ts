#!/usr/bin/env node
/**
 * `damselfly`: one executable, every role a subcommand. Each subcommand lives in the folder of the
 * role it belongs to and exports `main(argv): Promise<number>` (the exit code); this file only
 * dispatches, so `damselfly --help` stays fast and a role's dependencies load only when it runs.
 */
import { holdSignals, releaseSignals } from '../adapters/signals.js';
import { errorCode, errorMessage } from '../adapters/errors.js';

// Before anything else loads: a SIGTERM while a role's modules load must stop it cleanly.
holdSignals();

type Main = (argv: string[]) => Promise<number>;
interface Command {
  summary: string;
  load: () => Promise<{ main: Main }>;
  /** Long-running: its main takes over the held signals (adapters/process.ts, control/up.ts). */
  serves?: boolean;
}

const commands: Record<string, Command> = {
  up: { serves: true, summary: 'run everything on one machine (manager, scheduler, seed peer, agent)', load: () => import('./up.js') },
  get: { summary: 'download a URL through the local agent (like dfget)', load: () => import('../agent/cli-get.js') },
  agent: { serves: true, summary: 'run a node agent (or a seed peer with seedPeer.enable)', load: () => import('../agent/main.js') },
  scheduler: { serves: true, summary: 'run a scheduler', load: () => import('../scheduler/main.js') },
  manager: { serves: true, summary: 'run the manager HTTP API', load: () => import('./manager/main.js') },
  preheat: { summary: 'preheat an image or file through the manager and wait for it', load: () => import('./preheat-cli.js') },
  config: { summary: 'print client configuration: containerd | nydusd | podman | docker', load: () => import('../agent/proxy/client-config-cli.js') },
  ca: { summary: 'manage the proxy CA used to intercept HTTPS registries (ca init)', load: () => import('../agent/proxy/ca-cli.js') },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: damselfly <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun "damselfly <command> --help" for a command's options.\n`;
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || !commands[name]) releaseSignals();
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  if (name === '--version' || name === 'version') {
    const { version } = await import('../adapters/version.js');
    process.stdout.write(`damselfly ${version}\n`);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`damselfly: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const mod = await command.load();
  if (!command.serves) {
    // A one-shot command gets the default signal behaviour back (a signal during loading re-raised).
    const sig = releaseSignals();
    if (sig) process.kill(process.pid, sig);
  }
  return mod.main(rest);
}

run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`damselfly: ${errorCode(err)}: ${errorMessage(err)}\n`);
    process.exitCode = 1;
  },
);
