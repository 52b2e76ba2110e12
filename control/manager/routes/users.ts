/** Users: sign-in (JWT), CRUD for root, password reset. */
import { randomBytes } from 'node:crypto';
import { setCookie } from 'hono/cookie';
import { z } from 'zod';
import { ConflictError, NotFoundError } from '../../../adapters/errors.js';
import type { KvStore } from '../../../adapters/kv/port.js';
import { managerKeys } from '../../../adapters/keys.js';
import { hashPassword, sha256Hex, signUserJwt, verifyPassword } from '../auth.js';
import { ForbiddenError, RateLimitedError, UnauthorizedError } from '../errors.js';
import { body, idParam, pageQuery, paginate, query } from '../http.js';
import { type UserRecord, publicUser } from '../models.js';
import { casUpdate, listAll, nextId } from '../store.js';
import type { RouteModule } from './context.js';

// A name no user can have is refused as input (and never becomes a store key).
export const signinSchema = z.strictObject({ name: z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'), password: z.string().min(1).max(256) });
export const userCreateSchema = z.strictObject({
  name: z.string().min(3).max(64).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  password: z.string().min(8).max(256),
  email: z.string().max(256).default(''),
  role: z.enum(['root', 'guest']).default('guest'),
});
export const userPatchSchema = z.strictObject({ role: z.enum(['root', 'guest']).optional(), state: z.enum(['enable', 'disable']).optional(), email: z.string().max(256).optional() });
export const resetPasswordSchema = z.strictObject({ old_password: z.string().max(256).optional(), new_password: z.string().min(8).max(256) });

interface SigninFailures {
  n: number;
  /** Epoch ms the window ends (and the record expires). */
  until: number;
}

/** Counts one failed sign-in under `key` in the window that started with the first failure. */
async function countFailure(kv: KvStore, key: string, nowMs: number, windowMs: number): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const rec = await kv.get<SigninFailures>(key);
    try {
      if (!rec || rec.value.until <= nowMs) {
        const value = { n: 1, until: nowMs + windowMs };
        if (rec) await kv.update(key, value, rec.version, { ttlMs: windowMs });
        else await kv.create(key, value, { ttlMs: windowMs });
      } else {
        await kv.update(key, { n: rec.value.n + 1, until: rec.value.until }, rec.version, { ttlMs: Math.max(1, rec.value.until - nowMs) });
      }
      return;
    } catch (err) {
      if (!(err instanceof ConflictError) && !(err instanceof NotFoundError)) throw err;
    }
  }
}

export const userRoutes: RouteModule = (app, ctx) => {
  const { kv, config, userAuth, selfAuth, requireRoot, now, nowIso, jwtSecret } = ctx;

  // An unknown name is checked against this hash, so it costs one scrypt like a known one.
  let dummyHash: Promise<string> | undefined;
  const throttle = config.auth.signinThrottle;

  app.post('/api/v1/users/signin', async (c) => {
    const { name, password } = await body(c, signinSchema);
    const address = ctx.deps.clientAddress?.(c) ?? 'unknown';
    const keys = [
      { key: managerKeys.signinFailures('user', sha256Hex(name)), limit: throttle.perUser },
      { key: managerKeys.signinFailures('address', sha256Hex(address)), limit: throttle.perAddress },
    ];
    for (const k of keys) {
      const rec = await kv.get<SigninFailures>(k.key);
      if (rec && rec.value.n >= k.limit && rec.value.until > now()) {
        c.header('Retry-After', String(Math.max(1, Math.ceil((rec.value.until - now()) / 1000))));
        throw new RateLimitedError('too many failed sign-ins; retry later');
      }
    }
    const idx = await kv.get<{ id: number }>(managerKeys.userName(name));
    const user = idx && (await kv.get<UserRecord>(managerKeys.user(idx.value.id)));
    const stored = user ? user.value.password_hash : await (dummyHash ??= hashPassword(randomBytes(16).toString('hex')));
    const ok = await verifyPassword(password, stored);
    if (!user || !ok || user.value.state !== 'enable') {
      for (const k of keys) await countFailure(kv, k.key, now(), throttle.window);
      throw new UnauthorizedError('incorrect name or password');
    }
    await kv.delete(keys[0].key);
    const out = await signUserJwt(await jwtSecret(), user.value, now(), config.auth.jwtTimeout);
    setCookie(c, 'jwt', out.token, { httpOnly: true, sameSite: 'Strict', path: '/', maxAge: Math.floor(config.auth.jwtTimeout / 1000) });
    return c.json(out);
  });
  app.post('/api/v1/users', userAuth, requireRoot, async (c) => {
    const req = await body(c, userCreateSchema);
    const id = await nextId(kv, 'user');
    const user: UserRecord = { id, name: req.name, email: req.email, role: req.role, state: 'enable', password_hash: await hashPassword(req.password), created_at: nowIso(), updated_at: nowIso() };
    try {
      await kv.transact([
        { type: 'create', key: managerKeys.userName(req.name), value: { id } },
        { type: 'create', key: managerKeys.user(id), value: user },
      ]);
    } catch (err) {
      if (err instanceof ConflictError) throw new ConflictError(`user ${req.name} already exists`);
      throw err;
    }
    return c.json(publicUser(user), 200);
  });
  app.get('/api/v1/users', userAuth, requireRoot, async (c) => {
    const q = query(c, pageQuery);
    const users = (await listAll<UserRecord>(kv, managerKeys.userPrefix())).map((r) => publicUser(r.value));
    return c.json(paginate(c, users, q.page, q.per_page));
  });
  app.get('/api/v1/users/:id', userAuth, async (c) => {
    const id = idParam(c);
    const p = c.get('principal');
    if (p.role !== 'root' && p.userId !== id) throw new ForbiddenError('permission denied');
    const rec = await kv.get<UserRecord>(managerKeys.user(id));
    if (!rec) throw new NotFoundError(`user ${id} not found`);
    return c.json(publicUser(rec.value));
  });
  app.patch('/api/v1/users/:id', userAuth, requireRoot, async (c) => {
    const id = idParam(c);
    const req = await body(c, userPatchSchema);
    // The caller is an enabled root: refusing its own demotion or disabling keeps at least one root.
    if (c.get('principal').userId === id && ((req.role !== undefined && req.role !== 'root') || req.state === 'disable')) {
      throw new ConflictError('you cannot demote or disable your own user; another root user must do it');
    }
    const rec = await casUpdate<UserRecord>(kv, managerKeys.user(id), (u) => ({ ...u, ...req, updated_at: nowIso() }));
    return c.json(publicUser(rec.value));
  });
  app.post('/api/v1/users/:id/reset_password', selfAuth, async (c) => {
    const id = idParam(c);
    const p = c.get('principal');
    // Guests may change only their own password: allowed past the read-only role check on purpose.
    if (p.role !== 'root' && p.userId !== id) throw new ForbiddenError('permission denied');
    const req = await body(c, resetPasswordSchema);
    const rec = await kv.get<UserRecord>(managerKeys.user(id));
    if (!rec) throw new NotFoundError(`user ${id} not found`);
    if (p.role !== 'root' && !(req.old_password && (await verifyPassword(req.old_password, rec.value.password_hash)))) {
      throw new UnauthorizedError('incorrect password');
    }
    const hash = await hashPassword(req.new_password);
    await casUpdate<UserRecord>(kv, managerKeys.user(id), (u) => ({ ...u, password_hash: hash, updated_at: nowIso() }));
    return c.json({});
  });
};
