// Original file: scheduler/protocol/damselfly.proto

import type { TaskInfo as _damselfly_v2_TaskInfo, TaskInfo__Output as _damselfly_v2_TaskInfo__Output } from '../../damselfly/v2/TaskInfo.js';

/**
 * Pushed to every running peer of a task whenever the scheduler learns new piece digests or the
 * content length (batched); lets children verify pieces they get from any parent.
 */
export interface TaskPiecesResponse {
  'task'?: (_damselfly_v2_TaskInfo | null);
}

/**
 * Pushed to every running peer of a task whenever the scheduler learns new piece digests or the
 * content length (batched); lets children verify pieces they get from any parent.
 */
export interface TaskPiecesResponse__Output {
  'task': (_damselfly_v2_TaskInfo__Output | null);
}
