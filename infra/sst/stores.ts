/**
 * The manager's stores on AWS: one DynamoDB table (the KV port) with TTL, and the SQS job queue of
 * scheduler cluster 1 with its dead-letter queue. Names carry the app and stage (SST prefixes
 * physical names with `$app.name-$app.stage`), so stages never share state.
 */

/**
 * Key schema and TTL attribute of the DynamoDB KV backend (adapters/kv/dynamodb.ts creates the same
 * table when it is missing; test/deploy/sst-layout.test.ts keeps the two in step).
 */
export const KV_TABLE_LAYOUT = { hashKey: 'p', rangeKey: 'k', ttl: 'ttl' } as const;

/** Deliveries before a job message moves to the dead-letter queue (the queue port's `maxReceives`). */
export const JOB_MAX_RECEIVES = 5;

/** Creates the KV table and the job queues. */
export function createStores() {
  const table = new sst.aws.Dynamo('Kv', {
    fields: { [KV_TABLE_LAYOUT.hashKey]: 'string', [KV_TABLE_LAYOUT.rangeKey]: 'string' },
    primaryIndex: { hashKey: KV_TABLE_LAYOUT.hashKey, rangeKey: KV_TABLE_LAYOUT.rangeKey },
    ttl: KV_TABLE_LAYOUT.ttl,
  });
  // SQS names: `${queuePrefix}${jobQueue('1')}` and its deadLetterName(), as the SQS queue backend builds them.
  const queuePrefix = `${$app.name}-${$app.stage}-`;
  const deadLetter = new sst.aws.Queue('JobsDlq', {
    transform: { queue: { name: `${queuePrefix}jobs-cluster-1-dlq`, messageRetentionSeconds: 14 * 24 * 3600 } },
  });
  const jobs = new sst.aws.Queue('Jobs', {
    visibilityTimeout: '5 minutes',
    dlq: { queue: deadLetter.arn, retry: JOB_MAX_RECEIVES },
    transform: { queue: { name: `${queuePrefix}jobs-cluster-1` } },
  });
  // The queue backend creates the queues of further scheduler clusters (jobs-cluster-2, ...) on
  // first use: whoever uses the queue may manage every queue under the stage's prefix.
  const account = aws.getCallerIdentityOutput().accountId;
  const region = aws.getRegionOutput().name;
  const queuePermissions = [
    { actions: ['sqs:*'], resources: [$interpolate`arn:aws:sqs:${region}:${account}:${queuePrefix}*`] },
  ];
  return { table, jobs, deadLetter, queuePrefix, queuePermissions };
}

export type Stores = ReturnType<typeof createStores>;
