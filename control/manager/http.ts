/**
 * Request helpers every route module shares: JSON bodies and queries through zod (each 400 names its
 * field), ids, and Dragonfly's pagination headers.
 */
import type { Context } from 'hono';
import { z } from 'zod';
import { InvalidError } from '../../adapters/errors.js';
import { invalid } from './jobs.js';

/** The request's JSON body. Throws InvalidError naming `(body)` when it is not JSON. */
export async function rawBody(c: Context): Promise<unknown> {
  try {
    return await c.req.json();
  } catch {
    throw new InvalidError('invalid request', { details: { fields: { '(body)': 'expected a JSON body' } } });
  }
}

/** The JSON body parsed by `schema`. Throws InvalidError naming each bad field. */
export async function body<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  const r = schema.safeParse(await rawBody(c));
  if (!r.success) throw invalid(r.error);
  return r.data;
}

/** The query parsed by `schema`. Throws InvalidError naming each bad field. */
export function query<S extends z.ZodType>(c: Context, schema: S): z.output<S> {
  const r = schema.safeParse(c.req.query());
  if (!r.success) throw invalid(r.error);
  return r.data;
}

/** A path id. Throws InvalidError naming the parameter. */
export function idParam(c: Context, name = 'id'): number {
  const v = Number(c.req.param(name));
  if (!Number.isInteger(v) || v < 1) throw new InvalidError('invalid request', { details: { fields: { [name]: 'expected a positive integer' } } });
  return v;
}

export const pageQuery = z.object({
  page: z.coerce.number().int().min(1).default(1),
  per_page: z.coerce.number().int().min(1).max(1000).default(10),
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
