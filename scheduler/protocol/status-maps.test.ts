// One exhaustive ErrorCode -> status map per transport, and the two agree on what an error means.
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ConflictError, DamselflyError, ERROR_CODES, IntegrityError, InvalidError, NotFoundError, RangeNotSatisfiableError, SourceError } from '../../adapters/errors.js';
import { HTTP_STATUS, httpErrorHeaders, httpStatus } from '../../adapters/http-status.js';
import { TO_GRPC, fromGrpcError, grpcCode, toGrpcStatus } from './grpc-status.js';

describe('error -> status maps', () => {
  it('cover every error code on both transports', () => {
    for (const code of ERROR_CODES) {
      expect(HTTP_STATUS[code], `HTTP status for ${code}`).toBeGreaterThanOrEqual(400);
      expect(TO_GRPC[code], `gRPC status for ${code}`).toBeGreaterThan(0);
    }
    expect(Object.keys(HTTP_STATUS).sort()).toEqual([...ERROR_CODES].sort());
    expect(Object.keys(TO_GRPC).sort()).toEqual([...ERROR_CODES].sort());
  });

  it('agree on the cases that used to disagree', () => {
    const cases: Array<[unknown, number, status]> = [
      [new ConflictError('exists'), 409, status.ALREADY_EXISTS],
      [new NotFoundError('gone'), 404, status.NOT_FOUND],
      [new SourceError('origin answered 404', 404), 404, status.NOT_FOUND],
      [new SourceError('origin answered 410', 410), 404, status.NOT_FOUND],
      [new SourceError('origin answered 403', 403), 403, status.PERMISSION_DENIED],
      [new SourceError('origin answered 500', 500), 502, status.FAILED_PRECONDITION],
      [new IntegrityError('digest mismatch'), 502, status.DATA_LOSS],
      [new InvalidError('bad url'), 400, status.INVALID_ARGUMENT],
      [new RangeNotSatisfiableError('outside'), 416, status.OUT_OF_RANGE],
      [new Error('boom'), 500, status.INTERNAL],
      [new RangeError('not ours'), 500, status.INTERNAL],
    ];
    for (const [err, http, grpc] of cases) {
      expect(httpStatus(err), String(err)).toBe(http);
      expect(grpcCode(err), String(err)).toBe(grpc);
      expect(toGrpcStatus(err).code).toBe(grpc);
    }
    expect(httpErrorHeaders(new SourceError('x', 404))).toEqual({ 'x-damselfly-source-status': '404' });
    expect(httpErrorHeaders(new IntegrityError('x'))).toEqual({});
  });

  it('reads gRPC statuses back as our codes', () => {
    const back = (code: status) => fromGrpcError({ code, details: 'd' });
    expect(back(status.ALREADY_EXISTS)).toBeInstanceOf(DamselflyError);
    expect(back(status.ALREADY_EXISTS).code).toBe('CONFLICT');
    expect(back(status.OUT_OF_RANGE).code).toBe('RANGE');
    expect(back(status.DATA_LOSS).code).toBe('INTEGRITY');
    expect(back(status.UNKNOWN).code).toBe('UNAVAILABLE');
  });
});
