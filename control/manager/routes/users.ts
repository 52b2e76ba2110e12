/** Users: sign-in (JWT), CRUD for root, password reset. */
import { setCookie } from 'hono/cookie';
import { z } from 'zod';
import { ConflictError, NotFoundError } from '../../../adapters/errors.js';
import { managerKeys } from '../../../adapters/keys.js';
import { hashPassword, signUserJwt, verifyPassword } from '../auth.js';
import { ForbiddenError, UnauthorizedError } from '../errors.js';
import { body, idParam, pageQuery, paginate, query } from '../http.js';
import { type UserRecord, publicUser } from '../models.js';
import { casUpdate, listAll, nextId } from '../store.js';
import type { RouteModule } from './context.js';

export const signinSchema = z.strictObject({ name: z.string().min(1).max(64), password: z.string().min(1).max(256) });
export const userCreateSchema = z.strictObject({
  name: z.string().min(3).max(64).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  password: z.string().min(8).max(256),
  email: z.string().max(256).default(''),
  role: z.enum(['root', 'guest']).default('guest'),
});
export const userPatchSchema = z.strictObject({ role: z.enum(['root', 'guest']).optional(), state: z.enum(['enable', 'disable']).optional(), email: z.string().max(256).optional() });
export const resetPasswordSchema = z.strictObject({ old_password: z.string().max(256).optional(), new_password: z.string().min(8).max(256) });

export const userRoutes: RouteModule = (app, ctx) => {
  const { kv, config, userAuth, selfAuth, requireRoot, now, nowIso, jwtSecret } = ctx;

  app.post('/api/v1/users/signin', async (c) => {
    const { name, password } = await body(c, signinSchema);
    const idx = await kv.get<{ id: number }>(managerKeys.userName(name));
    const user = idx && (await kv.get<UserRecord>(managerKeys.user(idx.value.id)));
    if (!user || user.value.state !== 'enable' || !(await verifyPassword(password, user.value.password_hash))) {
      throw new UnauthorizedError('incorrect name or password');
    }
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
