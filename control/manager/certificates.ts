/**
 * Certificate routes: the manager as the cluster's CA (Dragonfly's manager IssueCertificate).
 *
 *   POST /api/v1/certificates  {csr, certificate?, signature?}  → {certificate_chain: [leaf, ca]}
 *     authorised by the join token (`Authorization: Bearer <security.joinToken>`) for a first
 *     certificate, or by a still valid certificate of this CA whose key signed the new CSR
 *     (renewal: the token is presented once).
 *   GET  /api/v1/certificates/ca → the CA certificate (PEM), public.
 *
 * Mounted by app.ts: `app.route('/', certificateRoutes(deps))`.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { Hono } from 'hono';
import { z } from 'zod';
import { InvalidError } from '../../adapters/errors.js';
import type { KvStore } from '../../adapters/kv/port.js';
import type { Logger } from '../../adapters/log.js';
import { type CaPair, issueCertificate, loadClusterCa, provesCurrentCertificate } from './cluster-ca.js';
import type { ManagerConfig } from './config.js';
import { UnauthorizedError } from './errors.js';

const PEM_MAX = 16 * 1024;

const issueSchema = z.strictObject({
  csr: z.string().min(1).max(PEM_MAX),
  certificate: z.string().min(1).max(PEM_MAX).optional(),
  signature: z.string().min(1).max(2048).optional(),
});

function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

export function certificateRoutes(deps: { kv: KvStore; config: ManagerConfig; logger: Logger; now: () => number }): Hono {
  const app = new Hono();
  let ca: Promise<CaPair> | undefined;
  const clusterCa = (): Promise<CaPair> => {
    ca ??= loadClusterCa(deps.kv).catch((err) => {
      ca = undefined; // a store outage is not remembered
      throw err;
    });
    return ca;
  };

  app.get('/api/v1/certificates/ca', async (c) => c.text((await clusterCa()).cert, 200, { 'content-type': 'application/x-pem-file' }));

  app.post('/api/v1/certificates', async (c) => {
    let raw: unknown;
    try {
      raw = await c.req.json();
    } catch {
      throw new InvalidError('invalid request', { details: { fields: { '(body)': 'expected a JSON body' } } });
    }
    const parsed = issueSchema.safeParse(raw);
    if (!parsed.success) {
      const fields = Object.fromEntries(parsed.error.issues.map((i) => [i.path.join('.') || '(body)', i.message]));
      throw new InvalidError(`invalid request: ${Object.keys(fields).join(', ')}`, { details: { fields } });
    }
    const req = parsed.data;
    const pair = await clusterCa();
    const header = c.req.header('authorization') ?? '';
    const token = /^Bearer (.+)$/i.exec(header)?.[1];
    const joinToken = deps.config.security.joinToken;
    let via: 'token' | 'renewal';
    if (req.certificate && req.signature && provesCurrentCertificate(pair, req.certificate, req.csr, req.signature, deps.now())) via = 'renewal';
    else if (token && joinToken && sameSecret(token, joinToken)) via = 'token';
    else throw new UnauthorizedError('a join token (Authorization: Bearer) or a valid current certificate with a signature over the csr is required');
    const leaf = issueCertificate(pair, req.csr, deps.config.security.certificateValidity, deps.now());
    deps.logger.info('certificate issued', { via });
    return c.json({ certificate_chain: [leaf, pair.cert] });
  });
  return app;
}
