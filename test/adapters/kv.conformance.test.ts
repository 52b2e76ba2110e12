/**
 * Runs the one KV conformance suite (test/adapters/kv-conformance.ts) against every backend with its
 * real server. A missing server skips loudly; DAMSELFLY_REQUIRE_ALL=1 (CI) turns that into a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { kvConformance } from './kv-conformance.js';
import { createKvStore } from '../../adapters/stores.js';
import { requireOrSkip } from '../support/require.js';
import { TEST_TIMEOUT_MS, dynamoLocalAvailable, firestoreEmulatorAvailable, dynamoBackend, firestoreBackend, postgresBackend, redisBackend, type Backend } from '../support/servers.js';

describe('kv: memory', () => {
  // Both clients of the suite get the one in-process store, as two clients would share one server.
  const shared = createKvStore({ kind: 'memory' });
  kvConformance({ open: () => shared });
});

describe('kv: sqlite', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-kv-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  kvConformance({ open: () => createKvStore({ kind: 'sqlite', path: path.join(dir, 'store.db'), timeoutMs: 2_000 }) });
});


/** Registers the suite for a server backend; `start` runs in beforeAll (servers start only when this file runs). */
function serverSuite(name: string, start: () => Promise<Backend>, probeOk: boolean, what: string, reason?: string): void {
  describe.skipIf(!requireOrSkip(probeOk, what, reason))(`kv: ${name}`, () => {
    let backend: Backend;
    beforeAll(async () => {
      backend = await start();
      if (!backend.ok) throw new Error(`${backend.what} did not start: ${backend.reason}`);
    });
    kvConformance({
      open: () => createKvStore(backend.kv!),
      timeoutMs: TEST_TIMEOUT_MS,
      outage: { down: () => backend.proxy!.down(), up: () => backend.proxy!.up() },
    });
  });
}

// Servers start now, in parallel with the in-process suites above; each suite awaits its own.
const [pg, redis] = await Promise.all([postgresBackend(), redisBackend()]);
const dynamo = dynamoLocalAvailable();
const firestore = firestoreEmulatorAvailable();
const dynamoStart = dynamo.ok ? dynamoBackend() : undefined;
const firestoreStart = firestore.ok ? firestoreBackend() : undefined;
serverSuite('postgres', async () => pg, pg.ok, pg.what, pg.reason);
serverSuite('redis', async () => redis, redis.ok, redis.what, redis.reason);
serverSuite('dynamodb', () => dynamoStart!, ...available(dynamo));
serverSuite('firestore', () => firestoreStart!, ...available(firestore));
afterAll(async () => {
  for (const b of [pg, redis, await dynamoStart, await firestoreStart]) await b?.stop();
});

function available(a: { ok: boolean; what: string; reason?: string }): [boolean, string, string | undefined] {
  return [a.ok, a.what, a.reason];
}
