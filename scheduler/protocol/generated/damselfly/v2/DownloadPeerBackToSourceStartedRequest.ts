// Original file: scheduler/protocol/damselfly.proto

import type { Long } from '@grpc/proto-loader';

export interface DownloadPeerBackToSourceStartedRequest {
  'description'?: (string);
  /**
   * -1 if the origin did not say
   */
  'content_length'?: (number | string | Long);
  'piece_length'?: (number | string | Long);
}

export interface DownloadPeerBackToSourceStartedRequest__Output {
  'description': (string);
  /**
   * -1 if the origin did not say
   */
  'content_length': (number);
  'piece_length': (number);
}
