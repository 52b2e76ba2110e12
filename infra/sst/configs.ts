/**
 * The configuration documents the AWS deployment hands to each role, as plain functions of the
 * deployed addresses (no SST globals here), so test/deploy/sst.test.ts validates them with the
 * roles' own schemas without a cloud account.
 */

/** gRPC port of the scheduler and the ports of an agent, as in the roles' config defaults. */
export const PORTS = { manager: 8080, scheduler: 8002, schedulerMetrics: 8000, agentGrpc: 4000, agentPieces: 4005, agentMetrics: 4002 } as const;

export interface AwsStores {
  table: string;
  region: string;
  queuePrefix: string;
}

/** The manager's config on Lambda (DAMSELFLY_MANAGER_CONFIG). */
export function managerConfigDoc(s: AwsStores) {
  return {
    store: {
      kv: { kind: 'dynamodb', table: s.table, region: s.region },
      queue: { kind: 'sqs', region: s.region, queuePrefix: s.queuePrefix },
    },
  };
}

/** A scheduler's config on Fargate; it takes cluster 1's jobs from SQS. */
export function schedulerConfigDoc(s: AwsStores, managerUrl: string) {
  return {
    server: { ip: '0.0.0.0', port: PORTS.scheduler },
    metrics: { ip: '0.0.0.0', port: PORTS.schedulerMetrics },
    manager: { addr: managerUrl, clusterId: 1 },
    job: { enable: true, queue: { kind: 'sqs', region: s.region, queuePrefix: s.queuePrefix } },
  };
}

/** A seed peer's config on Fargate; the piece cache is on the task's ephemeral storage. */
export function seedPeerConfigDoc(schedulerAddress: string, managerUrl: string) {
  return {
    seedPeer: { enable: true },
    storage: { dir: '/var/lib/damselfly/cache' },
    scheduler: { addrs: [schedulerAddress] },
    manager: { addr: managerUrl },
    upload: { server: { ip: '0.0.0.0', port: PORTS.agentGrpc }, pieceServer: { ip: '0.0.0.0', port: PORTS.agentPieces } },
    metrics: { server: { ip: '0.0.0.0', port: PORTS.agentMetrics } },
  };
}

/** What a node agent outside the cluster needs (printed as the `agentConfig` output). */
export function agentConfigDoc(schedulerAddress: string, managerUrl: string) {
  return {
    scheduler: { addrs: [schedulerAddress] },
    manager: { addr: managerUrl },
  };
}
