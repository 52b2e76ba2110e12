/**
 * The certificate building both of the project's CAs share: the proxy's CA for intercepted registry
 * hosts (agent/proxy/ca.ts) and the cluster CA that signs mutual-TLS certificates
 * (control/manager/cluster-ca.ts). RSA keys come from node:crypto (node-forge's pure-JS key
 * generation takes seconds); certificates are built and signed with node-forge.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

const CA_YEARS = 10;

/** A PEM certificate and its PEM (PKCS#1) private key. */
export interface CertPair {
  cert: string;
  key: string;
}

/** A new RSA 2048 key pair: forge's objects to sign with, and the key as PEM. */
export function rsaKeyPair(): { privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; pem: string } {
  const pem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const privateKey = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  return { privateKey, publicKey: forge.pki.setRsaPublicKey(privateKey.n, privateKey.e), pem };
}

/** A positive 16-byte certificate serial number (high bit cleared), as RFC 5280 wants. */
export function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString('hex');
}

/** A new self-signed CA certificate (10 years, CA:true, keyCertSign + cRLSign) and its key. */
export function createSelfSignedCa(commonName: string, now = Date.now()): CertPair {
  const keys = rsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialNumber();
  cert.validity.notBefore = new Date(now - 60_000);
  cert.validity.notAfter = new Date(now + CA_YEARS * 365 * 86_400_000);
  const attrs = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'Damselfly' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keys.pem };
}
