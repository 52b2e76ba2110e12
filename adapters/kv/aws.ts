/** Client settings shared by the DynamoDB and SQS adapters. */
import { InvalidError, UnavailableError, isDamselflyError } from '../errors.js';
import { isNetworkError } from './common.js';

/**
 * Region, endpoint and bounded timeouts for an AWS SDK v3 client. With an endpoint override
 * (`endpoint`, or AWS_ENDPOINT_URL_<SERVICE> which the SDK reads itself) and no credentials in the
 * environment, placeholder credentials are used: DynamoDB Local and fauxqs accept any.
 */
export function awsClientConfig(region: string, endpoint: string | undefined, envEndpointVar: string, timeoutMs: number) {
  const local = endpoint !== undefined || process.env[envEndpointVar] !== undefined;
  const hasCreds = process.env.AWS_ACCESS_KEY_ID !== undefined || process.env.AWS_PROFILE !== undefined;
  return {
    region,
    ...(endpoint !== undefined ? { endpoint } : {}),
    ...(local && !hasCreds ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
    maxAttempts: 2,
    requestHandler: { connectionTimeout: timeoutMs, requestTimeout: timeoutMs, throwOnRequestTimeout: true },
  };
}

const THROTTLED = new Set([
  'ProvisionedThroughputExceededException', 'ThrottlingException', 'RequestLimitExceeded', 'InternalServerError',
  'ServiceUnavailable', 'RequestThrottled', 'TimeoutError', 'AbortError', 'ResourceNotFoundException', 'QueueDoesNotExist',
  'AWS.SimpleQueueService.NonExistentQueue',
]);
const INVALID = new Set(['ValidationException', 'ItemCollectionSizeLimitExceededException', 'InvalidParameterValue', 'InvalidAttributeValue', 'InvalidMessageContents']);

/** Translates an AWS SDK error; SDK types never leave the adapter. */
export function awsError(err: unknown, what: string): Error {
  if (isDamselflyError(err)) return err;
  const name = (err as { name?: string })?.name ?? '';
  const message = (err as Error)?.message ?? String(err);
  if (INVALID.has(name)) return new InvalidError(`${what}: ${message}`, { details: { driverCode: name } });
  if (THROTTLED.has(name) || isNetworkError(err)) return new UnavailableError(`${what}: ${message}`, { details: { driverCode: name } });
  return new UnavailableError(`${what}: ${name ? `${name}: ` : ''}${message}`, { details: { driverCode: name } });
}
