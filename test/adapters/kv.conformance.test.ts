/**
 * Runs the one KV conformance suite (adapters/kv/conformance.ts) against every backend with its
 * real server. A missing server skips loudly; DAMSELFLY_REQUIRE_ALL=1 (CI) turns that into a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe } from 'vitest';
import { kvConformance } from '../../adapters/kv/conformance.js';
import { createKvStore } from '../../adapters/stores.js';

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

