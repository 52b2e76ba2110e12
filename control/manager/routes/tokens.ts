/** Personal access tokens: minted by their user (or root), shown once, stored as sha256. */
import type { Context } from 'hono';
import { z } from 'zod';
import { ConflictError, InvalidError, NotFoundError } from '../../../adapters/errors.js';
import type { KvStore } from '../../../adapters/kv/port.js';
import { managerKeys } from '../../../adapters/keys.js';
import { type AuthEnv, generateToken, sha256Hex } from '../auth.js';
import { ForbiddenError } from '../errors.js';
import { body, decimalQueryInt, idParam, pageQuery, paginate, query } from '../http.js';
import { type TokenRecord, publicToken } from '../models.js';
import { casUpdate, listAll, nextId } from '../store.js';
import type { RouteModule } from './context.js';

export const tokenCreateSchema = z.strictObject({
  name: z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  bio: z.string().max(1024).default(''),
  scopes: z.array(z.enum(['job', 'cluster'])).default([]),
  expired_at: z.iso.datetime({ offset: true }),
  user_id: z.number().int().positive().optional(),
});
export const tokenPatchSchema = z.strictObject({
  bio: z.string().max(1024).optional(),
  scopes: z.array(z.enum(['job', 'cluster'])).optional(),
  state: z.enum(['active', 'inactive']).optional(),
  expired_at: z.iso.datetime({ offset: true }).optional(),
});
export const tokenListQuerySchema = pageQuery.extend({ user_id: decimalQueryInt(1).optional(), state: z.enum(['active', 'inactive']).optional() });

async function ownToken(kv: KvStore, c: Context<AuthEnv>): Promise<TokenRecord> {
  const rec = await kv.get<TokenRecord>(managerKeys.token(idParam(c)));
  const p = c.get('principal');
  if (!rec || (p.role !== 'root' && rec.value.user_id !== p.userId)) throw new NotFoundError('token not found');
  return rec.value;
}

export const tokenRoutes: RouteModule = (app, ctx) => {
  const { kv, userAuth, selfAuth, nowIso } = ctx;

  app.post('/api/v1/personal-access-tokens', selfAuth, async (c) => {
    const req = await body(c, tokenCreateSchema);
    const p = c.get('principal');
    const userId = req.user_id ?? p.userId;
    if (userId !== p.userId && p.role !== 'root') throw new ForbiddenError('permission denied');
    if (!(await kv.get(managerKeys.user(userId)))) throw new InvalidError('invalid request', { details: { fields: { user_id: `user ${userId} does not exist` } } });
    const token = generateToken();
    const id = await nextId(kv, 'pat');
    const hash = sha256Hex(token);
    const rec: TokenRecord = { id, name: req.name, bio: req.bio, scopes: req.scopes, state: 'active', expired_at: new Date(req.expired_at).toISOString(), user_id: userId, token_hash: hash, created_at: nowIso(), updated_at: nowIso() };
    try {
      await kv.transact([
        { type: 'create', key: managerKeys.tokenName(req.name), value: { id } },
        { type: 'create', key: managerKeys.tokenHash(hash), value: { id } },
        { type: 'create', key: managerKeys.token(id), value: rec },
      ]);
    } catch (err) {
      if (err instanceof ConflictError) throw new ConflictError(`token ${req.name} already exists`);
      throw err;
    }
    // The only time the token itself is returned.
    return c.json({ ...publicToken(rec), token });
  });
  app.get('/api/v1/personal-access-tokens', userAuth, async (c) => {
    const q = query(c, tokenListQuerySchema);
    const p = c.get('principal');
    const all = (await listAll<TokenRecord>(kv, managerKeys.tokenPrefix()))
      .map((r) => r.value)
      .filter((t) => (p.role === 'root' || t.user_id === p.userId) && (q.user_id === undefined || t.user_id === q.user_id) && (!q.state || t.state === q.state))
      .map(publicToken);
    return c.json(paginate(c, all, q.page, q.per_page));
  });
  app.get('/api/v1/personal-access-tokens/:id', userAuth, async (c) => c.json(publicToken(await ownToken(kv, c))));
  app.patch('/api/v1/personal-access-tokens/:id', selfAuth, async (c) => {
    const t = await ownToken(kv, c);
    const req = await body(c, tokenPatchSchema);
    const rec = await casUpdate<TokenRecord>(kv, managerKeys.token(t.id), (cur) => ({
      ...cur,
      ...req,
      ...(req.expired_at ? { expired_at: new Date(req.expired_at).toISOString() } : {}),
      updated_at: nowIso(),
    }));
    return c.json(publicToken(rec.value));
  });
  app.delete('/api/v1/personal-access-tokens/:id', selfAuth, async (c) => {
    const t = await ownToken(kv, c);
    await kv.transact([
      { type: 'delete', key: managerKeys.token(t.id) },
      { type: 'delete', key: managerKeys.tokenHash(t.token_hash) },
      { type: 'delete', key: managerKeys.tokenName(t.name) },
    ]);
    return c.json({});
  });
};
