/**
 * The same end-to-end preheat as preheat-sqlite.test.ts on the server backends: PostgreSQL (KV) +
 * Redis (queue), and DynamoDB Local (KV) + fauxqs (SQS queue). Each skips loudly when its servers
 * are missing (and fails under DAMSELFLY_REQUIRE_ALL=1).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath } from '../support/cli.js';
import { cleanupTempDirs, killAll } from '../support/procs.js';
import { buildImage, pushImage, registryToolsAvailable, startRegistry, type BuiltImage, type RunningRegistry } from '../support/registry.js';
import { requireOrSkip } from '../support/require.js';
import { dynamoBackend, postgresBackend, redisBackend, sqsBackend, type Backend } from '../support/servers.js';
import { harborBody, http, pollJob, pullBlobs, startStack } from './flow.js';

const tools = registryToolsAvailable();
const QUEUE_TUNING = { maxReceives: 5, visibilityMs: 5_000, timeoutMs: 5_000 };

const pairs: Array<{ name: string; make: () => Promise<[Backend, Backend]> }> = [
  { name: 'PostgreSQL + Redis', make: async () => [await postgresBackend(), await redisBackend()] },
  { name: 'DynamoDB + SQS', make: async () => [await dynamoBackend(), await sqsBackend()] },
];

for (const pair of pairs) {
  describe.skipIf(!requireOrSkip(tools.ok, 'docker-registry/umoci/skopeo', `missing: ${tools.missing.join(', ')}`))(`preheat end to end (${pair.name})`, () => {
    let kvB: Backend;
    let qB: Backend;
    let available = false;
    let registry: RunningRegistry;
    let image: BuiltImage;
    beforeAll(async () => {
      [kvB, qB] = await pair.make();
      available = requireOrSkip(kvB.ok && qB.ok, `${kvB.what} and ${qB.what}`, [kvB.reason, qB.reason].filter(Boolean).join('; '));
      if (!available) return;
      [registry, image] = await Promise.all([startRegistry(), buildImage({ layers: [1_200_000, 2_000_000] })]);
      await pushImage(image, `${registry.host}/test/app:v1`);
      registry.resetCounters();
    }, 180_000);
    afterAll(async () => {
      await killAll();
      await registry?.close();
      await image?.cleanup();
      await kvB?.stop();
      await qB?.stop();
      cleanupTempDirs();
    });

    it('Harbor-style preheat reaches SUCCESS; pulls are served from the P2P cache', async (ctx) => {
      if (!available) return ctx.skip();
      const stack = await startStack(cliPath(), { kv: { ...kvB.kv, timeoutMs: 5_000 }, queue: { ...qB.queue, ...QUEUE_TUNING } });
      const created = await http('POST', `${stack.managerUrl}/oapi/v1/jobs`, { token: stack.pat, body: harborBody(`${registry.url}/v2/test/app/manifests/v1`) });
      expect(created.status, JSON.stringify(created.json)).toBe(200);
      const job = await pollJob(stack, created.json.id);
      expect(job.state, JSON.stringify(job.result)).toBe('SUCCESS');
      expect(job.result.job_states[0].results[0].success_tasks).toHaveLength(image.blobs.length);
      expect(await pullBlobs(stack.agent, registry, 'test/app', image)).toEqual(image.blobs);
      for (const d of image.blobs) expect(registry.blobGets.get(d)).toBe(1);
      expect(registry.totalBlobGets()).toBe(image.blobs.length);
    }, 180_000);
  });
}
