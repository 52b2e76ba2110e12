import { describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { createCa, LeafSigner } from './ca.js';

describe('proxy CA', () => {
  const ca = createCa('Test CA');
  const signer = new LeafSigner(ca);
  it('creates a CA certificate with CA constraints, self-signed', () => {
    const c = new X509Certificate(ca.cert);
    expect(c.ca).toBe(true);
    expect(c.subject).toContain('CN=Test CA');
    expect(c.verify(c.publicKey)).toBe(true);
  });
  it('signs leaves for DNS names and IPs that verify against the CA and name the host', () => {
    const caCert = new X509Certificate(ca.cert);
    for (const host of ['registry-1.docker.io', '127.0.0.1']) {
      const leaf = new X509Certificate(signer.leafPem(host));
      expect(leaf.ca).toBe(false);
      expect(leaf.verify(caCert.publicKey)).toBe(true);
      expect(leaf.checkIssued(caCert)).toBe(true);
      expect(host.includes('.io') ? leaf.checkHost(host) : leaf.checkIP(host)).toBe(host);
      expect(leaf.checkHost('other.example')).toBeUndefined();
      expect(new Date(leaf.validTo).getTime()).toBeGreaterThan(Date.now() + 300 * 86_400_000);
    }
  });
  it('caches one TLS context per host', () => {
    expect(signer.contextFor('a.example')).toBe(signer.contextFor('A.example'));
  });
  it('rejects a key that does not belong to the certificate', () => {
    expect(() => new LeafSigner({ cert: ca.cert, key: createCa().key })).toThrow(/does not match/);
  });
});
