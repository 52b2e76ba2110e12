/// <reference path="./.sst/platform/config.d.ts" />
/**
 * Damselfly on AWS with SST: the manager as one Hono app on Lambda (Function URL) over DynamoDB + SQS,
 * schedulers and seed peers as containers on ECS Fargate in a VPC. Components live in infra/sst/;
 * this file only wires them and prints what agents need.
 *
 *   npx sst secret set RootPassword '...' --stage prod    # once per stage
 *   npx sst secret set JwtSecret "$(openssl rand -hex 32)" --stage prod
 *   npx sst secret set SchedulerSecret "$(openssl rand -hex 32)" --stage prod
 *   npx sst deploy --stage prod
 *   npx sst remove --stage prod
 */
export default $config({
  app(input) {
    return {
      name: 'damselfly',
      // Production keeps its table, queues and logs when the stage is removed; other stages go entirely.
      removal: input?.stage === 'production' ? 'retain' : 'remove',
      protect: input?.stage === 'production',
      home: 'aws',
      providers: { aws: { region: (process.env.AWS_REGION as aws.Region | undefined) ?? 'us-east-1' } },
    };
  },
  async run() {
    const { createStores } = await import('./infra/sst/stores');
    const { createManager } = await import('./infra/sst/manager');
    const { createCluster } = await import('./infra/sst/cluster');
    const { agentConfigDoc } = await import('./infra/sst/configs');

    const secrets = {
      rootPassword: new sst.Secret('RootPassword'),
      jwtSecret: new sst.Secret('JwtSecret'),
      // Schedulers present it (Bearer) to register with the manager and report job results.
      schedulerSecret: new sst.Secret('SchedulerSecret'),
    };
    const stores = createStores();
    const manager = createManager({ stores, secrets });
    const cluster = createCluster({ stores, managerUrl: manager.url, schedulerSecret: secrets.schedulerSecret });

    return {
      managerUrl: manager.url,
      schedulerAddress: cluster.schedulerAddress,
      kvTable: stores.table.name,
      jobQueue: stores.jobs.url,
      // Paste into each agent's YAML (damselfly agent --config FILE): the agent finds its scheduler
      // through the manager and falls back to the load-balanced address when the manager is away.
      agentConfig: $resolve([cluster.schedulerAddress, manager.url]).apply(([addr, url]) => JSON.stringify(agentConfigDoc(addr, url))),
    };
  },
});
