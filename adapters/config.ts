/**
 * Configuration files: YAML, checked by a zod schema that rejects unknown keys. Errors name the
 * file and the dotted key, and say what was expected.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError, errorMessage } from './errors.js';

/** Formats zod issues as `key.path: message` lines, naming unknown keys one by one. */
export function formatZodIssues(error: z.ZodError): string[] {
  const lines: string[] = [];
  for (const issue of error.issues) {
    const base = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) lines.push(`${base ? base + '.' : ''}${key}: unknown key`);
    } else {
      lines.push(`${base || '(root)'}: ${issue.message}`);
    }
  }
  return lines;
}

/** Validates `value` with `schema`; throws ConfigError naming `source` and every bad key. */
export function parseConfig<S extends z.ZodType>(schema: S, value: unknown, source: string): z.output<S> {
  const result = schema.safeParse(value ?? {});
  if (!result.success) {
    const lines = formatZodIssues(result.error);
    throw new ConfigError(`${source}: invalid configuration: ${lines.join('; ')}`, { details: { file: source, issues: lines } });
  }
  return result.data;
}

/** Reads a YAML file and validates it. Throws ConfigError when unreadable, unparsable or invalid. */
export function loadConfigFile<S extends z.ZodType>(schema: S, file: string): z.output<S> {
  return parseConfig(schema, readConfigDocument(file), file);
}

/** The YAML document of a configuration file, unvalidated. Throws ConfigError naming the file. */
export function readConfigDocument(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read configuration file: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  return doc;
}

/** Parses human sizes such as `64MiB`, `4mib`, `1GB`, `512k`, or a plain byte count. */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') return input;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$/i.exec(input);
  if (!m) throw new ConfigError(`invalid size "${input}": expected a number with an optional unit such as 4MiB`);
  const n = Number(m[1]);
  const unit = m[2].toLowerCase();
  const base = m[3] || unit === '' ? 1024 : 1000;
  const pow = { '': 0, k: 1, m: 2, g: 3, t: 4 }[unit] ?? 0;
  return Math.round(n * base ** pow);
}

/** A byte count for people, in binary units: `formatSize(1536)` is "1.5KiB", `formatSize(1536, ' ')` "1.5 KiB". */
export function formatSize(n: number, sep = ''): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)}${sep}${units[i]}`;
}

/** zod type for a size given as bytes or a human string; yields bytes. */
export const sizeSchema = z.union([z.number().int().nonnegative(), z.string()]).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

/** Parses durations such as `30s`, `5m`, `1h`, `250ms`, or a number of seconds. Returns milliseconds. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') return input * 1000;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(input);
  if (!m) throw new ConfigError(`invalid duration "${input}": expected e.g. 30s, 5m, 1h or 250ms`);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 's'] ?? 1000;
  return Math.round(Number(m[1]) * mult);
}

/** zod type for a duration given as seconds or a string such as `5m`; yields milliseconds. */
export const durationSchema = z.union([z.number().nonnegative(), z.string()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

/**
 * The join token from, in order: `joinToken`, the file `joinTokenFile`, DAMSELFLY_JOIN_TOKEN.
 * Throws ConfigError naming `field` when both keys are set, or the file is unreadable or holds
 * fewer than 16 characters.
 */
export function resolveJoinToken(s: { joinToken?: string; joinTokenFile?: string }, env: NodeJS.ProcessEnv, field = 'security'): string | undefined {
  if (s.joinToken !== undefined && s.joinTokenFile !== undefined) throw new ConfigError(`${field}: set joinToken or joinTokenFile, not both`);
  if (s.joinTokenFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(s.joinTokenFile, 'utf8');
    } catch (err) {
      throw new ConfigError(`${field}.joinTokenFile: cannot read ${s.joinTokenFile}: ${errorMessage(err)}`);
    }
    const token = text.trim();
    if (token.length < 16) throw new ConfigError(`${field}.joinTokenFile: ${s.joinTokenFile} holds ${token.length} characters; expected a join token of at least 16`);
    return token;
  }
  return s.joinToken ?? (env.DAMSELFLY_JOIN_TOKEN || undefined);
}
