/**
 * Schedulers and seed peers as long-running containers on ECS Fargate in a VPC, built from the
 * project's Dockerfile. Agents reach the scheduler over gRPC through a network load balancer (a
 * stable DNS name); seed peers keep their piece cache on the task's ephemeral disk.
 */
import { PORTS, schedulerConfigDoc, seedPeerConfigDoc } from './configs';
import type { Stores } from './stores';

/** Where the container writes the configuration it receives in DAMSELFLY_CONFIG_YAML. */
const CONFIG_PATH = '/tmp/damselfly.yaml';

/** Runs `damselfly <role>` with the configuration text from the environment written to a file first. */
function roleCommand(role: string): string[] {
  return [`printf '%s' "$DAMSELFLY_CONFIG_YAML" > ${CONFIG_PATH} && exec node /app/dist/control/cli.js ${role} --config ${CONFIG_PATH}`];
}

export interface ClusterInputs {
  stores: Stores;
  managerUrl: $util.Output<string>;
  schedulerSecret: sst.Secret;
}

/** Creates the VPC, the ECS cluster, the scheduler service behind an NLB, and the seed-peer service. */
export function createCluster({ stores, managerUrl, schedulerSecret }: ClusterInputs) {
  const region = aws.getRegionOutput().name;
  const vpc = new sst.aws.Vpc('Vpc', { nat: 'ec2' });
  const cluster = new sst.aws.Cluster('Cluster', { vpc });
  const image = { context: '.', dockerfile: 'Dockerfile' };

  // One scheduler task: agents keep one gRPC stream per peer, so every peer of a task must reach the
  // same scheduler; more schedulers mean more services (each with its own address), not more tasks
  // behind one load balancer.
  const scheduler = new sst.aws.Service('Scheduler', {
    cluster,
    image,
    cpu: '0.5 vCPU',
    memory: '1 GB',
    entrypoint: ['/bin/sh', '-c'],
    command: roleCommand('scheduler'),
    environment: {
      DAMSELFLY_SCHEDULER_SECRET: schedulerSecret.value,
      DAMSELFLY_CONFIG_YAML: $resolve([stores.table.name, region, managerUrl]).apply(([table, r, url]) =>
        JSON.stringify(schedulerConfigDoc({ table, region: r, queuePrefix: stores.queuePrefix }, url)),
      ),
    },
    link: [stores.jobs, stores.deadLetter],
    permissions: stores.queuePermissions,
    scaling: { min: 1, max: 1 },
    loadBalancer: {
      public: false,
      rules: [{ listen: `${PORTS.scheduler}/tcp`, forward: `${PORTS.scheduler}/tcp` }],
    },
    health: {
      command: ['CMD-SHELL', `node -e "require('net').connect(${PORTS.scheduler},'127.0.0.1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))"`],
      interval: '30 seconds',
      startPeriod: '30 seconds',
    },
  });
  const schedulerAddress = $interpolate`${scheduler.url}`.apply((u) => `${new URL(u).hostname}:${PORTS.scheduler}`);

  const seedPeer = new sst.aws.Service('SeedPeer', {
    cluster,
    image,
    cpu: '1 vCPU',
    memory: '2 GB',
    // Fargate ephemeral storage holds the piece cache (gc.diskHighThresholdPercent keeps it bounded).
    storage: '100 GB',
    entrypoint: ['/bin/sh', '-c'],
    command: roleCommand('agent'),
    environment: {
      DAMSELFLY_CONFIG_YAML: $resolve([schedulerAddress, managerUrl]).apply(([addr, url]) => JSON.stringify(seedPeerConfigDoc(addr, url))),
    },
    scaling: { min: 1, max: 4, cpuUtilization: 70 },
  });

  return { vpc, cluster, scheduler, seedPeer, schedulerAddress };
}
