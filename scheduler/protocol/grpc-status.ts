/**
 * The one place our error codes become gRPC status codes (and back, for the Dfdaemon client).
 */
import { status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { DamselflyError, errorCode, errorMessage, type ErrorCode } from '../../adapters/errors.js';

const TO_GRPC: Record<ErrorCode, status> = {
  NOT_FOUND: status.NOT_FOUND,
  CONFLICT: status.ALREADY_EXISTS,
  UNAVAILABLE: status.UNAVAILABLE,
  INVALID: status.INVALID_ARGUMENT,
  CONFIG: status.FAILED_PRECONDITION,
  INTEGRITY: status.DATA_LOSS,
  TIMEOUT: status.DEADLINE_EXCEEDED,
  UNAUTHORIZED: status.UNAUTHENTICATED,
  FORBIDDEN: status.PERMISSION_DENIED,
  RATE_LIMITED: status.RESOURCE_EXHAUSTED,
  SOURCE: status.FAILED_PRECONDITION,
  INTERNAL: status.INTERNAL,
};

/** A grpc-js status object for `err` (our code mapped; anything else INTERNAL). */
export function toGrpcStatus(err: unknown): Partial<StatusObject> {
  return { code: TO_GRPC[errorCode(err)], details: errorMessage(err) };
}

const FROM_GRPC: Partial<Record<status, ErrorCode>> = {
  [status.NOT_FOUND]: 'NOT_FOUND',
  [status.ALREADY_EXISTS]: 'CONFLICT',
  [status.UNAVAILABLE]: 'UNAVAILABLE',
  [status.INVALID_ARGUMENT]: 'INVALID',
  [status.DATA_LOSS]: 'INTEGRITY',
  [status.DEADLINE_EXCEEDED]: 'TIMEOUT',
  [status.UNAUTHENTICATED]: 'UNAUTHORIZED',
  [status.PERMISSION_DENIED]: 'FORBIDDEN',
  [status.RESOURCE_EXHAUSTED]: 'RATE_LIMITED',
};

/** Our typed error for a failed gRPC call. */
export function fromGrpcError(err: unknown): DamselflyError {
  const e = err as Partial<ServiceError>;
  const code = (e.code !== undefined && FROM_GRPC[e.code as status]) || 'UNAVAILABLE';
  return new DamselflyError(code, e.details || errorMessage(err), { cause: err });
}

/** Status for a peer the scheduler could not place (no parents, no back-to-source slot): the agent goes to the origin itself. */
export function schedulingFailedStatus(reason: string, code: 'NOT_FOUND' | 'FAILED_PRECONDITION' = 'FAILED_PRECONDITION'): Partial<StatusObject> {
  return { code: code === 'NOT_FOUND' ? status.NOT_FOUND : status.FAILED_PRECONDITION, details: reason };
}
