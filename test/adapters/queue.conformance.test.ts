/**
 * Runs the one queue conformance suite (adapters/queue/conformance.ts) against every backend with
 * its real server. A missing server skips loudly; DAMSELFLY_REQUIRE_ALL=1 (CI) makes it a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe } from 'vitest';
import { queueConformance } from '../../adapters/queue/conformance.js';
import { createQueue } from '../../adapters/stores.js';

describe('queue: memory', () => {
  const shared = createQueue({ kind: 'memory', maxReceives: 2 });
  queueConformance({ open: () => shared });
});

describe('queue: sqlite', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-queue-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  queueConformance({ open: () => createQueue({ kind: 'sqlite', path: path.join(dir, 'store.db'), maxReceives: 2, timeoutMs: 2_000 }) });
});
