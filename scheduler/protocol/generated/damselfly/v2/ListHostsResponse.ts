// Original file: scheduler/protocol/damselfly.proto

import type { Host as _damselfly_v2_Host, Host__Output as _damselfly_v2_Host__Output } from '../../damselfly/v2/Host.js';

export interface ListHostsResponse {
  'hosts'?: (_damselfly_v2_Host)[];
}

export interface ListHostsResponse__Output {
  'hosts': (_damselfly_v2_Host__Output)[];
}
