// Original file: scheduler/protocol/damselfly.proto

import type { Host as _damselfly_v2_Host, Host__Output as _damselfly_v2_Host__Output } from '../../damselfly/v2/Host.js';
import type { Long } from '@grpc/proto-loader';

export interface AnnounceHostRequest {
  'host'?: (_damselfly_v2_Host | null);
  /**
   * how often the agent re-announces; the scheduler's host TTL follows it
   */
  'interval_ms'?: (number | string | Long);
}

export interface AnnounceHostRequest__Output {
  'host': (_damselfly_v2_Host__Output | null);
  /**
   * how often the agent re-announces; the scheduler's host TTL follows it
   */
  'interval_ms': (number);
}
