/**
 * One way to be a process: every long-running role (`damselfly agent|scheduler|manager`) starts
 * through `runRole`, so all of them
 * - parse their flags with node:util parseArgs (plus `--help` and `--log-level`), a usage error
 *   printing the help and exiting 2;
 * - load their configuration in `configure` — a bad file or value exits 2, naming it;
 * - honour SIGTERM/SIGINT at any moment, also while starting (the start finishes or fails, then the
 *   role stops and the process exits 0);
 * - stop when their parent goes: a child spawned with an IPC channel (as `damselfly up` spawns its
 *   roles) exits when the channel closes, so a kill -9 of the parent leaves no orphan;
 * - print one JSON ready line on stdout once serving, and exit 1 when something fails at run time.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InvalidError, errorCode, errorMessage } from './errors.js';
import { LOG_LEVELS, createLogger, type LogLevel, type Logger } from './log.js';
import { releaseSignals } from './signals.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Started {
  /** Fields of the ready line (`ready: true` and `role` are added). */
  ready: Record<string, unknown>;
  /** Stops everything the role started; called once. */
  stop(): Promise<void>;
}

export interface RoleProgram<C> {
  /** The subcommand, for messages: `damselfly <command>: ...`. */
  command: string;
  help: string;
  /** The role's own flags (parseArgs); `help` and `log-level` are added. */
  options: Options;
  /** Loads and checks the configuration from the parsed flags. Throwing exits 2. */
  configure(values: Record<string, string | boolean | undefined>): C | Promise<C>;
  /** The role name in logs and the ready line (may depend on the configuration: agent or seed-peer). */
  role(config: C): string;
  /** Starts the role. Throwing exits 1 (after stopping whatever `start` had started itself). */
  start(config: C, logger: Logger): Promise<Started>;
}

/** Which exit code an error at start-up means: 2 for the user's input, 1 otherwise. */
export function exitCodeOf(err: unknown): 1 | 2 {
  const code = errorCode(err);
  return code === 'CONFIG' || code === 'INVALID' ? 2 : 1;
}

/** Runs `program` with `argv` until a signal or the parent's exit; resolves with the exit code. */
export async function runRole<C>(program: RoleProgram<C>, argv: string[]): Promise<number> {
  const { command, help } = program;
  const say = (msg: string) => process.stderr.write(`damselfly ${command}: ${msg}\n`);

  // Signals first: a SIGTERM that arrives while the configuration loads or the role starts is kept,
  // and honoured as soon as there is something to stop.
  let stopRequested: string | undefined;
  let wake: (() => void) | undefined;
  const request = (why: string): void => {
    stopRequested ??= why;
    wake?.();
  };
  const onSignal = (sig: NodeJS.Signals) => request(sig);
  const onDisconnect = () => request('parent exited');
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const early = releaseSignals(); // one that arrived while the modules loaded (control/cli.ts)
  if (early) request(early);
  if (process.channel) {
    process.on('disconnect', onDisconnect);
    process.channel.unref(); // the channel must not keep a stopped role alive
    if (!process.connected) request('parent exited');
  }
  try {
    let values: Record<string, string | boolean | undefined>;
    try {
      values = parseArgs({
        args: argv,
        strict: true,
        allowPositionals: false,
        options: { ...program.options, help: { type: 'boolean', short: 'h' }, 'log-level': { type: 'string' } },
      }).values as Record<string, string | boolean | undefined>;
    } catch (err) {
      process.stderr.write(`damselfly ${command}: ${errorMessage(err)}\n\n${help}`);
      return 2;
    }
    if (values.help === true) {
      process.stdout.write(help);
      return 0;
    }
    const level = values['log-level'];
    if (level !== undefined && !LOG_LEVELS.includes(level as LogLevel)) {
      say(`--log-level: expected one of ${LOG_LEVELS.join(', ')}, got "${String(level)}"`);
      return 2;
    }

    if (typeof level === "string") process.env.DAMSELFLY_LOG_LEVEL = level; // for every logger of the process

    let config: C;
    try {
      config = await program.configure(values);
    } catch (err) {
      say(errorMessage(err));
      return 2; // whatever goes wrong reading the configuration is the user's to fix
    }
    const role = program.role(config);
    const logger = createLogger({ role }, level ? { level: level as LogLevel } : {});
    if (stopRequested) {
      logger.info('stopped before start', { reason: stopRequested });
      return 0;
    }

    let started: Started;
    try {
      started = await program.start(config, logger);
    } catch (err) {
      say(`cannot start: ${errorMessage(err)}`);
      logger.error('start failed', { code: errorCode(err), err });
      return exitCodeOf(err);
    }
    if (!stopRequested) {
      process.stdout.write(JSON.stringify({ ready: true, role, ...started.ready }) + '\n');
      await new Promise<void>((resolve) => {
        wake = resolve;
        if (stopRequested) resolve();
      });
    }
    logger.info('shutting down', { reason: stopRequested });
    try {
      await started.stop();
    } catch (err) {
      logger.error('shutdown failed', { code: errorCode(err), err });
      return 1;
    }
    // Keep-alive sockets (undici, grpc) may hold the loop open: stopped means exited.
    setTimeout(() => process.exit(process.exitCode ?? 0), 300).unref();
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('disconnect', onDisconnect);
  }
}

/** A port flag's value: an integer 0-65535 (0 = any), or a usage error naming the flag. */
export function portFlag(flag: string, v: string | boolean | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !/^\d+$/.test(v) || n > 65535) throw new InvalidError(`${flag}: expected a port 0-65535, got "${String(v)}"`);
  return n;
}
