// Original file: scheduler/protocol/damselfly.proto


export interface DownloadPieceFailedRequest {
  'piece_number'?: (number);
  'parent_id'?: (string);
  'temporary'?: (boolean);
  /**
   * e.g. "digest mismatch", "timeout", "connection refused"
   */
  'reason'?: (string);
}

export interface DownloadPieceFailedRequest__Output {
  'piece_number': (number);
  'parent_id': (string);
  'temporary': (boolean);
  /**
   * e.g. "digest mismatch", "timeout", "connection refused"
   */
  'reason': (string);
}
