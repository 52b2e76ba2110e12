/**
 * What the model-hub backends (hf.ts, modelscope.ts) share: reading a setting from the request
 * headers, the hub endpoint's check, the headers sent to the hub, path encoding.
 */
import { InvalidError } from '../errors.js';

/** The first non-empty value of header `name` (lower-case), whatever its case in `h`. */
export function header(h: Record<string, string>, name: string): string | undefined {
  for (const [k, v] of Object.entries(h)) if (k.toLowerCase() === name && v) return v;
  return undefined;
}

/** `ep` without trailing '/'; InvalidError naming `what` unless it is http(s)://HOST[:PORT]. */
export function checkEndpoint(ep: string, what: string): string {
  const out = ep.replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/i.test(out)) throw new InvalidError(`${what} endpoint ${out} is not valid: expected http(s)://HOST[:PORT]`);
  return out;
}

/** The headers sent to the hub: the caller's less our own settings (`prefix`), plus `token` as a bearer unless one is given. */
export function hubHeaders(h: Record<string, string>, prefix: string, token: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (!k.toLowerCase().startsWith(prefix)) out[k] = v;
  if (token && !header(h, 'authorization')) out.authorization = `Bearer ${token}`;
  return out;
}

/** A '/'-separated path with each segment percent-encoded. */
export const encPath = (p: string): string => p.split('/').map(encodeURIComponent).join('/');
