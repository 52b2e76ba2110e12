// Original file: scheduler/protocol/damselfly.proto

import type { Peer as _damselfly_v2_Peer, Peer__Output as _damselfly_v2_Peer__Output } from '../../damselfly/v2/Peer.js';
import type { TaskInfo as _damselfly_v2_TaskInfo, TaskInfo__Output as _damselfly_v2_TaskInfo__Output } from '../../damselfly/v2/TaskInfo.js';

export interface NormalTaskResponse {
  'candidate_parents'?: (_damselfly_v2_Peer)[];
  'task'?: (_damselfly_v2_TaskInfo | null);
}

export interface NormalTaskResponse__Output {
  'candidate_parents': (_damselfly_v2_Peer__Output)[];
  'task': (_damselfly_v2_TaskInfo__Output | null);
}
