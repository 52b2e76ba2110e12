/**
 * Mutual TLS with certificates from the manager (adapters/tls.ts, control/manager/certificates.ts),
 * real processes: manager, scheduler, seed peer and agents with `security.mtls: required`.
 *
 * - pulls work P2P over mTLS (sha256 of the output, the origin sent the file once);
 * - a host without a certificate, with a self-made CA's certificate, or with an expired certificate
 *   of the cluster CA can neither register with the scheduler (AnnounceHost) nor fetch a piece;
 * - certificates are renewed before expiry (validity 20 s here) and pulls keep working past the
 *   first certificates' expiry;
 * - with the manager down, running components keep working, and an agent restarted meanwhile
 *   starts from its cached certificate; one with no certificate yet fails to start, saying why.
 */
import path from 'node:path';
import tls from 'node:tls';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { certTimes, createCsr, newRsaKey } from '../../adapters/tls.js';
import { PieceClient } from '../../agent/piece-client.js';
import { taskId as taskIdOf } from '../../scheduler/protocol/task-id.js';
import { createClusterCa, issueCertificate } from '../../control/manager/cluster-ca.js';
import { loadProto } from '../../scheduler/protocol/loader.js';
import { fileSha256, MiB, startOrigin, type Origin } from '../support/origin.js';
import { freePort } from '../support/servers.js';
import { agentConfigFor, cleanupTempDirs, getThrough, killAll, makeTempDir, schedulerConfigFor, spawnRole, waitFor, type RoleProcess } from '../support/procs.js';

const JOIN = 'join-token-for-the-mtls-test-0123456789';
const VALIDITY_MS = 20_000;
const PIECE = 4 * MiB; // the piece length of a 12 MiB file

interface Pem {
  cert: string;
  key: string;
  ca: string;
}

async function joinWithToken(manager: string, token: string, hostname = 'probe'): Promise<{ status: number; pem?: Pem; body: string }> {
  const key = newRsaKey();
  const res = await fetch(`${manager}/api/v1/certificates`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ csr: createCsr(key, hostname, '127.0.0.1') }),
  });
  const body = await res.text();
  if (res.status !== 200) return { status: res.status, body };
  const chain = (JSON.parse(body) as { certificate_chain: string[] }).certificate_chain;
  return { status: 200, pem: { cert: chain[0]!, ca: chain[1]!, key }, body };
}

/** AnnounceHost to the scheduler with the given client identity (undefined = plaintext). */
function announce(addr: string, creds: grpc.ChannelCredentials, id: string): Promise<string> {
  const { Scheduler } = loadProto();
  const c = new Scheduler(addr, creds) as unknown as grpc.Client & Record<string, (...a: unknown[]) => void>;
  return new Promise<string>((resolve) => {
    c.AnnounceHost(
      { host: { id, type: 'NORMAL', hostname: id, ip: '127.0.0.1', port: 1, download_port: 1 }, interval_ms: 30_000 },
      { deadline: Date.now() + 5_000 },
      (err: grpc.ServiceError | null) => {
        c.close();
        resolve(err ? `error ${grpc.status[err.code]}` : 'ok');
      },
    );
  });
}

const sslCreds = (p: { ca: string; key?: string; cert?: string }) =>
  grpc.credentials.createSsl(Buffer.from(p.ca), p.key ? Buffer.from(p.key) : null, p.cert ? Buffer.from(p.cert) : null, { checkServerIdentity: () => undefined });

/** GETs piece 0 from a piece server with the given TLS client settings: its sha256, or 'refused' when the connection fails. */
async function fetchPiece(addr: string, taskId: string, ctx: tls.SecureContext | undefined): Promise<string> {
  const [host, port] = addr.split(':');
  const client = new PieceClient(host!, Number(port), { connections: 1, ...(ctx ? { tls: () => ctx } : {}) });
  try {
    const buf = Buffer.alloc(PIECE);
    const r = await client.get(`/v1/tasks/${taskId}/pieces/0`, buf);
    return r.status === 200 ? createHash('sha256').update(buf.subarray(0, r.length)).digest('hex') : `status ${r.status}`;
  } catch {
    return 'refused';
  } finally {
    client.close();
  }
}

describe('mTLS between agents, seed peers and schedulers (certificates from the manager)', () => {
  let origin: Origin | undefined;
  afterAll(async () => {
    await killAll();
    await origin?.close();
    cleanupTempDirs();
  });

  it('pulls over mTLS; no, foreign or expired certificates are refused; renewal; manager down', async () => {
    origin = await startOrigin();
    const size = 12 * MiB;
    const urls = ['a', 'b', 'c'].map((s) => origin!.add(`/file-${s}.bin`, { size, seed: `mtls-${s}` }));
    const dir = makeTempDir('damselfly-mtls-');
    const env = { DAMSELFLY_JOIN_TOKEN: JOIN };
    // A fixed port: the manager is restarted below and the components keep its address.
    const managerPort = await freePort();
    const managerConfig = (validity: string) => ({ server: { ip: '127.0.0.1', port: managerPort }, store: { dataDir: path.join(dir, 'manager') }, security: { certificateValidity: validity } });
    let manager = await spawnRole('manager', managerConfig(`${VALIDITY_MS}ms`), { dir, name: 'manager', env, readyTimeoutMs: 60_000 });
    const managerUrl = `http://${String(manager.ready.http)}`;
    const security = { mtls: 'required', managerAddr: managerUrl };

    // The manager's side first: no token, a wrong token, a garbage CSR.
    expect((await joinWithToken(managerUrl, 'not-the-join-token-at-all')).status).toBe(401);
    const garbage = await fetch(`${managerUrl}/api/v1/certificates`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${JOIN}` }, body: JSON.stringify({ csr: 'nope' }) });
    expect(garbage.status).toBe(400);
    expect(await garbage.text()).toContain('csr');
    const caKeyHint = /BEGIN (RSA )?PRIVATE KEY/;

    const scheduler = await spawnRole('scheduler', schedulerConfigFor({ security }), { dir, name: 'scheduler', env, readyTimeoutMs: 60_000 });
    const schedAddr = String(scheduler.ready.grpc);
    const start = (name: string, seed = false, d = makeTempDir(`damselfly-mtls-${name}-`)) =>
      spawnRole('agent', agentConfigFor(name, d, [schedAddr], { seed }, { security }), { dir: d, name, env, readyTimeoutMs: 60_000 });
    const seedPeer = await start('seed', true);
    const agentDir = makeTempDir('damselfly-mtls-agent-0-');
    let agent0: RoleProcess = await start('agent-0', false, agentDir);
    const agent1 = await start('agent-1');
    expect(agent0.ready.mtls).toBe('required');

    const out = (n: string) => path.join(dir, `${n}.out`);
    const pull = async (a: RoleProcess, url: string, name: string) => {
      const r = await getThrough(a, url, out(name));
      expect(r.code, r.stderr.slice(-2000)).toBe(0);
      expect(r.stderr).not.toMatch(/from the origin directly/);
      expect(await fileSha256(out(name))).toBe(origin!.sha256(new URL(url).pathname));
    };
    await pull(agent0, urls[0]!, 'a0');
    await pull(agent1, urls[0]!, 'a1');
    // P2P: the seed peer read the origin once, the agents got the pieces from it (and each other).
    expect(origin.stats().byPath['/file-a.bin']!.bytes).toBe(size);

    // Refusals at the scheduler (AnnounceHost) and at a piece server.
    const seedPieces = String(seedPeer.ready.pieces);
    const taskId = taskIdOf(urls[0]!);
    const piece0 = createHash('sha256').update(origin.slice('/file-a.bin', 0, PIECE)).digest('hex');
    const early = await joinWithToken(managerUrl, JOIN);
    expect(early.status).toBe(200);
    const earlyPem = early.pem!;
    expect(certTimes(earlyPem.cert).notAfter - Date.now()).toBeLessThanOrEqual(VALIDITY_MS);
    // The CA key never leaves the manager: not in the answer, not in the log.
    expect(early.body).not.toMatch(caKeyHint);
    const foreignCa = createClusterCa('not the cluster CA');
    const foreignKey = newRsaKey();
    const foreign = { cert: issueCertificate(foreignCa, createCsr(foreignKey, 'intruder', '127.0.0.1'), 60_000), key: foreignKey, ca: earlyPem.ca };
    const clusterCa = earlyPem.ca;
    expect(await announce(schedAddr, grpc.credentials.createInsecure(), 'plain')).toMatch(/^error/);
    expect(await announce(schedAddr, sslCreds({ ca: clusterCa }), 'nocert')).toMatch(/^error/);
    expect(await announce(schedAddr, sslCreds(foreign), 'foreign')).toMatch(/^error/);
    expect(await announce(schedAddr, sslCreds(earlyPem), 'member')).toBe('ok'); // the control: the test can fail
    expect(await fetchPiece(seedPieces, taskId, undefined)).toBe('refused');
    expect(await fetchPiece(seedPieces, taskId, tls.createSecureContext({ ca: clusterCa }))).toBe('refused');
    expect(await fetchPiece(seedPieces, taskId, tls.createSecureContext(foreign))).toBe('refused');
    expect(await fetchPiece(seedPieces, taskId, tls.createSecureContext(earlyPem))).toBe(piece0);
    // A plaintext agent (mtls off) cannot register: its announce fails, and its pulls go to the origin.
    const plainDir = makeTempDir('damselfly-mtls-plain-');
    const plain = await spawnRole('agent', agentConfigFor('plain', plainDir, [schedAddr]), { dir: plainDir, name: 'plain', readyTimeoutMs: 60_000 });
    await waitFor(() => plain.logs().some((l) => l.msg === 'announce host failed'), 'the plaintext agent to fail announcing', 30_000);

    // Renewal: every component renews before its first certificate expires; past that expiry, the
    // early certificate is refused and pulls still work (fresh connections, renewed certificates).
    const renewed = (p: RoleProcess) => p.logs().filter((l) => l.msg === 'cluster certificate in use').length;
    await waitFor(() => Date.now() > certTimes(earlyPem.cert).notAfter + 500 || undefined, 'the first certificates to expire', VALIDITY_MS + 5_000, 250);
    for (const p of [scheduler, seedPeer, agent0, agent1]) expect(renewed(p), p.name).toBeGreaterThanOrEqual(2);
    expect(await announce(schedAddr, sslCreds(earlyPem), 'expired')).toMatch(/^error/);
    expect(await fetchPiece(seedPieces, taskId, tls.createSecureContext(earlyPem))).toBe('refused');
    await pull(agent1, urls[1]!, 'b1');
    await pull(agent0, urls[1]!, 'b0');
    expect(origin.stats().byPath['/file-b.bin']!.bytes).toBe(size);
    const cachedCert = readFileSync(path.join(agentDir, 'storage', 'tls', 'cert.pem'), 'utf8');
    expect(certTimes(cachedCert).serial).not.toBe(certTimes(earlyPem.cert).serial);

    // Manager restarted (same store, so the same CA) with long-lived certificates: every component
    // renews from it. Then manager down: running components keep working, and an agent restarted
    // meanwhile starts from its cached certificate.
    expect((await manager.stop()).code).toBe(0);
    const firstManager = manager;
    manager = await spawnRole('manager', managerConfig('10m'), { dir, name: 'manager-2', env, readyTimeoutMs: 60_000 });
    const longLived = (p: RoleProcess) => p.logs().some((l) => l.msg === 'cluster certificate in use' && Date.parse(String(l.notAfter)) > Date.now() + 5 * 60_000);
    await waitFor(() => [scheduler, seedPeer, agent0, agent1].every(longLived) || undefined, 'every component to renew from the restarted manager', VALIDITY_MS + 10_000, 250);
    expect((await manager.stop()).code).toBe(0);
    await agent0.stop();
    agent0 = await spawnRole('agent', agentConfigFor('agent-0', agentDir, [schedAddr], {}, { security }), { dir: agentDir, name: 'agent-0b', env, readyTimeoutMs: 60_000 });
    await pull(agent0, urls[2]!, 'c0');
    await pull(agent1, urls[2]!, 'c1');
    expect(origin.stats().byPath['/file-c.bin']!.bytes).toBe(size);
    // One that never had a certificate cannot start without the manager, and says why.
    const freshDir = makeTempDir('damselfly-mtls-fresh-');
    const fresh = spawnRole('agent', agentConfigFor('fresh', freshDir, [schedAddr], {}, { security }), { dir: freshDir, name: 'fresh', env, readyTimeoutMs: 60_000 });
    await expect(fresh).rejects.toThrow(/certificate/);
    // Nothing secret in any log: no private key, no join token.
    for (const p of [firstManager, manager, scheduler, seedPeer, agent0, agent1]) {
      const log = readFileSync(p.logFile, 'utf8');
      expect(log, p.name).not.toMatch(caKeyHint);
      expect(log, p.name).not.toContain(JOIN);
    }
  }, 240_000);
});
