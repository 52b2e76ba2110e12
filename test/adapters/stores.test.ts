/** The store factory's config checking, and the key builders. */
import { describe, expect, it } from 'vitest';
import { clusterKey, jobKey, jobQueue, key, prefix, queueName } from '../../adapters/keys.js';
import { createKvStore, createQueue } from '../../adapters/stores.js';
import { parseKvConfig, parseQueueConfig } from '../../adapters/store-config.js';

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect((err as { code?: string }).code).toBe('CONFIG');
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('store factory config', () => {
  it('names an unknown or missing kind', () => {
    expect(configError(() => parseKvConfig({ kind: 'mongodb' }, 'manager.kv'))).toMatch(/manager\.kv\.kind: unknown kind "mongodb" \(expected one of memory, sqlite, postgres, redis, dynamodb, firestore\)/);
    expect(configError(() => parseQueueConfig({ kind: 'dynamodb' }))).toMatch(/queue\.kind: unknown kind "dynamodb".*sqs/);
    expect(configError(() => parseKvConfig({}))).toMatch(/kv\.kind: missing/);
  });

  it('names a missing or unknown option', () => {
    expect(configError(() => parseKvConfig({ kind: 'postgres' }))).toMatch(/kv\.url: /);
    expect(configError(() => parseKvConfig({ kind: 'sqlite', path: 'x.db', tableName: 'x' }))).toMatch(/kv\.tableName: unknown key/);
    expect(configError(() => parseQueueConfig({ kind: 'sqs', maxReceives: 0 }))).toMatch(/queue\.maxReceives: /);
    expect(configError(() => parseKvConfig({ kind: 'dynamodb', table: 'ok-table', endpoint: 'not a url' }))).toMatch(/kv\.endpoint: /);
  });

  it('fills defaults', () => {
    expect(parseKvConfig({ kind: 'redis', url: 'redis://127.0.0.1:6379' })).toEqual({ kind: 'redis', url: 'redis://127.0.0.1:6379', prefix: 'damselfly:', timeoutMs: 5_000 });
    expect(parseQueueConfig({ kind: 'memory' })).toEqual({ kind: 'memory', maxReceives: 5, visibilityMs: 30_000, timeoutMs: 5_000 });
  });

  it('builds working memory stores', async () => {
    const kv = await createKvStore({ kind: 'memory' });
    await kv.put('a', 1);
    expect((await kv.get('a'))?.value).toBe(1);
    const q = await createQueue({ kind: 'memory' });
    await q.send('q', 'x');
    expect((await q.receive('q'))[0].body).toBe('x');
    await expect(createKvStore({ kind: 'nope' } as never)).rejects.toMatchObject({ code: 'CONFIG' });
  });
});

describe('keys', () => {
  it('builds versioned keys and queue names in one place', () => {
    expect(jobKey('42')).toBe('v1/jobs/42');
    expect(clusterKey('c1')).toBe('v1/clusters/c1');
    expect(prefix('jobs')).toBe('v1/jobs/');
    expect(key('tasks', 't', 'peers')).toBe('v1/tasks/t/peers');
    expect(jobQueue('7')).toBe('jobs-cluster-7');
    expect(queueName('jobs', 'a-b')).toBe('jobs-a_b');
    expect(() => jobKey('a/b')).toThrow(/without "\/"/);
    expect(() => queueName('jobs', 'x'.repeat(80))).toThrow(/longer than 76/);
  });
});
