// Original file: scheduler/protocol/damselfly.proto

import type { Long } from '@grpc/proto-loader';

export interface StatLocalTaskResponse {
  'task_id'?: (string);
  'content_length'?: (number | string | Long);
  'piece_count'?: (number);
  'finished_piece_count'?: (number);
  'is_finished'?: (boolean);
}

export interface StatLocalTaskResponse__Output {
  'task_id': (string);
  'content_length': (number);
  'piece_count': (number);
  'finished_piece_count': (number);
  'is_finished': (boolean);
}
