/**
 * Request helpers every route module shares: JSON bodies and queries through zod (each 400 names its
 * field), ids, and Dragonfly's pagination headers.
 */
import type { Context } from 'hono';
import { z } from 'zod';
import { InvalidError } from '../../adapters/errors.js';

// Node 20 has String#isWellFormed; the es2022 lib typings do not.
const wellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/**
 * Where in `value` the first string (value or key) holds a NUL or a lone surrogate, or undefined.
 * Such text is valid JSON but breaks C-string stores and strict JSON readers (jq) downstream.
 */
export function badTextPath(value: unknown, path = ''): string | undefined {
  if (typeof value === 'string') return value.includes('\0') || !wellFormed(value) ? path || '(body)' : undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = badTextPath(value[i], path ? `${path}.${i}` : String(i));
      if (bad) return bad;
    }
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const at = path ? `${path}.${k}` : k;
      if (k.includes('\0') || !wellFormed(k)) return at;
      const bad = badTextPath(v, at);
      if (bad) return bad;
    }
  }
  return undefined;
}

function refuseBadText(value: unknown, path = ''): void {
  const bad = badTextPath(value, path);
  if (bad) throw new InvalidError('invalid request', { details: { fields: { [bad]: 'NUL characters and unpaired surrogates are not allowed' } } });
}

/** The request's JSON body. Throws InvalidError naming `(body)` when it is not JSON, or the field holding bad text. */
export async function rawBody(c: Context): Promise<unknown> {
  let raw: unknown;
  try {
    raw = await c.req.json();
  } catch {
    throw new InvalidError('invalid request', { details: { fields: { '(body)': 'expected a JSON body' } } });
  }
  refuseBadText(raw);
  return raw;
}

/** The JSON body parsed by `schema`. Throws InvalidError naming each bad field. */
export async function body<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  const r = schema.safeParse(await rawBody(c));
  if (!r.success) throw invalid(r.error);
  return r.data;
}

/** The query parsed by `schema`. Throws InvalidError naming each bad field. */
export function query<S extends z.ZodType>(c: Context, schema: S): z.output<S> {
  const q = c.req.query();
  refuseBadText(q);
  const r = schema.safeParse(q);
  if (!r.success) throw invalid(r.error);
  return r.data;
}

const DECIMAL = /^(0|[1-9][0-9]{0,15})$/;

/**
 * A path id: decimal digits only. `Number()` alone would take `1e0`, `0x1`, ` 1` or `1.0` as 1, so
 * two spellings would name one record. Throws InvalidError naming the parameter.
 */
export function idParam(c: Context, name = 'id'): number {
  const raw = c.req.param(name) ?? '';
  const v = DECIMAL.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(v) || v < 1) throw new InvalidError('invalid request', { details: { fields: { [name]: 'expected a positive decimal integer' } } });
  return v;
}

/** A query integer in decimal digits only (see idParam), within [min, max]. */
export const decimalQueryInt = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(DECIMAL, 'expected a decimal integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

export const pageQuery = z.object({
  page: decimalQueryInt(1).default(1),
  per_page: decimalQueryInt(1, 1000).default(10),
});

/** Slices one page and sets Dragonfly's `Link` header (rel first/prev/next/last) and X-Total-Count. */
export function paginate<T>(c: Context, items: T[], page: number, perPage: number): T[] {
  const total = items.length;
  const last = Math.max(1, Math.ceil(total / perPage));
  const url = new URL(c.req.url);
  const link = (p: number, rel: string) => {
    url.searchParams.set('page', String(p));
    url.searchParams.set('per_page', String(perPage));
    url.searchParams.delete('access_token');
    url.searchParams.delete('token');
    return `<${url.pathname}?${url.searchParams.toString()}>;rel=${rel}`;
  };
  const links = [link(1, 'first')];
  if (page > 1) links.push(link(Math.min(page - 1, last), 'prev'));
  if (page < last) links.push(link(page + 1, 'next'));
  links.push(link(last, 'last'));
  c.header('Link', links.join(','));
  c.header('X-Total-Count', String(total));
  return items.slice((page - 1) * perPage, page * perPage);
}

/** Turns zod issues into an InvalidError whose details name each bad field. */
export function invalid(error: z.ZodError, prefix = ''): InvalidError {
  const fields: Record<string, string> = {};
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) fields[[prefix, ...issue.path.map(String), k].filter(Boolean).join('.')] = 'unknown field';
    } else {
      fields[[prefix, ...issue.path.map(String)].filter(Boolean).join('.') || '(body)'] = issue.message;
    }
  }
  return new InvalidError('invalid request', { details: { fields } });
}

/**
 * Whether a request comes from a page of this same origin: its Origin header names this server, or
 * (no Origin) the browser did not mark it cross-site. Non-browser clients send neither and pass.
 */
export function isSameOrigin(c: Context): boolean {
  const origin = c.req.header('origin');
  if (!origin) return c.req.header('sec-fetch-site') !== 'cross-site';
  return origin === new URL(c.req.url).origin;
}
