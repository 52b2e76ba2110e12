// Original file: scheduler/protocol/damselfly.proto

import type { Long } from '@grpc/proto-loader';

export interface DownloadPeerFinishedRequest {
  'content_length'?: (number | string | Long);
  'piece_count'?: (number);
}

export interface DownloadPeerFinishedRequest__Output {
  'content_length': (number);
  'piece_count': (number);
}
