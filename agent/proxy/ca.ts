/**
 * The proxy's certificate authority for intercepting CONNECT to registry hosts: `damselfly ca init`
 * creates it; the proxy signs a leaf per host on the fly (one RSA key shared by all leaves, made at
 * start-up with node:crypto because node-forge's pure-JS key generation takes seconds) and caches
 * the TLS context per host.
 */
import { isIP } from 'node:net';
import tls from 'node:tls';
import forge from 'node-forge';
import { ConfigError } from '../../adapters/errors.js';
import { createSelfSignedCa, rsaKeyPair, serialNumber as serial, type CertPair } from '../../adapters/x509.js';

/** Leaf validity kept short of the 398-day limit clients enforce for server certificates. */
const LEAF_DAYS = 397;

export type CaPem = CertPair;

/** Creates a self-signed CA certificate and key (PEM). */
export function createCa(commonName = 'Damselfly proxy CA'): CaPem {
  return createSelfSignedCa(commonName);
}

/** Signs leaf certificates for intercepted hosts with a CA; contexts are cached per host. */
export class LeafSigner {
  private readonly caCert: forge.pki.Certificate;
  private readonly caKey: forge.pki.rsa.PrivateKey;
  private readonly leafKeys = rsaKeyPair();
  private readonly contexts = new Map<string, tls.SecureContext>();

  /** Throws ConfigError when the PEMs cannot be parsed or the key does not belong to the certificate. */
  constructor(private readonly ca: CaPem) {
    try {
      this.caCert = forge.pki.certificateFromPem(ca.cert);
      this.caKey = forge.pki.privateKeyFromPem(ca.key) as forge.pki.rsa.PrivateKey;
    } catch (e) {
      throw new ConfigError(`proxy CA: cannot parse certificate/key: ${(e as Error).message}`);
    }
    const pub = this.caCert.publicKey as forge.pki.rsa.PublicKey;
    if (pub.n.compareTo(this.caKey.n) !== 0) throw new ConfigError('proxy CA: the key does not match the certificate');
  }

  /** A PEM leaf certificate for `host` (DNS name or IP), signed by the CA. */
  leafPem(host: string): string {
    const cert = forge.pki.createCertificate();
    cert.publicKey = this.leafKeys.publicKey;
    cert.serialNumber = serial();
    cert.validity.notBefore = new Date(Date.now() - 60_000);
    cert.validity.notAfter = new Date(Date.now() + LEAF_DAYS * 86_400_000);
    cert.setSubject([{ name: 'commonName', value: host.slice(0, 64) }]);
    cert.setIssuer(this.caCert.subject.attributes);
    const altName = isIP(host) ? { type: 7, ip: host } : { type: 2, value: host };
    cert.setExtensions([
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [altName] },
    ]);
    cert.sign(this.caKey, forge.md.sha256.create());
    return forge.pki.certificateToPem(cert);
  }

  /** Key and certificate chain for serving `host` (e.g. a test's TLS upstream). */
  serverOptions(host: string): { key: string; cert: string } {
    return { key: this.leafKeys.pem, cert: this.leafPem(host) + this.ca.cert };
  }

  /** The TLS server context for `host`, created on first use. */
  contextFor(host: string): tls.SecureContext {
    const h = host.replace(/^\[|\]$/g, '').toLowerCase();
    let ctx = this.contexts.get(h);
    if (!ctx) {
      ctx = tls.createSecureContext({ key: this.leafKeys.pem, cert: this.leafPem(h) + this.ca.cert });
      this.contexts.set(h, ctx);
    }
    return ctx;
  }
}
