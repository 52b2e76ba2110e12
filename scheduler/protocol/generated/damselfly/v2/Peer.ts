// Original file: scheduler/protocol/damselfly.proto

import type { Host as _damselfly_v2_Host, Host__Output as _damselfly_v2_Host__Output } from '../../damselfly/v2/Host.js';

export interface Peer {
  'id'?: (string);
  'host'?: (_damselfly_v2_Host | null);
  'state'?: (string);
  'finished_piece_count'?: (number);
  'task_id'?: (string);
  'is_finished'?: (boolean);
}

export interface Peer__Output {
  'id': (string);
  'host': (_damselfly_v2_Host__Output | null);
  'state': (string);
  'finished_piece_count': (number);
  'task_id': (string);
  'is_finished': (boolean);
}
