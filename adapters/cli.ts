/**
 * The argument handling every `damselfly` subcommand shares: node:util parseArgs, a usage error
 * (`damselfly <command>: <reason>`, the help text, exit 2) and `--help`/`-h` (help on stdout, exit 0).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { errorMessage } from './errors.js';

/** Parses `config` (which should declare a boolean `help` option); a number is the exit code to return. */
export function parseCommand<T extends ParseArgsConfig>(command: string, help: string, config: T): ReturnType<typeof parseArgs<T>> | number {
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs(config);
  } catch (err) {
    process.stderr.write(`damselfly ${command}: ${errorMessage(err)}\n\n${help}`);
    return 2;
  }
  if ((parsed.values as { help?: unknown }).help === true) {
    process.stdout.write(help);
    return 0;
  }
  return parsed;
}
