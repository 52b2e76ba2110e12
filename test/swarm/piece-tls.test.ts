/**
 * The piece client's mTLS handshakes (agent/piece-client.ts), against a real https server with
 * certificates of a real cluster CA: a task's burst of connections to a parent costs one full
 * handshake, then resumptions (also for the next task's client); a renewed certificate (a new client
 * context) starts with a full handshake; resumption never lets a client without a certificate, or
 * with another CA's, in; the suite is AES-128-GCM.
 */
import https from 'node:https';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClusterCa, issueCertificate } from '../../control/manager/cluster-ca.js';
import { createCsr, newRsaKey, PIECE_CIPHERSUITES } from '../../adapters/tls.js';
import { PieceClient } from '../../agent/piece-client.js';

const caPemOf = (ca: object): string => Object.values(ca).find((v) => typeof v === 'string' && v.includes('BEGIN CERTIFICATE')) as string;

describe('piece client over mTLS: session resumption and suite', () => {
  const ca = createClusterCa();
  const caPem = caPemOf(ca);
  const leaf = (name: string, authority = ca) => {
    const key = newRsaKey();
    return { key, cert: issueCertificate(authority, createCsr(key, name, '127.0.0.1'), 3_600_000) };
  };
  const context = (id: { key: string; cert: string } | undefined) =>
    tls.createSecureContext({ ...(id ?? {}), ca: caPem, minVersion: 'TLSv1.3', ciphers: PIECE_CIPHERSUITES });
  let server: https.Server;
  let port = 0;
  const seen: { resumed: boolean; suite: string }[] = [];
  beforeAll(async () => {
    const s = leaf('parent');
    server = https.createServer({ ...s, ca: caPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ciphers: PIECE_CIPHERSUITES, keepAliveTimeout: 30_000 }, (_req, res) => {
      res.writeHead(200, { 'content-length': 5 }).end('piece');
    });
    server.on('secureConnection', (sock: tls.TLSSocket) => seen.push({ resumed: sock.isSessionReused(), suite: sock.getCipher().name }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  const burst = async (ctx: tls.SecureContext | undefined, n = 9) => {
    const client = new PieceClient('127.0.0.1', port, { connections: n, tls: () => ctx });
    try {
      return await Promise.all(Array.from({ length: n }, async () => {
        const buf = Buffer.alloc(16);
        const r = await client.get('/v1/tasks/x/pieces/0', buf);
        return buf.toString('utf8', 0, r.length);
      }));
    } finally {
      client.close();
    }
  };

  it('one full handshake per parent, then resumptions, across clients; a new context starts afresh', async () => {
    const ctx = context(leaf('child'));
    seen.length = 0;
    expect(await burst(ctx)).toEqual(Array(9).fill('piece'));
    expect(await burst(ctx)).toEqual(Array(9).fill('piece'));
    expect(seen).toHaveLength(18);
    expect(seen.filter((s) => !s.resumed)).toHaveLength(1);
    expect(new Set(seen.map((s) => s.suite))).toEqual(new Set(['TLS_AES_128_GCM_SHA256']));
    // After a renewal the identity's context is a new object: its first connection is a full handshake.
    seen.length = 0;
    await burst(context(leaf('child')), 3);
    expect(seen.map((s) => s.resumed)).toEqual([false, true, true]);
  });

  it('no certificate, or one of another CA: refused, whatever tickets other clients hold', async () => {
    await burst(context(leaf('child')), 2); // tickets for this parent exist now
    await expect(burst(context(undefined), 1)).rejects.toThrow();
    const foreign = createClusterCa('not the cluster CA');
    await expect(burst(context(leaf('intruder', foreign)), 1)).rejects.toThrow();
  });
});
