/**
 * The cluster's certificate authority: the manager signs the certificates agents, seed peers and
 * schedulers use for mutual TLS (adapters/tls.ts). The CA is made on first use and kept in the KV
 * store (created conditionally: the first of several manager instances wins, the others read it);
 * its key never leaves the manager, is never returned and never logged.
 */
import { X509Certificate, verify } from 'node:crypto';
import forge from 'node-forge';
import { ConflictError, InvalidError } from '../../adapters/errors.js';
import type { KvStore } from '../../adapters/kv/port.js';
import { managerKeys } from '../../adapters/keys.js';
import { createSelfSignedCa, serialNumber as serial, type CertPair } from '../../adapters/x509.js';

export type CaPair = CertPair;

const MAX_SANS = 8;

/** A new self-signed CA (RSA 2048). */
export function createClusterCa(commonName = 'Damselfly cluster CA', now = Date.now()): CaPair {
  return createSelfSignedCa(commonName, now);
}

/** The cluster CA from the KV store, created on first call. */
export async function loadClusterCa(kv: KvStore): Promise<CaPair> {
  const key = managerKeys.meta('cluster-ca');
  const existing = await kv.get<CaPair>(key);
  if (existing) return existing.value;
  try {
    await kv.create(key, createClusterCa());
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
  }
  return (await kv.get<CaPair>(key))!.value;
}

/**
 * Signs a CSR: subject CN and the DNS/IP subject alternative names it asks for, serverAuth and
 * clientAuth, valid [notBefore, notBefore + validityMs]. Throws InvalidError (field `csr`) for a
 * malformed or badly signed request, a non-RSA or short key, or too many names.
 */
export function issueCertificate(ca: CaPair, csrPem: string, validityMs: number, notBefore = Date.now()): string {
  let csr: ReturnType<typeof forge.pki.createCertificationRequest>;
  try {
    csr = forge.pki.certificationRequestFromPem(csrPem);
  } catch (err) {
    throw new InvalidError('csr: expected a PEM certificate request', { cause: err, details: { fields: { csr: 'expected a PEM certificate request (RSA)' } } });
  }
  const pub = csr.publicKey as forge.pki.rsa.PublicKey | null;
  if (!pub || !pub.n || pub.n.bitLength() < 2048) throw new InvalidError('csr: expected an RSA key of at least 2048 bits', { details: { fields: { csr: 'expected an RSA key of at least 2048 bits' } } });
  if (!csr.verify()) throw new InvalidError('csr: the request is not signed by its key', { details: { fields: { csr: 'signature does not verify' } } });
  const cn = csr.subject.getField('CN')?.value as string | undefined;
  const ext = (csr.getAttribute({ name: 'extensionRequest' }) as { extensions?: { name: string; altNames?: { type: number; value?: string; ip?: string }[] }[] } | null)?.extensions ?? [];
  const requested = ext.find((e) => e.name === 'subjectAltName')?.altNames ?? [];
  const altNames = requested.filter((a) => a.type === 2 || a.type === 7).map((a) => (a.type === 7 ? { type: 7, ip: a.ip } : { type: 2, value: a.value }));
  if (altNames.length > MAX_SANS) throw new InvalidError(`csr: at most ${MAX_SANS} subject alternative names`, { details: { fields: { csr: `at most ${MAX_SANS} subject alternative names` } } });
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(ca.key) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = pub;
  cert.serialNumber = serial();
  // Back-dated for clock skew, by a tenth of the lifetime at most: components renew at two thirds
  // of [notBefore, notAfter], which a full minute would make "at once" for short lifetimes.
  cert.validity.notBefore = new Date(notBefore - Math.min(60_000, validityMs / 10));
  cert.validity.notAfter = new Date(notBefore + validityMs);
  cert.setSubject([{ name: 'commonName', value: (cn ?? 'damselfly-host').slice(0, 64) }, { name: 'organizationName', value: 'Damselfly' }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    ...(altNames.length ? [{ name: 'subjectAltName', altNames }] : []),
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/**
 * Whether `certPem` is a currently valid certificate of this CA whose key signed `csrPem`
 * (`signature`, base64): what a renewal presents instead of the join token.
 */
export function provesCurrentCertificate(ca: CaPair, certPem: string, csrPem: string, signature: string, now = Date.now()): boolean {
  try {
    const x = new X509Certificate(certPem);
    if (!x.verify(new X509Certificate(ca.cert).publicKey)) return false;
    if (now < Date.parse(x.validFrom) || now >= Date.parse(x.validTo)) return false;
    return verify('sha256', Buffer.from(csrPem), x.publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}
