/**
 * The one HTTP client of the manager's API, used by every role that calls it: the scheduler's
 * manager link (register, keepalive, reports, job results), the agent's scheduler discovery, the
 * certificate request and `damselfly preheat`. One base-URL rule, one timeout, one way to send a
 * bearer token and JSON, and one mapping of the manager's answers to typed errors:
 *   - no answer (refused, reset, timeout)  → UnavailableError (retry later)
 *   - 404                                  → NotFoundError (the thing does not exist there)
 *   - other 4xx except 408 and 429         → ManagerRefusedError (the same request fails every time)
 *   - 408, 429, 5xx                        → UnavailableError (retry later)
 * `request` returns every answer as it is (for callers that show the manager's own message);
 * `json` applies the mapping and parses the body.
 */
import { fetch, type Dispatcher } from 'undici';
import { DamselflyError, NotFoundError, UnavailableError, errorMessage } from './errors.js';

export interface ManagerClientOptions {
  /** Bearer token sent as `Authorization` (scheduler secret, personal access token, join token). */
  token?: string;
  /** Per-request timeout, ms (default 10 s). */
  timeoutMs?: number;
  /** An undici dispatcher, e.g. one with the cluster CA for an https manager. */
  dispatcher?: Dispatcher;
}

export interface ManagerAnswer {
  status: number;
  text: string;
  /** The body parsed as JSON, or the text when it is not JSON. */
  json: any;
}

/** The manager answered 4xx (not 404, 408 or 429): it will refuse this exact request every time. */
export class ManagerRefusedError extends DamselflyError {
  constructor(readonly status: number, message: string) {
    super(status === 401 ? 'UNAUTHORIZED' : status === 403 ? 'FORBIDDEN' : 'INVALID', message, { details: { status } });
    this.name = 'ManagerRefusedError';
  }
}

/** How many characters of a manager's error body go into an error message. */
const ERROR_TEXT_MAX = 300;

export class ManagerClient {
  readonly base: string;

  constructor(base: string, private readonly opts: ManagerClientOptions = {}) {
    this.base = base.replace(/\/+$/, '');
  }

  /** Sends one request; any HTTP answer is returned, only a transport failure throws (UnavailableError). */
  async request(method: string, path: string, body?: unknown, timeoutMs = this.opts.timeoutMs ?? 10_000): Promise<ManagerAnswer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let text: string;
    let status: number;
    try {
      const res = await fetch(`${this.base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
        ...(this.opts.dispatcher ? { dispatcher: this.opts.dispatcher } : {}),
      });
      status = res.status;
      text = await res.text();
    } catch (err) {
      throw new UnavailableError(`manager ${this.base} unreachable: ${errorMessage(err)}`, { cause: err });
    }
    let json: any = text;
    try {
      json = JSON.parse(text);
    } catch {
      // Not JSON: callers see the text as it is.
    }
    return { status, text, json };
  }

  /** Sends one request and returns its JSON body; any non-2xx answer throws the typed error above. */
  async json<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const a = await this.request(method, path, body, timeoutMs);
    if (a.status >= 200 && a.status < 300) {
      if (typeof a.json === 'string' && a.text !== '') throw new UnavailableError(`manager ${method} ${path} answered ${a.status} with a body that is not JSON`);
      return a.json as T;
    }
    const what = `manager ${method} ${path}`;
    const detail = a.text.slice(0, ERROR_TEXT_MAX);
    if (a.status === 404) throw new NotFoundError(`${what}: not found: ${detail}`);
    if (a.status >= 400 && a.status < 500 && a.status !== 408 && a.status !== 429) throw new ManagerRefusedError(a.status, `${what} refused (${a.status}): ${detail}`);
    throw new UnavailableError(`${what} answered ${a.status}: ${detail}`);
  }
}
