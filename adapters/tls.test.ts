/** The cluster CA's issuance and renewal proof (control/manager/cluster-ca.ts) and the identity's certificate cache. */
import { mkdtempSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createClusterCa, issueCertificate, provesCurrentCertificate } from '../control/manager/cluster-ca.js';
import { silentLogger } from './log.js';
import { ClusterIdentity, certTimes, createCsr, newRsaKey, renewalSignature } from './tls.js';

describe('cluster CA and certificate identity', () => {
  const ca = createClusterCa();
  const key = newRsaKey();
  const csr = createCsr(key, 'host-a', '10.0.0.7');

  it('issues a certificate for the CSR: names, validity, chain', () => {
    const cert = issueCertificate(ca, csr, 60_000);
    const t = certTimes(cert);
    expect(t.notAfter - Date.now()).toBeLessThanOrEqual(60_000);
    expect(t.notAfter - Date.now()).toBeGreaterThan(50_000);
    expect(provesCurrentCertificate(ca, cert, csr, renewalSignature(csr, key))).toBe(true);
  });

  it('refuses a CSR whose bytes were altered, naming the field', () => {
    const lines = csr.split('\n');
    const i = Math.floor(lines.length / 2);
    const l = lines[i]!;
    lines[i] = l.slice(0, 10) + (l[10] === 'A' ? 'B' : 'A') + l.slice(11);
    expect(() => issueCertificate(ca, lines.join('\n'), 60_000)).toThrow(/csr/);
    expect(() => issueCertificate(ca, 'garbage', 60_000)).toThrow(/csr: expected a PEM/);
  });

  it('renewal proof: refused for another CA, an expired certificate, or a signature by another key', () => {
    const other = createClusterCa('other');
    expect(provesCurrentCertificate(ca, issueCertificate(other, csr, 60_000), csr, renewalSignature(csr, key))).toBe(false);
    const expired = issueCertificate(ca, csr, 1_000, Date.now() - 10_000);
    expect(provesCurrentCertificate(ca, expired, csr, renewalSignature(csr, key))).toBe(false);
    const cert = issueCertificate(ca, csr, 60_000);
    expect(provesCurrentCertificate(ca, cert, csr, renewalSignature(csr, newRsaKey()))).toBe(false);
    expect(provesCurrentCertificate(ca, cert, createCsr(key, 'host-b', '10.0.0.8'), renewalSignature(csr, key))).toBe(false); // a signature over another CSR
  });

  it('the cache: a valid set is used without a manager; a torn set (key of another certificate) or an expired one is not', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'damselfly-tls-'));
    mkdirSync(dir, { recursive: true });
    const write = (k: string, cert: string) => {
      writeFileSync(path.join(dir, 'key.pem'), k, { mode: 0o600 });
      writeFileSync(path.join(dir, 'cert.pem'), cert);
      writeFileSync(path.join(dir, 'ca.pem'), ca.cert);
    };
    const opts = { dir, hostname: 'host-a', ip: '10.0.0.7', logger: silentLogger };
    write(key, issueCertificate(ca, csr, 60_000));
    const ok = new ClusterIdentity(opts);
    await ok.start();
    expect(ok.current.key).toBe(key);
    ok.close();
    write(newRsaKey(), issueCertificate(ca, csr, 60_000));
    await expect(new ClusterIdentity(opts).start()).rejects.toThrow(/no manager/);
    write(key, issueCertificate(ca, csr, 1_000, Date.now() - 10_000));
    await expect(new ClusterIdentity(opts).start()).rejects.toThrow(/no manager/);
  });

  it('stored files are owner-only', async () => {
    // A first certificate bought with the join token from a local issuer answering as the manager does.
    const http = await import('node:http');
    const dir = mkdtempSync(path.join(tmpdir(), 'damselfly-tls-'));
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const { csr: c } = JSON.parse(body) as { csr: string };
        res.writeHead(req.headers.authorization === 'Bearer join-token-0123456789abcdef' ? 200 : 401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ certificate_chain: [issueCertificate(ca, c, 60_000), ca.cert] }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const id = new ClusterIdentity({ dir, hostname: 'h', ip: '127.0.0.1', logger: silentLogger, manager: `127.0.0.1:${port}`, joinToken: 'join-token-0123456789abcdef' });
      await id.start();
      id.close();
      for (const f of ['key.pem', 'cert.pem', 'ca.pem']) expect(statSync(path.join(dir, f)).mode & 0o777, f).toBe(0o600);
      expect(statSync(dir).mode & 0o077).toBe(0);
    } finally {
      server.close();
    }
  });
});
