/**
 * Authentication and authorisation. Three kinds of caller:
 * - users: `POST /api/v1/users/signin` gives an HS256 JWT (Bearer, cookie `jwt` or `?token=`), for /api/v1;
 * - personal access tokens (Bearer or `?access_token=`), scoped `job` / `cluster`, for /oapi/v1;
 * - schedulers: the shared scheduler secret (Bearer), for registration, keepalive and job reports.
 * Roles: root may do anything; guest may only read (GET).
 */
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie } from 'hono/cookie';
import { sign, verify } from 'hono/jwt';
import { ConflictError } from '../../adapters/errors.js';
import type { KvStore } from '../../adapters/kv/port.js';
import { ForbiddenError, UnauthorizedError } from './errors.js';
import { isSameOrigin } from './http.js';
import { managerKeys } from '../../adapters/keys.js';
import type { Role, TokenRecord, TokenScope, UserRecord } from './models.js';

const scrypt = promisify(scryptCb) as (password: string, salt: Buffer, keylen: number) => Promise<Buffer>;
const SCRYPT_KEYLEN = 32;

/** Hashes a password with scrypt and a random 16-byte salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(password, salt, SCRYPT_KEYLEN);
  return `scrypt$${salt.toString('hex')}$${hash.toString('hex')}`;
}

/** Constant-time check of a password against a stored hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, saltHex, hashHex] = stored.split('$');
  if (scheme !== 'scrypt' || !saltHex || !hashHex) return false;
  const expected = Buffer.from(hashHex, 'hex');
  const actual = await scrypt(password, Buffer.from(saltHex, 'hex'), expected.length);
  return timingSafeEqual(expected, actual);
}

/** sha256 hex, how tokens are stored and looked up. */
export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** A new random personal access token (base64url, 32 bytes of entropy). */
export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

/** The JWT key: configured, else the one persisted in the KV store (created on first start). */
export async function resolveJwtSecret(kv: KvStore, configured?: string): Promise<string> {
  if (configured) return configured;
  const key = managerKeys.meta('jwt-secret');
  const existing = await kv.get<{ secret: string }>(key);
  if (existing) return existing.value.secret;
  try {
    await kv.create(key, { secret: randomBytes(32).toString('base64url') });
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
  }
  const rec = await kv.get<{ secret: string }>(key);
  return rec!.value.secret;
}

export interface Principal {
  kind: 'user' | 'token' | 'scheduler';
  userId: number;
  role: Role;
  scopes?: TokenScope[];
}

export type AuthEnv = { Variables: { principal: Principal } };

export interface JwtClaims {
  id: number;
  role: Role;
  exp: number;
  [k: string]: unknown;
}

/** Signs a user JWT valid for `ttlMs` from `nowMs`. */
export async function signUserJwt(secret: string, user: UserRecord, nowMs: number, ttlMs: number): Promise<{ token: string; expire: string }> {
  const exp = Math.floor((nowMs + ttlMs) / 1000);
  const token = await sign({ id: user.id, role: user.role, exp } satisfies JwtClaims, secret, 'HS256');
  return { token, expire: new Date(exp * 1000).toISOString() };
}

function bearer(c: Context): string | undefined {
  const h = c.req.header('authorization');
  if (!h) return undefined;
  const parts = h.trim().split(/\s+/);
  if (parts.length !== 2 || parts[0].toLowerCase() !== 'bearer') return undefined;
  return parts[1];
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Readers are allowed to guests; everything else needs root. */
function requireRole(principal: Principal, method: string): void {
  if (principal.role === 'root') return;
  if (method === 'GET' || method === 'HEAD') return;
  throw new ForbiddenError('permission denied');
}

/**
 * /api/v1: a valid user JWT, and a role allowing the method. With `selfService` the role check is
 * left to the route (a guest may change its own password or mint its own tokens). Throws Unauthorized/Forbidden.
 */
export function jwtAuth(getSecret: () => Promise<string>, kv: KvStore, nowMs: () => number, selfService = false): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const header = bearer(c);
    const cookie = header ? undefined : getCookie(c, 'jwt');
    const raw = header ?? cookie ?? c.req.query('token');
    if (!raw) throw new UnauthorizedError();
    // A cookie rides along with any request the browser makes, also one a foreign page forges: a
    // change authorised by the cookie alone must come from this origin (a Bearer header cannot be forged).
    if (cookie && !SAFE_METHODS.has(c.req.method) && !isSameOrigin(c)) throw new ForbiddenError('cross-origin request refused: send the token as Authorization: Bearer');
    let claims: JwtClaims;
    try {
      claims = (await verify(raw, await getSecret(), { alg: 'HS256', exp: false, nbf: false, iat: false })) as unknown as JwtClaims;
    } catch {
      throw new UnauthorizedError();
    }
    if (typeof claims.exp !== 'number' || claims.exp * 1000 <= nowMs()) throw new UnauthorizedError('token has expired');
    // Roles are read from the store, not the claim, so a demoted or disabled user loses access at once.
    const user = await kv.get<UserRecord>(managerKeys.user(Number(claims.id)));
    if (!user || user.value.state !== 'enable') throw new UnauthorizedError();
    const principal: Principal = { kind: 'user', userId: user.value.id, role: user.value.role };
    if (!selfService) requireRole(principal, c.req.method);
    c.set('principal', principal);
    await next();
  };
}

/** /oapi/v1: a personal access token with the scope the resource needs. Throws Unauthorized/Forbidden. */
export function tokenAuth(kv: KvStore, nowMs: () => number, scope?: TokenScope): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const raw = c.req.query('access_token') || bearer(c);
    if (!raw) throw new UnauthorizedError();
    const idx = await kv.get<{ id: number }>(managerKeys.tokenHash(sha256Hex(raw)));
    const rec = idx && (await kv.get<TokenRecord>(managerKeys.token(idx.value.id)));
    if (!rec) throw new UnauthorizedError();
    const t = rec.value;
    if (t.state !== 'active') throw new ForbiddenError('Token is inactive');
    if (Date.parse(t.expired_at) <= nowMs()) throw new ForbiddenError('Token has expired');
    const m = /^\/oapi\/v[0-9]+\/([-_a-zA-Z]*)/.exec(c.req.path);
    const needed: TokenScope | undefined = scope ?? (m?.[1] === 'jobs' ? 'job' : m?.[1] === 'clusters' ? 'cluster' : undefined);
    // An empty scope list means every scope, as in Dragonfly (tokens created before scopes existed).
    if (t.scopes.length > 0 && (!needed || !t.scopes.includes(needed))) throw new ForbiddenError('permission denied');
    const user = await kv.get<UserRecord>(managerKeys.user(t.user_id));
    if (!user || user.value.state !== 'enable') throw new UnauthorizedError();
    const principal: Principal = { kind: 'token', userId: t.user_id, role: user.value.role, scopes: t.scopes };
    requireRole(principal, c.req.method);
    c.set('principal', principal);
    await next();
  };
}

/** Scheduler routes: the shared scheduler secret as a Bearer token. Throws Unauthorized. */
export function schedulerAuth(secret: string | undefined): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const raw = bearer(c);
    // Without a configured secret nobody can register: an open registration would let anyone
    // point agents at a scheduler of their choosing.
    if (!secret || !raw || !safeEqual(raw, secret)) throw new UnauthorizedError();
    c.set('principal', { kind: 'scheduler', userId: 0, role: 'root' });
    await next();
  };
}
