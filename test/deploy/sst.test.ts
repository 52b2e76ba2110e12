/**
 * The SST app is checked offline: `sst install` (providers from the npm registry; it also evaluates
 * sst.config.ts) and a type check of sst.config.ts + infra/sst/*.ts against the generated platform
 * types, so a misspelled or wrong component property fails. A copy with a wrong property must fail
 * the same check, which proves the check can fail.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';
import { requireOrSkip } from '../support/require.js';

const run = promisify(execFile);
const platform = path.join(repoRoot, '.sst', 'platform');
const tsc = path.join(platform, 'node_modules', '.bin', 'tsc');
const sstEnv = { ...process.env, SST_SKIP_DEPENDENCY_CHECK: 'true', SST_NO_BUN: '1', SST_TELEMETRY_DISABLED: '1' };

async function registryReachable(): Promise<{ ok: boolean; reason: string }> {
  try {
    await run('npm', ['ping'], { cwd: repoRoot, timeout: 20_000 });
    return { ok: true, reason: '' };
  } catch (err) {
    return { ok: false, reason: `npm ping failed: ${(err as Error).message.split('\n')[0]}` };
  }
}

async function typeCheck(project: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(tsc, ['-p', project], { cwd: repoRoot, timeout: 120_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

const registry = await registryReachable();

describe.skipIf(!requireOrSkip(registry.ok, 'the npm registry (for `sst install`)', registry.reason))('SST app', () => {
  beforeAll(async () => {
    const { stdout, stderr } = await run('npx', ['sst', 'install', '--stage', 'ci'], {
      cwd: repoRoot,
      env: sstEnv,
      timeout: 240_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    expect(stdout + stderr).toContain('Installed providers');
  }, 300_000);

  it('writes the platform types that the config is checked against', () => {
    expect(existsSync(path.join(platform, 'config.d.ts'))).toBe(true);
    expect(existsSync(tsc)).toBe(true);
  });

  it('type-checks sst.config.ts and infra/sst against the generated platform types', async () => {
    const result = await typeCheck('infra/sst/tsconfig.json');
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
  }, 180_000);

  it('fails the same check for a component given a property it does not have', async () => {
    // The copy lives under .sst (gitignored) so relative imports and the platform types resolve alike.
    const dir = path.join(repoRoot, '.sst', 'negative-check');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(path.join(dir, 'infra'), { recursive: true });
    cpSync(path.join(repoRoot, 'infra', 'sst'), path.join(dir, 'infra', 'sst'), { recursive: true });
    const config = readFileSync(path.join(repoRoot, 'sst.config.ts'), 'utf8').replace('./.sst/platform/config.d.ts', '../platform/config.d.ts');
    writeFileSync(path.join(dir, 'sst.config.ts'), config);
    const cluster = path.join(dir, 'infra', 'sst', 'cluster.ts');
    const original = readFileSync(cluster, 'utf8');
    const broken = original.replace("storage: '100 GB',", "storage: '100 GB',\n    diskSize: 100,");
    expect(broken).not.toBe(original);
    writeFileSync(cluster, broken);
    writeFileSync(
      path.join(dir, 'infra', 'sst', 'tsconfig.json'),
      readFileSync(path.join(repoRoot, 'infra', 'sst', 'tsconfig.json'), 'utf8').replace('../../.sst/platform/config.d.ts', '../../../platform/config.d.ts'),
    );
    try {
      const result = await typeCheck(path.join(dir, 'infra', 'sst', 'tsconfig.json'));
      expect(result.code).not.toBe(0);
      expect(result.output).toMatch(/cluster\.ts\(\d+,\d+\): error TS2353: .*'diskSize' does not exist in type 'ServiceArgs'/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});

describe('SST stores match the adapters that use them', () => {
  const stores = readFileSync(path.join(repoRoot, 'infra', 'sst', 'stores.ts'), 'utf8');

  it('creates the DynamoDB table with the key schema and TTL attribute the KV backend uses', () => {
    const m = /KV_TABLE_LAYOUT = \{ hashKey: '(\w+)', rangeKey: '(\w+)', ttl: '(\w+)' \}/.exec(stores);
    expect(m).not.toBeNull();
    const [, hashKey, rangeKey, ttl] = m!;
    const backend = readFileSync(path.join(repoRoot, 'adapters', 'kv', 'dynamodb.ts'), 'utf8');
    expect(backend).toContain(`{ AttributeName: '${hashKey}', KeyType: 'HASH' }`);
    expect(backend).toContain(`{ AttributeName: '${rangeKey}', KeyType: 'RANGE' }`);
    expect(backend).toContain(`TimeToLiveSpecification: { AttributeName: '${ttl}', Enabled: true }`);
  });

  it('names the job queue and its dead-letter queue as the queue backend does for cluster 1', async () => {
    const { jobQueue } = await import('../../adapters/keys.js');
    const { deadLetterName } = await import('../../adapters/queue/port.js');
    expect(stores).toContain(`name: \`\${queuePrefix}${jobQueue('1')}\``);
    expect(stores).toContain(`name: \`\${queuePrefix}${deadLetterName(jobQueue('1'))}\``);
  });
});

describe('SST: the configuration each role receives on AWS', () => {
  // Sample values of the shapes AWS produces: a Function URL, an internal NLB name, a stage prefix.
  const stores = { table: 'damselfly-prod-KvTable-abcdefgh', region: 'eu-west-1', queuePrefix: 'damselfly-prod-' };
  const managerUrl = 'https://abcdefghijklmnop.lambda-url.eu-west-1.on.aws/';
  const schedulerAddress = 'internal-damselfly-prod-Scheduler-123456.eu-west-1.elb.amazonaws.com:8002';

  it('passes the roles\' own schemas', async () => {
    const c = await import('../../infra/sst/configs.js');
    const { validateRoleConfig } = await import('./configs.js');
    const manager = validateRoleConfig('manager', c.managerConfigDoc(stores), 'DAMSELFLY_MANAGER_CONFIG').config as { store: { kv: { kind: string } } };
    expect(manager.store.kv.kind).toBe('dynamodb');
    const scheduler = validateRoleConfig('scheduler', c.schedulerConfigDoc(stores, managerUrl), 'scheduler DAMSELFLY_CONFIG_YAML').config as { server: { port: number } };
    expect(scheduler.server.port).toBe(c.PORTS.scheduler);
    const seed = validateRoleConfig('agent', c.seedPeerConfigDoc(schedulerAddress, managerUrl), 'seed peer DAMSELFLY_CONFIG_YAML').config as {
      seedPeer: { enable: boolean };
      upload: { pieceServer: { port: number } };
    };
    expect(seed.seedPeer.enable).toBe(true);
    expect(seed.upload.pieceServer.port).toBe(c.PORTS.agentPieces);
    validateRoleConfig('agent', c.agentConfigDoc(schedulerAddress, managerUrl), 'agentConfig output');
    // The manager and the schedulers must agree on the queue, or jobs are never picked up.
    expect(c.schedulerConfigDoc(stores, managerUrl).job.queue).toEqual(c.managerConfigDoc(stores).store.queue);
  });

  it('runs every container role from a config the entry point writes, with the image\'s own CLI', () => {
    const cluster = readFileSync(path.join(repoRoot, 'infra', 'sst', 'cluster.ts'), 'utf8');
    const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
    const entry = /ENTRYPOINT \["node", "([^"]+)"\]/.exec(dockerfile)![1];
    expect(cluster).toContain(`exec node ${entry} \${role} --config`);
    expect(cluster).toMatch(/dockerfile: 'Dockerfile'/);
  });
});
