/**
 * A real S3-protocol server for tests (the `s3rver` package, in this process, on 127.0.0.1 port 0,
 * data in a temporary directory), with a client to fill it.
 *
 *   const s3 = await startS3();  await s3.put('bucket', 'dir/key', bytes);  s3.endpoint  await s3.close()
 * Credentials: S3RVER / S3RVER (s3rver checks signatures against these).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

export const S3_KEY = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface TestS3 {
  endpoint: string;
  client: S3Client;
  createBucket(bucket: string): Promise<void>;
  put(bucket: string, key: string, body: Buffer): Promise<void>;
  /** Request headers that point the s3:// backend at this server with its credentials. */
  headers(): Record<string, string>;
  close(): Promise<void>;
}

export async function startS3(): Promise<TestS3> {
  const { default: S3rver } = await import('s3rver');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-s3-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir });
  const info = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${info.port}`;
  // s3rver predates the SDK's default CRC32 request checksums (aws-chunked bodies): send them only when required.
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_KEY, requestChecksumCalculation: 'WHEN_REQUIRED' });
  const buckets = new Set<string>();
  const createBucket = async (bucket: string) => {
    if (buckets.has(bucket)) return;
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    buckets.add(bucket);
  };
  return {
    endpoint,
    client,
    createBucket,
    async put(bucket, key, body) {
      await createBucket(bucket);
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
    headers: () => ({ 'x-damselfly-s3-endpoint': endpoint, 'x-damselfly-s3-access-key-id': S3_KEY.accessKeyId, 'x-damselfly-s3-secret-access-key': S3_KEY.secretAccessKey }),
    async close() {
      client.destroy();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
