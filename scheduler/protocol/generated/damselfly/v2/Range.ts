// Original file: scheduler/protocol/damselfly.proto

import type { Long } from '@grpc/proto-loader';

export interface Range {
  'start'?: (number | string | Long);
  'length'?: (number | string | Long);
}

export interface Range__Output {
  'start': (number);
  'length': (number);
}
