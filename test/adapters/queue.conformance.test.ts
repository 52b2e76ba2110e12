/**
 * Runs the one queue conformance suite (test/adapters/queue-conformance.ts) against every backend with
 * its real server. A missing server skips loudly; DAMSELFLY_REQUIRE_ALL=1 (CI) makes it a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { queueConformance } from './queue-conformance.js';
import { createQueue } from '../../adapters/stores.js';
import { requireOrSkip } from '../support/require.js';
import { TEST_TIMEOUT_MS, fauxqsAvailable, firestoreEmulatorAvailable, firestoreBackend, postgresBackend, redisBackend, sqsBackend, type Backend } from '../support/servers.js';

describe('queue: memory', () => {
  const shared = createQueue({ kind: 'memory', maxReceives: 2 });
  queueConformance({ open: () => shared });
});

describe('queue: sqlite', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-queue-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  queueConformance({ open: () => createQueue({ kind: 'sqlite', path: path.join(dir, 'store.db'), maxReceives: 2, timeoutMs: 2_000 }) });
});

/** Registers the suite for a server backend; `start` runs in beforeAll (servers start only when this file runs). */
function serverSuite(name: string, start: () => Promise<Backend>, probeOk: boolean, what: string, reason?: string): void {
  describe.skipIf(!requireOrSkip(probeOk, what, reason))(`queue: ${name}`, () => {
    let backend: Backend;
    beforeAll(async () => {
      backend = await start();
      if (!backend.ok) throw new Error(`${backend.what} did not start: ${backend.reason}`);
    });
    queueConformance({
      open: () => createQueue(backend.queue!),
      timeoutMs: TEST_TIMEOUT_MS,
      outage: { down: () => backend.proxy!.down(), up: () => backend.proxy!.up() },
    });
  });
}

// Servers start now, in parallel with the in-process suites above; each suite awaits its own.
const [pg, redis] = await Promise.all([postgresBackend(), redisBackend()]);
const fauxqs = fauxqsAvailable();
const firestore = firestoreEmulatorAvailable();
const sqsStart = fauxqs.ok ? sqsBackend() : undefined;
const firestoreStart = firestore.ok ? firestoreBackend() : undefined;
serverSuite('postgres', async () => pg, pg.ok, pg.what, pg.reason);
serverSuite('redis', async () => redis, redis.ok, redis.what, redis.reason);
serverSuite('sqs', () => sqsStart!, ...available(fauxqs));
serverSuite('firestore', () => firestoreStart!, ...available(firestore));
afterAll(async () => {
  for (const b of [pg, redis, await sqsStart, await firestoreStart]) await b?.stop();
});

function available(a: { ok: boolean; what: string; reason?: string }): [boolean, string, string | undefined] {
  return [a.ok, a.what, a.reason];
}
