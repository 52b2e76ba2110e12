/**
 * The manager on Lambda: one Hono app (control/manager/lambda.ts exports `handler`) behind a Function
 * URL. Its configuration is the same schema as `damselfly manager --config FILE`, passed as YAML text
 * (JSON is YAML) in DAMSELFLY_MANAGER_CONFIG; the secrets come from SST secrets as environment
 * variables the manager already reads, so they never appear in code or in the config text.
 */
import { managerConfigDoc } from './configs';
import type { Stores } from './stores';

export interface ManagerInputs {
  stores: Stores;
  secrets: { rootPassword: sst.Secret; jwtSecret: sst.Secret; schedulerSecret: sst.Secret };
}

/** Creates the manager function and returns its public URL. */
export function createManager({ stores, secrets }: ManagerInputs) {
  const region = aws.getRegionOutput().name;
  const config = $resolve([stores.table.name, region]).apply(([table, r]) =>
    JSON.stringify(managerConfigDoc({ table, region: r, queuePrefix: stores.queuePrefix })),
  );
  const fn = new sst.aws.Function('Manager', {
    handler: 'control/manager/lambda.handler',
    runtime: 'nodejs20.x',
    architecture: 'arm64',
    memory: '512 MB',
    timeout: '30 seconds',
    url: true,
    link: [stores.table, stores.jobs, stores.deadLetter, secrets.rootPassword, secrets.jwtSecret, secrets.schedulerSecret],
    permissions: stores.queuePermissions,
    environment: {
      DAMSELFLY_MANAGER_CONFIG: config,
      DAMSELFLY_ROOT_PASSWORD: secrets.rootPassword.value,
      DAMSELFLY_JWT_SECRET: secrets.jwtSecret.value,
      DAMSELFLY_SCHEDULER_SECRET: secrets.schedulerSecret.value,
    },
    nodejs: {
      // The SQL backends are never chosen on Lambda; keeping their native drivers out of the bundle
      // keeps the cold start small.
      esbuild: { external: ['better-sqlite3', 'pg-native'] },
    },
  });
  return { fn, url: fn.url };
}
