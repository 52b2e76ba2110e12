/**
 * Structured logs: one JSON object per line on stderr, so stdout stays free for command output.
 * Bindings (role, taskId, peerId, hostId, jobId...) ride on child loggers. Values under keys that
 * look like credentials are redacted before they are written, wherever they are nested.
 */
import { logFields } from './tracing.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
/** The levels, lowest first (`--log-level`, DAMSELFLY_LOG_LEVEL). */
export const LOG_LEVELS = Object.keys(LEVELS) as LogLevel[];

const SECRET_KEY = /authorization|password|passwd|secret|token|cookie|credential|api[-_]?key|private[-_]?key|signature/i;

export const REDACTED = '[REDACTED]';

/** `value` with the user:password of every URL inside a string replaced by `[REDACTED]`. */
export function hideUserinfo(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return value.replace(/(\/\/)[^/@\s]*@/g, `$1${REDACTED}@`);
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => hideUserinfo(v, depth + 1));
  return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, hideUserinfo(v, depth + 1)]));
}

/** A configuration fit to show: credential-like keys and URL credentials redacted (the console's configuration page). */
export function redactConfig(config: unknown): Record<string, unknown> {
  return hideUserinfo(redact(config)) as Record<string, unknown>;
}

/** Deep-copies `value`, replacing anything under a credential-like key with `[REDACTED]`. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: value.message };
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) out.code = code;
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = SECRET_KEY.test(k) && v !== undefined && v !== null && v !== '' ? REDACTED : redact(v, depth + 1);
  }
  return out;
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(bindings: Record<string, unknown>): Logger;
  /**
   * False when debug lines are dropped, so a hot path can skip building their fields (the
   * scheduler logs every decision at debug). Absent = unknown: build them.
   */
  readonly debugEnabled?: boolean;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; defaults to process.stderr. */
  write?: (line: string) => void;
}

function envLevel(): LogLevel {
  const l = (process.env.DAMSELFLY_LOG_LEVEL ?? 'info').toLowerCase();
  return l in LEVELS ? (l as LogLevel) : 'info';
}

export function createLogger(bindings: Record<string, unknown> = {}, options: LoggerOptions = {}): Logger {
  const min = LEVELS[options.level ?? envLevel()];
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (LEVELS[level] < min) return;
    const record = redact({ time: new Date().toISOString(), level, msg, ...bindings, ...logFields(), ...fields }) as Record<string, unknown>;
    write(JSON.stringify(record) + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (b) => createLogger({ ...bindings, ...b }, options),
    debugEnabled: LEVELS.debug >= min,
  };
}

/** A logger that drops everything; for tests and library callers that pass none. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
  debugEnabled: false,
};
