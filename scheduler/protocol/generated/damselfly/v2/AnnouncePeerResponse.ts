// Original file: scheduler/protocol/damselfly.proto

import type { EmptyTaskResponse as _damselfly_v2_EmptyTaskResponse, EmptyTaskResponse__Output as _damselfly_v2_EmptyTaskResponse__Output } from '../../damselfly/v2/EmptyTaskResponse.js';
import type { NormalTaskResponse as _damselfly_v2_NormalTaskResponse, NormalTaskResponse__Output as _damselfly_v2_NormalTaskResponse__Output } from '../../damselfly/v2/NormalTaskResponse.js';
import type { NeedBackToSourceResponse as _damselfly_v2_NeedBackToSourceResponse, NeedBackToSourceResponse__Output as _damselfly_v2_NeedBackToSourceResponse__Output } from '../../damselfly/v2/NeedBackToSourceResponse.js';
import type { TaskPiecesResponse as _damselfly_v2_TaskPiecesResponse, TaskPiecesResponse__Output as _damselfly_v2_TaskPiecesResponse__Output } from '../../damselfly/v2/TaskPiecesResponse.js';

export interface AnnouncePeerResponse {
  'empty_task_response'?: (_damselfly_v2_EmptyTaskResponse | null);
  'normal_task_response'?: (_damselfly_v2_NormalTaskResponse | null);
  'need_back_to_source_response'?: (_damselfly_v2_NeedBackToSourceResponse | null);
  'task_pieces_response'?: (_damselfly_v2_TaskPiecesResponse | null);
  'response'?: "empty_task_response"|"normal_task_response"|"need_back_to_source_response"|"task_pieces_response";
}

export interface AnnouncePeerResponse__Output {
  'empty_task_response'?: (_damselfly_v2_EmptyTaskResponse__Output | null);
  'normal_task_response'?: (_damselfly_v2_NormalTaskResponse__Output | null);
  'need_back_to_source_response'?: (_damselfly_v2_NeedBackToSourceResponse__Output | null);
  'task_pieces_response'?: (_damselfly_v2_TaskPiecesResponse__Output | null);
  'response'?: "empty_task_response"|"normal_task_response"|"need_back_to_source_response"|"task_pieces_response";
}
