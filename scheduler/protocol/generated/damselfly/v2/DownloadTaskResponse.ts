// Original file: scheduler/protocol/damselfly.proto

import type { Long } from '@grpc/proto-loader';

export interface DownloadTaskResponse {
  'host_id'?: (string);
  'task_id'?: (string);
  'peer_id'?: (string);
  'content_length'?: (number | string | Long);
  'finished_piece_count'?: (number);
  'piece_count'?: (number);
  'is_finished'?: (boolean);
}

export interface DownloadTaskResponse__Output {
  'host_id': (string);
  'task_id': (string);
  'peer_id': (string);
  'content_length': (number);
  'finished_piece_count': (number);
  'piece_count': (number);
  'is_finished': (boolean);
}
